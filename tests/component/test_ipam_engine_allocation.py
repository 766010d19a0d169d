"""The IPAM engine over a real SQLite file: distinct, durable, all-or-nothing allocation."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from spiderpool_common.errors import PoolExhausted, Unavailable
from spiderpool_controller.domain.gc_policy import StatefulSetFacts
from spiderpool_controller.ipam_engine import EngineSettings, IpamEngine
from spiderpool_controller.store.contract import Obj, ObjectNotFound, StaleResourceVersion, Store
from spiderpool_controller.store.instrumented import InstrumentedStore
from spiderpool_controller.store.sqlite import SqliteStore

from tests.component.engine_fixtures import allocated_in_store, new_engine, pool_manifest, request
from tests.waiting import wait_for_async


class SlowWrites:
    """``inner`` with every status write taking ``delay`` seconds (an API server round trip)."""

    def __init__(self, inner: SqliteStore, delay: float) -> None:
        self._inner = inner
        self._delay = delay

    async def update_status(self, obj: Obj) -> Obj:
        await asyncio.sleep(self._delay)
        return await self._inner.update_status(obj)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_concurrent_allocations_get_distinct_durable_addresses(tmp_path: Path) -> None:
    """Concurrent ADDs from one pool get distinct addresses, all recorded in the file."""
    n = 200
    store = SqliteStore(tmp_path / "db")
    await store.create(pool_manifest("p", "10.1.0.0/16", ["10.1.0.10-10.1.0.250"], default=True))
    engine, _ = await new_engine(tmp_path / "db", store)
    results = await asyncio.gather(*(engine.allocate(request(i)) for i in range(n)))
    addresses = [r.ips[0].address for r in results]
    assert len(set(addresses)) == n
    assert sorted(addresses, key=lambda a: int(a.split(".")[3].split("/")[0]))[0] == "10.1.0.10/16"
    await engine.close()
    await store.close()  # the store file has one writer at a time (its lock)
    reopened = SqliteStore(tmp_path / "db")
    records = await allocated_in_store(reopened, "p")
    assert {f"{ip}/16" for ip in records} == set(addresses)
    assert {r["podUid"] for r in records.values()} == {f"uid-{i}" for i in range(n)}
    obj = await reopened.get("SpiderIPPool", "p")
    assert obj["status"]["allocatedIPCount"] == n
    assert obj["status"]["totalIPCount"] == 241


async def test_exhaustion_fails_the_surplus_and_leaves_nothing_half_done(tmp_path: Path) -> None:
    """Eight concurrent ADDs against five addresses: five succeed, three get PoolExhausted."""
    engine, store = await new_engine(tmp_path / "db")
    await store.create(pool_manifest("small", "10.2.0.0/24", ["10.2.0.1-10.2.0.5"], default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "small"))
    results = await asyncio.gather(*(engine.allocate(request(i)) for i in range(8)), return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(ok) == 5
    assert all(isinstance(f, PoolExhausted) for f in failed) and len(failed) == 3
    assert "no free IPv4 address for eth0 in IPPools [small]" in str(failed[0])
    assert len(await allocated_in_store(store, "small")) == 5


async def test_dual_stack_is_all_or_nothing(tmp_path: Path) -> None:
    """When the IPv6 pool is exhausted, the IPv4 address taken for the same ADD is given back."""
    engine, store = await new_engine(tmp_path / "db")
    await store.create(pool_manifest("v4", "10.3.0.0/24", ["10.3.0.1-10.3.0.3"], default=True))
    await store.create(pool_manifest("v6", "fd00:3::/64", ["fd00:3::1"], default=True))
    for name in ("v4", "v6"):
        await engine.pool_changed(await store.get("SpiderIPPool", name))
    first = await engine.allocate(request(1))
    assert sorted(a.version for a in first.ips) == [4, 6]
    with pytest.raises(PoolExhausted):
        await engine.allocate(request(2))
    assert len(await allocated_in_store(store, "v4")) == 1
    assert engine.free_count("v4") == 2


async def test_add_is_idempotent_per_pod_uid_and_interface(tmp_path: Path) -> None:
    """A repeated ADD for the same (pod UID, interface) returns the same address, one record."""
    engine, store = await new_engine(tmp_path / "db")
    await store.create(pool_manifest("p", "10.4.0.0/24", ["10.4.0.1-10.4.0.9"], default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "p"))
    a, b = await asyncio.gather(engine.allocate(request(1)), engine.allocate(request(1)))
    c = await engine.allocate(request(1))
    assert a.ips == b.ips == c.ips
    assert len(await allocated_in_store(store, "p")) == 1


async def test_container_id_is_the_identity_without_a_pod_uid(tmp_path: Path) -> None:
    """Outside Kubernetes two containers get two addresses and each ADD is idempotent."""
    engine, store = await new_engine(tmp_path / "db")
    await store.create(pool_manifest("p", "10.5.0.0/24", ["10.5.0.1-10.5.0.9"], default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "p"))
    x = await engine.allocate(request("x", pod_uid="", pod_name="", pod_namespace=""))
    y = await engine.allocate(request("y", pod_uid="", pod_name="", pod_namespace=""))
    again = await engine.allocate(request("x", pod_uid="", pod_name="", pod_namespace=""))
    assert x.ips[0].address != y.ips[0].address
    assert again.ips == x.ips
    records = await allocated_in_store(store, "p")
    assert {r["cid"] for r in records.values()} == {"cid-x", "cid-y"}


async def test_released_address_is_allocatable_again_and_release_is_idempotent(tmp_path: Path) -> None:
    """DEL frees the address (twice is fine) and the next ADD gets the lowest free one back."""
    engine, store = await new_engine(tmp_path / "db")
    await store.create(pool_manifest("p", "10.6.0.0/24", ["10.6.0.1-10.6.0.3"], default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "p"))
    for i in range(3):
        await engine.allocate(request(i))
    released = await engine.release("uid-0", "eth0")
    assert [a.address for a in released.released] == ["10.6.0.1/24"]
    assert (await engine.release("uid-0", "eth0")).released == []
    again = await engine.allocate(request(9))
    assert again.ips[0].address == "10.6.0.1/24"


async def test_allocations_survive_an_engine_restart(tmp_path: Path) -> None:
    """A new engine over the same file sees earlier allocations and never hands them out again."""
    engine, store = await new_engine(tmp_path / "db")
    await store.create(pool_manifest("p", "10.7.0.0/24", ["10.7.0.1-10.7.0.4"], default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "p"))
    before = [(await engine.allocate(request(i))).ips[0].address for i in range(2)]
    await engine.close()
    await store.close()  # a restart: the store file has one writer at a time (its lock)
    engine2, _ = await new_engine(tmp_path / "db")
    assert (await engine2.allocate(request(0))).ips[0].address == before[0]
    after = [(await engine2.allocate(request(i))).ips[0].address for i in (5, 6)]
    assert set(after).isdisjoint(before)


async def test_statefulset_member_keeps_its_address_while_the_replica_is_valid(tmp_path: Path) -> None:
    """web-0 keeps its IP across DEL and re-creation with a new UID; scaled away, it is released."""
    engine, store = await new_engine(tmp_path / "db")
    await store.create(pool_manifest("p", "10.8.0.0/24", ["10.8.0.1-10.8.0.9"], default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "p"))
    sts: dict[str, Any] = {
        "owner_kind": "StatefulSet",
        "owner_name": "web",
        "owner_replicas": 2,
        "owner_exists": True,
    }
    first = await engine.allocate(request("a", pod_name="web-0", **sts))
    kept = await engine.release(
        "uid-a",
        "eth0",
        pod_key="ns/web-0",
        owner_kind="StatefulSet",
        owner_name="web",
        owner_replicas=2,
        owner_exists=True,
    )
    assert kept.kept and not kept.released
    second = await engine.allocate(request("b", pod_name="web-0", **sts))
    assert second.ips[0].address == first.ips[0].address
    records = await allocated_in_store(store, "p")
    assert [r["podUid"] for r in records.values()] == ["uid-b"]
    gone = await engine.release(
        "uid-b",
        "eth0",
        pod_key="ns/web-0",
        owner_kind="StatefulSet",
        owner_name="web",
        owner_replicas=0,
        owner_exists=True,
    )
    assert [a.address for a in gone.released] == [first.ips[0].address]
    assert await allocated_in_store(store, "p") == {}


class FailingStatusStore(SqliteStore):
    """A real SQLite store whose status writes of one pool fail (an API server outage)."""

    fail_pool = ""

    async def update_status(self, obj: Obj) -> Obj:
        if obj["kind"] == "SpiderIPPool" and obj["metadata"]["name"] == self.fail_pool:
            raise OSError("injected: the API server is unreachable")
        return await super().update_status(obj)


async def test_a_failed_pool_write_leaves_no_partial_allocation(tmp_path: Path) -> None:
    """If the IPv6 pool's write fails, the IPv4 address written for the same ADD is released."""
    store = FailingStatusStore(tmp_path / "db")
    await store.create(pool_manifest("v4", "10.9.0.0/24", ["10.9.0.1-10.9.0.3"], default=True))
    await store.create(pool_manifest("v6", "fd00:9::/64", ["fd00:9::1-fd00:9::3"], default=True))
    engine, _ = await new_engine(tmp_path / "db", store)
    store.fail_pool = "v6"
    with pytest.raises(Unavailable, match="could not persist"):
        await engine.allocate(request(1))
    assert await allocated_in_store(store, "v4") == {}
    assert engine.attachment("uid-1", "eth0") == []
    store.fail_pool = ""
    ok = await engine.allocate(request(1))
    assert sorted(a.address for a in ok.ips) == ["10.9.0.1/24", "fd00:9::1/64"]


