"""Prometheus over HTTP for an asyncio service: state read on the service's own loop.

Owns the one threading rule both services' metrics follow. prometheus_client serves
``/metrics`` from a thread of its own, while the state a scrape reports (the engine's pools,
the agent's journal) is only ever changed by the event loop; reading it from the HTTP
thread could see a dictionary mid-change. So the state collector hands its work to the
loop (``run_coroutine_threadsafe``) and waits, with a deadline, for the metric families it
builds there; counters and histograms that the request paths update stay ordinary
prometheus_client objects (they lock themselves).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

log = structlog.get_logger(__name__)

COLLECT_TIMEOUT_S = 5.0

Gather = Callable[[], Coroutine[Any, Any, list[Metric]]]


class LoopCollector(Collector):
    """Runs ``gather`` on ``loop`` for each scrape (or ``direct`` when called on the loop
    itself, or before a loop is known)."""

    def __init__(self, gather: Gather, direct: Callable[[], Iterable[Metric]]) -> None:
        self._gather = gather
        self._direct = direct
        self.loop: asyncio.AbstractEventLoop | None = None

    def collect(self) -> Iterator[Metric]:
        loop = self.loop
        if loop is None or loop.is_closed() or _running_on(loop):
            yield from self._direct()
            return
        future = asyncio.run_coroutine_threadsafe(self._gather(), loop)
        try:
            metrics = future.result(timeout=COLLECT_TIMEOUT_S)
        except Exception as exc:  # a stalled loop: this scrape has the request counters only
            future.cancel()
            log.warning("metrics_collect_failed", error=str(exc) or type(exc).__name__)
            return
        yield from metrics


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class MetricsServer:
    """The running HTTP server: its bound port, and ``close`` (stops the thread)."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.port = int(server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=COLLECT_TIMEOUT_S)


def serve(registry: CollectorRegistry, collector: LoopCollector, listen: str) -> MetricsServer:
    """Serve ``registry`` on ``HOST:PORT`` (port 0 picks one).

    Called on the service's event loop, where every scrape then reads the state."""
    try:
        collector.loop = asyncio.get_running_loop()
    except RuntimeError:
        collector.loop = None
    # No ``*_created`` series beside every counter and histogram: upstream has none, and they
    # double the series a scrape stores. (A process-wide switch; only a serving process sets it.)
    disable_created_metrics()  # type: ignore[no-untyped-call]
    host, _, port = listen.rpartition(":")
    server, thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    return MetricsServer(server, thread)
