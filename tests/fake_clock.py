"""A clock that moves only when the test moves it, for code that takes ``clock``/``sleep``.

Timing behaviour (a latency is paid, waits overlap, a deadline is near) is asserted
against this clock instead of the wall clock, so it holds on a loaded machine: ``now``
is read by calling the clock, ``sleep`` suspends until ``advance`` moves time past the
sleeper's due time, and ``sleeping`` counts who is waiting.
"""

from __future__ import annotations

import asyncio


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    @property
    def sleeping(self) -> int:
        """How many ``sleep`` calls are waiting for time to pass."""
        return sum(not future.done() for _, future in self._sleepers)

    async def sleep(self, delay: float) -> None:
        """Return once ``advance`` has moved the clock ``delay`` seconds past now."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + delay, future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper now due."""
        self.now += seconds
        due = [future for at, future in self._sleepers if at <= self.now]
        self._sleepers = [(at, future) for at, future in self._sleepers if at > self.now]
        for future in due:
            if not future.done():
                future.set_result(None)
