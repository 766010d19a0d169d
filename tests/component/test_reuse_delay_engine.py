"""The reuse delay through the IPAM engine over a real SQLite file, with an injected wall clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from spiderpool_common.errors import Unavailable
from spiderpool_controller.domain.released_ips import ANNOTATION
from spiderpool_controller.ipam_engine import EngineSettings, IpamEngine
from spiderpool_controller.store.contract import Obj, Store
from spiderpool_controller.store.sqlite import SqliteStore

from tests.component.engine_fixtures import pool_manifest, request

T0 = 1_767_225_600.0


class WallClock:
    """An injected wall clock: time moves only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pool(name: str = "p", last: int = 20, annotations: dict[str, str] | None = None, **spec: Any) -> Obj:
    obj = pool_manifest(name, "10.7.0.0/24", [f"10.7.0.10-10.7.0.{last}"], default=True, **spec)
    if annotations:
        obj["metadata"]["annotations"] = annotations
    return obj


async def engine_on(store: Store, clock: WallClock, delay: float = 0.0) -> IpamEngine:
    engine = IpamEngine(store, EngineSettings(ip_reuse_delay_s=delay), wall_clock=clock)
    await engine.start()
    return engine


async def setup(
    tmp_path: Path, manifest: Obj, clock: WallClock, delay: float = 0.0
) -> tuple[IpamEngine, Store]:
    store = SqliteStore(tmp_path / "db")
    await store.create(manifest)
    return await engine_on(store, clock, delay), store


async def address(engine: IpamEngine, n: int | str, **kw: Any) -> str:
    got = await engine.allocate(request(n, **kw))
    return got.ips[0].address.split("/")[0]


async def released_in_store(store: Store, name: str = "p") -> dict[str, float]:
    text = ((await store.get("SpiderIPPool", name)).get("status") or {}).get("releasedIPs")
    return json.loads(text) if text else {}


async def test_a_released_address_waits_out_the_delay_before_another_pod_gets_it(tmp_path: Path) -> None:
    """With --ip-reuse-delay-seconds 300, .10 released at T0 is skipped until T0+300, then reused."""
    clock = WallClock()
    engine, store = await setup(tmp_path, pool(), clock, delay=300)
    assert await address(engine, 1) == "10.7.0.10"
    await engine.release("uid-1", "eth0")
    assert await released_in_store(store) == {"10.7.0.10": T0}
    clock.now = T0 + 299
    assert await address(engine, 2) == "10.7.0.11"
    clock.now = T0 + 300
    assert await address(engine, 3) == "10.7.0.10"
    assert await released_in_store(store) == {}


async def test_without_a_delay_the_lowest_address_comes_straight_back_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    """The default (0) is today's behaviour: .10 is handed out again at once, no releasedIPs in status."""
    engine, store = await setup(tmp_path, pool(), WallClock())
    assert await address(engine, 1) == "10.7.0.10"
    await engine.release("uid-1", "eth0")
    assert "releasedIPs" not in ((await store.get("SpiderIPPool", "p")).get("status") or {})
    assert await address(engine, 2) == "10.7.0.10"


async def test_the_pool_annotation_overrides_the_controller_default(tmp_path: Path) -> None:
    """A pool annotated 60 delays with the default 0; a pool annotated 0 does not with the default 300."""
    clock = WallClock()
    store = SqliteStore(tmp_path / "db")
    await store.create(pool("slow", annotations={ANNOTATION: "60"}))
    engine = await engine_on(store, clock)
    assert await address(engine, 1) == "10.7.0.10"
    await engine.release("uid-1", "eth0")
    assert await address(engine, 2) == "10.7.0.11"
    await engine.close()

    store2 = SqliteStore(tmp_path / "db2")
    await store2.create(pool("fast", annotations={ANNOTATION: "0"}))
    engine2 = await engine_on(store2, clock, delay=300)
    assert await address(engine2, 1) == "10.7.0.10"
    await engine2.release("uid-1", "eth0")
    assert await address(engine2, 2) == "10.7.0.10"


