"""The baseline the allocation benchmark compares group commit against.

One compare-and-swap status write per request, retried on conflict, reading the pool from
the store each time: the way upstream's agents (and Whereabouts) write one hot object.
It is correct (CAS forbids a lost update, so never a duplicate), only slow under
concurrency: every retry re-reads and re-serialises the whole allocation map. Enabled
with ``--group-commit false``; never the default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from spiderpool_common.errors import PoolExhausted, Unavailable

from spiderpool_controller.domain.ipset import IPSet
from spiderpool_controller.domain.models import KIND_IPPOOL, AllocationRecord
from spiderpool_controller.domain.pool_state import PoolState
from spiderpool_controller.store.contract import StaleResourceVersion, Store


class CasWriter:
    def __init__(
        self,
        store: Store,
        *,
        reserved: Callable[[int], IPSet],
        max_allocated_ips: int,
        retries: int,
        adopt: Callable[[dict[str, Any]], None],
    ) -> None:
        self._store = store
        self._reserved = reserved
        self._max = max_allocated_ips
        self._retries = retries
        self._adopt = adopt
        self.writes = 0  # status writes attempted, conflicts included

    async def take(self, names: Iterable[str], version: int, rec: AllocationRecord) -> tuple[str, int]:
        """Write ``rec`` at the lowest free address of the first pool that has one."""
        tried: list[str] = []
        for name in names:
            tried.append(name)
            for _ in range(self._retries):
                obj = await self._store.get(KIND_IPPOOL, name)
                state = PoolState.from_object(obj)
                ip = state.lowest_free(self._reserved(version))
                if ip is None or len(state.allocated) >= self._max:
                    break
                state.take(ip, rec)
                obj["status"] = state.status(self._reserved(version))
                self.writes += 1
                try:
                    written = await self._store.update_status(obj)
                except StaleResourceVersion:
                    continue
                self._adopt(written)
                return name, ip
            else:
                raise Unavailable(f"IPPool {name}: too many conflicting writes, try again")
        raise PoolExhausted(
            f"no free IPv{version} address for {rec.interface} in IPPools [{', '.join(tried)}]"
        )

    async def release(self, pool: str, ips: Iterable[int]) -> None:
        wanted = list(ips)
        for _ in range(self._retries):
            obj = await self._store.get(KIND_IPPOOL, pool)
            state = PoolState.from_object(obj)
            for ip in wanted:
                state.give_back(ip)
            obj["status"] = state.status(self._reserved(state.version))
            self.writes += 1
            try:
                written = await self._store.update_status(obj)
            except StaleResourceVersion:
                continue
            self._adopt(written)
            return
        raise Unavailable(f"IPPool {pool}: too many conflicting writes, try again")
