"""A SpiderEndpoint change costs one API call, not a read and a write: the writer remembers what it
last wrote, and reads the object only for a pod it has not written, after a conflict, or when a
repair found the stored object changed behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spiderpool_controller.domain.models import KIND_ENDPOINT
from spiderpool_controller.ipam_engine import EngineSettings, IpamEngine
from spiderpool_controller.store.sqlite import SqliteStore

from tests.component.engine_fixtures import pool_manifest, request


class CountingStore(SqliteStore):
    """The SQLite store, counting reads of SpiderEndpoints."""

    endpoint_gets = 0

    async def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any]:
        if kind == KIND_ENDPOINT:
            self.endpoint_gets += 1
        return await super().get(kind, name, namespace)


async def test_updates_and_deletes_of_a_known_endpoint_are_not_preceded_by_a_read(tmp_path: Path) -> None:
    """One read when the pod is first seen; a second NIC (an update) and the releases (the delete)
    read nothing, and the stored endpoint follows every change."""
    store = CountingStore(tmp_path / "s.db")
    await store.create(pool_manifest("p", "10.70.0.0/24", ["10.70.0.10-10.70.0.50"]))
    engine = IpamEngine(store, EngineSettings(endpoint_resync_s=0))
    await engine.start()
    try:
        await engine.flush_endpoints()
        await engine.allocate(request(1, default_ipv4_pools=("p",)))
        await engine.flush_endpoints()
        assert store.endpoint_gets == 1
        await engine.allocate(request(1, ifname="net1", default_ipv4_pools=("p",)))
        await engine.flush_endpoints()
        stored = await store.get(KIND_ENDPOINT, "pod-1", "ns")
        assert sorted(d["interface"] for d in stored["status"]["current"]["ips"]) == ["eth0", "net1"]
        await engine.release("uid-1", "eth0", container_id="cid-1")
        await engine.release("uid-1", "net1", container_id="cid-1")
        gets_before_delete = store.endpoint_gets
        await engine.flush_endpoints()
        assert store.endpoint_gets == gets_before_delete  # the delete read nothing
        assert (await store.list(KIND_ENDPOINT))[0] == []
        assert store.endpoint_gets == 2  # the first sight and this test's own read
    finally:
        await engine.close()
        await store.close()


async def test_an_endpoint_changed_behind_the_writer_is_put_back_by_the_repair(tmp_path: Path) -> None:
    """A status edited by someone else (same digest remembered by the writer) is found by the repair,
    re-read and rewritten from the records."""
    store = CountingStore(tmp_path / "s.db")
    await store.create(pool_manifest("p", "10.70.0.0/24", ["10.70.0.10-10.70.0.50"]))
    engine = IpamEngine(store, EngineSettings(endpoint_resync_s=0))
    await engine.start()
    try:
        await engine.allocate(request(2, default_ipv4_pools=("p",)))
        await engine.flush_endpoints()
        good = (await store.get(KIND_ENDPOINT, "pod-2", "ns"))["status"]
        edited = await store.get(KIND_ENDPOINT, "pod-2", "ns")
        edited["status"] = {**good, "node": "elsewhere"}
        await store.update_status(edited)
        assert await engine.repair_endpoints() == 1
        await engine.flush_endpoints()
        assert (await store.get(KIND_ENDPOINT, "pod-2", "ns"))["status"] == good
    finally:
        await engine.close()
        await store.close()
