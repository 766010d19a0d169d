"""The writer of SpiderSubnet auto pools, and the allocation path's way to them.

Owns creating, resizing, relabelling and reclaiming auto pools (upstream pkg/subnetmanager) in the
process that runs the IPAM engine (the leader in a cluster), with the arithmetic of
``domain.subnet_pools`` and the names and labels of ``domain.auto_pools``. Decisions:

- One writer, one view: the choices are made from the engine's pools (every pool of the
  cluster, loaded at start and kept current by the pool watcher), under a lock per
  subnet, and what was written is installed in the engine before the lock is released,
  so two pools never get the same address and a pod's ADD sees its pool the moment it is
  written. Growing takes free addresses of the subnet; shrinking first *withholds* the
  addresses it removes from the engine (no ADD can take them while the new spec is being
  written) and gives up only unallocated ones.
- Pods wait for their pool without polling (upstream #1318, #1375, where agents polled
  for the pool up to 25 times, 2 s apart): ``pools_for`` is the engine's hook; it resolves
  the pool in memory, and when the pool cannot be had yet (its subnet does not exist, its
  workload has not been seen, a write failed) it waits for the next change of a subnet,
  a pool or a workload (an event this process receives through its watches anyway) and
  tries again, until ``wait_s`` has passed, then answers code 11 with the reason. Waiting
  costs no request to the API server.
- Builtin workloads (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob) get
  their pools from ``workload_pools`` in a cluster, ahead of their pods; the allocation
  path only asks it to settle the workload first. Third-party controllers and every owner
  in the embedded mode (where no workload can be watched) get their pool on their first
  pod's ADD, sized from the ADD's owner (``replicas`` from ``args.cni.owner`` in the
  embedded mode, none for a third party, whose pools need a fixed
  ``ipam.spidernet.io/ippool-ip-number`` as upstream requires) and resized on later ADDs.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from spiderpool_common.errors import InvalidAnnotation, InvalidRequest, NoPoolMatched, Unavailable

from spiderpool_controller.domain import auto_pools
from spiderpool_controller.domain.auto_pools import AppRef, AutoPoolChoice
from spiderpool_controller.domain.ipset import IPSet
from spiderpool_controller.domain.models import KIND_IPPOOL, IPPool
from spiderpool_controller.domain.pool_state import PoolState
from spiderpool_controller.domain.request import AllocationRequest
from spiderpool_controller.domain.subnet_annotations import (
    POD_IPPOOL_IP_NUMBER,
    SubnetConfig,
    parse_subnet_config,
)
from spiderpool_controller.domain.subnet_pools import (
    Resize,
    auto_pool_manifest,
    plan_resize,
    subnet_free,
    subnet_version,
    usable,
)
from spiderpool_controller.ipam_engine import IpamEngine
from spiderpool_controller.store.contract import (
    ObjectAlreadyExists,
    ObjectNotFound,
    StaleResourceVersion,
    Store,
)
from spiderpool_controller.subnet_cache import SubnetCache

log = structlog.get_logger(__name__)

Obj = dict[str, Any]
WRITE_ATTEMPTS = 16


class SubnetNotReady(Unavailable):
    """The subnet a workload names cannot give it a pool now (missing, being deleted)."""

    reason = "SUBNET_NOT_READY"


@dataclass(frozen=True)
class AutoPoolSettings:
    default_flexible_ips: int = 1  # upstream clusterSubnetDefaultFlexibleIPNumber
    wait_s: float = 20.0  # how long an ADD waits for its pool (below the agent's 30 s deadline)
    families: frozenset[int] = frozenset()  # the families auto pools are made for (empty: any named)


@dataclass(frozen=True)
class WantedPool:
    """The auto pool a workload should have for one NIC and family."""

    subnet: str
    app: AppRef
    nic: str
    version: int
    desired: int  # addresses
    reclaim: bool  # deleted with the workload
    ip_number: str  # the ippool-ip-number annotation recorded on the pool ("+1", "2")


@dataclass(frozen=True)
class Ensured:
    pool: str
    short: int  # addresses the pool still lacks (growth) or still holds too many (shrink)


class BuiltinWorkloads(Protocol):
    """The cluster's watcher of builtin workloads (``workload_pools.WorkloadPools``)."""

    async def settle(self, app: AppRef, *, read_if_unknown: bool) -> None:
        """Return once the workload's pools are reconciled to what the API says now."""
        ...


