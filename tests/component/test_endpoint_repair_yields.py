"""The endpoint repair after a start never holds the event loop for the whole engine's records:
a controller restarted with 10,000 allocations must serve at once, so requests run between chunks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from spiderpool_controller.ipam_engine import REPAIR_CHUNK

from tests.component.engine_fixtures import new_engine, pool_manifest, request


async def test_other_coroutines_run_between_chunks_of_the_repair(tmp_path: Path) -> None:
    """With 4 chunks' worth of records and endpoints, a ticker coroutine runs at least once per
    chunk while repair_endpoints works (it ran zero times when the repair was one loop)."""
    count = REPAIR_CHUNK * 4
    engine, store = await new_engine(tmp_path / "s.db", endpoint_resync_s=0)
    await store.create(pool_manifest("big", "10.80.0.0/16", ["10.80.0.1-10.80.40.0"]))
    await engine.pool_changed(await store.get("SpiderIPPool", "big"))
    await asyncio.gather(*(engine.allocate(request(i, default_ipv4_pools=("big",))) for i in range(count)))
    await engine.flush_endpoints()
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    try:
        await engine.repair_endpoints()
    finally:
        done = True
        await task
    assert ticks - before >= 2 * 4  # the stored endpoints' pass and the records' pass, 4 chunks each
    await engine.close()
    await store.close()
