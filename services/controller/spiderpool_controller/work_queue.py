"""A work queue of object keys for the leader's reconcilers (client-go's workqueue, small).

Owns the three rules a reconciler relies on: a key waits in the queue at most once however
often it is added (ten changes of one object before the worker gets to it cost one sync); a
key being processed is never handed to a second worker, and if it is added meanwhile it comes
back once the worker is done (the change is never lost); a key whose sync failed comes back
after a delay that doubles per consecutive failure up to a cap, and a success resets it.
Delays run on the event loop's clock (``loop.call_later``), so a cancelled reconciler leaves
nothing behind but timer handles that add to a dead queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class KeyedQueue(Generic[K]):
    def __init__(self, *, base_delay_s: float = 0.2, max_delay_s: float = 30.0) -> None:
        self._base = base_delay_s
        self._max = max_delay_s
        self._order: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._again: set[K] = set()
        self._failures: dict[K, int] = {}

    def add(self, key: K) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._order.put_nowait(key)

    def add_after(self, key: K, delay_s: float) -> None:
        asyncio.get_running_loop().call_later(delay_s, self.add, key)

    async def get(self) -> K:
        key = await self._order.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: K, *, failed: bool = False) -> float | None:
        """The worker finished ``key``; on failure it is re-added after the returned delay."""
        self._active.discard(key)
        again = key in self._again
        self._again.discard(key)
        delay: float | None = None
        if failed:
            count = self._failures.get(key, 0)
            self._failures[key] = count + 1
            delay = min(self._base * (2**count), self._max)
        else:
            self._failures.pop(key, None)
        if again:  # changed while it was being worked on: at once, whatever the outcome
            self.add(key)
        elif delay is not None:
            self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """Drop the failure count of ``key`` (the object is gone)."""
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._queued)