async def test_group_commit_batches_concurrent_allocations_into_few_writes(tmp_path: Path) -> None:
    """With a 5 ms write latency, 100 allocations from 10 clients need far fewer than 100 status writes."""
    inner = SqliteStore(tmp_path / "db")
    await inner.create(pool_manifest("p", "10.10.0.0/24", ["10.10.0.1-10.10.0.100"], default=True))
    store = InstrumentedStore(cast(Store, SlowWrites(inner, 0.005)))
    engine, _ = await new_engine(tmp_path / "db", store)
    sem = asyncio.Semaphore(10)

    async def one(i: int) -> Any:
        async with sem:
            return await engine.allocate(request(i))

    await asyncio.gather(*(one(i) for i in range(100)))
    status_writes = store.writes(kind="SpiderIPPool", op="update_status")
    assert status_writes <= 20, status_writes
    assert len(await allocated_in_store(inner, "p")) == 100


async def test_a_spec_change_during_allocation_is_retried_not_lost(tmp_path: Path) -> None:
    """A user updating the pool (its resourceVersion moves) while ADDs run loses no allocation."""
    store = SqliteStore(tmp_path / "db")
    await store.create(pool_manifest("p", "10.11.0.0/24", ["10.11.0.1-10.11.0.50"], default=True))
    engine, _ = await new_engine(tmp_path / "db", store)

    async def touch_spec() -> None:
        for n in range(5):
            for _ in range(50):
                obj = await store.get("SpiderIPPool", "p")
                obj["metadata"].setdefault("labels", {})["touched"] = str(n)
                try:
                    await store.update(obj)
                    break
                except StaleResourceVersion:
                    continue
            await asyncio.sleep(0)

    _, *results = await asyncio.gather(touch_spec(), *(engine.allocate(request(i)) for i in range(40)))
    addresses = {r.ips[0].address for r in results if r is not None}
    assert len(addresses) == 40
    assert len(await allocated_in_store(store, "p")) == 40