async def test_a_full_pool_hands_out_the_oldest_released_address_rather_than_fail(tmp_path: Path) -> None:
    """Three addresses, all released within the delay: the next pods get them oldest-released first."""
    clock = WallClock()
    engine, _ = await setup(tmp_path, pool(last=12), clock, delay=3600)
    for n in (1, 2, 3):
        await address(engine, n)
    for n, at in ((2, T0), (3, T0 + 1), (1, T0 + 2)):  # .11, then .12, then .10
        clock.now = at
        await engine.release(f"uid-{n}", "eth0")
    assert [await address(engine, n) for n in (4, 5, 6)] == ["10.7.0.11", "10.7.0.12", "10.7.0.10"]


async def test_the_delay_survives_a_controller_restart(tmp_path: Path) -> None:
    """Release times are in the pool's status: a new engine on the same file still skips .10."""
    clock = WallClock()
    engine, store = await setup(tmp_path, pool(), clock, delay=300)
    await address(engine, 1)
    await engine.release("uid-1", "eth0")
    await engine.close()
    await store.close()
    clock.now = T0 + 120
    restarted = await engine_on(SqliteStore(tmp_path / "db"), clock, delay=300)
    assert await address(restarted, 2) == "10.7.0.11"
    clock.now = T0 + 301
    assert await address(restarted, 3) == "10.7.0.10"


async def test_statefulset_members_and_requested_addresses_are_not_delayed(tmp_path: Path) -> None:
    """A StatefulSet member re-gets its own address, and a pod asking for a cooling address gets it."""
    clock = WallClock()
    engine, store = await setup(tmp_path, pool(), clock, delay=3600)
    sts: dict[str, Any] = {"owner_kind": "StatefulSet", "owner_name": "db", "owner_replicas": 1}
    sts["owner_exists"] = True
    assert await address(engine, "a", pod_name="db-0", **sts) == "10.7.0.10"
    kept = await engine.release("uid-a", "eth0", pod_key="ns/db-0", owner_kind="StatefulSet",
                                owner_name="db", owner_replicas=1, owner_exists=True)  # fmt: skip
    assert kept.kept
    assert await address(engine, "b", pod_name="db-0", **sts) == "10.7.0.10"
    assert await address(engine, 1) == "10.7.0.11"
    await engine.release("uid-1", "eth0")
    assert await released_in_store(store) == {"10.7.0.11": T0}
    assert await address(engine, 2, requested_ips=("10.7.0.11",)) == "10.7.0.11"
    assert await released_in_store(store) == {}


class FailingPoolWrites(SqliteStore):
    """Status writes of one pool fail (an API server outage for that object)."""

    fail_pool = ""

    async def update_status(self, obj: Obj) -> Obj:
        if obj["metadata"]["name"] == self.fail_pool:
            raise OSError("injected: the API server is unreachable")
        return await super().update_status(obj)


async def test_a_rolled_back_allocation_leaves_no_delay_behind(tmp_path: Path) -> None:
    """Dual stack where the IPv6 write fails: the IPv4 address written and given back never reached a pod,
    so it is not delayed."""
    clock = WallClock()
    store = FailingPoolWrites(tmp_path / "db")
    await store.create(pool())
    await store.create(pool_manifest("p6", "fd07::/64", ["fd07::10-fd07::20"], default=True))
    engine = await engine_on(store, clock, delay=300)
    store.fail_pool = "p6"
    with pytest.raises(Unavailable, match="could not persist"):
        await engine.allocate(request(1))
    assert await released_in_store(store) == {}
    store.fail_pool = ""
    got = await engine.allocate(request(2))
    assert sorted(a.address for a in got.ips) == ["10.7.0.10/24", "fd07::10/64"]
