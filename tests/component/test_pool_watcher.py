"""The leader learns of pools written by others (kubectl, in a cluster) through the Store's watch."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from spiderpool_controller.pool_watcher import PoolWatcher
from spiderpool_controller.store.sqlite import SqliteStore

from tests.component.engine_fixtures import new_engine, pool_manifest, request
from tests.waiting import wait_for_async


async def test_pools_created_changed_and_deleted_behind_the_engine_reach_it(tmp_path: Path) -> None:
    """A pool created directly in the store becomes allocatable, a spec change is adopted with the
    engine's records kept, and a deleted pool leaves the engine."""
    store = SqliteStore(tmp_path / "db", history_events=50)
    engine, _ = await new_engine(tmp_path / "db", store)
    watcher = PoolWatcher(store, engine)
    task = asyncio.create_task(watcher.run())
    try:
        await store.create(pool_manifest("w", "10.70.0.0/24", ["10.70.0.1-10.70.0.5"], default=True))
        await wait_for_async(lambda: "w" in engine.pool_states(), "the created pool")
        got = await engine.allocate(request(1))
        assert [a.address for a in got.ips] == ["10.70.0.1/24"]
        obj = await store.get("SpiderIPPool", "w")
        obj["spec"]["gateway"] = "10.70.0.254"
        await store.update(obj)
        await wait_for_async(
            lambda: engine.pool_states()["w"].gateway == "10.70.0.254", "the changed gateway"
        )
        assert len(engine.pool_states()["w"].allocated) == 1
        await store.create(pool_manifest("gone", "10.71.0.0/24", ["10.71.0.1"]))
        await wait_for_async(lambda: "gone" in engine.pool_states(), "the second pool")
        await store.delete("SpiderIPPool", "gone")
        await wait_for_async(lambda: "gone" not in engine.pool_states(), "the deleted pool to leave")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await engine.close()
