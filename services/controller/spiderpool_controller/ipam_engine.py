"""The controller's IPAM engine: allocate, release, query; the single writer of IPAM state.

Owns the in-memory view of every SpiderIPPool (loaded at start, kept current through the
``*_changed`` hooks the wiring calls after resource writes) and the index from an
attachment (identity, interface) to its addresses. Decisions it encodes:

- Allocation is decided in memory, synchronously across every pool a request needs, so a
  dual-stack or multi-NIC request is all-or-nothing without locks: either every
  (NIC, family) gets an address, or the taken ones are given back before anyone else runs.
- Persistence goes through one ``PoolWriter`` per pool (group commit). A request is
  answered only after every pool write holding its addresses is durable; if one pool's
  write fails, the addresses already written elsewhere are released again.
- ADD is idempotent per (identity, interface); identity is the pod UID, or the container
  ID outside Kubernetes. StatefulSet members are found by ``namespace/name`` and keep their
  addresses while the replica is valid (upstream §3.5 step 3, §3.6).
- ``group_commit=False`` is the baseline the benchmark compares against: one
  compare-and-swap status write per request with retry on conflict, the way upstream's
  agents write.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from spiderpool_common.errors import AllocationNotFound, InvalidRequest, PoolExhausted, Unavailable

from spiderpool_controller.attachment_index import AttachmentIndex, AttachmentKey, Held, endpoint_name
from spiderpool_controller.cas_writer import CasWriter
from spiderpool_controller.conflict_quarantine import ConflictQuarantine
from spiderpool_controller.domain.annotations import parse_routes
from spiderpool_controller.domain.ipset import IPSet, ip_to_int
from spiderpool_controller.domain.models import (
    KIND_ENDPOINT,
    KIND_IPPOOL,
    KIND_RESERVED_IP,
    AllocationRecord,
    IPPool,
    Route,
)
from spiderpool_controller.domain.pool_selection import NicCandidates, select_candidates
from spiderpool_controller.domain.pool_state import PoolState, reserved_sets
from spiderpool_controller.domain.request import AllocationRequest
from spiderpool_controller.domain.statefulset import statefulset_replica_valid
from spiderpool_controller.endpoint_writer import EndpointName, EndpointView, EndpointWriter, NicAddresses
from spiderpool_controller.pool_writer import Change, PoolWriter
from spiderpool_controller.store.contract import ObjectNotFound, StaleResourceVersion, Store

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    group_commit: bool = True
    required_families: frozenset[int] = frozenset()  # upstream enableIPv4/enableIPv6
    max_allocated_ips: int = 5000  # upstream SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS
    cas_retries: int = 200
    conflict_quarantine_s: float = 600.0  # a conflicting address is not handed out again for this long


@dataclass(frozen=True)
class Address:
    nic: str
    version: int
    address: str  # ip/prefixlen
    gateway: str | None
    pool: str
    clean_gateway: bool = False
    vlan: int = 0
    network: str = ""  # the CNI network the attachment was made through


@dataclass
class Allocation:
    ips: list[Address] = field(default_factory=list)
    routes: list[tuple[str, Route]] = field(default_factory=list)  # (nic, route)


@dataclass
class ReleaseOutcome:
    released: list[Address] = field(default_factory=list)
    kept: bool = False


class IpamEngine:
    def __init__(
        self,
        store: Store,
        settings: EngineSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.settings = settings or EngineSettings()
        self._quarantine = ConflictQuarantine(self.settings.conflict_quarantine_s, clock)
        self._pools: dict[str, PoolState] = {}
        self._models: dict[str, IPPool] = {}
        self._writers: dict[str, PoolWriter] = {}
        self._reserved: dict[int, IPSet] = {4: IPSet.empty(4), 6: IPSet.empty(6)}
        self._index = AttachmentIndex()
        self._inflight: dict[AttachmentKey, asyncio.Future[Allocation]] = {}
        self._clean_gateway: dict[AttachmentKey, bool] = {}  # per-NIC cleangateway (ippools)
        self._owners: dict[str, tuple[str, str]] = {}  # identity -> (owner kind, owner name)
        self._nic_routes: dict[AttachmentKey, list[Route]] = {}  # annotation routes per NIC
        self._endpoints = EndpointWriter(store, self._describe_endpoint)
        self._cas = CasWriter(
            store,
            reserved=self.reserved,
            max_allocated_ips=self.settings.max_allocated_ips,
            retries=self.settings.cas_retries,
            adopt=self._adopt_written,
        )

    # ------------------------------------------------------------------ state loading
    async def start(self) -> None:
        pools, _ = await self._store.list(KIND_IPPOOL)
        reserved, _ = await self._store.list(KIND_RESERVED_IP)
        self._reserved = reserved_sets(reserved)
        for obj in pools:
            self._install(PoolState.from_object(obj))
        for obj in pools:
            await self._ensure_status(obj)
        endpoints, _ = await self._store.list(KIND_ENDPOINT)
        stale = [(o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in endpoints]
        self._endpoints.mark([*stale, *self._index.endpoints()])  # repair what a crash left behind
        log.info("ipam_engine_started", pools=len(self._pools), group_commit=self.settings.group_commit)

    def _install(self, state: PoolState) -> None:
        old = self._pools.get(state.name)
        if old is not None:
            self._unindex_pool(old)
        self._pools[state.name] = state
        self._models[state.name] = state.pool
        self._index_pool(state)

    def _index_pool(self, state: PoolState) -> None:
        for ip, rec in state.allocated.items():
            self._index.add(state.name, ip, rec)

    def _unindex_pool(self, state: PoolState) -> None:
        for ip, rec in state.allocated.items():
            self._index.remove(state.name, ip, rec)

    async def pool_changed(self, obj: dict[str, Any]) -> None:
        """A pool's spec or metadata was written (apply): adopt it, keep our records."""
        name = obj["metadata"]["name"]
        current = self._pools.get(name)
        if current is not None and not _newer(
            obj["metadata"].get("resourceVersion", ""), current.resource_version
        ):
            return
        state = current.with_spec_of(obj) if current is not None else PoolState.from_object(obj)
        self._install(state)
        await self._ensure_status(obj)
        await self._finalize_if_done(state)

    async def _ensure_status(self, obj: dict[str, Any]) -> None:
        """Write the status counters when the stored ones are missing or stale (new pool,
        changed ips/excludeIPs/reserved IPs): the engine is the status' only writer."""
        state = self._pools.get(obj["metadata"]["name"])
        if state is None or not self.settings.group_commit:
            return
        status = obj.get("status") or {}
        expected = (len(state.allocated), state.total(self._reserved[state.version]))
        if (status.get("allocatedIPCount"), status.get("totalIPCount")) != expected:
            await self._writer(state.name).submit([])

    async def pool_deleted(self, name: str) -> None:
        state = self._pools.pop(name, None)
        self._models.pop(name, None)
        self._writers.pop(name, None)
        if state is not None:
            self._unindex_pool(state)

    async def reserved_changed(self) -> None:
        reserved, _ = await self._store.list(KIND_RESERVED_IP)
        self._reserved = reserved_sets(reserved)
        pools, _ = await self._store.list(KIND_IPPOOL)
        for obj in pools:  # totalIPCount excludes reserved addresses
            await self._ensure_status(obj)

    async def _finalize_if_done(self, state: PoolState) -> None:
        """A terminating pool with no allocation left loses its finalizer (and goes)."""
        if not state.terminating or state.allocated:
            return
        for _ in range(5):
            try:
                obj = await self._store.get(KIND_IPPOOL, state.name)
            except ObjectNotFound:
                return
            finalizers = [
                f for f in obj["metadata"].get("finalizers") or [] if f != "spiderpool.spidernet.io"
            ]
            obj["metadata"]["finalizers"] = finalizers
            try:
                await self._store.update(obj)
            except StaleResourceVersion:
                continue
            except ObjectNotFound:
                return
            log.info("pool_finalized", pool=state.name)
            await self.pool_deleted(state.name)
            return

    # ------------------------------------------------------------------ queries
    def pool_states(self) -> dict[str, PoolState]:
        return self._pools

    def status_writes(self) -> int:
        """Pool status writes attempted so far (group commits, or CAS writes in baseline mode)."""
        return self._cas.writes + sum(w.writes for w in self._writers.values())

    def reserved(self, version: int) -> IPSet:
        return self._reserved[version]

    def attachment(self, identity: str, nic: str) -> list[Address]:
        return [self._address(h, None) for h in self._index.held(identity, nic)]

    def attachments_of(self, identity: str) -> dict[str, list[Address]]:
        out: dict[str, list[Address]] = {}
        for nic in self._index.nics(identity):
            held = self._index.held(identity, nic)
            if held:
                out[nic] = [self._address(h, None) for h in held]
        return out

    def record(self, held: Held) -> AllocationRecord | None:
        state = self._pools.get(held.pool)
        return None if state is None else state.allocated.get(held.ip)

    def _address(self, held: Held, clean_gateway: bool | None) -> Address:
        state = self._pools[held.pool]
        rec = state.allocated.get(held.ip)
        nic, network = (rec.interface, rec.network) if rec else ("", "")
        clean = bool(clean_gateway)
        gateway = None if clean else state.gateway
        return Address(
            nic, state.version, state.address(held.ip), gateway, state.name, clean, network=network
        )

    def free_count(self, pool: str) -> int:
        state = self._pools[pool]
        return state.free_count(self._reserved[state.version])

    # ------------------------------------------------------------------ allocate
    async def allocate(self, req: AllocationRequest) -> Allocation:
        if not req.identity:
            raise InvalidRequest("an allocation needs a pod UID or a container ID")
        if not req.ifname:
            raise InvalidRequest("an allocation needs an interface name")
        key = (req.identity, req.ifname)
        inflight = self._inflight.get(key)
        if inflight is not None:  # the same ADD is being committed: share its outcome
            return await asyncio.shield(inflight)
        if key in self._index:
            return self._existing(req)
        fut: asyncio.Future[Allocation] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            result = await self._allocate_new(req)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # consumed here; waiters re-raise it
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            self._inflight.pop(key, None)

    def _existing(self, req: AllocationRequest) -> Allocation:
        out = Allocation()
        for nic, addresses in sorted(self.attachments_of(req.identity).items()):
            for a in addresses:
                clean = (req.clean_gateway and nic == req.ifname) or self._clean_gateway.get(
                    (req.identity, nic), False
                )
                out.ips.append(
                    Address(nic, a.version, a.address, None if clean else a.gateway, a.pool, clean)
                )
            out.routes.extend(self._routes_for(nic, addresses, req))
        return out

    def _routes_for(
        self, nic: str, addresses: Iterable[Address], req: AllocationRequest
    ) -> list[tuple[str, Route]]:
        """Pool routes, plus the pod's ``ipam.spidernet.io/routes`` whose gateway is in one
        of this NIC's subnets (upstream §3.1: unmatched ones are dropped)."""
        routes: list[tuple[str, Route]] = []
        subnets = []
        for a in addresses:
            routes.extend((nic, r) for r in self._pools[a.pool].routes)
            subnets.append(ipaddress.ip_network(a.address, strict=False))
        for r in self._annotation_routes(req):
            try:
                gw = ipaddress.ip_address(r.gw)
            except ValueError:
                continue
            if any(gw.version == net.version and gw in net for net in subnets):
                routes.append((nic, r))
        return routes

    def _annotation_routes(self, req: AllocationRequest) -> list[Route]:
        return list(parse_routes(req.pod_annotations)) if req.pod_annotations else []

    async def _allocate_new(self, req: AllocationRequest) -> Allocation:
        if req.owner_kind == "StatefulSet" and req.pod_name:
            reused = await self._reuse_statefulset(req)
            if reused is not None:
                return reused
        candidates = select_candidates(req, self._models, self.settings.required_families)
        wanted = [c for c in candidates if (req.identity, c.nic) not in self._index]
        if self.settings.group_commit:
            taken = self._take_in_memory(req, wanted)
            await self._commit(taken)
        else:
            taken = await self._take_with_cas(req, wanted)
        self._note_endpoint(req)
        log.info(
            "ip_allocated",
            identity=req.identity,
            nic=req.ifname,
            ips=[self._pools[p].address(ip) for p, ip, _ in taken],
        )
        return self._existing(req)

    def _record(self, req: AllocationRequest, nic: str) -> AllocationRecord:
        return AllocationRecord(
            pod=_pod_key(req),
            pod_uid=req.pod_uid,
            container_id=req.container_id,
            interface=nic,
            node=req.node,
            network=req.network,
            owner_kind=req.owner_kind,
        )

    def _take_in_memory(
        self, req: AllocationRequest, wanted: list[NicCandidates]
    ) -> list[tuple[str, int, Change]]:
        """Pick and take every (NIC, family) address, or none (no await in here)."""
        taken: list[tuple[str, int, Change]] = []
        try:
            for cand in wanted:
                for version, names in ((4, cand.ipv4), (6, cand.ipv6)):
                    if not names:
                        continue
                    pool, ip = self._pick(names, version, cand.nic)
                    rec = self._record(req, cand.nic)
                    if cand.clean_gateway:
                        self._clean_gateway[(req.identity, cand.nic)] = True
                    self._pools[pool].take(ip, rec)
                    self._index.add(pool, ip, rec)
                    taken.append((pool, ip, Change(ip, rec, "take")))
        except BaseException:
            for pool, ip, change in reversed(taken):
                state = self._pools[pool]
                state.give_back(ip)
                state.forget(ip)
                self._index.remove(pool, ip, change.record)
            raise
        return taken

    def _pick(self, names: Iterable[str], version: int, nic: str) -> tuple[str, int]:
        tried = []
        for name in names:
            state = self._pools.get(name)
            if state is None or state.terminating:
                continue
            tried.append(name)
            if len(state.allocated) >= self.settings.max_allocated_ips:
                continue
            blocked = self._quarantine.blocked(name, version)
            ip = state.lowest_free(self._reserved[version] | blocked if blocked else self._reserved[version])
            if ip is not None:
                return name, ip
        raise PoolExhausted(
            f"no free IPv{version} address for {nic} in IPPools [{', '.join(tried)}]",
            details="every candidate pool is exhausted (or at its allocated-IP threshold)",
        )

    async def _commit(self, taken: list[tuple[str, int, Change]]) -> None:
        by_pool: dict[str, list[Change]] = defaultdict(list)
        for pool, _, change in taken:
            by_pool[pool].append(change)
        pools = list(by_pool)
        results = await asyncio.gather(
            *(self._writer(p).submit(by_pool[p]) for p in pools), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if not failed:
            return
        # all-or-nothing: give back what did get written
        for pool, result in zip(pools, results, strict=True):
            if isinstance(result, BaseException):
                for change in by_pool[pool]:
                    self._index.remove(pool, change.ip, change.record)
            else:
                await self._release_held([(pool, c.ip, c) for c in by_pool[pool]])
        raise Unavailable(f"could not persist the allocation: {failed[0]}") from failed[0]

    def _writer(self, pool: str) -> PoolWriter:
        writer = self._writers.get(pool)
        if writer is None:
            writer = PoolWriter(
                pool,
                self._store,
                get_state=lambda: self._pools[pool],
                set_state=self._replace_state,
                reserved=self.reserved,
            )
            self._writers[pool] = writer
        return writer

    def _replace_state(self, state: PoolState) -> None:
        self._pools[state.name] = state
        self._models[state.name] = state.pool

    # ------------------------------------------------------------------ StatefulSet
    async def _reuse_statefulset(self, req: AllocationRequest) -> Allocation | None:
        held = self._index.held_by_pod(_pod_key(req), req.ifname)
        if not held:
            return None
        candidates = select_candidates(req, self._models, self.settings.required_families)
        allowed = {n for c in candidates if c.nic == req.ifname for n in (*c.ipv4, *c.ipv6)}
        if any(h.pool not in allowed for h in held):  # upstream #3543: the pool changed
            await self._release_held([(h.pool, h.ip, None) for h in held])
            return None
        by_pool: dict[str, list[Change]] = defaultdict(list)
        for h in held:
            old = self._pools[h.pool].allocated[h.ip]
            new = self._record(req, req.ifname)
            self._index.remove(h.pool, h.ip, old)
            self._pools[h.pool].allocated[h.ip] = new
            self._index.add(h.pool, h.ip, new)
            by_pool[h.pool].append(Change(h.ip, new, "rebind", previous=old))
        results = await asyncio.gather(
            *(self._writer(p).submit(c) for p, c in by_pool.items()), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                raise Unavailable(f"could not re-bind StatefulSet addresses: {r}") from r
        self._note_endpoint(req)
        log.info("statefulset_ip_reused", pod=_pod_key(req), nic=req.ifname)
        return self._existing(req)

    # ------------------------------------------------------------------ release
    async def release(
        self,
        identity: str,
        nic: str,
        *,
        pod_key: str = "",
        owner_kind: str = "",
        owner_name: str = "",
        owner_replicas: int = 0,
        owner_exists: bool = False,
        force: bool = False,
        conflicting: Iterable[str] = (),
    ) -> ReleaseOutcome:
        """Release an attachment's addresses (a valid StatefulSet member keeps them unless
        ``force``); addresses listed in ``conflicting`` are quarantined once released."""
        key = (identity, nic)
        inflight = self._inflight.get(key)
        if inflight is not None:
            try:
                await asyncio.shield(inflight)
            except Exception:  # the ADD failed: nothing to release
                return ReleaseOutcome()
        held = self._index.held(*key)
        if not held:
            return ReleaseOutcome()
        pod_name = pod_key.split("/", 1)[1] if "/" in pod_key else ""
        if (
            not force
            and owner_kind == "StatefulSet"
            and statefulset_replica_valid(pod_name, owner_name, owner_replicas, exists=owner_exists)
        ):
            log.info("statefulset_ip_kept", pod=pod_key, nic=nic)
            return ReleaseOutcome(kept=True)
        released = [self._address(h, None) for h in held]
        self._clean_gateway.pop(key, None)
        await self._release_held([(h.pool, h.ip, None) for h in held])
        bad = {ip_to_int(text.split("/", 1)[0]) for text in conflicting}
        for h in held:
            if h.ip in bad:
                self._quarantine.add(h.pool, self._pools[h.pool].version, h.ip)
                log.info("conflicting_ip_quarantined", pool=h.pool, ip=self._pools[h.pool].address(h.ip))
        self._nic_routes.pop(key, None)
        if not self._index.has_identity(identity):
            self._owners.pop(identity, None)
        self._endpoints.mark([endpoint_name(pod_key, identity)])
        log.info("ip_released", identity=identity, nic=nic, ips=[a.address for a in released])
        return ReleaseOutcome(released=released)

    async def _release_held(self, held: list[tuple[str, int, Change | None]]) -> None:
        by_pool: dict[str, list[Change]] = defaultdict(list)
        for pool, ip, _ in held:
            state = self._pools.get(pool)
            if state is None:
                continue
            rec = state.allocated.get(ip)
            if rec is None:
                continue
            if self.settings.group_commit:
                state.give_back(ip)
                self._index.remove(pool, ip, rec)
            by_pool[pool].append(Change(ip, rec, "release"))
        if not self.settings.group_commit:
            for pool, changes in by_pool.items():
                await self._cas.release(pool, [c.ip for c in changes])
            return
        results = await asyncio.gather(
            *(self._writer(p).submit(c) for p, c in by_pool.items()), return_exceptions=True
        )
        for pool, result in zip(by_pool, results, strict=True):
            if isinstance(result, BaseException):
                for change in by_pool[pool]:  # rolled back in memory: index it again
                    self._index.add(pool, change.ip, change.record)
                raise Unavailable(f"could not persist the release in {pool}: {result}") from result
        for pool in by_pool:
            if pool in self._pools:
                await self._finalize_if_done(self._pools[pool])

    async def release_unlisted(
        self, node: str, network: str, valid: set[tuple[str, str]]
    ) -> tuple[list[Address], list[str]]:
        """CNI GC: release this node's and network's attachments missing from ``valid``."""
        doomed: dict[AttachmentKey, tuple[str, str]] = {}
        for state in self._pools.values():
            for rec in state.allocated.values():
                if rec.node != node or rec.network != network:
                    continue
                if (rec.container_id, rec.interface) in valid:
                    continue
                doomed[(rec.identity, rec.interface)] = (rec.pod, rec.owner_kind)
        released: list[Address] = []
        errors: list[str] = []
        for (identity, nic), (pod_key, _) in sorted(doomed.items()):
            try:
                outcome = await self.release(identity, nic, pod_key=pod_key, force=True)
                released.extend(outcome.released)
            except Exception as exc:
                errors.append(f"{identity}/{nic}: {exc}")
        return released, errors

    def lookup(self, identity: str, nic: str) -> list[Address]:
        found = self.attachment(identity, nic)
        if not found:
            raise AllocationNotFound(f"no IP reservation for {identity} interface {nic}")
        return found

    # ------------------------------------------------------------------ capacity (STATUS)
    def check_capacity(self, ipv4: list[str], ipv6: list[str]) -> tuple[bool, str]:
        from fnmatch import fnmatchcase  # noqa: PLC0415

        for version, names in ((4, ipv4), (6, ipv6)):
            if not names:
                continue
            matched = [
                p
                for p, s in self._pools.items()
                if s.version == version and any(fnmatchcase(p, n) for n in names)
            ]
            if not matched:
                return False, f"default IPv{version} IPPools {names} do not exist"
            if all(self.free_count(p) == 0 or self._pools[p].pool.spec.disable for p in matched):
                return False, f"default IPv{version} IPPools {sorted(matched)} are exhausted"
        return True, ""

    # ------------------------------------------------------------------ endpoints
    def _note_endpoint(self, req: AllocationRequest) -> None:
        self._owners[req.identity] = (req.owner_kind or "Pod", req.owner_name)
        self._nic_routes[(req.identity, req.ifname)] = self._annotation_routes(req)
        self._endpoints.mark([endpoint_name(_pod_key(req), req.identity)])

    def _describe_endpoint(self, name: EndpointName) -> EndpointView | None:
        identity = self._index.identity_of(name)
        if identity is None or not self._index.has_identity(identity):
            return None
        owner_kind, owner_name = self._owners.get(identity, ("", ""))
        nics: list[NicAddresses] = []
        uid = node = ""
        for nic, addresses in sorted(self.attachments_of(identity).items()):
            rec = self.record(self._index.held(identity, nic)[0])
            if rec is not None:
                uid, node, owner_kind = rec.pod_uid, rec.node, owner_kind or rec.owner_kind
            clean = self._clean_gateway.get((identity, nic), False)
            routes = [r for a in addresses for r in self._pools[a.pool].routes]
            routes.extend(self._nic_routes.get((identity, nic), ()))
            nics.append(
                NicAddresses(
                    nic,
                    [(a.version, a.address, a.pool, None if clean else a.gateway) for a in addresses],
                    clean,
                    routes,
                )
            )
        return EndpointView(uid, node, owner_kind or "Pod", owner_name, nics)

    async def flush_endpoints(self) -> None:
        await self._endpoints.flush()

    # ------------------------------------------------------------------ baseline (no group commit)
    async def _take_with_cas(
        self, req: AllocationRequest, wanted: list[NicCandidates]
    ) -> list[tuple[str, int, Change]]:
        taken: list[tuple[str, int, Change]] = []
        try:
            for cand in wanted:
                for version, names in ((4, cand.ipv4), (6, cand.ipv6)):
                    if names:
                        rec = self._record(req, cand.nic)
                        pool, ip = await self._cas.take(names, version, rec)
                        taken.append((pool, ip, Change(ip, rec, "take")))
        except BaseException:
            await self._release_held(list(taken))
            raise
        return taken

    def _adopt_written(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        current = self._pools.get(name)
        if current is None or _newer(obj["metadata"].get("resourceVersion", ""), current.resource_version):
            self._install(PoolState.from_object(obj))

    async def close(self) -> None:
        for writer in list(self._writers.values()):
            await writer.drain()
        await self._endpoints.flush()


def _pod_key(req: AllocationRequest) -> str:
    return req.pod_key if req.pod_name else ""


def _newer(candidate: str, current: str) -> bool:
    if candidate.isdigit() and current.isdigit():
        return int(candidate) > int(current)
    return candidate != current
