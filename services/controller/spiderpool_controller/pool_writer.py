"""Group commit of one pool's status: every change that arrives while a write is in flight
goes out together in the next write.

This is the design's answer to the peers' main weakness (architecture.md, "Processes and
contracts"): upstream's agents and Whereabouts write one hot object per request with
optimistic concurrency, and collapse into conflict retries under load. Here the engine
applies a change to the pool's in-memory state at once (so the next request already sees
the address as taken), then hands it to this writer; the caller is answered only when a
write containing its change has been acknowledged by the store, i.e. is durable.

A conflict on write (someone changed the pool's spec, so its resourceVersion moved) is
not an error: the writer re-reads the object, keeps its own allocation records (the
controller is their only writer) and writes again. Any other failure rolls the batch back
in memory (through the owner's ``revert``, which keeps its index in step with the pool
state) and fails its callers. ``on_written`` hears every durable batch (the engine marks
the SpiderEndpoints the changes touch from there, so a cancelled request cannot skip it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from spiderpool_controller.domain.ipset import IPSet
from spiderpool_controller.domain.models import KIND_IPPOOL, AllocationRecord
from spiderpool_controller.domain.pool_state import PoolState
from spiderpool_controller.store.contract import StaleResourceVersion, Store

log = structlog.get_logger(__name__)

MAX_CONFLICT_RETRIES = 16
LINGER_FRACTION = 0.6  # of the previous write's duration
MAX_LINGER_S = 0.003


@dataclass
class Change:
    """One address taken, returned, or re-bound in a pool (already applied in memory)."""

    ip: int
    record: AllocationRecord  # the new record (take, rebind) or the removed one (release)
    kind: str  # "take" | "release" | "rebind"
    previous: AllocationRecord | None = None  # rebind: the record it replaced


@dataclass
class _Batch:
    changes: list[Change] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class PoolWriter:
    """Serialises and batches status writes of one pool."""

    def __init__(
        self,
        name: str,
        store: Store,
        *,
        get_state: Callable[[], PoolState],
        set_state: Callable[[PoolState], None],
        reserved: Callable[[int], IPSet],
        revert: Callable[[list[Change]], None],
        on_written: Callable[[list[Change]], None] | None = None,
    ) -> None:
        self.name = name
        self._store = store
        self._get_state = get_state
        self._set_state = set_state
        self._reserved = reserved
        self._revert = revert
        self._on_written = on_written
        self._pending = _Batch()
        self._task: asyncio.Task[None] | None = None
        self._last_write_s = 0.0
        self._last_batch_callers = 0
        self.writes = 0  # status writes attempted (conflicts included)

    def submit(self, changes: list[Change]) -> asyncio.Future[None]:
        """Queue changes already applied in memory; the future resolves once durable."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.changes.extend(changes)
        self._pending.waiters.append(fut)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"pool-writer-{self.name}")
        return fut

    async def _run(self) -> None:
        while self._pending.waiters:
            if self._last_batch_callers > 1:
                # Under concurrency, callers answered by the previous write come back within
                # about a round trip; waiting a fraction of a (slow) write for them lets one
                # write carry both halves instead of two half-full writes leapfrogging each
                # other. A lone caller (last batch of one) never waits.
                await asyncio.sleep(min(LINGER_FRACTION * self._last_write_s, MAX_LINGER_S))
            batch, self._pending = self._pending, _Batch()
            self._last_batch_callers = len(batch.waiters)
            try:
                await self._write(batch)
            except Exception as exc:  # the store failed: undo the batch, fail its callers
                self._revert(list(reversed(batch.changes)))
                log.warning("pool_write_failed", pool=self.name, error=str(exc), changes=len(batch.changes))
                for fut in batch.waiters:
                    if not fut.done():
                        fut.set_exception(exc)
            else:
                for fut in batch.waiters:
                    if not fut.done():
                        fut.set_result(None)

    async def _write(self, batch: _Batch) -> None:
        for _ in range(MAX_CONFLICT_RETRIES):
            state = self._get_state()
            obj = _status_object(state, self._reserved(state.version))
            self.writes += 1
            started = time.perf_counter()
            try:
                written = await self._store.update_status(obj)
            except StaleResourceVersion:
                fresh = await self._store.get(KIND_IPPOOL, self.name)
                # Changes queued meanwhile ride along with this write (they are in memory).
                batch.changes.extend(self._pending.changes)
                batch.waiters.extend(self._pending.waiters)
                self._pending = _Batch()
                self._set_state(self._get_state().with_spec_of(fresh))
                continue
            self._last_write_s = time.perf_counter() - started
            state = self._get_state()
            state.resource_version = str(written["metadata"]["resourceVersion"])
            for change in batch.changes:
                if change.kind == "release":
                    state.forget(change.ip)
            if self._on_written is not None:
                self._on_written(batch.changes)
            return
        raise StaleResourceVersion(f"SpiderIPPool {self.name!r}: too many concurrent changes, try again")

    async def drain(self) -> None:
        """Wait until nothing is pending (graceful shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)


def _status_object(state: PoolState, reserved: IPSet) -> dict[str, Any]:
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": KIND_IPPOOL,
        "metadata": {"name": state.name, "resourceVersion": state.resource_version},
        "status": state.status(reserved),
    }
