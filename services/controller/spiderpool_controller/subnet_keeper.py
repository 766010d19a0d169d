"""Keeps every SpiderSubnet's status and its ownership of the pools of its CIDR.

Owns what upstream's subnet controller does (upstream pkg/subnetmanager
subnet_informer.go), in the process that runs the engine:

- ownership: a pool whose subnet is the SpiderSubnet's CIDR becomes the subnet's (a
  controller ownerReference, the label ``ipam.spidernet.io/owner-spider-subnet``, the
  subnet's gateway and routes when the pool sets none), also a pool made before its subnet
  (an "orphan"). A pool with addresses outside the subnet is not adopted (logged), and a
  pool another controller owns is left alone;
- status: ``controlledIPPools`` (each pool's addresses inside the subnet, with the
  application of an auto pool), ``totalIPCount`` and ``allocatedIPCount``, derived from
  the pools after every change of the subnet or of one of its pools' addresses or labels
  (``domain.subnet_pools.subnet_status``), written only when it differs;
- deletion: a subnet being deleted deletes the pools it owns (each keeps its finalizer
  until its last address is released) and loses its finalizer once none is left.

Changes are gathered for ``linger_s`` and each subnet is then synced once, so thirty pools
created together cost a few status writes, not thirty. A failed sync is tried again after
a backoff.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import structlog

from spiderpool_controller.domain import auto_pools
from spiderpool_controller.domain.ipset import IPSet
from spiderpool_controller.domain.models import FINALIZER, KIND_IPPOOL, KIND_SUBNET
from spiderpool_controller.domain.pool_state import PoolState
from spiderpool_controller.domain.subnet_pools import (
    ControlledPool,
    adoption,
    subnet_status,
    subnet_version,
    usable,
)
from spiderpool_controller.ipam_engine import IpamEngine
from spiderpool_controller.store.contract import ObjectNotFound, StaleResourceVersion, Store
from spiderpool_controller.subnet_cache import SubnetCache

log = structlog.get_logger(__name__)

Obj = dict[str, Any]
WRITE_ATTEMPTS = 16
_Fingerprint = tuple[str, str, IPSet, bool]  # subnet, owner label, addresses, terminating


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


class SubnetKeeper:
    def __init__(
        self,
        store: Store,
        engine: IpamEngine,
        subnets: SubnetCache,
        *,
        linger_s: float = 0.05,
        max_backoff_s: float = 5.0,
        on_subnet_changed: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._engine = engine
        self._subnets = subnets
        self._linger = linger_s
        self._max_backoff = max_backoff_s
        self._on_subnet_changed = on_subnet_changed
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._seen: dict[str, _Fingerprint] = {}  # pool -> what the subnet status depends on
        self._not_adoptable: dict[str, str] = {}  # pool -> resourceVersion judged
        self.status_writes = 0

    # -- triggers ------------------------------------------------------------------------
    def mark(self, subnet: str) -> None:
        self._dirty.add(subnet)
        self._wake.set()

    def subnet_changed(self, name: str) -> None:
        """The subnet cache's listener."""
        self.mark(name)
        if self._on_subnet_changed is not None:
            self._on_subnet_changed(name)

    def pool_changed(self, name: str) -> None:
        """The engine's pool listener: mark the subnets a pool's change matters to."""
        state = self._engine.pool_states().get(name)
        before = self._seen.get(name)
        if state is None:
            self._seen.pop(name, None)
            if before is not None:
                self._mark_pool_subnets(before[0], before[1])
            return
        pool = state.pool
        owner = pool.meta.labels.get(auto_pools.LABEL_OWNER_SUBNET, "")
        now: _Fingerprint = (pool.spec.subnet, owner, state.usable, pool.terminating)
        if before == now:
            return  # only records changed: the subnet's status does not depend on them
        self._seen[name] = now
        self._mark_pool_subnets(pool.spec.subnet, owner)
        if before is not None:
            self._mark_pool_subnets(before[0], before[1])

    def _mark_pool_subnets(self, cidr: str, owner: str) -> None:
        subnet = self._subnets.by_cidr(cidr)
        names = {owner} if owner else set()
        if subnet is not None:
            names.add(str(_meta(subnet).get("name", "")))
        for name in names:
            self.mark(name)
            if self._on_subnet_changed is not None:
                self._on_subnet_changed(name)

    # -- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        backoff = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._linger > 0:
                await asyncio.sleep(self._linger)
            dirty, self._dirty = self._dirty, set()
            failed = False
            for name in sorted(dirty):
                try:
                    await self.sync(name)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failed = True
                    self._dirty.add(name)
                    log.warning("subnet_sync_failed", subnet=name, error=str(exc), backoff=backoff)
            if failed:
                self._wake.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
            else:
                backoff = 0.1

    # -- one subnet ----------------------------------------------------------------------
    def _pools_of_cidr(self, subnet: Obj) -> list[PoolState]:
        cidr = (subnet.get("spec") or {}).get("subnet")
        version = subnet_version(subnet)
        states = self._engine.pool_states().values()
        return [s for s in states if s.pool.spec.subnet == cidr and s.version == version]

    async def sync(self, name: str) -> None:
        subnet = self._subnets.get(name)
        if subnet is None:
            return
        pools = self._pools_of_cidr(subnet)
        if not _meta(subnet).get("deletionTimestamp"):
            for state in pools:
                if state.pool.meta.labels.get(auto_pools.LABEL_OWNER_SUBNET) != name:
                    await self._adopt(state, subnet)
        version = subnet_version(subnet)
        subnet_ips = usable(subnet, version)
        controlled = []
        for state in self._pools_of_cidr(subnet):
            labels = state.pool.meta.labels
            if labels.get(auto_pools.LABEL_OWNER_SUBNET) != name:
                continue
            app = auto_pools.owner_of_pool(labels)
            controlled.append(ControlledPool(state.name, state.usable & subnet_ips, app.key if app else ""))
        if _meta(subnet).get("deletionTimestamp"):
            await self._delete_pools(subnet, [p.name for p in controlled])
        await self._write_status(subnet, subnet_status(subnet, controlled))
        if _meta(subnet).get("deletionTimestamp") and not controlled:
            await self._release_finalizer(name)

    async def _adopt(self, state: PoolState, subnet: Obj) -> None:
        if state.pool.terminating or self._not_adoptable.get(state.name) == state.resource_version:
            return
        version = subnet_version(subnet)
        outside = state.usable - usable(subnet, version)
        if outside:
            self._not_adoptable[state.name] = state.resource_version
            log.warning(
                "pool_not_adopted",
                pool=state.name,
                subnet=_meta(subnet).get("name"),
                outside=outside.to_ranges()[:8],
                reason="the pool has addresses outside the subnet's ips",
            )
            return
        for _ in range(WRITE_ATTEMPTS):
            try:
                obj = await self._store.get(KIND_IPPOOL, state.name)
            except ObjectNotFound:
                return
            adopted = adoption(obj, subnet)
            if adopted is None:
                self._not_adoptable[state.name] = str(_meta(obj).get("resourceVersion", ""))
                return
            try:
                stored = await self._store.update(adopted)
            except StaleResourceVersion:
                continue
            except ObjectNotFound:
                return
            await self._engine.pool_changed(stored)
            log.info("pool_adopted", pool=state.name, subnet=_meta(subnet).get("name"))
            return

    async def _delete_pools(self, subnet: Obj, names: list[str]) -> None:
        for name in names:
            state = self._engine.pool_states().get(name)
            if state is None or state.pool.terminating:
                continue
            try:
                marked = await self._store.delete(KIND_IPPOOL, name)
            except ObjectNotFound:
                await self._engine.pool_deleted(name)
                continue
            if marked is not None and _meta(marked).get("deletionTimestamp"):
                await self._engine.pool_changed(marked)
            else:
                await self._engine.pool_deleted(name)
            log.info("subnet_pool_deleted", pool=name, subnet=_meta(subnet).get("name"))

    async def _write_status(self, subnet: Obj, wanted: dict[str, Any]) -> None:
        current = subnet
        name = str(_meta(subnet).get("name", ""))
        for _ in range(WRITE_ATTEMPTS):
            status = dict(current.get("status") or {})
            merged = {k: v for k, v in status.items() if k != "controlledIPPools"} | wanted
            if merged == status:
                return
            self.status_writes += 1
            try:
                stored = await self._store.update_status({**current, "status": merged})
            except StaleResourceVersion:
                try:
                    current = await self._store.get(KIND_SUBNET, name)
                except ObjectNotFound:
                    return
                continue
            except ObjectNotFound:
                return
            self._subnets.put(stored)
            log.info(
                "subnet_status_written",
                subnet=name,
                allocated=wanted["allocatedIPCount"],
                total=wanted["totalIPCount"],
            )
            return
        raise StaleResourceVersion(f"SpiderSubnet {name} kept changing while its status was written")

    async def _release_finalizer(self, name: str) -> None:
        for _ in range(WRITE_ATTEMPTS):
            try:
                obj = await self._store.get(KIND_SUBNET, name)
            except ObjectNotFound:
                return
            finalizers = list(_meta(obj).get("finalizers") or [])
            if FINALIZER not in finalizers:
                return
            released = copy.deepcopy(obj)
            released["metadata"]["finalizers"] = [f for f in finalizers if f != FINALIZER]
            try:
                await self._store.update(released)
            except StaleResourceVersion:
                continue
            except ObjectNotFound:
                return
            log.info("subnet_finalized", subnet=name)
            return