class AutoPoolManager:
    def __init__(
        self,
        store: Store,
        engine: IpamEngine,
        subnets: SubnetCache,
        settings: AutoPoolSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._engine = engine
        self.subnets = subnets
        self.settings = settings or AutoPoolSettings()
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._changed = asyncio.Event()
        self.workloads: BuiltinWorkloads | None = None  # set in a cluster

    # -- change notification -------------------------------------------------------------
    def notify(self) -> None:
        """Something that may unblock a waiting ADD happened (a subnet, pool or workload changed)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, event: asyncio.Event, deadline: float) -> bool:
        remaining = deadline - self._clock()
        if remaining <= 0:
            return False
        try:
            async with asyncio.timeout(remaining):
                await event.wait()
        except TimeoutError:
            return False
        return True

    def _lock(self, subnet: str) -> asyncio.Lock:
        lock = self._locks.get(subnet)
        if lock is None:
            lock = self._locks[subnet] = asyncio.Lock()
        return lock

    # -- the engine's hook ---------------------------------------------------------------
    async def pools_for(self, req: AllocationRequest, families: frozenset[int]) -> AutoPoolChoice:
        """The auto pools of the request's NIC; waits (bounded, on events) until they exist."""
        config = parse_subnet_config(req.pod_annotations, self.settings.default_flexible_ips)
        if config is None:  # the engine asks only for pods with a subnet annotation
            raise InvalidRequest("the pod names no SpiderSubnet")
        item = config.item_for(req.ifname)
        if item is None:
            nics = ", ".join(i.nic for i in config.items)
            raise NoPoolMatched(
                f"annotation {config.source} names no SpiderSubnet for interface {req.ifname} "
                f"(it names {nics}); a NIC of a pod with SpiderSubnet annotations gets its pool from them"
            )
        app = _app_of(req)
        wanted = tuple(v for v in item.families if not families or v in families)
        deadline = self._clock() + self.settings.wait_s
        first = True
        while True:
            event = self._changed  # taken before trying, so no change can slip between
            try:
                names = await self._resolve(req, app, config, wanted, read_if_unknown=first)
            except Unavailable as exc:
                first = False
                if not await self._wait_change(event, deadline):
                    raise Unavailable(
                        f"{exc} (the ADD waited {self.settings.wait_s:g}s for the auto-created IPPool)"
                    ) from exc
                continue
            return AutoPoolChoice(req.ifname, names.get(4, ()), names.get(6, ()), config.source)

    async def _resolve(
        self,
        req: AllocationRequest,
        app: AppRef,
        config: SubnetConfig,
        wanted: tuple[int, ...],
        *,
        read_if_unknown: bool,
    ) -> dict[int, tuple[str, ...]]:
        item = config.item_for(req.ifname)
        assert item is not None
        if not self.subnets.synced.is_set():
            raise SubnetNotReady("the controller has not listed the SpiderSubnets yet")
        if self.workloads is not None and app.builtin:
            await self.workloads.settle(app, read_if_unknown=read_if_unknown)
            out: dict[int, tuple[str, ...]] = {}
            for version in wanted:
                pool = self.find(app, item.nic, version)
                if pool is None:
                    raise Unavailable(
                        f"the auto-created IPPool of {app.describe()} for {item.nic} (IPv{version}, "
                        f"SpiderSubnet {item.for_family(version)}) does not exist yet"
                    )
                out[version] = (pool.name,)
            return out
        if self.workloads is not None and not config.ip_number_given:
            raise InvalidAnnotation(
                f"{app.describe()} is a third-party controller: its pods need a fixed "
                f'{POD_IPPOOL_IP_NUMBER} annotation (e.g. "3"), since its replicas cannot be read'
            )
        desired = config.ip_number.desired(req.owner_replicas)
        out = {}
        for version in wanted:
            wish = WantedPool(
                item.for_family(version),
                app,
                item.nic,
                version,
                desired,
                config.reclaim,
                config.ip_number.text,
            )
            out[version] = ((await self.ensure(wish)).pool,)
        return out

    # -- lookups -------------------------------------------------------------------------
    def pool_states(self) -> dict[str, PoolState]:
        return self._engine.pool_states()

    def find(self, app: AppRef, nic: str, version: int) -> IPPool | None:
        """The live auto pool serving ``app`` on (``nic``, family): its own first, else one kept
        from an earlier workload of the same name (``ippool-reclaim: false``)."""
        found: IPPool | None = None
        for model in self._engine.pool_states().values():
            pool = model.pool
            if pool.terminating or not auto_pools.serves(pool.meta.labels, app, nic, version):
                continue
            if pool.meta.labels.get(auto_pools.LABEL_APP_UID) == app.uid:
                return pool
            found = found or pool
        return found

    def _free(self, subnet: Obj) -> IPSet:
        version = subnet_version(subnet)
        cidr = (subnet.get("spec") or {}).get("subnet")
        held = [
            state.usable
            for state in self._engine.pool_states().values()
            if state.pool.spec.subnet == cidr and state.version == version
        ]
        return subnet_free(usable(subnet, version), held, self._engine.reserved(version))

    def _subnet(self, name: str, version: int, app: AppRef) -> Obj:
        subnet = self.subnets.get(name)
        if subnet is None:
            raise SubnetNotReady(f"SpiderSubnet {name} (named by {app.describe()}) does not exist")
        if (subnet.get("metadata") or {}).get("deletionTimestamp"):
            raise SubnetNotReady(f"SpiderSubnet {name} (named by {app.describe()}) is being deleted")
        if subnet_version(subnet) != version:
            raise InvalidAnnotation(
                f"SpiderSubnet {name} is IPv{subnet_version(subnet)}, but {app.describe()} names it "
                f"for IPv{version}"
            )
        return subnet

    # -- writes --------------------------------------------------------------------------
    async def ensure(self, wanted: WantedPool) -> Ensured:
        """Create or resize the workload's auto pool for (NIC, family) to the desired size."""
        app, nic, version = wanted.app, wanted.nic, wanted.version
        if not self.subnets.synced.is_set():
            raise SubnetNotReady("the controller has not listed the SpiderSubnets yet")
        async with self._lock(wanted.subnet):
            subnet = self._subnet(wanted.subnet, version, app)
            cidr = str((subnet.get("spec") or {}).get("subnet", ""))
            existing = self.find(app, nic, version)
            if existing is None:
                return await self._create(subnet, wanted)
            if existing.spec.subnet != cidr:
                raise InvalidAnnotation(
                    f"{app.describe()} now names SpiderSubnet {wanted.subnet} for {nic} IPv{version}, "
                    f"but its auto-created IPPool {existing.name} is of {existing.spec.subnet} "
                    f"(SpiderSubnet {existing.meta.labels.get(auto_pools.LABEL_OWNER_SUBNET, '?')}); "
                    "a workload's subnet cannot change: delete the pool or re-create the workload"
                )
            return await self._resize(subnet, existing, wanted)

    async def _create(self, subnet: Obj, wanted: WantedPool) -> Ensured:
        app = wanted.app
        empty = IPSet.empty(wanted.version)
        plan = plan_resize(empty, empty, self._free(subnet), wanted.desired)
        manifest = auto_pool_manifest(
            subnet, app, nic=wanted.nic, reclaim=wanted.reclaim, ip_number=wanted.ip_number, ips=plan.add
        )
        name = manifest["metadata"]["name"]
        try:
            stored = await self._store.create(manifest)
        except ObjectAlreadyExists:
            raise Unavailable(
                f"SpiderIPPool {name} exists but does not serve {app.describe()} (it is being deleted, "
                "or was made by someone else)"
            ) from None
        await self._engine.pool_changed(stored)
        log.info(
            "auto_pool_created",
            pool=name,
            app=app.key,
            uid=app.uid,
            subnet=_name(subnet),
            ips=plan.add.to_ranges(),
            short=plan.short,
        )
        return Ensured(name, plan.short)

    async def _resize(self, subnet: Obj, pool: IPPool, wanted: WantedPool) -> Ensured:
        app, desired, ip_number = wanted.app, wanted.desired, wanted.ip_number
        state = self._engine.pool_states()[pool.name]
        plan = plan_resize(state.usable, state.taken, self._free(subnet), desired)
        reclaim = "true" if wanted.reclaim else "false"
        labels = {auto_pools.LABEL_APP_UID: app.uid, auto_pools.LABEL_RECLAIM: reclaim}
        relabel = any(pool.meta.labels.get(k) != v for k, v in labels.items())
        reannotate = pool.meta.annotations.get(POD_IPPOOL_IP_NUMBER) != ip_number
        if not plan.changes and not relabel and not reannotate:
            return Ensured(pool.name, plan.short)
        if plan.remove and not self._engine.withhold(pool.name, plan.remove):
            return Ensured(pool.name, plan.short + plan.remove.count())  # taken meanwhile: next time
        try:
            stored = await self._update(pool.name, lambda obj: _resized(obj, plan, labels, ip_number))
            await self._engine.pool_changed(stored)
        finally:
            if plan.remove:
                self._engine.unwithhold(pool.name, plan.remove)
        log.info(
            "auto_pool_resized",
            pool=pool.name,
            app=app.key,
            added=plan.add.to_ranges(),
            removed=plan.remove.to_ranges(),
            size=state.usable.count() + plan.add.count() - plan.remove.count(),
            desired=desired,
            short=plan.short,
        )
        return Ensured(pool.name, plan.short)

    async def _update(self, name: str, change: Callable[[Obj], Obj]) -> Obj:
        """Read-modify-write of a pool's spec and metadata, retried while its status moves."""
        for _ in range(WRITE_ATTEMPTS):
            obj = await self._store.get(KIND_IPPOOL, name)
            new = change(copy.deepcopy(obj))
            if new == obj:
                return obj
            try:
                return await self._store.update(new)
            except StaleResourceVersion:
                continue
        raise Unavailable(f"SpiderIPPool {name} kept changing while its addresses were resized; try again")

    async def reclaim(self, uid: str, why: str) -> list[str]:
        """Delete the reclaimable auto pools of the workload with ``uid`` (its finalizer keeps
        a pool until its last address is released)."""
        doomed = [
            state.pool.name
            for state in self._engine.pool_states().values()
            if not state.pool.terminating
            and state.pool.meta.labels.get(auto_pools.LABEL_APP_UID) == uid
            and state.pool.meta.labels.get(auto_pools.LABEL_RECLAIM) == "true"
        ]
        for name in doomed:
            await self.delete_pool(name, why)
        return doomed

    async def delete_pool(self, name: str, why: str) -> None:
        try:
            marked = await self._store.delete(KIND_IPPOOL, name)
        except ObjectNotFound:
            await self._engine.pool_deleted(name)
            return
        if marked is not None and (marked.get("metadata") or {}).get("deletionTimestamp"):
            await self._engine.pool_changed(marked)
        else:
            await self._engine.pool_deleted(name)
        log.info("auto_pool_reclaimed", pool=name, reason=why)


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _resized(obj: Obj, plan: Resize, labels: dict[str, str], ip_number: str) -> Obj:
    """The stored pool with the plan's addresses added and removed and its owner labels."""
    spec = obj.setdefault("spec", {})
    version = int(spec.get("ipVersion") or (6 if ":" in str(spec.get("subnet", "")) else 4))
    spec["ips"] = plan.apply(IPSet.parse(spec.get("ips") or [], version)).to_ranges()
    meta = obj.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {**(meta.get("annotations") or {}), POD_IPPOOL_IP_NUMBER: ip_number}
    return obj


def _app_of(req: AllocationRequest) -> AppRef:
    """The pod's top controller as the request names it; refused when it cannot own a pool."""
    if not req.owner_kind or req.owner_kind == "Pod":
        raise InvalidRequest(
            f"a pod without a controller cannot use a SpiderSubnet (pod {req.pod_key or req.container_id}); "
            "auto pools belong to workloads (outside Kubernetes: give args.cni.owner with kind, name "
            "and uid)"
        )
    if not req.owner_name or not req.owner_uid:
        raise InvalidRequest(
            f"the pod's controller {req.owner_kind} {req.owner_name or '(no name)'} has no name or UID: "
            "auto pools are named after both (outside Kubernetes: args.cni.owner.name and uid)"
        )
    return auto_pools.app_ref(
        req.owner_api_version, req.owner_kind, req.pod_namespace, req.owner_name, req.owner_uid
    )
