"""The controller's IPAM engine: allocate, release, query; the single writer of IPAM state.

Owns the allocation and release *flows*; the state they act on is the ``Ledger`` (pools,
records, attachment index, group-committed writes), the answer is built by
``allocation_answer`` from the records alone, StatefulSet reuse is ``statefulset_reuse``,
and the SpiderEndpoint view is ``endpoint_view``. Decisions it encodes:

- Allocation is decided in memory, synchronously across every pool a request needs, so a
  dual-stack or multi-NIC request is all-or-nothing without locks: either every
  (NIC, family) gets an address, or the taken ones are given back before anyone else runs.
  A request is answered only after every pool write holding its addresses is durable; if
  one pool's write fails, the addresses already written elsewhere are released again.
- Sandbox identity (architecture.md "State"): ADD is idempotent per (identity, interface),
  identity being the pod UID (the container ID outside Kubernetes). An ADD from a *new*
  sandbox of the same pod takes the pod's allocations over: every record names the new
  container ID, durably, before the ADD answers. A release on behalf of any other
  container ID frees nothing (a late DEL of the dead sandbox, a journal replay, a GC that
  judged from an older listing), so the new sandbox never loses its address to another pod
  (upstream #1187, #2526, #3778).
- Everything an ADD answered is in the records (clean gateway, annotation routes, owner),
  so after a restart a repeated ADD, CHECK and the SpiderEndpoints say exactly the same.
- StatefulSet members are found by ``namespace/name`` and keep their addresses while the
  replica is valid.
- A pod with a SpiderSubnet annotation gets its NIC's auto pools from ``auto_pools`` (the
  subnet reconciler, in this process) before selection; that call may wait for the pool
  to be created. Addresses a pool is about to lose (a shrink being written) are withheld
  from allocation until the new spec is in place.
- Reuse delay (``domain/released_ips``): a released address stays out of circulation for
  the pool's delay unless nothing else is free. Its clock is ``wall_clock`` (Unix time),
  because the release times are persisted in the pool's status and must mean the same
  after a restart; the conflict quarantine, kept in memory only, uses ``clock``. A
  rollback of an allocation that never reached a pod (a failed multi-pool write) leaves
  no delay behind: no neighbour ever learned that address.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any, Protocol

import structlog
from spiderpool_common.errors import (
    AllocationNotFound,
    InvalidRequest,
    PoolExhausted,
    RequestedIPNotAllowed,
    Unavailable,
)

from spiderpool_controller import statefulset_reuse
from spiderpool_controller.allocation_answer import (
    Address,
    Allocation,
    address_of,
    annotation_routes_for,
    answer,
)
from spiderpool_controller.attachment_index import AttachmentKey, Held
from spiderpool_controller.conflict_quarantine import ConflictQuarantine
from spiderpool_controller.domain.auto_pools import AutoPoolChoice
from spiderpool_controller.domain.gc_policy import StatefulSetFacts
from spiderpool_controller.domain.ipset import IPSet, ip_to_int
from spiderpool_controller.domain.models import (
    FINALIZER,
    KIND_ENDPOINT,
    KIND_IPPOOL,
    KIND_RESERVED_IP,
    AllocationRecord,
)
from spiderpool_controller.domain.object_names import endpoint_name
from spiderpool_controller.domain.pool_selection import NicCandidates, select_candidates
from spiderpool_controller.domain.pool_state import MAX_STATUS_BYTES, PoolState, reserved_sets
from spiderpool_controller.domain.released_ips import reuse_delay_seconds
from spiderpool_controller.domain.request import AllocationRequest, bounds_problem, pool_names_problem
from spiderpool_controller.domain.requested_ips import (
    RequestedIP,
    judge_for,
    matches_held,
    requested_for_nic,
)
from spiderpool_controller.domain.statefulset import statefulset_replica_valid
from spiderpool_controller.domain.subnet_annotations import has_subnet_annotation
from spiderpool_controller.endpoint_view import describe
from spiderpool_controller.endpoint_writer import EndpointName, EndpointWriter
from spiderpool_controller.ledger import ChangesByPool, CommitFailed, Ledger, group
from spiderpool_controller.pool_writer import Change
from spiderpool_controller.store.contract import ObjectNotFound, StaleResourceVersion, Store

log = structlog.get_logger(__name__)

ROUTE_MARGIN = 512  # bytes a record's annotation routes may add to its size estimate
REPAIR_CHUNK = 256  # endpoints judged between two yields to the event loop

__all__ = ["Address", "Allocation", "EngineSettings", "IpamEngine", "RecordsSnapshot", "ReleaseOutcome"]


@dataclass(frozen=True)
class EngineSettings:
    required_families: frozenset[int] = frozenset()  # upstream enableIPv4/enableIPv6
    max_allocated_ips: int = 5000  # upstream SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS
    conflict_quarantine_s: float = 600.0  # a conflicting address is not handed out again for this long
    ip_reuse_delay_s: float = 0.0  # a released address waits this long (pools' annotation overrides)
    endpoint_resync_s: float = 30.0  # how often the SpiderEndpoints are compared with the records
    endpoint_retry_s: float = 0.5  # first backoff of a failed SpiderEndpoint write (doubling to the resync)
    # upstream enableSpiderSubnet: off, pods' subnet annotations are ignored (the other rules pick)
    spider_subnet: bool = True


class AutoPoolSource(Protocol):
    async def pools_for(self, req: AllocationRequest, families: frozenset[int]) -> AutoPoolChoice:
        """The auto pools of the request's NIC, created or waited for when needed."""
        ...


