"""The leader's SpiderCoordinator reconciler: ``status`` of ``default`` from the cluster's CIDRs.

Owns keeping ``status.phase``, ``reason``, ``overlayPodCIDR`` and ``serviceCIDR`` of the
SpiderCoordinator ``default`` current (upstream's pkg/coordinatormanager); what they should be is
``domain.cidr_discovery``'s decision. Every source is an informer, so a change anywhere (the
kubeadm ConfigMap, a control-plane pod, a Calico or Cilium pool, a ServiceCIDR, the
SpiderCoordinator's ``podCIDRType``) recomputes the status at once, without polling:

- always: the SpiderCoordinator, ``kube-system/kubeadm-config``, the cilium ConfigMap
  (``--cilium-configmap-namespace-name``), the pods labelled ``component`` in
  (kube-controller-manager, kube-apiserver), and the CustomResourceDefinitions;
- while served: Calico IPPools and CiliumPodIPPools (started and stopped as their CRDs come
  and go), ServiceCIDR objects (found through API discovery, asked again whenever CRDs change).

Nothing is computed before every running informer has listed once, so a leader's first write
is never a NotReady made of caches still empty. The status is written through the fenced
Store (only while leading), compare-and-swap on the object's ``resourceVersion``; it is
written only when it differs, so an unchanged cluster costs no writes. A NotReady status also
gets a Warning Event on the object (once per reason).

Decision: this reconciler does not create ``default``. Upstream's installer (spiderpool-init,
with the values the operator chose: mode, podCIDRType, hijackCIDR) creates it; the agent runs
the coordinator with upstream's defaults while it is absent; a controller that re-created what
an operator deleted would fight them. Its absence is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from spiderpool_common.kube.informer import Informer
from spiderpool_common.kube.rest import KubeError, KubeRest

from spiderpool_controller.cni_conf_dir import default_cni
from spiderpool_controller.domain import cidr_discovery as cd
from spiderpool_controller.domain import models
from spiderpool_controller.domain.coordinator_spec import PHASE_NOT_READY
from spiderpool_controller.kube_events import EventRecorder
from spiderpool_controller.store.contract import ObjectNotFound, StaleResourceVersion, Store

log = structlog.get_logger(__name__)

SCC_PATH = f"/apis/{models.API_VERSION}/spidercoordinators"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
CONTROL_PLANE_SELECTOR = f"{cd.COMPONENT_LABEL} in ({cd.CONTROLLER_MANAGER},{cd.API_SERVER})"
SERVICE_CIDR_GROUP = "networking.k8s.io"
SERVICE_CIDR_VERSIONS = ("v1", "v1beta1")
REASON_NOT_READY = "CIDRsNotFound"
DEFAULT_NAME = "default"


def _configmap_informer(rest: KubeRest, namespaced_name: str, handler: Any) -> Informer:
    namespace, _, name = namespaced_name.partition("/")
    return Informer(
        rest,
        f"/api/v1/namespaces/{namespace}/configmaps",
        field_selector=f"metadata.name={name}",
        handler=handler,
    )


def crd_path(crd: Mapping[str, Any]) -> str | None:
    """The collection path of a CRD's served version (its storage version first)."""
    spec = crd.get("spec") or {}
    versions = [v for v in spec.get("versions") or [] if v.get("served")]
    versions.sort(key=lambda v: not v.get("storage"))
    plural = (spec.get("names") or {}).get("plural")
    if not versions or not plural or not spec.get("group"):
        return None
    return f"/apis/{spec['group']}/{versions[0]['name']}/{plural}"


@dataclass
class _Optional:
    """An informer on a resource that may not be served; its path when it is."""

    path: str | None = None
    informer: Informer | None = None
    task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.informer is None or self.informer.synced.is_set()

    def items(self) -> list[dict[str, Any]]:
        return self.informer.items() if self.informer is not None else []


