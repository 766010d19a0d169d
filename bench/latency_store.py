"""A Store wrapper that models the round trip to a Kubernetes API server (benchmarks only).

The allocation benchmark composes it around the controller's store to see how throughput
behaves when every write takes as long as an API server round trip. It changes no
semantics: each call waits ``write_latency_s`` (or ``read_latency_s``) with
``asyncio.sleep`` (or the injected ``sleep``, a test's clock) and then delegates, so
concurrent callers overlap their waits as they would overlap HTTP requests. The
production controller has no such setting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from spiderpool_controller.store.contract import Obj, Store, WatchEvent


class LatencyStore:
    """Delegates to ``inner`` after a modelled latency per call."""

    def __init__(
        self,
        inner: Store,
        write_latency_s: float = 0.0,
        read_latency_s: float = 0.0,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if write_latency_s < 0 or read_latency_s < 0:
            raise ValueError("latencies must not be negative")
        self.inner = inner
        self._sleep = sleep
        self.write_latency_s = write_latency_s
        self.read_latency_s = read_latency_s

    async def _wait(self, write: bool) -> None:
        delay = self.write_latency_s if write else self.read_latency_s
        if delay > 0:
            await self._sleep(delay)

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        await self._wait(False)
        return await self.inner.get(kind, name, namespace)

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        await self._wait(False)
        return await self.inner.list(kind, namespace, label_selector)

    async def create(self, obj: Obj) -> Obj:
        await self._wait(True)
        return await self.inner.create(obj)

    async def update(self, obj: Obj) -> Obj:
        await self._wait(True)
        return await self.inner.update(obj)

    async def update_status(self, obj: Obj) -> Obj:
        await self._wait(True)
        return await self.inner.update_status(obj)

    async def delete(
        self, kind: str, name: str, namespace: str = "", resource_version: str | None = None
    ) -> Obj | None:
        await self._wait(True)
        return await self.inner.delete(kind, name, namespace, resource_version)

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        return self.inner.watch(kind, namespace, resource_version, label_selector)

    async def close(self) -> None:
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
