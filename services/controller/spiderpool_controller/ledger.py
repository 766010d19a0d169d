"""The engine's ledger: every pool's state, who holds which address, and durable changes.

Owns the one rule that keeps memory and store in step: an allocation record changes only
through ``take``, ``rebind`` and ``release`` here, each applied to the pool state *and* the
attachment index at once (so the next request already sees it), then handed to the pool's
``PoolWriter`` (group commit); ``commit`` returns once every write holding the changes is
durable, and a failed write reverts exactly its changes in both places. Nothing here
decides which address or pool: that is the engine's and ``domain``'s.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from spiderpool_controller.attachment_index import AttachmentIndex, Held
from spiderpool_controller.domain.ipset import IPSet
from spiderpool_controller.domain.models import AllocationRecord, IPPool
from spiderpool_controller.domain.pool_state import PoolState
from spiderpool_controller.pool_writer import Change, PoolWriter
from spiderpool_controller.store.contract import Store

ChangesByPool = dict[str, list[Change]]


class CommitFailed(Exception):
    """Some pool writes failed; ``failed`` maps pool -> error, ``written`` the durable rest."""

    def __init__(self, failed: dict[str, BaseException], written: ChangesByPool) -> None:
        first = next(iter(failed.values()))
        super().__init__(str(first))
        self.failed = failed
        self.written = written


class Ledger:
    def __init__(self, store: Store, on_written: Callable[[list[Change]], None]) -> None:
        self._store = store
        self._on_written = on_written
        self.pools: dict[str, PoolState] = {}
        self.models: dict[str, IPPool] = {}
        self.index = AttachmentIndex()
        self.reserved_sets: dict[int, IPSet] = {4: IPSet.empty(4), 6: IPSet.empty(6)}
        self._writers: dict[str, PoolWriter] = {}
        # A counter bumped by every take and rebind, remembered per address: GC judges only
        # records whose number is not above the one it read before reading the pods.
        self.sequence = 0
        self._record_seq: dict[tuple[str, int], int] = {}

    # -- pools ------------------------------------------------------------------------
    def install(self, state: PoolState) -> None:
        old = self.pools.get(state.name)
        if old is not None:
            for ip, rec in old.allocated.items():
                self.index.remove(old.name, ip, rec)
        self.pools[state.name] = state
        self.models[state.name] = state.pool
        for ip, rec in state.allocated.items():
            self.index.add(state.name, ip, rec)

    def drop(self, name: str) -> PoolState | None:
        state = self.pools.pop(name, None)
        self.models.pop(name, None)
        self._writers.pop(name, None)
        if state is not None:
            for ip, rec in state.allocated.items():
                self.index.remove(name, ip, rec)
        return state

    def reserved(self, version: int) -> IPSet:
        return self.reserved_sets[version]

    def record(self, held: Held) -> AllocationRecord | None:
        state = self.pools.get(held.pool)
        return None if state is None else state.allocated.get(held.ip)

    def records(self, identity: str, nic: str) -> list[tuple[PoolState, int, AllocationRecord]]:
        """The attachment's addresses with their pool state and record, in index order."""
        out = []
        for held in self.index.held(identity, nic):
            state = self.pools.get(held.pool)
            rec = state.allocated.get(held.ip) if state is not None else None
            if state is not None and rec is not None:
                out.append((state, held.ip, rec))
        return out

    # -- changes in memory ------------------------------------------------------------
    def _stamp(self, pool: str, ip: int) -> None:
        self.sequence += 1
        self._record_seq[(pool, ip)] = self.sequence

    def record_sequence(self, pool: str, ip: int) -> int:
        """The take/rebind number of the record at ``ip`` (0: loaded at start)."""
        return self._record_seq.get((pool, ip), 0)

    def record_sequences(self) -> dict[tuple[str, int], int]:
        """A copy of every record's take/rebind number (one C-level copy, no per-record work)."""
        return dict(self._record_seq)

    def take(self, pool: str, ip: int, rec: AllocationRecord) -> Change:
        self.pools[pool].take(ip, rec)
        self.index.add(pool, ip, rec)
        self._stamp(pool, ip)
        return Change(ip, rec, "take")

    def rebind(self, pool: str, ip: int, new: AllocationRecord) -> Change:
        state = self.pools[pool]
        old = state.allocated[ip]
        self.index.remove(pool, ip, old)
        state.replace(ip, new)
        self.index.add(pool, ip, new)
        self._stamp(pool, ip)
        return Change(ip, new, "rebind", previous=old)

    def give_back(self, pool: str, ip: int, released_at: float | None = None) -> Change | None:
        """Release ``ip``; ``released_at`` (wall time) starts its reuse delay, if the pool has one."""
        state = self.pools.get(pool)
        rec = state.allocated.get(ip) if state is not None else None
        if state is None or rec is None:
            return None
        state.give_back(ip, released_at)
        self.index.remove(pool, ip, rec)
        return Change(ip, rec, "release")

    def revert(self, pool: str, changes: Iterable[Change]) -> None:
        """Undo changes (newest first) in the pool state and the index."""
        state = self.pools.get(pool)
        if state is None:
            return
        for change in changes:
            if change.kind == "take":
                if state.allocated.get(change.ip) is change.record:
                    state.give_back(change.ip)
                    state.forget(change.ip)
                    self.index.remove(pool, change.ip, change.record)
            elif change.kind == "release":
                if change.ip not in state.allocated:
                    state.restore(change.ip, change.record)
                    self.index.add(pool, change.ip, change.record)
            elif (
                change.kind == "rebind"
                and change.previous is not None
                and state.allocated.get(change.ip) is change.record
            ):
                self.index.remove(pool, change.ip, change.record)
                state.allocated[change.ip] = change.previous
                self.index.add(pool, change.ip, change.previous)

    # -- durability -------------------------------------------------------------------
    def writer(self, pool: str) -> PoolWriter:
        writer = self._writers.get(pool)
        if writer is None:
            writer = PoolWriter(
                pool,
                self._store,
                get_state=lambda: self.pools[pool],
                set_state=self._replace_state,
                reserved=self.reserved,
                revert=lambda changes: self.revert(pool, changes),
                on_written=self._on_written,
            )
            self._writers[pool] = writer
        return writer

    def _replace_state(self, state: PoolState) -> None:
        self.pools[state.name] = state
        self.models[state.name] = state.pool

    async def commit(self, by_pool: ChangesByPool) -> None:
        """Return once every pool's changes are durable; raise ``CommitFailed`` otherwise
        (the failed pools' changes are already reverted, the written ones are not)."""
        pools = [p for p, changes in by_pool.items() if changes]
        results: list[Any] = await asyncio.gather(
            *(self.writer(p).submit(by_pool[p]) for p in pools), return_exceptions=True
        )
        failed = {p: r for p, r in zip(pools, results, strict=True) if isinstance(r, BaseException)}
        if failed:
            written = {p: by_pool[p] for p in pools if p not in failed}
            raise CommitFailed(failed, written)

    async def write_status(self, pool: str) -> None:
        """Write the pool's status with no record change (counters after a spec change)."""
        await self.writer(pool).submit([])

    def status_writes(self) -> int:
        return sum(w.writes for w in self._writers.values())

    async def drain(self) -> None:
        for writer in list(self._writers.values()):
            await writer.drain()


def group(changes: Iterable[tuple[str, Change]]) -> ChangesByPool:
    by_pool: ChangesByPool = defaultdict(list)
    for pool, change in changes:
        by_pool[pool].append(change)
    return dict(by_pool)