async def test_gc_releases_only_unlisted_attachments_of_this_node_and_network(tmp_path: Path) -> None:
    """ReleaseUnlisted frees node-1/net-a attachments not in the list; other nodes and networks stay."""
    engine, store = await new_engine(tmp_path / "db")
    await store.create(pool_manifest("p", "10.12.0.0/24", ["10.12.0.1-10.12.0.20"], default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "p"))
    await engine.allocate(request(1))
    await engine.allocate(request(2))
    await engine.allocate(request(3, node="node-2"))
    await engine.allocate(request(4, network="net-b"))
    released, errors = await engine.release_unlisted("node-1", "net-a", {("cid-1", "eth0")})
    assert errors == []
    assert [a.address for a in released] == ["10.12.0.2/24"]
    left = {r["podUid"] for r in (await allocated_in_store(store, "p")).values()}
    assert left == {"uid-1", "uid-3", "uid-4"}


async def test_endpoint_view_follows_allocations(tmp_path: Path) -> None:
    """A SpiderEndpoint records the pod's addresses per interface and disappears on release."""
    engine, store = await new_engine(tmp_path / "db")
    await store.create(
        pool_manifest("p", "10.13.0.0/24", ["10.13.0.1-10.13.0.20"], gateway="10.13.0.254", default=True)
    )
    await engine.pool_changed(await store.get("SpiderIPPool", "p"))
    await engine.allocate(request(1))
    await engine.flush_endpoints()
    ep = await store.get("SpiderEndpoint", "pod-1", "ns")
    current = ep["status"]["current"]
    assert current["uid"] == "uid-1" and current["node"] == "node-1"
    assert current["ips"][0]["interface"] == "eth0"
    assert current["ips"][0]["ipv4"] == "10.13.0.1/24"
    assert current["ips"][0]["ipv4Gateway"] == "10.13.0.254"
    await engine.release("uid-1", "eth0", pod_key="ns/pod-1")
    await engine.flush_endpoints()
    listed, _ = await store.list("SpiderEndpoint")
    assert listed == []


