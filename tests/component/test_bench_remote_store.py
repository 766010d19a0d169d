"""The allocation benchmark's shared store: the Store contract suite through the bench store
server's socket, its latency overlapping across clients, and its call counts."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from spiderpool_controller.store.contract import StaleResourceVersion, Store, StoreUnavailable
from spiderpool_controller.store.sqlite import SqliteStore

from tests.component import test_store_contract as contract
from tests.fake_clock import FakeClock
from tests.waiting import wait_for_async

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from latency_store import LatencyStore
from remote_store import RemoteStore
from store_server import StoreServer

# Every test of the contract suite runs here too, with ``store`` below: a RemoteStore
# talking to a StoreServer that serves a SqliteStore.
globals().update({name: test for name, test in vars(contract).items() if name.startswith("test_")})


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))  # short: unix socket paths are limited
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def serve(inner: Store, socket_dir: Path) -> tuple[StoreServer, RemoteStore]:
    server = StoreServer(inner)
    await server.start(socket_dir / "store.sock")
    return server, await RemoteStore.connect(socket_dir / "store.sock")


@pytest.fixture
async def store(socket_dir: Path) -> AsyncIterator[Store]:
    inner = SqliteStore(socket_dir / "state.db", history_events=contract.HISTORY)
    server, remote = await serve(inner, socket_dir)
    yield remote
    await remote.close()
    await server.stop()
    await inner.close()


async def test_latency_waits_of_concurrent_clients_overlap(socket_dir: Path, fake_clock: FakeClock) -> None:
    """Ten clients writing at once through the server pay one modelled round trip, not ten."""
    inner = LatencyStore(SqliteStore(socket_dir / "state.db"), write_latency_s=0.25, sleep=fake_clock.sleep)
    server = StoreServer(inner)
    await server.start(socket_dir / "store.sock")
    clients = [await RemoteStore.connect(socket_dir / "store.sock") for _ in range(10)]
    ten = asyncio.gather(*(c.create(contract.pool(f"p{i}")) for i, c in enumerate(clients)))
    await wait_for_async(lambda: fake_clock.sleeping == 10, "all ten writes waiting at the server at once")
    fake_clock.advance(0.25)  # one latency for all ten: had they waited in turn, one would be sleeping
    await ten
    items, _ = await clients[0].list(contract.KIND)
    assert len(items) == 10
    for c in clients:
        await c.close()
    await server.stop()
    await inner.close()


async def test_stats_count_each_operation_by_kind_and_outcome(store: Store, socket_dir: Path) -> None:
    """The server counts successful writes and 409 conflicts per operation and kind."""
    assert isinstance(store, RemoteStore)
    created = await store.create(contract.pool("p1"))
    await store.update_status({**created, "status": {"allocatedIPCount": 1}})
    with pytest.raises(StaleResourceVersion):
        await store.update_status({**created, "status": {"allocatedIPCount": 2}})
    await store.get(contract.KIND, "p1")
    counts = await store.stats()
    assert counts[("create", contract.KIND, "ok")] == 1
    assert counts[("update_status", contract.KIND, "ok")] == 1
    assert counts[("update_status", contract.KIND, "StaleResourceVersion")] == 1
    assert counts[("get", contract.KIND, "ok")] == 1


async def test_a_lost_server_fails_pending_and_later_calls(socket_dir: Path) -> None:
    """When the server goes away, a pending call and every later call raise StoreUnavailable."""
    clock = FakeClock()  # never advanced: the write stays in flight at the server
    inner = LatencyStore(SqliteStore(socket_dir / "state.db"), write_latency_s=5.0, sleep=clock.sleep)
    server, remote = await serve(inner, socket_dir)
    pending = asyncio.create_task(remote.create(contract.pool("slow")))
    await wait_for_async(lambda: clock.sleeping == 1, "the write to reach the server")
    await server.stop()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(StoreUnavailable):
        await remote.get(contract.KIND, "slow")
    await remote.close()
    await inner.close()
