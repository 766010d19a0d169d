"""Prometheus metrics of the node agent (``--metrics-listen``; upstream's agent port is 5711).

What the node sees of IPAM, which the controller cannot: upstream's agent-side names for
allocations and releases as the CNI plugin experiences them (``spiderpool_ipam_allocation_*``
and ``spiderpool_ipam_release_*``: an IPAM ADD and DEL, counted, failures by reason, and
their whole duration including the controller's round trip and the IP conflict probes),
every CNI call by plugin, verb and the code it answered (0 for success, ``cancelled`` when
the shim gave up before the answer), STATUS answers
that said the node cannot take ADDs, and the two backlogs that hold work the controller
has not confirmed yet: the release journal (DELs made while the controller was
unreachable) and the DEL spool (DELs the shims recorded while the agent was). The backlogs
are read at scrape time on the agent's loop (``metrics_http``).

A failure's ``reason`` is the error's reason (``POOL_EXHAUSTED``, ``UNAVAILABLE``, ...), or
for an error the agent raised with a CNI code (``CNI_ERROR``) ``CNI_<code>``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from spiderpool_cni import codes
from spiderpool_common.errors import CniError, SpiderpoolError
from spiderpool_common.metrics_http import LoopCollector, MetricsServer, serve

DURATION_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def reason_of(err: BaseException) -> str:
    if isinstance(err, CniError):
        return f"CNI_{err.cni_code}"
    if isinstance(err, SpiderpoolError):
        return err.reason
    return "INTERNAL"


def code_of(err: BaseException) -> int:
    return err.cni_code if isinstance(err, SpiderpoolError) else codes.INTERNAL


class AgentMetrics:
    def __init__(
        self,
        journal_backlog: Callable[[], int],
        spool_backlog: Callable[[], tuple[int, int]],
    ) -> None:
        """``journal_backlog``: pending releases; ``spool_backlog``: (pending, quarantined) files."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.cni_calls = Counter(
            "spiderpool_agent_cni_calls",
            "CNI calls served, by plugin, verb and the CNI code answered (0: success)",
            ["plugin", "verb", "code"],
            registry=r,
        )
        self.cni_seconds = Histogram(
            "spiderpool_agent_cni_call_duration_seconds",
            "Time the agent took to answer a CNI call, by plugin and verb",
            ["plugin", "verb"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.allocations = Counter(
            "spiderpool_ipam_allocation_counts", "IPAM ADDs that succeeded", registry=r
        )
        self.allocation_failures = Counter(
            "spiderpool_ipam_allocation_failure_counts",
            "IPAM ADDs that failed, by reason",
            ["reason"],
            registry=r,
        )
        self.allocation_seconds = Histogram(
            "spiderpool_ipam_allocation_duration_seconds",
            "IPAM ADD duration on the node (controller round trip and probes included)",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.releases = Counter(
            "spiderpool_ipam_release_counts", "IPAM DELs that succeeded (released or journaled)", registry=r
        )
        self.release_failures = Counter(
            "spiderpool_ipam_release_failure_counts",
            "IPAM DELs that failed, by reason",
            ["reason"],
            registry=r,
        )
        self.release_seconds = Histogram(
            "spiderpool_ipam_release_duration_seconds",
            "IPAM DEL duration on the node",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.status_failures = Counter(
            "spiderpool_agent_status_failures",
            "STATUS calls that answered the node cannot take ADDs, by CNI code (50, 51, ...)",
            ["plugin", "code"],
            registry=r,
        )
        self._journal_backlog = journal_backlog
        self._spool_backlog = spool_backlog
        self._collector = LoopCollector(self._gather, self._backlogs)
        self._server: MetricsServer | None = None
        r.register(self._collector)

    async def _gather(self) -> list[Metric]:
        return list(self._backlogs())

    def _backlogs(self) -> Iterator[Metric]:
        journal = GaugeMetricFamily(
            "spiderpool_agent_release_journal_pending",
            "Releases journaled while the controller was unreachable, not confirmed yet",
        )
        journal.add_metric([], self._journal_backlog())
        yield journal
        pending, quarantined = self._spool_backlog()
        spool = GaugeMetricFamily(
            "spiderpool_agent_del_spool_pending",
            "DELs the shims spooled while the agent was away, not replayed yet",
        )
        spool.add_metric([], pending)
        yield spool
        bad = GaugeMetricFamily(
            "spiderpool_agent_del_spool_quarantined",
            "Spooled DELs set aside as unreadable or refused (for a human)",
        )
        bad.add_metric([], quarantined)
        yield bad

    @asynccontextmanager
    async def observe(self, plugin: str, verb: str) -> AsyncIterator[None]:
        """Count and time one CNI call; the code is 0 unless the call raises."""
        started = time.perf_counter()
        try:
            yield
        except asyncio.CancelledError:  # the caller gave up: no answer was given
            self._done(plugin, verb, "cancelled", time.perf_counter() - started, "CANCELLED")
            raise
        except BaseException as exc:
            elapsed = time.perf_counter() - started
            self._done(plugin, verb, str(code_of(exc)), elapsed, reason_of(exc))
            raise
        self._done(plugin, verb, "0", time.perf_counter() - started, "")

    def _done(self, plugin: str, verb: str, code: str, elapsed: float, reason: str) -> None:
        failed_call = code != "0"
        self.cni_calls.labels(plugin=plugin, verb=verb, code=code).inc()
        self.cni_seconds.labels(plugin=plugin, verb=verb).observe(elapsed)
        if verb == "STATUS" and failed_call:
            self.status_failures.labels(plugin=plugin, code=code).inc()
        if plugin != "ipam" or verb not in ("ADD", "DEL"):
            return
        ok, failed, seconds = (
            (self.allocations, self.allocation_failures, self.allocation_seconds)
            if verb == "ADD"
            else (self.releases, self.release_failures, self.release_seconds)
        )
        if failed_call:
            failed.labels(reason=reason).inc()
        else:
            ok.inc()
        seconds.observe(elapsed)

    def serve(self, listen: str) -> int:
        """Serve ``/metrics`` on ``HOST:PORT``; return the bound port (on the agent's loop)."""
        self._server = serve(self.registry, self._collector, listen)
        return self._server.port

    def close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
