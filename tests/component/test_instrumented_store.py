"""InstrumentedStore: counts calls per operation and kind, and models API server latency."""

from __future__ import annotations

import asyncio
from pathlib import Path

from spiderpool_controller.store.contract import Obj, Store
from spiderpool_controller.store.instrumented import InstrumentedStore
from spiderpool_controller.store.sqlite import SqliteStore


def obj(kind: str, name: str) -> Obj:
    return {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": kind, "metadata": {"name": name}}


async def test_counts_each_operation_per_kind(tmp_path: Path) -> None:
    """Every call is counted under (operation, kind) and writes() sums the write operations."""
    store = InstrumentedStore(SqliteStore(tmp_path / "state.db"))
    typed: Store = store  # the wrapper satisfies the contract it wraps
    pool = await typed.create(obj("SpiderIPPool", "p1"))
    await typed.update_status({**pool, "status": {"allocatedIPCount": 1}})
    await typed.update_status({**pool, "metadata": {"name": "p1"}, "status": {"allocatedIPCount": 2}})
    await typed.create(obj("SpiderSubnet", "s1"))
    await typed.get("SpiderIPPool", "p1")
    await typed.list("SpiderIPPool")
    await typed.delete("SpiderSubnet", "s1")
    assert store.counts[("update_status", "SpiderIPPool")] == 2
    assert store.counts[("get", "SpiderIPPool")] == 1
    assert store.writes() == 5
    assert store.writes(kind="SpiderIPPool") == 3
    assert store.writes(op="update_status") == 2
    assert store.writes(kind="SpiderSubnet", op="delete") == 1
    await store.close()


async def test_write_latency_is_paid_per_call_and_overlaps_across_callers(tmp_path: Path) -> None:
    """Each write waits the modelled round trip, and concurrent writes wait together, not in turn."""
    latency = 0.1
    store = InstrumentedStore(SqliteStore(tmp_path / "state.db"), write_latency_s=latency)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await store.create(obj("SpiderIPPool", "one"))
    assert loop.time() - started >= latency
    started = loop.time()
    await asyncio.gather(*(store.create(obj("SpiderIPPool", f"p{i}")) for i in range(10)))
    elapsed = loop.time() - started
    assert latency <= elapsed < 10 * latency * 0.9
    items, _ = await store.list("SpiderIPPool")
    assert len(items) == 11
    await store.close()


async def test_read_latency_applies_to_reads_only(tmp_path: Path) -> None:
    """With only a read latency, get and list wait and writes do not."""
    latency = 0.2
    store = InstrumentedStore(SqliteStore(tmp_path / "state.db"), read_latency_s=latency)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await store.create(obj("SpiderIPPool", "p1"))
    assert loop.time() - started < latency
    started = loop.time()
    await store.get("SpiderIPPool", "p1")
    assert loop.time() - started >= latency
    events = store.watch("SpiderIPPool")
    assert store.counts[("watch", "SpiderIPPool")] == 1
    assert store.writes() == 1
    await events.aclose()  # type: ignore[attr-defined]
    await store.close()
