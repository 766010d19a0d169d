"""A Store wrapper that counts and times calls: the controller's store metrics.

Owns the measurement side of the Store contract in production: Prometheus reads how many
calls of each operation and kind the controller made and how long they took (group
commit's claim is "one write per batch, not per request"; an operator sees it in
``spiderpool_store_operations``). It changes no semantics and adds no delay: the
benchmarks compose their own latency model around the store (``bench/latency_store.py``).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from spiderpool_controller.store.contract import Obj, Store, WatchEvent

T = TypeVar("T")
WRITE_OPERATIONS = frozenset({"create", "update", "update_status", "delete"})


class InstrumentedStore:
    """Delegates to ``inner``; ``counts[(operation, kind)]`` tallies calls and
    ``seconds[operation]`` sums their durations (failed calls included), read from ``clock``."""

    def __init__(self, inner: Store, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.inner = inner
        self._clock = clock
        self.counts: Counter[tuple[str, str]] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)

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
            self.seconds[operation] += self._clock() - started

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
