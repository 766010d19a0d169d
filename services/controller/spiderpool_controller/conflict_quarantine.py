"""Addresses another host answered for, kept out of allocation for a while.

When the agent's ARP/NDP probe finds the address it was given already in use (an
unmanaged host, a stale static configuration), the ADD fails and the address is released
(upstream #3081). Since allocation always takes the lowest free address, a plain release
would hand the same address to the retry, which would conflict again; so a released
conflicting address sits here until its time runs out. Kept in memory only: after a
controller restart a conflict is simply detected once more.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from spiderpool_controller.domain.ipset import IPSet


class ConflictQuarantine:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._until: dict[tuple[str, int], dict[int, float]] = {}  # (pool, version) -> ip -> expiry

    def add(self, pool: str, version: int, ip: int) -> None:
        if self._seconds > 0:
            self._until.setdefault((pool, version), {})[ip] = self._clock() + self._seconds

    def blocked(self, pool: str, version: int) -> IPSet:
        """The pool's quarantined addresses now (expired ones are forgotten)."""
        entries = self._until.get((pool, version))
        if not entries:
            return IPSet.empty(version)
        now = self._clock()
        for ip in [ip for ip, until in entries.items() if until <= now]:
            del entries[ip]
        return IPSet.from_ints(version, entries)
