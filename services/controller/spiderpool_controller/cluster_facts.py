"""The API server as the operators' tools see it: live pods for ``check``, one pod for ``explain``.

Owns reading pods without adding load or waiting: ``check`` takes the live pods, node
readiness and StatefulSets from the garbage collector's informer caches (they are in
memory on the leader already; nothing is listed again), and returns no view while they
have not synced (judging against a half-filled cache would call live pods gone).
``explain`` reads its one pod, namespace and node directly (fresh, three GETs), the facts
the agent would send with an ADD; a pod that does not exist is ``NotFound``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from spiderpool_common.errors import NotFound, Unavailable
from spiderpool_common.kube.rest import KubeError, KubeRest

from spiderpool_controller.domain.consistency import PodView
from spiderpool_controller.domain.request import AllocationRequest
from spiderpool_controller.engine_slot import EngineSlot
from spiderpool_controller.ip_gc import IpGarbageCollector, node_ready, pod_facts


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _namespaced(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()} if isinstance(value, dict) else {}


class ApiFacts:
    def __init__(
        self,
        slot: EngineSlot,
        rest: Callable[[], KubeRest | None],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._slot = slot
        self._rest = rest
        self._now = now

    def pod_view(self, mark: int) -> Callable[[], PodView] | None:
        """The caches' objects copied now (lists of references: the informers replace an
        object on change, never edit it), and the function that turns them into a view."""
        gc = self._slot.gc
        if not isinstance(gc, IpGarbageCollector):
            return None
        if not (gc.pods.synced.is_set() and gc.nodes.synced.is_set() and gc.statefulsets.synced.is_set()):
            return None
        pods, nodes = gc.pods.items(), gc.nodes.items()
        statefulsets = {_namespaced(o): gc.statefulset(*_namespaced(o)) for o in gc.statefulsets.items()}
        now, settings = self._now(), gc.settings

        def view() -> PodView:
            return PodView(
                {_key(obj): pod_facts(obj) for obj in pods},
                {str((n.get("metadata") or {}).get("name", "")): node_ready(n) for n in nodes},
                statefulsets,
                now,
                mark,
                settings,
            )

        return view

    async def _get(self, path: str, what: str) -> dict[str, Any]:
        rest = self._rest()
        if rest is None:
            raise Unavailable("the controller has no Kubernetes client yet; try again")
        try:
            return await rest.get(path)
        except KubeError as exc:
            if exc.not_found:
                raise NotFound(f"{what} does not exist") from None
            raise Unavailable(f"cannot read {what} from the API server: {exc}") from exc

    async def selection_inputs(self, req: AllocationRequest) -> AllocationRequest:
        if not req.pod_name:
            raise NotFound("explain in a cluster needs the pod's namespace and name")
        namespace = req.pod_namespace or "default"
        pod = await self._get(
            f"/api/v1/namespaces/{namespace}/pods/{req.pod_name}", f"pod {namespace}/{req.pod_name}"
        )
        meta = pod.get("metadata") or {}
        ns = await self._get(f"/api/v1/namespaces/{namespace}", f"namespace {namespace}")
        node_name = str((pod.get("spec") or {}).get("nodeName", "")) or req.node
        node_labels = dict(req.node_labels)
        if node_name:
            node = await self._get(f"/api/v1/nodes/{node_name}", f"node {node_name}")
            node_labels = _strings((node.get("metadata") or {}).get("labels"))
        ns_meta = ns.get("metadata") or {}
        return replace(
            req,
            pod_namespace=namespace,
            pod_uid=str(meta.get("uid", "")) or req.pod_uid,
            node=node_name,
            pod_labels=_strings(meta.get("labels")),
            pod_annotations=_strings(meta.get("annotations")),
            namespace_labels=_strings(ns_meta.get("labels")),
            namespace_annotations=_strings(ns_meta.get("annotations")),
            node_labels=node_labels,
        )
