"""What the SQLite backend adds to the contract: persistence, bounded history, honest failures."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from spiderpool_common.errors import InvalidRequest
from spiderpool_controller.store.contract import Gone, Obj, StoreUnavailable, WatchEvent
from spiderpool_controller.store.sqlite import SqliteStore

KIND = "SpiderIPPool"
DEADLINE_S = 5.0


def pool(name: str, **sections: Any) -> Obj:
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": KIND,
        "metadata": {"name": name},
        **sections,
    }


async def take(events: AsyncIterator[WatchEvent], count: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    async with asyncio.timeout(DEADLINE_S):
        while len(out) < count:
            event = await anext(events)
            out.append((event.type, event.object["metadata"]["name"]))
    return out


async def test_state_and_history_survive_reopening_the_file(tmp_path: Path) -> None:
    """After close and reopen, objects, the version counter and the watch history are all still there."""
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    _, start_rv = await store.list(KIND)
    created = await store.create(pool("p1", spec={"subnet": "10.0.0.0/24"}))
    updated = await store.update_status({**created, "status": {"allocatedIPCount": 1}})
    await store.close()

    reopened = SqliteStore(path)
    assert await reopened.get(KIND, "p1") == updated
    later = await reopened.create(pool("p2"))
    assert int(later["metadata"]["resourceVersion"]) > int(updated["metadata"]["resourceVersion"])
    events = reopened.watch(KIND, resource_version=start_rv)
    assert await take(events, 3) == [("ADDED", "p1"), ("MODIFIED", "p1"), ("ADDED", "p2")]
    await reopened.close()


async def test_file_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    """The file is a WAL database and the store's connection fsyncs every commit."""
    store = SqliteStore(tmp_path / "state.db")
    await store.create(pool("p1"))
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with sqlite3.connect(tmp_path / "state.db") as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.integrity_check() == "ok"
    await store.close()


async def test_history_is_bounded_by_bytes_for_large_objects(tmp_path: Path) -> None:
    """Large statuses trim old events to the byte budget; a watch from before the trim gets Gone."""
    store = SqliteStore(tmp_path / "state.db", history_bytes=1_000_000)
    created = await store.create(pool("big"))
    blob = "x" * 200_000
    obj = created
    for i in range(12):
        obj = await store.update_status({**obj, "status": {"n": i, "blob": blob}})
    with sqlite3.connect(tmp_path / "state.db") as raw:
        retained = raw.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM events").fetchone()
    assert retained[0] <= 1_000_000
    assert 1 <= retained[1] < 13
    with pytest.raises(Gone):
        async for _ in store.watch(KIND, resource_version=created["metadata"]["resourceVersion"]):
            pass
    await store.close()


async def test_history_keeps_the_newest_event_even_when_it_alone_exceeds_the_budget(tmp_path: Path) -> None:
    """An event larger than the byte budget is still retained, so a watch just behind it sees it."""
    store = SqliteStore(tmp_path / "state.db", history_bytes=1_000)
    created = await store.create(pool("big"))
    events = store.watch(KIND, resource_version=created["metadata"]["resourceVersion"])
    await store.update_status({**created, "status": {"blob": "y" * 5_000}})
    assert await take(events, 1) == [("MODIFIED", "big")]
    await store.close()


async def test_a_locked_file_makes_writes_unavailable_not_wrong(tmp_path: Path) -> None:
    """While another connection holds the write lock, writes raise StoreUnavailable; afterwards they work."""
    path = tmp_path / "state.db"
    store = SqliteStore(path, busy_timeout_s=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreUnavailable, match="locked"):
        await store.create(pool("p1"))
    other.execute("ROLLBACK")
    other.close()
    assert (await store.create(pool("p1")))["metadata"]["name"] == "p1"
    await store.close()


def test_a_file_that_is_not_a_database_is_reported_unavailable(tmp_path: Path) -> None:
    """Opening garbage raises StoreUnavailable naming the file."""
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not an sqlite file at all" * 100)
    with pytest.raises(StoreUnavailable, match=r"state\.db"):
        SqliteStore(path)


async def test_closing_ends_running_watches_and_refuses_calls(tmp_path: Path) -> None:
    """close() ends the iteration of open watches and later calls raise StoreUnavailable."""
    store = SqliteStore(tmp_path / "state.db")
    events = store.watch(KIND)
    consumer = asyncio.create_task(take(events, 1))
    await asyncio.sleep(0)  # let the watch block: a yield, not a delay
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await consumer
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.get(KIND, "p1")


async def test_malformed_requests_are_invalid(tmp_path: Path) -> None:
    """Bad names, namespaces, watch versions and non-JSON values are refused before any write."""
    store = SqliteStore(tmp_path / "state.db")
    with pytest.raises(InvalidRequest, match="name"):
        await store.create(pool("Upper_Case"))
    with pytest.raises(InvalidRequest, match="namespace"):
        await store.create({**pool("p1"), "metadata": {"name": "p1", "namespace": "Bad NS"}})
    with pytest.raises(InvalidRequest, match="JSON"):
        await store.create(pool("p1", spec={"when": object()}))
    with pytest.raises(InvalidRequest, match="kind"):
        await store.create({"metadata": {"name": "p1"}})
    with pytest.raises(InvalidRequest, match="resourceVersion"):
        store.watch(KIND, resource_version="latest")
    items, rv = await store.list(KIND)
    assert (items, rv) == ([], "0")
    await store.close()
