"""The benchmarks' latency model (bench/latency_store.py): delays, never semantics."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from spiderpool_controller.store.sqlite import SqliteStore

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from latency_store import LatencyStore


def obj(kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": kind, "metadata": {"name": name}}


async def test_write_latency_is_paid_per_call_and_overlaps_across_callers(tmp_path: Path) -> None:
    """Each write waits the modelled round trip, and concurrent writes wait together, not in turn."""
    latency = 0.1
    store = LatencyStore(SqliteStore(tmp_path / "state.db"), write_latency_s=latency)
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
    store = LatencyStore(SqliteStore(tmp_path / "state.db"), read_latency_s=latency)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await store.create(obj("SpiderIPPool", "p1"))
    assert loop.time() - started < latency
    started = loop.time()
    await store.get("SpiderIPPool", "p1")
    assert loop.time() - started >= latency
    await store.close()
