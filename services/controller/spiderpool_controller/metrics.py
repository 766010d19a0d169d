"""Prometheus metrics of the controller (upstream names where upstream has one, upstream's
docs/reference/metrics.md).

One registry per controller instance (so tests can run several in a process), served over
HTTP when ``--metrics-listen`` is set. Request figures are observed where they happen (the
IPAM servicer: allocations and releases, counts, failures by reason, durations; the engine:
the size of every durable pool write, i.e. group commit's batch); everything else is read
at scrape time from the objects that own it, so nothing is kept twice: store calls and
their latency (``InstrumentedStore``), pools and their free addresses (the engine), the
garbage collector's releases by reason and its failed runs, leadership (cluster mode), and
the SpiderSubnets (listed from the store, with a deadline, on the event loop).

Upstream's counters are exported by OpenTelemetry without a suffix; prometheus_client
adds ``_total`` to every counter (``spiderpool_ipam_allocation_counts_total``), as the
OpenMetrics convention asks. In a cluster the leader reports the pools and GC; a standby
reports its store calls and leadership only.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from spiderpool_common.metrics_http import LoopCollector, MetricsServer, serve

from spiderpool_controller.domain.ipset import IPSet
from spiderpool_controller.domain.models import KIND_SUBNET
from spiderpool_controller.engine_slot import EngineSlot
from spiderpool_controller.ipam_engine import IpamEngine
from spiderpool_controller.store.contract import Store
from spiderpool_controller.store.instrumented import LATENCY_BUCKETS, InstrumentedStore, LatencyTally

log = structlog.get_logger(__name__)

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SUBNET_LIST_TIMEOUT_S = 2.0

Stores = Callable[[], list[InstrumentedStore]]


def _store_metrics(stores: list[InstrumentedStore]) -> Iterator[Metric]:
    operations = CounterMetricFamily(
        "spiderpool_store_operations", "Store calls by operation and kind", labels=["op", "kind"]
    )
    counts: Tally[tuple[str, str]] = Tally()
    latency: dict[str, LatencyTally] = {}
    for store in stores:
        counts.update(store.counts)
        for op, tally in store.latency.items():
            latency.setdefault(op, LatencyTally()).merge(tally)
    for (op, kind), n in sorted(counts.items()):
        operations.add_metric([op, kind], n)
    yield operations
    seconds = HistogramMetricFamily(
        "spiderpool_store_call_duration_seconds",
        "Store call latency by operation (a pool status write is one group commit)",
        labels=["op"],
    )
    for op, tally in sorted(latency.items()):
        buckets = [(str(le), float(n)) for le, n in zip(LATENCY_BUCKETS, tally.cumulative(), strict=False)]
        buckets.append(("+Inf", float(tally.count)))
        seconds.add_metric([op], buckets, tally.sum)
    yield seconds


def _pool_metrics(engine: IpamEngine) -> Iterator[Metric]:
    total = GaugeMetricFamily(
        "spiderpool_debug_ippool_total_ip_counts", "Usable IPs per pool", labels=["SpiderIPPool"]
    )
    free = GaugeMetricFamily(
        "spiderpool_debug_ippool_available_ip_counts", "Free IPs per pool", labels=["SpiderIPPool"]
    )
    states = engine.pool_states()
    for name, state in sorted(states.items()):
        reserved = engine.reserved(state.version)
        total.add_metric([name], state.total(reserved))
        free.add_metric([name], state.free_count(reserved))
    yield total
    yield free
    pools = GaugeMetricFamily("spiderpool_total_ippool_counts", "Number of SpiderIPPools")
    pools.add_metric([], len(states))
    yield pools
    writes = CounterMetricFamily("spiderpool_pool_status_writes", "Pool status writes (group commits)")
    writes.add_metric([], engine.status_writes())
    yield writes


def _gc_metrics(slot: EngineSlot) -> Iterator[Metric]:
    gc: Any = slot.gc
    if gc is None:  # the embedded mode: the runtime's CNI GC collects
        return
    released = CounterMetricFamily(
        "spiderpool_ip_gc_counts", "Addresses released by IP garbage collection, by reason", labels=["reason"]
    )
    for reason, n in sorted(gc.total.reasons.items()):
        released.add_metric([reason], n)
    yield released
    failures = CounterMetricFamily("spiderpool_ip_gc_failure_counts", "GC scans and pod traces that failed")
    failures.add_metric([], getattr(gc, "failures", 0))
    yield failures


def _subnet_metrics(subnets: list[dict[str, Any]], engine: IpamEngine) -> Iterator[Metric]:
    count = GaugeMetricFamily("spiderpool_total_subnet_counts", "Number of SpiderSubnets")
    count.add_metric([], len(subnets))
    yield count
    total = GaugeMetricFamily(
        "spiderpool_debug_subnet_total_ip_counts", "Usable IPs per subnet", labels=["SpiderSubnet"]
    )
    free = GaugeMetricFamily(
        "spiderpool_debug_subnet_available_ip_counts",
        "IPs of a subnet that no pool has allocated",
        labels=["SpiderSubnet"],
    )
    pools = GaugeMetricFamily(
        "spiderpool_debug_subnet_ippool_counts", "SpiderIPPools of a subnet's CIDR", labels=["SpiderSubnet"]
    )
    states = engine.pool_states()
    for obj in sorted(subnets, key=lambda o: str(o["metadata"]["name"])):
        name, spec = str(obj["metadata"]["name"]), obj.get("spec") or {}
        try:
            version = int(spec.get("ipVersion") or (6 if ":" in str(spec.get("subnet", "")) else 4))
            usable = IPSet.parse(spec.get("ips") or [], version) - IPSet.parse(
                spec.get("excludeIPs") or [], version
            )
        except (TypeError, ValueError):
            continue  # validation refuses these on apply
        usable = usable - engine.reserved(version)
        inside = [s for s in states.values() if s.pool.spec.subnet == spec.get("subnet")]
        held = sum(1 for s in inside for ip in s.allocated if usable.contains_int(ip))
        total.add_metric([name], usable.count())
        free.add_metric([name], usable.count() - held)
        pools.add_metric([name], len(inside))
    yield from (total, free, pools)


class ControllerMetrics:
    def __init__(
        self,
        engine: IpamEngine | EngineSlot,
        store: InstrumentedStore | Stores,
        *,
        leader_changes: Callable[[], int] | None = None,
        objects: Store | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.allocations = Counter("spiderpool_ipam_allocation_counts", "Successful allocations", registry=r)
        self.allocation_failures = Counter(
            "spiderpool_ipam_allocation_failure_counts",
            "Failed allocations by reason",
            ["reason"],
            registry=r,
        )
        self.allocation_seconds = Histogram(
            "spiderpool_ipam_allocation_duration_seconds",
            "Allocation latency inside the controller (decision and durable write)",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.releases = Counter("spiderpool_ipam_release_counts", "Release requests served", registry=r)
        self.release_failures = Counter(
            "spiderpool_ipam_release_failure_counts", "Failed releases by reason", ["reason"], registry=r
        )
        self.release_seconds = Histogram(
            "spiderpool_ipam_release_duration_seconds",
            "Release latency inside the controller (decision and durable write)",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "spiderpool_pool_write_batch_size",
            "Changes (addresses taken, released or re-bound) per durable pool status write: group commit",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.slot = engine if isinstance(engine, EngineSlot) else EngineSlot(engine)
        self.slot.watch(self._engine_changed)
        self.stores: Stores = store if callable(store) else (lambda: [store])
        self._leader_changes = leader_changes
        self._objects = objects
        self._collector = LoopCollector(self.gather, lambda: self.state_metrics(None))
        self._server: MetricsServer | None = None
        r.register(self._collector)

    def _engine_changed(self, engine: IpamEngine | None) -> None:
        if engine is not None:
            engine.on_batch = self.batch_size.observe

    async def gather(self) -> list[Metric]:
        """Every state metric, built on the event loop (the subnets listed with a deadline)."""
        subnets: list[dict[str, Any]] | None = None
        if self._objects is not None and self.slot.engine is not None:
            try:
                async with asyncio.timeout(SUBNET_LIST_TIMEOUT_S):
                    subnets, _ = await self._objects.list(KIND_SUBNET)
            except Exception as exc:  # a slow or failing store: the scrape goes on without subnets
                log.warning("metrics_subnet_list_failed", error=str(exc) or type(exc).__name__)
        return list(self.state_metrics(subnets))

    def state_metrics(self, subnets: list[dict[str, Any]] | None) -> Iterator[Metric]:
        yield from _store_metrics(self.stores())
        if self._leader_changes is not None:
            changes = CounterMetricFamily(
                "spiderpool_controller_leader_changes", "Times this replica became the leader"
            )
            changes.add_metric([], self._leader_changes())
            yield changes
            leader = GaugeMetricFamily("spiderpool_controller_leader", "1 while this replica leads")
            leader.add_metric([], 1 if self.slot.engine is not None else 0)
            yield leader
        engine = self.slot.engine
        if engine is None:  # a standby: the leader reports the pools
            return
        yield from _pool_metrics(engine)
        yield from _gc_metrics(self.slot)
        if subnets is not None:
            yield from _subnet_metrics(subnets, engine)

    def serve(self, listen: str) -> int:
        """Serve ``/metrics`` on ``HOST:PORT`` (port 0 picks one); return the bound port.
        Called on the controller's event loop, where every scrape reads the state."""
        self._server = serve(self.registry, self._collector, listen)
        return self._server.port

    async def close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.close)