class CoordinatorReconciler:
    def __init__(
        self,
        rest: KubeRest,
        store: Store,
        *,
        name: str = DEFAULT_NAME,
        cni_config_dir: str | None = None,
        cilium_configmap: str = cd.DEFAULT_CILIUM_CONFIGMAP,
        events: EventRecorder | None = None,
        retry_s: float = 1.0,
    ) -> None:
        self._rest = rest
        self._store = store
        self._name = name
        self._cni_dir = cni_config_dir
        self._cilium_configmap = cilium_configmap
        self.events = events or EventRecorder(rest)
        self._retry = retry_s
        self._dirty = asyncio.Event()
        self._surface = asyncio.Event()
        self._surface_probed = False
        self.sccs = Informer(rest, SCC_PATH, field_selector=f"metadata.name={name}", handler=self._changed)
        self.kubeadm = _configmap_informer(rest, cd.KUBEADM_CONFIGMAP, self._changed)
        self.cilium = _configmap_informer(rest, cilium_configmap, self._changed)
        self.pods = Informer(
            rest, "/api/v1/pods", label_selector=CONTROL_PLANE_SELECTOR, handler=self._changed
        )
        self.crds = Informer(rest, CRD_PATH, handler=self._crds_changed)
        self.optional: dict[str, _Optional] = {
            "calico": _Optional(),
            "cilium": _Optional(),
            "service": _Optional(),
        }
        self.writes = 0
        self.computed = 0
        self.last: cd.Discovery | None = None
        self._absent_logged = False

    def _changed(self, kind: str, obj: dict[str, Any]) -> None:
        self._dirty.set()

    def _crds_changed(self, kind: str, obj: dict[str, Any]) -> None:
        self._surface.set()

    # --- what is served -------------------------------------------------------------------

    async def _service_cidr_path(self) -> str | None:
        for version in SERVICE_CIDR_VERSIONS:
            try:
                listing = await self._rest.get(f"/apis/{SERVICE_CIDR_GROUP}/{version}")
            except KubeError as exc:
                if exc.not_found:
                    continue
                raise
            if any(r.get("name") == "servicecidrs" for r in listing.get("resources") or []):
                return f"/apis/{SERVICE_CIDR_GROUP}/{version}/servicecidrs"
        return None

    def _crd(self, name: str) -> str | None:
        crd = self.crds.get(name)
        return (
            crd_path(crd)
            if crd is not None and not (crd.get("metadata") or {}).get("deletionTimestamp")
            else None
        )

    async def _set_optional(self, key: str, path: str | None) -> None:
        slot = self.optional[key]
        if slot.path == path:
            return
        if slot.task is not None:
            slot.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await slot.task
        slot.path, slot.informer, slot.task = path, None, None
        if path is not None:
            slot.informer = Informer(self._rest, path, handler=self._changed)
            slot.task = asyncio.create_task(
                self._run_optional(slot.informer), name=f"coordinator-source {path}"
            )
        log.info("coordinator_source_served" if path else "coordinator_source_gone", source=key, path=path)
        self._dirty.set()

    async def _run_optional(self, informer: Informer) -> None:
        run = asyncio.create_task(informer.run())
        try:
            await informer.synced.wait()
            self._dirty.set()
            await run
        finally:
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run

    async def _watch_surface(self) -> None:
        """Start and stop the optional informers as their resources come and go."""
        await self.crds.synced.wait()
        self._surface.set()
        while True:
            await self._surface.wait()
            self._surface.clear()
            try:
                service = await self._service_cidr_path()
            except KubeError as exc:
                log.warning("servicecidr_discovery_failed", error=exc.message)
                service = self.optional["service"].path
                self._surface_retry()
            await self._set_optional("calico", self._crd(cd.CALICO_IPPOOL_CRD))
            await self._set_optional("cilium", self._crd(cd.CILIUM_IPPOOL_CRD))
            await self._set_optional("service", service)
            self._surface_probed = True
            self._dirty.set()

    def _surface_retry(self) -> None:
        asyncio.get_running_loop().call_later(self._retry, self._surface.set)

    # --- the loop -------------------------------------------------------------------------

    def _ready(self) -> bool:
        core = (self.sccs, self.kubeadm, self.cilium, self.pods, self.crds)
        return (
            self._surface_probed
            and all(i.synced.is_set() for i in core)
            and all(slot.ready for slot in self.optional.values())
        )

    async def run(self) -> None:
        """Watch the sources and keep the status current until cancelled."""
        core = (self.sccs, self.kubeadm, self.cilium, self.pods, self.crds)
        tasks = [asyncio.create_task(i.run(), name=f"coordinator-informer {i.path}") for i in core]
        tasks.append(asyncio.create_task(self._watch_surface(), name="coordinator-surface"))
        tasks.append(asyncio.create_task(self._loop(), name="coordinator-status"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for slot in self.optional.values():
                if slot.task is not None:
                    tasks.append(slot.task)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if not self._ready():
                continue  # an informer's first list or the surface probe sets it again
            try:
                await self.reconcile()
            except StaleResourceVersion:
                self._dirty.set()  # the informer brings the newer object; compute again
            except Exception as exc:
                log.warning("coordinator_status_write_failed", error=str(exc), retry_s=self._retry)
                asyncio.get_running_loop().call_later(self._retry, self._dirty.set)

    def sources(self) -> cd.Sources:
        found = default_cni(self._cni_dir)
        cilium_ns, _, cilium_name = self._cilium_configmap.partition("/")
        _, _, kubeadm_name = cd.KUBEADM_CONFIGMAP.partition("/")
        return cd.Sources(
            kubeadm_config=self.kubeadm.get(f"kube-system/{kubeadm_name}"),
            control_plane_pods=self.pods.items(),
            calico_served=self.optional["calico"].informer is not None,
            calico_pools=self.optional["calico"].items(),
            cilium_config=self.cilium.get(f"{cilium_ns}/{cilium_name}"),
            cilium_configmap=self._cilium_configmap,
            cilium_pools_served=self.optional["cilium"].informer is not None,
            cilium_pools=self.optional["cilium"].items(),
            service_cidrs_served=self.optional["service"].informer is not None,
            service_cidr_objects=self.optional["service"].items(),
            default_cni_name=found.name if found is not None else None,
            default_cni_file=found.file if found is not None else "",
        )

    async def reconcile(self) -> cd.Discovery | None:
        """Compute the status from the caches and write it if it differs; the decision made."""
        scc = self.sccs.get(self._name)
        if scc is None:
            if not self._absent_logged:
                log.warning(
                    "spidercoordinator_absent",
                    name=self._name,
                    hint="the coordinator runs with upstream's defaults and no CIDRs until it is created",
                )
                self._absent_logged = True
            return None
        self._absent_logged = False
        self.computed += 1
        result = cd.discover((scc.get("spec") or {}).get("podCIDRType"), self.sources())
        desired = result.status()
        current = dict(scc.get("status") or {})
        if result != self.last:
            self._log(result)
        self.last = result
        if _comparable(current) == _comparable(desired):
            return result
        obj = copy.deepcopy(scc)
        obj["status"] = desired
        try:
            await self._store.update_status(obj)
        except ObjectNotFound:
            return result  # deleted meanwhile: the informer says so next
        self.writes += 1
        if result.phase == PHASE_NOT_READY:
            await self.events.warn(scc, REASON_NOT_READY, result.reason)
        else:
            self.events.clear(scc)
        return result

    def _log(self, result: cd.Discovery) -> None:
        if result.phase == PHASE_NOT_READY:
            log.warning("coordinator_not_ready", reason=result.reason, pod_cidr_type=result.pod_cidr_type)
        else:
            log.info(
                "coordinator_cidrs_synced",
                pod_cidr_type=result.pod_cidr_type,
                overlay_pod_cidr=list(result.overlay_pod_cidr),
                service_cidr=list(result.service_cidr),
                sources=list(result.sources),
                reason=result.reason or None,
            )


def _comparable(status: Mapping[str, Any]) -> tuple[Any, ...]:
    """A status as compared: an absent list differs from an empty one (upstream #4307)."""

    def listed(key: str) -> tuple[str, ...] | None:
        value = status.get(key)
        return tuple(value) if isinstance(value, list) else None

    return (
        str(status.get("phase") or ""),
        str(status.get("reason") or ""),
        listed("overlayPodCIDR"),
        listed("serviceCIDR"),
    )
