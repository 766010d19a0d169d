"""The agent's Prometheus metrics: what is waiting on the node for the controller or for a replay.

A release the controller has not confirmed stays in the durable release journal, and a DEL the
shims spooled while the agent was away stays in the spool until it is replayed; both are meant
to drain within seconds. A backlog that does not drain means addresses held by pods that are
gone (the chart's PrometheusRule alerts on it). The figures are read at scrape time, nothing is
counted on the CNI path. Served on ``--metrics-listen`` (upstream's agent metrics port is 5711).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

JOURNAL_PENDING = "spiderpool_agent_release_journal_pending"
SPOOL_PENDING = "spiderpool_agent_del_spool_pending"
SPOOL_QUARANTINED = "spiderpool_agent_del_spool_quarantined"


class _Backlog(Collector):
    def __init__(self, journal: Callable[[], int], spool: Callable[[], int], quarantined: Callable[[], int]):
        self._journal, self._spool, self._quarantined = journal, spool, quarantined

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            JOURNAL_PENDING,
            "Releases in the release journal the controller has not confirmed",
            self._journal(),
        )
        yield GaugeMetricFamily(SPOOL_PENDING, "DELs spooled by the shims not replayed yet", self._spool())
        yield GaugeMetricFamily(
            SPOOL_QUARANTINED,
            "Spooled DELs set aside as unreadable or refused (need a human)",
            self._quarantined(),
        )


class AgentMetrics:
    def __init__(self, journal: Callable[[], int], spool: Callable[[], int], quarantined: Callable[[], int]):
        self.registry = CollectorRegistry()
        self.registry.register(_Backlog(journal, spool, quarantined))
        self._server: Any = None

    def serve(self, listen: str) -> int:
        """Serve ``/metrics`` on ``HOST:PORT`` (port 0 picks one); return the bound port."""
        host, _, port = listen.rpartition(":")
        self._server, _thread = start_http_server(
            int(port), addr=host.removeprefix("[").removesuffix("]") or "127.0.0.1", registry=self.registry
        )
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
