"""Prometheus metrics of the controller (upstream names where upstream has one, upstream's
docs/reference/metrics.md).

One registry per controller instance (so tests can run several in a process), served over
HTTP when ``--metrics-listen`` is set. Request counters are updated by the servicer; store
and pool figures are read at scrape time from the objects that own them, so nothing is
kept twice.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from spiderpool_controller.engine_slot import EngineSlot
from spiderpool_controller.ipam_engine import IpamEngine
from spiderpool_controller.store.instrumented import InstrumentedStore


class _StateCollector(Collector):
    def __init__(self, slot: EngineSlot, stores: Callable[[], list[InstrumentedStore]]) -> None:
        self._slot = slot
        self._stores = stores

    def collect(self) -> Iterator[Metric]:
        writes = CounterMetricFamily(
            "spiderpool_store_operations", "Store calls by operation and kind", labels=["op", "kind"]
        )
        counts: Tally[tuple[str, str]] = Tally()
        for store in self._stores():
            counts.update(store.counts)
        for (op, kind), n in sorted(counts.items()):
            writes.add_metric([op, kind], n)
        yield writes
        engine = self._slot.engine
        if engine is None:  # a standby: the leader reports the pools
            return
        total = GaugeMetricFamily(
            "spiderpool_debug_ippool_total_ip_counts", "Usable IPs per pool", labels=["SpiderIPPool"]
        )
        free = GaugeMetricFamily(
            "spiderpool_debug_ippool_available_ip_counts", "Free IPs per pool", labels=["SpiderIPPool"]
        )
        for name, state in sorted(engine.pool_states().items()):
            reserved = engine.reserved(state.version)
            total.add_metric([name], state.total(reserved))
            free.add_metric([name], state.free_count(reserved))
        yield total
        yield free
        pools = GaugeMetricFamily("spiderpool_total_ippool_counts", "Number of SpiderIPPools")
        pools.add_metric([], len(engine.pool_states()))
        yield pools
        batches = CounterMetricFamily("spiderpool_pool_status_writes", "Pool status writes (group commits)")
        batches.add_metric([], engine.status_writes())
        yield batches


class ControllerMetrics:
    def __init__(
        self,
        engine: IpamEngine | EngineSlot,
        store: InstrumentedStore | Callable[[], list[InstrumentedStore]],
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
        self.releases = Counter("spiderpool_ipam_release_counts", "Release requests served", registry=r)
        self.allocation_seconds = Histogram(
            "spiderpool_ipam_allocation_duration_seconds",
            "Allocation latency inside the controller (decision and durable write)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        slot = engine if isinstance(engine, EngineSlot) else EngineSlot(engine)
        stores = store if callable(store) else (lambda: [store])
        r.register(_StateCollector(slot, stores))

    def serve(self, listen: str) -> int:
        """Serve ``/metrics`` on ``HOST:PORT`` (port 0 picks one); return the bound port."""
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)
        return int(server.server_port)