@pytest.mark.parametrize(
    ("subnet", "ips", "first"),
    [
        ("10.0.0.0/8", ["10.0.0.1-10.255.255.254"], "10.0.0.1/8"),
        ("fd00:64::/64", ["fd00:64::1-fd00:64::ffff:ffff:ffff:fffe"], "fd00:64::1/64"),
    ],
)
async def test_huge_pools_allocate_like_small_ones(
    tmp_path: Path, subnet: str, ips: list[str], first: str
) -> None:
    """A /8 or an IPv6 /64 pool allocates without listing its addresses (upstream #3541)."""
    engine, store = await new_engine(tmp_path / "db")
    await store.create(pool_manifest("huge", subnet, ips, default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "huge"))
    results = await asyncio.gather(*(engine.allocate(request(i)) for i in range(50)))
    assert results[0].ips[0].address == first
    assert len({r.ips[0].address for r in results}) == 50
    obj = await store.get("SpiderIPPool", "huge")
    assert obj["status"]["totalIPCount"] == (2**24 - 2 if ":" not in subnet else 2**64 - 2)


async def test_a_conflicting_address_is_set_aside_so_the_retry_gets_another(tmp_path: Path) -> None:
    """Released as conflicting, 10.14.0.1 is skipped by the retry until its quarantine ends."""
    now = [1000.0]
    store = SqliteStore(tmp_path / "db")
    await store.create(pool_manifest("p", "10.14.0.0/24", ["10.14.0.1-10.14.0.3"], default=True))
    engine = IpamEngine(store, EngineSettings(conflict_quarantine_s=60), clock=lambda: now[0])
    await engine.start()
    first = await engine.allocate(request(1))
    assert first.ips[0].address == "10.14.0.1/24"
    outcome = await engine.release("uid-1", "eth0", pod_key="ns/pod-1", conflicting=["10.14.0.1"])
    assert [a.address for a in outcome.released] == ["10.14.0.1/24"]
    retry = await engine.allocate(request(1))
    assert retry.ips[0].address == "10.14.0.2/24"
    await engine.release("uid-1", "eth0", pod_key="ns/pod-1")  # an ordinary release: no quarantine
    assert (await engine.allocate(request(2))).ips[0].address == "10.14.0.2/24"
    now[0] += 61
    assert (await engine.allocate(request(3))).ips[0].address == "10.14.0.1/24"


async def test_a_new_sandbox_takes_the_allocation_over_and_the_old_one_cannot_free_it(tmp_path: Path) -> None:
    """ADD from a second container ID of the same pod UID answers the same address and rebinds the
    records durably; a release on behalf of the first container frees nothing and names the holder."""
    engine, store = await new_engine(tmp_path / "db")
    await store.create(pool_manifest("p", "10.12.0.0/24", ["10.12.0.1-10.12.0.9"], default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "p"))
    first = await engine.allocate(request(1))
    second = await engine.allocate(replace(request(1), container_id="cid-1-new"))
    assert [a.address for a in second.ips] == [a.address for a in first.ips]
    assert {r["cid"] for r in (await allocated_in_store(store, "p")).values()} == {"cid-1-new"}
    outcome = await engine.release("uid-1", "eth0", container_id="cid-1")
    assert (outcome.released, outcome.holder) == ([], "cid-1-new")
    released, errors = await engine.release_unlisted("node-1", "net-a", {("cid-1-new", "eth0")})
    assert (released, errors) == ([], [])
    outcome = await engine.release("uid-1", "eth0", container_id="cid-1-new")
    assert [a.address for a in outcome.released] == [a.address for a in first.ips]
    assert await allocated_in_store(store, "p") == {}
    await engine.close()


