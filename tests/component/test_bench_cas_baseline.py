"""The allocation benchmark's baseline (bench/cas_baseline.py): upstream's per-agent
read-modify-write with compare-and-swap, its retry policy and its per-pool tickets."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from spiderpool_common.errors import PoolExhausted
from spiderpool_controller.domain.ipset import IPSet
from spiderpool_controller.domain.models import KIND_IPPOOL, AllocationRecord
from spiderpool_controller.domain.pool_state import PoolState
from spiderpool_controller.store.contract import Obj, StaleResourceVersion, Store
from spiderpool_controller.store.sqlite import SqliteStore

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from cas_baseline import (
    UPSTREAM_RETRY,
    Backoff,
    CasAgent,
    RetriesExhausted,
    Tickets,
    allocation_step,
    release_step,
)
from latency_store import LatencyStore


def pool(n: int, *, exclude: list[str] | None = None, name: str = "p") -> Obj:
    first = ipaddress.IPv4Address("10.0.0.10")
    spec: dict[str, Any] = {"ipVersion": 4, "subnet": "10.0.0.0/16", "ips": [f"{first}-{first + n - 1}"]}
    if exclude:
        spec["excludeIPs"] = exclude
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": KIND_IPPOOL,
        "metadata": {"name": name},
        "spec": spec,
    }


def rec(i: int) -> AllocationRecord:
    return AllocationRecord(pod=f"ns/pod-{i}", pod_uid=f"uid-{i}", interface="eth0", node="n1")


async def stored_pool(tmp_path: Path, obj: Obj) -> Store:
    store = SqliteStore(tmp_path / "state.db")
    await store.create(obj)
    return store


def records_of(obj: Obj) -> dict[str, Any]:
    text = (obj.get("status") or {}).get("allocatedIPs")
    return json.loads(text) if text else {}


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class AlwaysConflicting:
    """A store whose pool status writes always lose the compare-and-swap."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.writes = 0

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        return await self.inner.get(kind, name, namespace)

    async def update_status(self, obj: Obj) -> Obj:
        self.writes += 1
        raise StaleResourceVersion("the object has been modified")


def test_the_lowest_free_pick_agrees_with_the_engines_pool_state() -> None:
    """Over random pools, exclusions, reserved IPs and records, the pick is PoolState.lowest_free's."""
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 40)
        obj = pool(n, exclude=[f"10.0.0.{10 + rng.randrange(n)}" for _ in range(rng.randint(0, 3))])
        taken = rng.sample(range(n), rng.randint(0, n))
        obj["status"] = {
            "allocatedIPs": json.dumps({f"10.0.0.{10 + i}": rec(i).to_dict() for i in taken}),
            "allocatedIPCount": len(taken),
        }
        reserved = {
            4: IPSet.parse([f"10.0.0.{10 + rng.randrange(n)}"], 4) if rng.random() < 0.5 else IPSet.empty(4)
        }
        expected = PoolState.from_object(obj).lowest_free(reserved[4])
        try:
            ip, status = allocation_step(obj, rec(1000), reserved, 5000)
        except PoolExhausted:
            assert expected is None
            continue
        assert expected is not None
        assert int(ipaddress.IPv4Address(ip)) == expected
        assert status is not None
        assert status["allocatedIPCount"] == len(taken) + 1
        assert json.loads(status["allocatedIPs"])[ip] == rec(1000).to_dict()


def test_a_pod_already_holding_an_address_gets_it_back_without_a_write() -> None:
    """As upstream, a pod UID found in the records gets that address and nothing is written."""
    obj = pool(4)
    obj["status"] = {"allocatedIPs": json.dumps({"10.0.0.12": rec(5).to_dict()}), "allocatedIPCount": 1}
    assert allocation_step(obj, rec(5), {}, 5000) == ("10.0.0.12", None)


def test_release_drops_only_the_record_of_that_pod_uid() -> None:
    """Another UID releases nothing; the holder's UID drops the record (the last: no allocatedIPs left)."""
    obj = pool(4)
    obj["status"] = {"allocatedIPs": json.dumps({"10.0.0.10": rec(1).to_dict()}), "allocatedIPCount": 1}
    assert release_step(obj, "10.0.0.10", "uid-2") == (False, None)
    released, status = release_step(obj, "10.0.0.10", "uid-1")
    assert released
    assert status == {"allocatedIPCount": 0}


