"""A Store wrapper that counts and times calls: the controller's store metrics.

Owns the measurement side of the Store contract in production: Prometheus reads how many
calls of each operation and kind the controller made and how long they took (group
commit's claim is "one write per batch, not per request"; an operator sees it in
``spiderpool_store_operations``, their latency in ``spiderpool_store_call_duration_seconds``).
It changes no semantics and adds no delay: the benchmarks compose their own latency model
around the store (``bench/latency_store.py``).
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from spiderpool_controller.store.contract import Obj, Store, WatchEvent

T = TypeVar("T")
WRITE_OPERATIONS = frozenset({"create", "update", "update_status", "delete"})
# Upper bounds (seconds) of the latency histogram's buckets: SQLite's fsync is ~1 ms, an
# API server round trip ~5 ms, a loaded one 100 ms and more.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class LatencyTally:
    """A fixed-bucket histogram: calls per bucket of ``LATENCY_BUCKETS`` (the last one
    counts calls above them all), their number and their total duration."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    count: int = 0
    sum: float = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def merge(self, other: LatencyTally) -> None:
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.count += other.count
        self.sum += other.sum

    def cumulative(self) -> list[int]:
        """Calls at or below each bound of ``LATENCY_BUCKETS``, in order."""
        out, running = [], 0
        for n in self.buckets[:-1]:
            running += n
            out.append(running)
        return out


class InstrumentedStore:
    """Delegates to ``inner``; ``counts[(operation, kind)]`` tallies calls,
    ``seconds[operation]`` sums their durations and ``latency[operation]`` buckets them
    (failed calls included), read from ``clock``."""

    def __init__(self, inner: Store, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.inner = inner
        self._clock = clock
        self.counts: Counter[tuple[str, str]] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.latency: defaultdict[str, LatencyTally] = defaultdict(LatencyTally)

    def writes(self, kind: str | None = None, op: str | None = None) -> int:
        """Write calls so far, optionally only of one kind and/or one operation."""
        return sum(
            n
            for (operation, k), n in self.counts.items()
            if operation in WRITE_OPERATIONS
            and (kind is None or k == kind)
            and (op is None or operation == op)
        )

    async def _timed(self, operation: str, kind: str, call: Awaitable[T]) -> T:
        self.counts[(operation, kind)] += 1
        started = self._clock()
        try:
            return await call
        finally:
            elapsed = self._clock() - started
            self.seconds[operation] += elapsed
            self.latency[operation].observe(elapsed)

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        return await self._timed("get", kind, self.inner.get(kind, name, namespace))

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        return await self._timed("list", kind, self.inner.list(kind, namespace, label_selector))

    async def create(self, obj: Obj) -> Obj:
        return await self._timed("create", str(obj.get("kind", "")), self.inner.create(obj))

    async def update(self, obj: Obj) -> Obj:
        return await self._timed("update", str(obj.get("kind", "")), self.inner.update(obj))

    async def update_status(self, obj: Obj) -> Obj:
        return await self._timed("update_status", str(obj.get("kind", "")), self.inner.update_status(obj))

    async def delete(
        self, kind: str, name: str, namespace: str = "", resource_version: str | None = None
    ) -> Obj | None:
        return await self._timed("delete", kind, self.inner.delete(kind, name, namespace, resource_version))

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        self.counts[("watch", kind)] += 1
        return self.inner.watch(kind, namespace, resource_version, label_selector)

    async def close(self) -> None:
        await self.inner.close()
