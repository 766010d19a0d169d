"""The benchmarks' latency model (bench/latency_store.py): delays, never semantics."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from spiderpool_controller.store.sqlite import SqliteStore

from tests.fake_clock import FakeClock
from tests.waiting import wait_for_async

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from latency_store import LatencyStore


def obj(kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": kind, "metadata": {"name": name}}


async def test_write_latency_is_paid_per_call_and_overlaps_across_callers(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    """Each write waits the modelled round trip, and concurrent writes wait together, not in turn."""
    clock = fake_clock
    store = LatencyStore(SqliteStore(tmp_path / "state.db"), write_latency_s=0.25, sleep=clock.sleep)
    one = asyncio.create_task(store.create(obj("SpiderIPPool", "one")))
    await wait_for_async(lambda: clock.sleeping == 1, "the write to wait its latency")
    clock.advance(0.125)
    await asyncio.sleep(0)  # a yield, not a delay: let the write run if it (wrongly) could
    assert not one.done()
    clock.advance(0.125)
    await one
    ten = asyncio.gather(*(store.create(obj("SpiderIPPool", f"p{i}")) for i in range(10)))
    await wait_for_async(lambda: clock.sleeping == 10, "all ten writes waiting at once")
    clock.advance(0.25)  # one latency for all ten: had they waited in turn, one would be sleeping
    await ten
    items, _ = await store.list("SpiderIPPool")
    assert len(items) == 11
    await store.close()


async def test_read_latency_applies_to_reads_only(tmp_path: Path, fake_clock: FakeClock) -> None:
    """With only a read latency, reads wait and writes do not."""
    clock = fake_clock
    store = LatencyStore(SqliteStore(tmp_path / "state.db"), read_latency_s=0.25, sleep=clock.sleep)
    await store.create(obj("SpiderIPPool", "p1"))  # no time passes, yet it completes
    get = asyncio.create_task(store.get("SpiderIPPool", "p1"))
    await wait_for_async(lambda: clock.sleeping == 1, "the read to wait its latency")
    assert not get.done()
    clock.advance(0.25)
    assert (await get)["metadata"]["name"] == "p1"
    await store.close()
