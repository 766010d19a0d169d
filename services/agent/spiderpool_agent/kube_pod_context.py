"""The cluster mode's pod facts: what an ADD needs, read from the Kubernetes API.

Owns ``KubernetesPodContext``, the ``PodContextSource`` of an agent running in a cluster
(architecture.md "Kubernetes mode"). It fills the same ``PodContext`` the embedded mode
takes from ``args.cni``, so the controller's request does not depend on the mode:

- the pod, named by kubelet's ``CNI_ARGS`` (``K8S_POD_NAMESPACE``, ``K8S_POD_NAME``,
  ``K8S_POD_UID``): from an informer on this node's pods (``spec.nodeName=<node>``); on a
  cache miss or a cached pod with another UID it is read directly, so a pod created a
  moment ago is served. A pod that does not exist is code 3 naming it; a pod whose UID
  still differs after the direct read is code 3 naming both UIDs (the sandbox belongs to
  a pod that was deleted and re-created under the same name);
- its namespace's labels and annotations (an informer on namespaces, a direct read on a
  miss) and this node's labels (an informer on its own Node object);
- the top owner (``owner_chain``), its reads cached for ``owner_ttl`` seconds; a DEL
  reads the StatefulSet afresh (its replicas decide whether the member keeps its address)
  and falls back to the last value read when the API does not answer;
- the Multus network of the interface (``multus_networks``), with the agent's cluster
  network for ``eth0``;
- the pod annotations this agent checks itself (``pod_annotations``).

The informers start with ``start`` (the agent's start). Until all three have listed once,
``unready_reason`` says so (STATUS answers 50) and an ADD waits up to ``sync_timeout``
seconds, then answers code 11. An API server that cannot be reached (or answers an
error) makes an ADD that needs it code 11, never code 3: only a 404 means "does not
exist". A DEL never fails over metadata: a pod that is gone, or anything that goes wrong
within ``lookup_timeout``, gives no owner (the controller judges with its own view).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from spiderpool_cni import codes
from spiderpool_common.errors import CniError, Unavailable
from spiderpool_common.kube.informer import Informer
from spiderpool_common.kube.rest import KubeError, KubeRest

from spiderpool_agent.cni_call import Invocation, OwnerRef
from spiderpool_agent.multus_networks import network_for_interface
from spiderpool_agent.owner_chain import top_owner
from spiderpool_agent.pod_annotations import check_pod_annotations
from spiderpool_agent.pod_context import PodContext

log = structlog.get_logger(__name__)

# apimachinery's name rules: a namespace is a DNS-1123 label, a pod name a DNS-1123 subdomain.
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_OWNER_CACHE_MAX = 1024  # owner objects remembered at most (expired ones are dropped first)


@dataclass(frozen=True)
class _Remembered:
    obj: dict[str, Any] | None
    expires: float


@dataclass(frozen=True)
class _Informers:
    pods: Informer
    namespaces: Informer
    nodes: Informer

    def all(self) -> dict[str, Informer]:
        return {"pods": self.pods, "namespaces": self.namespaces, "nodes": self.nodes}


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _uid(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("uid", ""))


class KubernetesPodContext:
    """Pod, namespace, node and owner facts from the API, cached by informers."""

    def __init__(
        self,
        node: str,
        *,
        cluster_network: str = "",
        sync_timeout: float = 10.0,
        lookup_timeout: float = 5.0,
        owner_ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        watch_timeout_s: int = 240,
    ) -> None:
        self.node = node
        self._cluster_network = cluster_network
        self._sync_timeout = sync_timeout
        self._lookup_timeout = lookup_timeout
        self._owner_ttl = owner_ttl
        self._clock = clock
        self._watch_timeout = watch_timeout_s
        self._rest: KubeRest | None = None
        self.informers: _Informers | None = None
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._owners: dict[str, _Remembered] = {}

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, rest: KubeRest) -> None:
        """Start the informers on ``rest``; returns at once (see ``unready_reason``)."""
        self._rest = rest
        timeout = self._watch_timeout
        self.informers = _Informers(
            pods=Informer(
                rest, "/api/v1/pods", field_selector=f"spec.nodeName={self.node}", watch_timeout_s=timeout
            ),
            namespaces=Informer(rest, "/api/v1/namespaces", watch_timeout_s=timeout),
            nodes=Informer(
                rest, "/api/v1/nodes", field_selector=f"metadata.name={self.node}", watch_timeout_s=timeout
            ),
        )
        for name, informer in self.informers.all().items():
            self._tasks.append(asyncio.create_task(informer.run(), name=f"informer-{name}"))
        self._tasks.append(asyncio.create_task(self._await_sync(self.informers), name="informers-synced"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _await_sync(self, informers: _Informers) -> None:
        started = self._clock()
        for informer in informers.all().values():
            await informer.synced.wait()
        self._synced.set()
        log.info(
            "kube_caches_synced",
            node=self.node,
            pods=len(informers.pods.cache),
            namespaces=len(informers.namespaces.cache),
            node_found=bool(informers.nodes.cache),
            seconds=round(self._clock() - started, 3),
        )

    def unready_reason(self) -> str:
        if self.informers is None:
            return "the agent has not connected to the Kubernetes API yet"
        pending = [name for name, inf in self.informers.all().items() if not inf.synced.is_set()]
        if pending:
            return f"the agent's Kubernetes caches of {', '.join(pending)} have not synced yet"
        return ""

    async def _wait_synced(self) -> _Informers:
        if not self._synced.is_set():
            try:
                async with asyncio.timeout(self._sync_timeout):
                    await self._synced.wait()
            except TimeoutError:
                raise CniError(
                    codes.TRY_AGAIN_LATER,
                    f"{self.unready_reason() or 'the Kubernetes caches are not ready'} "
                    f"(waited {self._sync_timeout:g}s)",
                ) from None
        assert self.informers is not None
        return self.informers

    # -- reads --------------------------------------------------------------------------

    async def _read(self, path: str) -> dict[str, Any] | None:
        """A direct GET; None when the object does not exist (404)."""
        assert self._rest is not None
        try:
            return await self._rest.get(path)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    async def _read_owner_object(self, path: str, *, fresh: bool) -> dict[str, Any] | None:
        """An owner object, remembered ``owner_ttl`` seconds; ``fresh`` reads it anyway and,
        when the API does not answer, falls back to the last value read."""
        now = self._clock()
        hit = self._owners.get(path)
        if hit is not None and not fresh and now < hit.expires:
            return hit.obj
        try:
            obj = await self._read(path)
        except KubeError as exc:
            if fresh and hit is not None:
                log.info("owner_read_failed_last_value_used", path=path, error=exc.message)
                return hit.obj
            raise
        if len(self._owners) >= _OWNER_CACHE_MAX:
            self._owners = {k: v for k, v in self._owners.items() if v.expires > now}
            if len(self._owners) >= _OWNER_CACHE_MAX:
                self._owners.clear()
        self._owners[path] = _Remembered(obj, now + self._owner_ttl)
        return obj

    @staticmethod
    def _identity(inv: Invocation) -> tuple[str, str, str]:
        """(namespace, name, uid) from CNI_ARGS, checked: code 4 when unusable."""
        namespace, name, uid = inv.args.pod_namespace, inv.args.pod_name, inv.args.pod_uid
        missing = [k for k, v in (("K8S_POD_NAMESPACE", namespace), ("K8S_POD_NAME", name)) if not v]
        if missing:
            raise CniError(
                codes.INVALID_ENVIRONMENT,
                f"CNI_ARGS: {' and '.join(missing)} missing: the agent reads the pod from the Kubernetes API",
            )
        if len(namespace) > 63 or not _LABEL.match(namespace):
            raise CniError(
                codes.INVALID_ENVIRONMENT,
                f"CNI_ARGS: K8S_POD_NAMESPACE={namespace!r} is not a namespace name",
            )
        if len(name) > 253 or not _SUBDOMAIN.match(name):
            raise CniError(codes.INVALID_ENVIRONMENT, f"CNI_ARGS: K8S_POD_NAME={name!r} is not a pod name")
        return namespace, name, uid

    async def _pod(self, informers: _Informers, inv: Invocation) -> dict[str, Any]:
        """The pod of this call: cached when the UID agrees, else read directly."""
        namespace, name, uid = self._identity(inv)
        cached = informers.pods.get(f"{namespace}/{name}")
        if cached is not None and (not uid or _uid(cached) == uid):
            return cached
        log.info(
            "pod_read_direct",
            pod=f"{namespace}/{name}",
            reason="not cached" if cached is None else f"cached with UID {_uid(cached)}",
        )
        pod = await self._read(f"/api/v1/namespaces/{namespace}/pods/{name}")
        if pod is None:
            raise CniError(codes.UNKNOWN_CONTAINER, f"pod {namespace}/{name} does not exist")
        if uid and _uid(pod) != uid:
            raise CniError(
                codes.UNKNOWN_CONTAINER,
                f"pod {namespace}/{name} has UID {_uid(pod)}, not {uid} (K8S_POD_UID): "
                "the pod of this sandbox was deleted",
            )
        return pod

    async def _namespace(self, informers: _Informers, namespace: str) -> Mapping[str, Any]:
        obj = informers.namespaces.get(namespace)
        if obj is None:
            obj = await self._read(f"/api/v1/namespaces/{namespace}")
        return _meta(obj) if obj is not None else {}

    async def _node_labels(self, informers: _Informers) -> dict[str, str]:
        obj = informers.nodes.get(self.node)
        if obj is None:
            obj = await self._read(f"/api/v1/nodes/{self.node}")
        if obj is None:
            raise CniError(
                codes.TRY_AGAIN_LATER,
                f"node {self.node} does not exist in the Kubernetes API "
                "(is the agent's node name, SPIDERPOOL_NODE_NAME, the kubelet's?)",
            )
        return _strings(_meta(obj).get("labels"))

    # -- the PodContextSource -----------------------------------------------------------

    async def for_add(self, inv: Invocation) -> PodContext:
        informers = await self._wait_synced()
        try:
            pod = await self._pod(informers, inv)
            meta = _meta(pod)
            annotations = _strings(meta.get("annotations"))
            check_pod_annotations(annotations)
            multus = network_for_interface(
                annotations, inv.args.pod_namespace, inv.ifname, self._cluster_network
            )
            namespace = await self._namespace(informers, inv.args.pod_namespace)
            node_labels = await self._node_labels(informers)
            owner = await top_owner(pod, self._read_owner_object)
        except KubeError as exc:
            raise Unavailable(f"Kubernetes API: {exc.message}") from exc
        return PodContext(
            labels=_strings(meta.get("labels")),
            annotations=annotations,
            namespace_labels=_strings(namespace.get("labels")),
            namespace_annotations=_strings(namespace.get("annotations")),
            node_labels=node_labels,
            owner=owner,
            multus_name=multus,
        )

    async def pod_annotations(self, inv: Invocation) -> Mapping[str, str]:
        informers = await self._wait_synced()
        try:
            pod = await self._pod(informers, inv)
        except KubeError as exc:
            raise Unavailable(f"Kubernetes API: {exc.message}") from exc
        return _strings(_meta(pod).get("annotations"))

    async def owner_for_release(self, inv: Invocation) -> OwnerRef | None:
        if self.informers is None or not inv.args.pod_name:
            return None
        # The pod from the informer only: a DEL mostly follows the pod's deletion, and a direct read
        # per DEL would only learn that (a 404 per released pod). A pod missing from the cache, or
        # replaced (another UID), has no owner here: the controller judges by its own view.
        uid = inv.args.pod_uid
        pod = self.informers.pods.get(f"{inv.args.pod_namespace}/{inv.args.pod_name}")
        if pod is None or (uid and _uid(pod) != uid):
            return None
        try:
            async with asyncio.timeout(self._lookup_timeout):
                return await top_owner(pod, self._read_owner_object, fresh=True)
        except CniError:
            return None
        except Exception as exc:  # a DEL never fails over metadata
            log.warning(
                "release_owner_unknown",
                pod=f"{inv.args.pod_namespace}/{inv.args.pod_name}",
                error=str(exc) or type(exc).__name__,
            )
            return None
