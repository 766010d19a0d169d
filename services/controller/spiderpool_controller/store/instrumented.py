"""A Store wrapper that models the round trip to a Kubernetes API server and counts calls.

Owns the measurement side of the Store contract: the allocation benchmark and tests wrap
the embedded store in it to see how many writes a workload costs (group commit's claim is
"one write per batch, not per request") and how throughput behaves when every write takes
as long as an API server round trip. It changes no semantics: each call waits
``write_latency_s`` (or ``read_latency_s``) with ``asyncio.sleep`` and then delegates, so
concurrent callers overlap their waits as they would overlap HTTP requests.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

from spiderpool_controller.store.contract import Obj, Store, WatchEvent

WRITE_OPERATIONS = frozenset({"create", "update", "update_status", "delete"})


class InstrumentedStore:
    """Delegates to ``inner`` after a modelled latency; ``counts[(operation, kind)]`` tallies calls."""

    def __init__(self, inner: Store, write_latency_s: float = 0.0, read_latency_s: float = 0.0) -> None:
        if write_latency_s < 0 or read_latency_s < 0:
            raise ValueError("latencies must not be negative")
        self.inner = inner
        self.write_latency_s = write_latency_s
        self.read_latency_s = read_latency_s
        self.counts: Counter[tuple[str, str]] = Counter()

    def writes(self, kind: str | None = None, op: str | None = None) -> int:
        """Write calls so far, optionally only of one kind and/or one operation."""
        return sum(
            n
            for (operation, k), n in self.counts.items()
            if operation in WRITE_OPERATIONS
            and (kind is None or k == kind)
            and (op is None or operation == op)
        )

    async def _before(self, operation: str, kind: str) -> None:
        self.counts[(operation, kind)] += 1
        delay = self.write_latency_s if operation in WRITE_OPERATIONS else self.read_latency_s
        if delay > 0:
            await asyncio.sleep(delay)

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        await self._before("get", kind)
        return await self.inner.get(kind, name, namespace)

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        await self._before("list", kind)
        return await self.inner.list(kind, namespace, label_selector)

    async def create(self, obj: Obj) -> Obj:
        await self._before("create", str(obj.get("kind", "")))
        return await self.inner.create(obj)

    async def update(self, obj: Obj) -> Obj:
        await self._before("update", str(obj.get("kind", "")))
        return await self.inner.update(obj)

    async def update_status(self, obj: Obj) -> Obj:
        await self._before("update_status", str(obj.get("kind", "")))
        return await self.inner.update_status(obj)

    async def delete(
        self, kind: str, name: str, namespace: str = "", resource_version: str | None = None
    ) -> Obj | None:
        await self._before("delete", kind)
        return await self.inner.delete(kind, name, namespace, resource_version)

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