def test_upstreams_backoff_waits_10_15_22_5_and_33_75_ms_plus_jitter() -> None:
    """Five attempts mean four waits growing by 1.5 from 10 ms, each up to 10% longer."""
    assert Backoff(steps=5, duration_s=0.010, factor=1.5, jitter=0.1) == UPSTREAM_RETRY
    assert UPSTREAM_RETRY.sleeps(lambda: 0.0) == pytest.approx([0.010, 0.015, 0.0225, 0.03375])
    assert UPSTREAM_RETRY.sleeps(lambda: 1.0) == pytest.approx([0.011, 0.0165, 0.02475, 0.037125])


async def test_an_add_fails_after_the_fifth_conflict(tmp_path: Path) -> None:
    """Five reads, five refused writes and four backoff waits, then RetriesExhausted; nothing is stored."""
    inner = await stored_pool(tmp_path, pool(4))
    store = AlwaysConflicting(inner)
    sleep = RecordingSleep()
    agent = CasAgent(store, sleep=sleep, rand=lambda: 0.0)  # type: ignore[arg-type]
    with pytest.raises(RetriesExhausted):
        await agent.allocate("p", rec(1))
    assert store.writes == 5
    assert sleep.calls == pytest.approx([0.010, 0.015, 0.0225, 0.03375])
    assert (agent.alloc.attempts, agent.alloc.writes, agent.alloc.conflicts) == (5, 5, 5)
    assert (agent.alloc.done, agent.alloc.failed) == (0, 1)
    assert records_of(await inner.get(KIND_IPPOOL, "p")) == {}
    await inner.close()


async def test_concurrent_agents_never_hand_out_an_address_twice(tmp_path: Path) -> None:
    """Three agents of three concurrent ADDs fill a pool, each address once; a write commits or conflicts."""
    inner = LatencyStore(SqliteStore(tmp_path / "state.db"), write_latency_s=0.003)
    await inner.create(pool(36))
    patient = Backoff(steps=100, duration_s=0.001)
    agents = [CasAgent(inner, backoff=patient) for _ in range(3)]
    grants: list[tuple[int, str]] = []

    async def worker(agent: CasAgent, pods: list[int]) -> None:
        for i in pods:
            grants.append((i, await agent.allocate("p", rec(i))))

    await asyncio.gather(*(worker(agents[k % 3], list(range(k, 36, 9))) for k in range(9)))
    addresses = [a.split("/")[0] for _, a in grants]
    assert len(addresses) == len(set(addresses)) == 36
    stored = records_of(await inner.get(KIND_IPPOOL, "p"))
    assert {ip: r["podUid"] for ip, r in stored.items()} == {a.split("/")[0]: f"uid-{i}" for i, a in grants}
    writes = sum(a.alloc.writes for a in agents)
    conflicts = sum(a.alloc.conflicts for a in agents)
    assert conflicts > 0
    assert writes == 36 + conflicts
    for i, address in grants:
        assert await agents[0].release("p", address.split("/")[0], f"uid-{i}")
    assert (await inner.get(KIND_IPPOOL, "p"))["status"]["allocatedIPCount"] == 0
    await inner.close()


async def test_one_operation_per_pool_at_a_time_within_an_agent(tmp_path: Path) -> None:
    """Five ADDs of one agent take the pool's ticket in turn; another pool's ADD runs beside them."""
    inner = LatencyStore(SqliteStore(tmp_path / "state.db"), read_latency_s=0.01)
    await inner.create(pool(8, name="a"))
    await inner.create(pool(8, name="b"))
    agent = CasAgent(inner)
    inside: dict[str, int] = {"a": 0, "b": 0}
    most_a = 0
    b_beside_a = False
    real_get = inner.get

    async def counting_get(kind: str, name: str, namespace: str = "") -> Obj:
        nonlocal most_a, b_beside_a
        inside[name] += 1
        most_a = max(most_a, inside["a"])
        b_beside_a = b_beside_a or (inside["a"] > 0 and inside["b"] > 0)
        try:
            return await real_get(kind, name, namespace)
        finally:
            inside[name] -= 1

    inner.get = counting_get  # type: ignore[method-assign]
    await asyncio.gather(*(agent.allocate("a", rec(i)) for i in range(5)), agent.allocate("b", rec(9)))
    assert most_a == 1
    assert b_beside_a  # tickets are per pool
    assert agent.alloc.ticket_waits == 4
    await inner.close()


async def test_a_ticket_passes_to_waiters_in_arrival_order() -> None:
    """The ticket goes to the waiters first come first served, and is free once the last releases it."""
    tickets = Tickets()
    order: list[int] = []
    assert not await tickets.acquire("p")

    async def waiter(i: int) -> None:
        assert await tickets.acquire("p")
        order.append(i)
        tickets.release("p")

    tasks = [asyncio.create_task(waiter(i)) for i in range(4)]
    await asyncio.sleep(0)
    assert order == []
    tickets.release("p")
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]
    assert not tickets.held("p")