@dataclass(frozen=True)
class HeldEntry:
    pool: str
    ip: int
    record: AllocationRecord
    sequence: int  # 0 for records loaded at start


@dataclass(frozen=True)
class RecordsSnapshot:
    pools: list[tuple[str, int, dict[int, AllocationRecord]]]  # (pool, IP version, ip -> record)
    sequences: dict[tuple[str, int], int]  # (pool, ip) -> take/rebind number; absent: 0


@dataclass
class ReleaseOutcome:
    released: list[Address] = field(default_factory=list)
    kept: bool = False  # a valid StatefulSet member keeps its addresses
    holder: str = ""  # set when another sandbox (this container ID) holds the addresses


class IpamEngine:
    def __init__(
        self,
        store: Store,
        settings: EngineSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.settings = settings or EngineSettings()
        self._wall_clock = wall_clock
        self._quarantine = ConflictQuarantine(self.settings.conflict_quarantine_s, clock)
        self._ledger = Ledger(store, on_written=self._written)
        self._inflight: dict[AttachmentKey, asyncio.Future[Allocation]] = {}
        self._endpoints = EndpointWriter(
            store,
            lambda name: describe(self._ledger, name),
            retry_s=self.settings.endpoint_retry_s,
            max_retry_s=max(self.settings.endpoint_retry_s, self.settings.endpoint_resync_s or 30.0),
        )
        self._resync: asyncio.Task[None] | None = None
        # In a cluster: the controller's own view of a StatefulSet ((namespace, name) ->
        # facts, None when it does not exist), for releases whose caller could not name the
        # owner (the pod was already gone when the agent looked).
        self.statefulsets: Callable[[str, str], StatefulSetFacts | None] | None = None
        # Hears the size (changes) of every durable pool write: the group-commit metric.
        self.on_batch: Callable[[int], None] | None = None
        # SpiderSubnet auto pools (the subnet reconciler); None: the subnet annotations are refused.
        self.auto_pools: AutoPoolSource | None = None
        # Told the name of a pool whose spec, metadata or records changed (a pool's deletion too).
        self.pool_listeners: list[Callable[[str], None]] = []
        self._withheld: dict[str, IPSet] = {}

    # ------------------------------------------------------------------ state loading
    async def start(self) -> None:
        pools, _ = await self._store.list(KIND_IPPOOL)
        reserved, _ = await self._store.list(KIND_RESERVED_IP)
        self._ledger.reserved_sets = reserved_sets(reserved)
        for obj in pools:
            self._ledger.install(PoolState.from_object(obj))
        for obj in pools:
            await self._ensure_status(obj)
        # The endpoints are repaired off the start path: an engine holding 10,000 records
        # serves at once, and the SpiderEndpoints (a view, never consulted to allocate)
        # catch up a moment later.
        self._resync = asyncio.create_task(self._resync_endpoints(), name="endpoint-resync")
        log.info("ipam_engine_started", pools=len(self._ledger.pools))

    async def pool_changed(self, obj: dict[str, Any]) -> None:
        """A pool's spec or metadata was written (apply): adopt it, keep our records."""
        name = obj["metadata"]["name"]
        current = self._ledger.pools.get(name)
        if current is not None and not _newer(
            obj["metadata"].get("resourceVersion", ""), current.resource_version
        ):
            return
        state = current.with_spec_of(obj) if current is not None else PoolState.from_object(obj)
        self._ledger.install(state)
        self._tell(name)
        await self._ensure_status(obj)
        await self._finalize_if_done(state)

    async def _ensure_status(self, obj: dict[str, Any]) -> None:
        """Write the status counters when the stored ones are missing or stale (new pool,
        changed ips/excludeIPs/reserved IPs): the engine is the status' only writer."""
        state = self._ledger.pools.get(obj["metadata"]["name"])
        if state is None:
            return
        status = obj.get("status") or {}
        expected = (len(state.allocated), state.total(self._ledger.reserved(state.version)))
        if (status.get("allocatedIPCount"), status.get("totalIPCount")) != expected:
            await self._ledger.write_status(state.name)

    async def pool_deleted(self, name: str) -> None:
        self._ledger.drop(name)
        self._withheld.pop(name, None)
        self._tell(name)

    def _tell(self, pool: str) -> None:
        for listener in self.pool_listeners:
            listener(pool)

    def withhold(self, pool: str, ips: IPSet) -> bool:
        """Stop handing out ``ips`` of ``pool`` (a shrink about to be written); False, and
        nothing withheld, when one of them is allocated (or the pool is unknown)."""
        state = self._ledger.pools.get(pool)
        if state is None or state.taken.overlaps(ips):
            return False
        current = self._withheld.get(pool)
        self._withheld[pool] = ips if current is None else current | ips
        return True

    def unwithhold(self, pool: str, ips: IPSet) -> None:
        current = self._withheld.get(pool)
        if current is not None:
            left = current - ips
            if left:
                self._withheld[pool] = left
            else:
                del self._withheld[pool]

    async def reserved_changed(self) -> None:
        reserved, _ = await self._store.list(KIND_RESERVED_IP)
        self._ledger.reserved_sets = reserved_sets(reserved)
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
            obj["metadata"]["finalizers"] = [
                f for f in obj["metadata"].get("finalizers") or [] if f != FINALIZER
            ]
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
        return self._ledger.pools

    def status_writes(self) -> int:
        """Pool status writes attempted so far (group commits, conflicts included)."""
        return self._ledger.status_writes()

    def reserved(self, version: int) -> Any:
        return self._ledger.reserved(version)

    def attachment(self, identity: str, nic: str) -> list[Address]:
        return [address_of(state, ip, rec) for state, ip, rec in self._ledger.records(identity, nic)]

    def attachments_of(self, identity: str) -> dict[str, list[Address]]:
        out: dict[str, list[Address]] = {}
        for nic in self._ledger.index.nics(identity):
            held = self.attachment(identity, nic)
            if held:
                out[nic] = held
        return out

    def owner_kind(self, identity: str, nic: str) -> str:
        """The owner kind recorded with the attachment's allocation ("" when unknown)."""
        return next((rec.owner_kind for *_, rec in self._ledger.records(identity, nic) if rec.owner_kind), "")

    def allocation_sequence(self) -> int:
        """The number of the latest take or rebind (GC reads it before it reads the pods)."""
        return self._ledger.sequence

    def held_records(self, pod_key: str | None = None) -> list[HeldEntry]:
        """Every record (or those of pod ``namespace/name``) with its pool, address and number."""
        out: list[HeldEntry] = []
        for state in self._ledger.pools.values():
            for ip, rec in state.allocated.items():
                if pod_key is None or rec.pod == pod_key:
                    out.append(HeldEntry(state.name, ip, rec, self._ledger.record_sequence(state.name, ip)))
        return out

    def endpoint_records(self, namespace: str, name: str) -> dict[str, list[HeldEntry]]:
        """Per interface, the records of the pod (or container) that SpiderEndpoint
        ``namespace/name`` describes (the attachment index: no scan of the pools)."""
        identity = self._ledger.index.identity_of((namespace, name))
        if identity is None:
            return {}
        return {
            nic: [
                HeldEntry(state.name, ip, rec, self._ledger.record_sequence(state.name, ip))
                for state, ip, rec in self._ledger.records(identity, nic)
            ]
            for nic in self._ledger.index.nics(identity)
        }

    def records_snapshot(self) -> RecordsSnapshot:
        """Every pool's records and their take/rebind numbers as they are at this moment, copied
        without per-record work (dict copies), so a reader of a large state (the consistency
        check) holds the event loop for as little as possible and converts them elsewhere."""
        pools = [(s.name, s.version, dict(s.allocated)) for s in self._ledger.pools.values()]
        return RecordsSnapshot(pools, self._ledger.record_sequences())

    def lookup(self, identity: str, nic: str) -> list[Address]:
        found = self.attachment(identity, nic)
        if not found:
            raise AllocationNotFound(f"no IP reservation for {identity} interface {nic}")
        return found

    def free_count(self, pool: str) -> int:
        state = self._ledger.pools[pool]
        return state.free_count(self._ledger.reserved(state.version))

    def _answer(self, identity: str) -> Allocation:
        index = self._ledger.index
        return answer({nic: self._ledger.records(identity, nic) for nic in index.nics(identity)})

    # ------------------------------------------------------------------ allocate
    async def allocate(self, req: AllocationRequest) -> Allocation:
        problem = bounds_problem(req)
        if problem:
            raise InvalidRequest(problem)
        if not req.identity:
            raise InvalidRequest("an allocation needs a pod UID or a container ID")
        if not req.container_id:
            raise InvalidRequest("an allocation needs the container ID of the sandbox")
        if not req.ifname:
            raise InvalidRequest("an allocation needs an interface name")
        key = (req.identity, req.ifname)
        inflight = self._inflight.get(key)
        if inflight is not None:  # the same ADD is being committed: share its outcome
            return await asyncio.shield(inflight)
        fut: asyncio.Future[Allocation] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            result = await self._allocate(req)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # consumed here; waiters re-raise it
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            self._inflight.pop(key, None)

    async def _allocate(self, req: AllocationRequest) -> Allocation:
        asked = requested_for_nic(req, req.ifname)  # bad input fails before anything changes
        self._refuse_other_addresses(req, asked)
        await self._take_over(req)
        if (req.identity, req.ifname) in self._ledger.index:
            return self._answer(req.identity)
        auto = await self._auto_pools_for(req)
        candidates = select_candidates(req, self._ledger.models, self.settings.required_families, auto)
        if req.owner_kind == "StatefulSet" and req.pod_name:
            wanted_ips = {v: w.value for v, w in asked.items()}
            reused = await self._guard(
                statefulset_reuse.reuse(
                    self._ledger,
                    req,
                    candidates,
                    lambda old, ip: replace(
                        self._record(req, req.ifname, old.clean_gateway, old.routes),
                        requested=old.requested or ip in wanted_ips.values(),
                    ),
                    self._release_held,
                    requested=wanted_ips,
                ),
                "re-bind StatefulSet addresses",
            )
            if reused:
                return self._answer(req.identity)
        else:
            await self._guard(
                statefulset_reuse.release_predecessors(self._ledger, req, candidates, self._release_held),
                "release the addresses of the pod's predecessor",
            )
        wanted = [c for c in candidates if (req.identity, c.nic) not in self._ledger.index]
        taken = self._take(req, wanted)
        try:
            await self._ledger.commit(group(taken))
        except CommitFailed as exc:
            # all-or-nothing: give back what did get written
            written = [Held(p, c.ip) for p, changes in exc.written.items() for c in changes]
            await self._release_held(written, delay=False)
            raise Unavailable(f"could not persist the allocation: {exc}") from exc
        log.info(
            "ip_allocated",
            identity=req.identity,
            nic=req.ifname,
            ips=[self._ledger.pools[p].address(c.ip) for p, c in taken],
        )
        return self._answer(req.identity)

    async def _auto_pools_for(self, req: AllocationRequest) -> AutoPoolChoice | None:
        """The subnet rule's pools (pool selection's first rule), or None when the pod names no subnet."""
        if not self.settings.spider_subnet or not has_subnet_annotation(req.pod_annotations):
            return None
        if self.auto_pools is None:
            raise InvalidRequest(
                "the pod names a SpiderSubnet (ipam.spidernet.io/subnet or subnets) but automatic "
                "pools are disabled on this controller (--enable-auto-pool false)"
            )
        return await self.auto_pools.pools_for(req, self.settings.required_families)

    def _refuse_other_addresses(self, req: AllocationRequest, asked: dict[int, RequestedIP]) -> None:
        """A repeated ADD asking for addresses other than the ones the attachment holds fails
        (code 108) and changes nothing: an ADD never moves a live attachment's address."""
        held = self._ledger.records(req.identity, req.ifname)
        if not held or not asked or matches_held(asked, ((s.version, ip) for s, ip, _ in held)):
            return
        holds = ", ".join(state.address(ip) for state, ip, _ in held)
        wants = ", ".join(w.text for w in asked.values())
        raise RequestedIPNotAllowed(
            f"{req.ifname} already holds {holds}, not the requested {wants}; "
            "an ADD does not change a held address (DEL the attachment first)"
        )

    async def _take_over(self, req: AllocationRequest) -> None:
        """Bring the identity's existing records in line with this ADD, durably: a new
        sandbox of the pod takes every NIC over; this NIC's ADD claims an unset network
        and turns on the CNI config's clean gateway."""
        changes: list[tuple[str, Change]] = []
        index = self._ledger.index
        for nic in index.nics(req.identity):
            for state, ip, rec in self._ledger.records(req.identity, nic):
                new = rec
                if req.pod_uid and rec.container_id != req.container_id:
                    new = replace(new, container_id=req.container_id, node=req.node or rec.node)
                if nic == req.ifname:
                    if req.clean_gateway and not new.clean_gateway:
                        new = replace(new, clean_gateway=True)
                    if req.network and not new.network:
                        new = replace(new, network=req.network)
                if new is not rec:
                    changes.append((state.name, self._ledger.rebind(state.name, ip, new)))
        if not changes:
            return
        previous = {c.previous.container_id for _, c in changes if c.previous is not None}
        await self._guard(self._ledger.commit(group(changes)), "take the allocation over")
        if previous - {req.container_id}:
            log.info(
                "allocation_taken_over",
                identity=req.identity,
                container_id=req.container_id,
                previous=sorted(previous - {req.container_id}),
            )

    async def _guard(self, work: Any, what: str) -> Any:
        try:
            return await work
        except CommitFailed as exc:
            raise Unavailable(f"could not {what}: {exc}") from exc

    def _record(
        self, req: AllocationRequest, nic: str, clean_gateway: bool, routes: tuple[Any, ...]
    ) -> AllocationRecord:
        return AllocationRecord(
            pod=_pod_key(req),
            pod_uid=req.pod_uid,
            container_id=req.container_id,
            interface=nic,
            node=req.node,
            # Another NIC allocated by this ADD (the ippools annotation) is claimed by its
            # own ADD's network; until then no network's GC judges it.
            network=req.network if nic == req.ifname else "",
            owner_kind=req.owner_kind,
            owner_name=req.owner_name,
            clean_gateway=clean_gateway,
            routes=routes,
        )

    def _take(self, req: AllocationRequest, wanted: list[NicCandidates]) -> list[tuple[str, Change]]:
        """Pick and take every (NIC, family) address, or none (no await in here)."""
        taken: list[tuple[str, Change]] = []
        try:
            for cand in wanted:
                picks = self._picks(req, cand)
                subnets = [self._ledger.pools[pool].pool.spec.subnet for pool, _, _ in picks]
                rec = self._record(
                    req, cand.nic, cand.clean_gateway, annotation_routes_for(req.pod_annotations, subnets)
                )
                for pool, ip, requested in picks:
                    taken.append((pool, self._ledger.take(pool, ip, replace(rec, requested=requested))))
        except BaseException:
            for pool, change in reversed(taken):
                self._ledger.revert(pool, [change])
            raise
        return taken

    def next_free(self, name: str, version: int) -> int | None:
        """The address an ADD would take from pool ``name`` now (its reuse delay honoured);
        None when it has none free or is at its allocated-IP threshold (``spiderpoolctl
        explain`` shows it too)."""
        state = self._ledger.pools[name]
        if len(state.allocated) >= self.settings.max_allocated_ips:
            return None
        reserved = self._ledger.reserved(version)
        blocked = self._quarantine.blocked(name, version)
        if blocked:
            reserved = reserved | blocked
        withheld = self._withheld.get(name)  # a shrink of an auto pool holds these back
        if withheld is not None:
            reserved = reserved | withheld
        return state.pick(reserved, self._wall_clock(), self._delay(state))

    def _picks(self, req: AllocationRequest, cand: NicCandidates) -> list[tuple[str, int, bool]]:
        """``(pool, address, requested)`` per family of one NIC: the requested address where
        the NIC asked for one (judged by ``requested_ips``), else the pool's next free one."""
        estimate = self._record(req, cand.nic, cand.clean_gateway, ())
        asked = requested_for_nic(req, cand.nic)
        judge = None
        if asked:
            judge = judge_for(
                req,
                cand,
                self._ledger.pools,
                self._ledger.reserved,
                self.settings.max_allocated_ips,
                fits=lambda state, ip: self._fits(state, ip, estimate),
            )
            for version in sorted(set(asked) - set(cand.families)):
                judge.grant(asked[version])  # raises: the NIC has no pool of that family
        picks: list[tuple[str, int, bool]] = []
        for version in cand.families:
            want = asked.get(version)
            if want is not None and judge is not None:
                pool = judge.grant(want)
                self._refuse_withheld(pool, want)
                picks.append((pool, want.value, True))
            else:
                picks.append((*self._pick(cand.for_family(version), version, cand.nic, estimate), False))
        return picks

    def _refuse_withheld(self, pool: str, want: RequestedIP) -> None:
        """A requested address that a shrink of its auto pool is removing is not granted now
        (it would be left outside the pool's new ips): try again once the shrink is written."""
        withheld = self._withheld.get(pool)
        if withheld is not None and withheld.contains_int(want.value):
            raise Unavailable(
                f"requested IPv{want.version} address {want.address}: it is leaving IPPool {pool} "
                "(the auto pool is being shrunk); try again"
            )

    @staticmethod
    def _fits(state: PoolState, ip: int, record: AllocationRecord) -> bool:
        """Whether the pool's stored status stays below ``MAX_STATUS_BYTES`` with this record
        (its routes come later; ROUTE_MARGIN stands in for them)."""
        return state.stored_bytes() + state.record_bytes(ip, record) + ROUTE_MARGIN <= MAX_STATUS_BYTES

    def _pick(
        self, names: Iterable[str], version: int, nic: str, record: AllocationRecord
    ) -> tuple[str, int]:
        tried = []
        for name in names:
            state = self._ledger.pools.get(name)
            if state is None or state.terminating:
                continue
            tried.append(name)
            ip = self.next_free(name, version)
            if ip is None or not self._fits(state, ip, record):
                continue
            return name, ip
        raise PoolExhausted(
            f"no free IPv{version} address for {nic} in IPPools [{', '.join(tried)}]",
            details="every candidate pool is exhausted, or at its threshold of allocated IPs "
            f"({self.settings.max_allocated_ips} records or {MAX_STATUS_BYTES} bytes of status)",
        )

    # ------------------------------------------------------------------ release
    async def release(
        self,
        identity: str,
        nic: str,
        *,
        container_id: str = "",
        pod_key: str = "",
        owner_kind: str = "",
        owner_name: str = "",
        owner_replicas: int = 0,
        owner_exists: bool = False,
        force: bool = False,
        conflicting: Iterable[str] = (),
    ) -> ReleaseOutcome:
        """Release an attachment's addresses on behalf of sandbox ``container_id``.

        Nothing is freed when another sandbox holds them now (the outcome names it), or
        when a valid StatefulSet member keeps them (unless ``force``); addresses listed in
        ``conflicting`` are quarantined once released. An empty ``container_id`` (an
        operator's forced release) releases whoever holds them."""
        key = (identity, nic)
        inflight = self._inflight.get(key)
        if inflight is not None:
            with contextlib.suppress(Exception):  # a failed ADD: its rollback left nothing
                await asyncio.shield(inflight)
        held = self._ledger.records(identity, nic)
        if not held:
            return ReleaseOutcome()
        holder = next((rec.container_id for *_, rec in held if rec.container_id), "")
        if container_id and holder and holder != container_id:
            log.info(
                "release_skipped_other_sandbox",
                identity=identity,
                nic=nic,
                container_id=container_id,
                holder=holder,
            )
            return ReleaseOutcome(holder=holder)
        pod_name = pod_key.split("/", 1)[1] if "/" in pod_key else ""
        if not owner_kind and self.statefulsets is not None:
            recorded = held[0][2]
            if recorded.owner_kind == "StatefulSet" and "/" in recorded.pod:
                facts = self.statefulsets(recorded.pod.split("/", 1)[0], recorded.owner_name)
                owner_kind, owner_name = "StatefulSet", recorded.owner_name
                owner_replicas, owner_exists = (facts.replicas, facts.exists) if facts else (0, False)
                pod_name = pod_name or recorded.pod.split("/", 1)[1]
        if (
            not force
            and owner_kind == "StatefulSet"
            and statefulset_replica_valid(pod_name, owner_name, owner_replicas, exists=owner_exists)
        ):
            log.info("statefulset_ip_kept", pod=pod_key, nic=nic)
            return ReleaseOutcome(kept=True)
        released = [address_of(state, ip, rec) for state, ip, rec in held]
        await self._release_held([Held(state.name, ip) for state, ip, _ in held])
        bad = {ip_to_int(text.split("/", 1)[0]) for text in conflicting}
        for state, ip, _ in held:
            if ip in bad:
                self._quarantine.add(state.name, state.version, ip)
                log.info("conflicting_ip_quarantined", pool=state.name, ip=state.address(ip))
        log.info("ip_released", identity=identity, nic=nic, ips=[a.address for a in released])
        return ReleaseOutcome(released=released)

    def _delay(self, state: PoolState) -> float:
        return reuse_delay_seconds(state.pool.meta.annotations, self.settings.ip_reuse_delay_s)

    def _released_at(self, pool: str, *, delay: bool) -> float | None:
        state = self._ledger.pools.get(pool)
        if not delay or state is None or self._delay(state) <= 0:
            return None
        return self._wall_clock()

    async def _release_held(self, held: list[Held], *, delay: bool = True) -> None:
        """Release ``held`` durably; ``delay`` starts each address's reuse delay."""
        changes = [
            (h.pool, c)
            for h in held
            if (c := self._ledger.give_back(h.pool, h.ip, self._released_at(h.pool, delay=delay))) is not None
        ]
        by_pool: ChangesByPool = group(changes)
        try:
            await self._ledger.commit(by_pool)
        except CommitFailed as exc:
            pool = next(iter(exc.failed))
            raise Unavailable(f"could not persist the release in {pool}: {exc}") from exc
        for pool in by_pool:
            state = self._ledger.pools.get(pool)
            if state is not None:
                self._tell(pool)
                await self._finalize_if_done(state)

    async def release_unlisted(
        self, node: str, network: str, valid: set[tuple[str, str]]
    ) -> tuple[list[Address], list[str]]:
        """CNI GC: release this node's and network's attachments missing from ``valid``,
        each judged by the container ID that holds it now."""
        doomed: dict[AttachmentKey, tuple[str, str]] = {}
        for state in self._ledger.pools.values():
            for rec in state.allocated.values():
                if rec.node != node or rec.network != network:
                    continue
                if (rec.container_id, rec.interface) in valid:
                    continue
                doomed[(rec.identity, rec.interface)] = (rec.pod, rec.container_id)
        released: list[Address] = []
        errors: list[str] = []
        for (identity, nic), (pod_key, container_id) in sorted(doomed.items()):
            try:
                outcome = await self.release(
                    identity, nic, container_id=container_id, pod_key=pod_key, force=True
                )
                released.extend(outcome.released)
            except Exception as exc:
                errors.append(f"{identity}/{nic}: {exc}")
        return released, errors

    # ------------------------------------------------------------------ capacity (STATUS)
    def check_capacity(self, ipv4: list[str], ipv6: list[str]) -> tuple[bool, str]:
        for name, names in (("default_ipv4_ippools", ipv4), ("default_ipv6_ippools", ipv6)):
            problem = pool_names_problem(name, names)
            if problem:
                raise InvalidRequest(problem)
        pools = self._ledger.pools
        for version, names in ((4, ipv4), (6, ipv6)):
            if not names:
                continue
            matched = [
                p for p, s in pools.items() if s.version == version and any(fnmatchcase(p, n) for n in names)
            ]
            if not matched:
                return False, f"default IPv{version} IPPools {names} do not exist"
            if all(self.free_count(p) == 0 or pools[p].pool.spec.disable for p in matched):
                return False, f"default IPv{version} IPPools {sorted(matched)} are exhausted"
        return True, ""

    # ------------------------------------------------------------------ endpoints
    def _written(self, changes: list[Change]) -> None:
        """A durable batch: every SpiderEndpoint its records name needs a look."""
        if self.on_batch is not None and changes:
            self.on_batch(len(changes))
        names: list[EndpointName] = []
        for change in changes:
            names.append(endpoint_name(change.record.pod, change.record.identity))
            if change.previous is not None:
                names.append(endpoint_name(change.previous.pod, change.previous.identity))
        self._endpoints.mark(names)

    async def repair_endpoints(self) -> int:
        """Mark every SpiderEndpoint that differs from what the records say; return how many."""
        objects, _ = await self._store.list(KIND_ENDPOINT)
        self._endpoints.learn(objects)
        stale: list[EndpointName] = []
        stored: set[EndpointName] = set()
        for n, obj in enumerate(objects):
            if n % REPAIR_CHUNK == 0:
                await asyncio.sleep(0)  # 10,000 endpoints are seconds of work: requests go first
            meta = obj["metadata"]
            name = (meta.get("namespace", ""), meta["name"])
            stored.add(name)
            view = describe(self._ledger, name)
            if view is None or not view.nics or obj.get("status") != view.status().to_dict():
                stale.append(name)
        for n, name in enumerate(list(self._ledger.index.endpoints())):
            if n % REPAIR_CHUNK == 0:
                await asyncio.sleep(0)
            view = describe(self._ledger, name)
            if name not in stored and view is not None and view.nics:
                stale.append(name)
        if stale:
            log.info("endpoints_repaired", count=len(stale))
            self._endpoints.mark(stale, reread=True)
        return len(stale)

    async def _resync_endpoints(self) -> None:
        """Repair now, then every ``endpoint_resync_s`` (0: only this first time)."""
        while True:
            try:
                await self.repair_endpoints()
            except Exception as exc:  # the next round tries again
                log.warning("endpoint_resync_failed", error=str(exc))
            if self.settings.endpoint_resync_s <= 0:
                return
            await asyncio.sleep(self.settings.endpoint_resync_s)

    async def flush_endpoints(self) -> None:
        await self._endpoints.flush()

    async def close(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync
        await self._ledger.drain()
        await self._endpoints.flush()
        self._endpoints.close()


def _pod_key(req: AllocationRequest) -> str:
    return req.pod_key if req.pod_name else ""


def _newer(candidate: str, current: str) -> bool:
    if candidate.isdigit() and current.isdigit():
        return int(candidate) > int(current)
    return candidate != current
