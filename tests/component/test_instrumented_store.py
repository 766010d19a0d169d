"""InstrumentedStore: counts and times calls per operation and kind, and adds no delay."""

from __future__ import annotations

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


async def test_times_each_operation_without_delaying_it(tmp_path: Path) -> None:
    """Durations, read from the injected clock around each call, are summed per operation."""
    readings = iter([10.0, 10.5, 20.0, 20.25, 30.0, 30.25])
    store = InstrumentedStore(SqliteStore(tmp_path / "state.db"), clock=lambda: next(readings))
    await store.create(obj("SpiderIPPool", "p1"))
    await store.get("SpiderIPPool", "p1")
    await store.get("SpiderIPPool", "p1")
    assert dict(store.seconds) == {"create": 0.5, "get": 0.5}
    assert not hasattr(store, "write_latency_s")
    await store.close()
