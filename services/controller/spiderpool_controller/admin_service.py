"""What ``spiderpoolctl check``, ``explain`` and ``get endpoint`` ask of the controller.

Owns the gathering around three pure functions, and the one rule they share: nothing here
holds anything an allocation waits for, and the event loop (which serves every ADD) is held
as briefly as possible. The engine's records are copied in one synchronous step of dict
copies (``IpamEngine.records_snapshot``: one moment of the ledger, about a millisecond for
20,000 records), the pods' caches as lists of references; turning those copies into values
and judging them runs in a worker thread. The reads that await (the SpiderEndpoints, the API
server) happen outside the engine; the SpiderEndpoint listing is the store's ``list``, which
on the embedded SQLite store decodes on the loop, as every listing does.

- ``check``: records read twice around the endpoint listing (``domain.consistency`` says
  why), pool ranges, reserved addresses, and in a cluster the live pods from the garbage
  collector's caches (``cluster_facts``), judged by the collector's own policy.
- ``explain``: ``domain.selection_explain`` on the engine's pools, plus the address each
  kept pool would give now (``IpamEngine.next_free``, the allocation's own pick). In a
  cluster the pod, its namespace and its node are read from the API server.
- ``describe_endpoint``: a pod's allocations per interface from the records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from spiderpool_common.errors import NotFound, SpiderpoolError

from spiderpool_controller.allocation_answer import Address, nic_routes
from spiderpool_controller.domain import consistency, selection_explain
from spiderpool_controller.domain.consistency import (
    EndpointFacts,
    PodView,
    PoolRanges,
    Snapshot,
    held_addresses,
)
from spiderpool_controller.domain.ipset import IPSet, int_to_ip
from spiderpool_controller.domain.models import KIND_ENDPOINT, EndpointStatus, Route
from spiderpool_controller.domain.object_names import endpoint_name
from spiderpool_controller.domain.request import AllocationRequest
from spiderpool_controller.domain.selection_explain import SelectionPlan
from spiderpool_controller.engine_slot import EngineSlot
from spiderpool_controller.ipam_engine import IpamEngine, RecordsSnapshot
from spiderpool_controller.store.contract import Store


class ClusterFacts(Protocol):
    """The API server as ``check`` and ``explain`` need it (``cluster_facts.ApiFacts``)."""

    def pod_view(self, mark: int) -> Callable[[], PodView] | None:
        """The live pods copied from the caches now, as a function that builds their view
        (run in the check's thread); None while the caches have not synced."""
        ...

    async def selection_inputs(self, req: AllocationRequest) -> AllocationRequest:
        """``req`` with the pod's, its namespace's and its node's labels and annotations."""
        ...


@dataclass
class CheckOutcome:
    report: consistency.Report
    pools: int
    addresses: int
    endpoints: int
    pods: PodView | None


@dataclass
class PoolPreview:
    pool: str
    kept: bool
    reason: str
    next_free: str = ""
    free: int = 0
    chosen: bool = False


@dataclass
class FamilyPreview:
    version: int
    pools: list[PoolPreview]
    error: str = ""


@dataclass
class NicPreview:
    nic: str
    clean_gateway: bool
    families: list[FamilyPreview]
    held: list[Address] = field(default_factory=list)


@dataclass
class Explanation:
    source: str
    nics: list[NicPreview]
    pod_source: str
    error: SpiderpoolError | None = None  # the ADD would fail before trying any pool


@dataclass
class InterfaceView:
    interface: str
    identity: str
    container_id: str
    network: str
    node: str
    clean_gateway: bool
    addresses: list[Address]
    routes: list[Route]


@dataclass
class EndpointDetail:
    namespace: str
    name: str
    pod_uid: str
    owner_kind: str
    owner_name: str
    interfaces: list[InterfaceView]


Compute = Callable[[Snapshot], consistency.Report]


@dataclass(frozen=True)
class Readings:
    """What a check copied on the event loop, for its worker thread to judge."""

    before: RecordsSnapshot
    after: RecordsSnapshot
    pools: tuple[PoolRanges, ...]
    reserved: dict[int, IPSet]
    endpoints: list[dict[str, Any]]
    pods: Callable[[], PodView] | None


def pool_ranges(engine: IpamEngine) -> tuple[PoolRanges, ...]:
    out = []
    for name, state in sorted(engine.pool_states().items()):
        spec, version = state.pool.spec, state.version
        out.append(
            PoolRanges(name, version, IPSet.parse(spec.ips, version), IPSet.parse(spec.exclude_ips, version))
        )
    return tuple(out)


def endpoint_facts(obj: dict[str, Any]) -> EndpointFacts:
    meta = obj.get("metadata") or {}
    status = EndpointStatus.from_dict(obj.get("status") or {})
    pairs = {
        (detail.interface, text.split("/", 1)[0])
        for detail in status.ips
        for text in (detail.ipv4, detail.ipv6)
        if text
    }
    return EndpointFacts(
        str(meta.get("namespace", "")), str(meta.get("name", "")), status.uid, frozenset(pairs)
    )


class AdminService:
    def __init__(
        self,
        slot: EngineSlot,
        store: Store,
        *,
        cluster: Callable[[], ClusterFacts | None] = lambda: None,
        compute: Compute = consistency.check,
    ) -> None:
        self._slot = slot
        self._store = store
        self._cluster = cluster
        self._compute = compute

    # -- check ----------------------------------------------------------------------------
    async def check(self) -> CheckOutcome:
        engine = self._slot.get()
        facts = self._cluster()
        mark = engine.allocation_sequence()  # before the pods: newer records are not judged
        pods = facts.pod_view(mark) if facts is not None else None
        before = engine.records_snapshot()
        pools = pool_ranges(engine)
        reserved = {v: engine.reserved(v) for v in (4, 6)}
        objects, _ = await self._store.list(KIND_ENDPOINT)
        engine = self._slot.get()  # leadership may have moved while we listed
        after = engine.records_snapshot()
        readings = Readings(before, after, pools, reserved, objects, pods)
        return await asyncio.to_thread(self._judge, readings)

    def _judge(self, r: Readings) -> CheckOutcome:
        """In the worker thread: the copies become the snapshot, the snapshot a report."""
        view = r.pods() if r.pods is not None else None
        snapshot = Snapshot(
            held_addresses(r.before.pools, r.before.sequences),
            held_addresses(r.after.pools, r.after.sequences),
            r.pools,
            r.reserved,
            tuple(endpoint_facts(obj) for obj in r.endpoints),
            view,
        )
        report = self._compute(snapshot)
        return CheckOutcome(report, len(r.pools), len(snapshot.held_after), len(r.endpoints), view)

    # -- explain --------------------------------------------------------------------------
    async def explain(self, req: AllocationRequest) -> Explanation:
        facts = self._cluster()
        pod_source = "request"
        if facts is not None:
            req = await facts.selection_inputs(req)
            pod_source = "kubernetes API"
        engine = self._slot.get()
        models = {name: state.pool for name, state in engine.pool_states().items()}
        try:
            plan = selection_explain.explain(req, models, engine.settings.required_families)
        except SpiderpoolError as exc:
            return Explanation("", [], pod_source, exc)
        return Explanation(plan.source, self._previews(engine, plan, req), pod_source)

    def _previews(self, engine: IpamEngine, plan: SelectionPlan, req: AllocationRequest) -> list[NicPreview]:
        held = self._held_by_nic(engine, req)
        out: list[NicPreview] = []
        for nic in plan.nics:
            families: list[FamilyPreview] = []
            for family in nic.families:
                pools: list[PoolPreview] = []
                chosen = False
                for verdict in family.candidates:
                    preview = PoolPreview(verdict.pool, verdict.kept, verdict.reason)
                    if verdict.kept:
                        ip = engine.next_free(verdict.pool, family.version)
                        preview.free = engine.free_count(verdict.pool)
                        if ip is not None:
                            preview.next_free = int_to_ip(ip, family.version)
                            preview.chosen = not chosen
                            chosen = True
                    pools.append(preview)
                error = family.error
                if not error and not chosen:
                    error = (
                        f"no free IPv{family.version} address for {nic.nic} in IPPools "
                        f"[{', '.join(family.kept)}]: every candidate is exhausted "
                        "(or at its allocated-IP threshold)"
                    )
                families.append(FamilyPreview(family.version, pools, error))
            out.append(NicPreview(nic.nic, nic.clean_gateway, families, held.get(nic.nic, [])))
        return out

    @staticmethod
    def _held_by_nic(engine: IpamEngine, req: AllocationRequest) -> dict[str, list[Address]]:
        """What the pod holds already: by its identity, else by the endpoint of its name."""
        if req.identity:
            found = engine.attachments_of(req.identity)
            if found:
                return found
        if not req.pod_name:
            return {}
        held = engine.endpoint_records(*endpoint_name(req.pod_key, req.identity))
        return {
            nic: engine.attachment(entries[0].record.identity, nic)
            for nic, entries in held.items()
            if entries
        }

    # -- describe_endpoint ----------------------------------------------------------------
    def describe_endpoint(self, namespace: str, name: str) -> EndpointDetail:
        engine = self._slot.get()
        states = engine.pool_states()
        held = {nic: entries for nic, entries in engine.endpoint_records(namespace, name).items() if entries}
        if not held:
            raise NotFound(
                f"no allocation of pod {namespace}/{name}: no pool's records name it "
                f"(spiderpoolctl get endpoints -n {namespace} lists the pods that hold addresses)"
            )
        interfaces: list[InterfaceView] = []
        owner_kind = owner_name = pod_uid = ""
        for nic, entries in sorted(held.items()):
            first = entries[0].record
            owner_kind, owner_name = owner_kind or first.owner_kind, owner_name or first.owner_name
            pod_uid = pod_uid or first.pod_uid
            records = [(states[e.pool], e.ip, e.record) for e in entries]
            interfaces.append(
                InterfaceView(
                    interface=nic,
                    identity=first.identity,
                    container_id=first.container_id,
                    network=first.network,
                    node=first.node,
                    clean_gateway=first.clean_gateway,
                    addresses=engine.attachment(first.identity, nic),
                    routes=nic_routes(records),
                )
            )
        return EndpointDetail(namespace, name, pod_uid, owner_kind or "Pod", owner_name, interfaces)
