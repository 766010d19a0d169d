"""The SpiderEndpoint writer reads an endpoint only when it cannot know it, and never leaves one behind.

Once a full listing of the endpoints was learned, a new pod's endpoint costs one create (it cost a read,
404, and a create: one request in six of the 1000-pod benchmark's). What the writer cannot know is still
read: an endpoint a former leader wrote, a write whose answer was lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spiderpool_controller.domain.models import KIND_ENDPOINT
from spiderpool_controller.store.contract import Obj, ObjectNotFound, Store
from spiderpool_controller.store.sqlite import SqliteStore

from tests.component.engine_fixtures import new_engine, pool_manifest, request


class Counting:
    """``inner`` counting the endpoint calls by operation; ``lose_next_create`` makes the next endpoint
    create succeed in the store but fail for the caller (the API server's answer lost)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.calls: list[str] = []
        self.lose_next_create = False

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        if kind == KIND_ENDPOINT:
            self.calls.append("get")
        return await self._inner.get(kind, name, namespace)

    async def create(self, obj: Obj) -> Obj:
        if obj["kind"] == KIND_ENDPOINT:
            self.calls.append("create")
            if self.lose_next_create:
                self.lose_next_create = False
                await self._inner.create(obj)
                raise ConnectionResetError("the answer was lost")
        return await self._inner.create(obj)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def endpoint_names(store: Store) -> list[str]:
    objects, _ = await store.list(KIND_ENDPOINT)
    return [o["metadata"]["name"] for o in objects]


async def test_a_new_pods_endpoint_is_created_without_a_read_once_a_listing_is_learned(
    tmp_path: Path,
) -> None:
    store = Counting(SqliteStore(tmp_path / "db"))
    engine, _ = await new_engine(tmp_path / "db", store)  # type: ignore[arg-type]
    await store.create(pool_manifest("p", "10.7.0.0/24", ["10.7.0.1-10.7.0.20"], default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "p"))
    await engine.repair_endpoints()
    for i in range(5):
        await engine.allocate(request(i))
    await engine.flush_endpoints()
    assert sorted(await endpoint_names(store)) == [f"pod-{i}" for i in range(5)]
    assert "get" not in store.calls
    await engine.close()


async def test_an_endpoint_a_former_leader_wrote_is_deleted_when_its_pod_is_released(tmp_path: Path) -> None:
    """The new leader learned it from the listing (no record of writing it), and still removes it."""
    first, store = await new_engine(tmp_path / "db")
    await store.create(pool_manifest("p", "10.7.0.0/24", ["10.7.0.1-10.7.0.20"], default=True))
    await first.pool_changed(await store.get("SpiderIPPool", "p"))
    await first.allocate(request(1))
    await first.flush_endpoints()
    await first.close()
    assert await endpoint_names(store) == ["pod-1"]
    second, _ = await new_engine(tmp_path / "db", store)
    await second.repair_endpoints()
    await second.release("uid-1", "eth0")
    await second.flush_endpoints()
    assert await endpoint_names(store) == []
    await second.close()


async def test_an_endpoint_whose_create_answer_was_lost_is_read_and_removed_with_its_pod(
    tmp_path: Path,
) -> None:
    store = Counting(SqliteStore(tmp_path / "db"))
    engine, _ = await new_engine(tmp_path / "db", store, endpoint_retry_s=0.01)  # type: ignore[arg-type]
    await store.create(pool_manifest("p", "10.7.0.0/24", ["10.7.0.1-10.7.0.20"], default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "p"))
    await engine.repair_endpoints()
    store.lose_next_create = True
    await engine.allocate(request(2))
    await engine.flush_endpoints()  # the create "failed"; the endpoint exists all the same
    assert await endpoint_names(store) == ["pod-2"]
    await engine.release("uid-2", "eth0")
    await engine.flush_endpoints()
    try:
        await store.get(KIND_ENDPOINT, "pod-2", "ns")
    except ObjectNotFound:
        pass
    else:
        raise AssertionError("the endpoint of the released pod is still stored")
    await engine.close()