async def test_the_endpoint_view_is_repaired_continuously(tmp_path: Path) -> None:
    """An endpoint deleted behind the engine's back is written again by the periodic resync,
    without a restart."""
    store = SqliteStore(tmp_path / "db")
    await store.create(pool_manifest("p", "10.13.0.0/24", ["10.13.0.1-10.13.0.9"], default=True))
    engine, _ = await new_engine(tmp_path / "db", store, endpoint_resync_s=0.05)
    await engine.allocate(request(1))
    await engine.flush_endpoints()
    obj = await store.get("SpiderEndpoint", "pod-1", "ns")
    await store.delete("SpiderEndpoint", "pod-1", "ns")

    async def rewritten() -> Obj | None:
        await engine.flush_endpoints()
        try:
            return await store.get("SpiderEndpoint", "pod-1", "ns")
        except ObjectNotFound:
            return None

    again = await wait_for_async(rewritten, "the deleted endpoint to be written again", interval=0.02)
    assert again["status"] == obj["status"]
    await engine.close()


async def test_a_release_that_names_no_owner_is_judged_by_the_controllers_view_of_the_statefulset(
    tmp_path: Path,
) -> None:
    """In a cluster the agent may no longer see a deleted pod's owner: the engine asks its own
    view of the recorded StatefulSet, keeping a valid member's address and freeing a scaled-down one."""
    engine, store = await new_engine(tmp_path / "db")
    await store.create(pool_manifest("p", "10.14.0.0/24", ["10.14.0.1-10.14.0.9"], default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "p"))
    replicas = {"db": 2}
    engine.statefulsets = lambda ns, name: (
        StatefulSetFacts(exists=True, replicas=replicas[name]) if name in replicas else None
    )
    req = request(1, pod_name="db-1", owner_kind="StatefulSet", owner_name="db")
    await engine.allocate(req)
    kept = await engine.release("uid-1", "eth0", container_id="cid-1", pod_key="ns/db-1")
    assert kept.kept and not kept.released
    replicas["db"] = 1
    gone = await engine.release("uid-1", "eth0", container_id="cid-1", pod_key="ns/db-1")
    assert [a.address for a in gone.released] == ["10.14.0.1/24"]
    await engine.close()


class RefusesEndpointWrites:
    """``inner`` refusing the next ``n`` SpiderEndpoint writes as a fenced store does while the Lease
    renewal is late (NotLeader, code 11), then writing again."""

    def __init__(self, inner: SqliteStore, n: int) -> None:
        self._inner = inner
        self.left = n

    def _refuse(self, kind: object) -> None:
        if kind == "SpiderEndpoint" and self.left > 0:
            self.left -= 1
            raise Unavailable("create SpiderEndpoint: this controller replica is not the leader; try again")

    async def create(self, obj: Obj) -> Obj:
        self._refuse(obj.get("kind"))
        return await self._inner.create(obj)

    async def update_status(self, obj: Obj) -> Obj:
        self._refuse(obj.get("kind"))
        return await self._inner.update_status(obj)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_an_endpoint_write_refused_for_a_moment_is_retried_without_waiting_for_the_resync(
    tmp_path: Path,
) -> None:
    """A SpiderEndpoint write that fails (the leader's fence closed for a moment under load) is tried
    again after a short backoff, not only at the next full resync (30 s by default; off here): the pod's
    endpoint exists soon after (the cluster chaos storm found endpoints missing until the resync)."""
    sqlite = SqliteStore(tmp_path / "db")
    await sqlite.create(pool_manifest("p", "10.15.0.0/24", ["10.15.0.1-10.15.0.9"], default=True))
    store = RefusesEndpointWrites(sqlite, 2)
    engine, _ = await new_engine(
        tmp_path / "db", cast(Store, store), endpoint_resync_s=0, endpoint_retry_s=0.01
    )
    await engine.allocate(request(1))

    async def written() -> Obj | None:
        try:
            return await sqlite.get("SpiderEndpoint", "pod-1", "ns")
        except ObjectNotFound:
            return None

    endpoint = await wait_for_async(written, "the refused endpoint to be written", interval=0.02)
    assert endpoint["status"]["current"]["ips"][0]["ipv4"] == "10.15.0.1/24" and store.left == 0
    await engine.close()
