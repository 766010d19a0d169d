"""A pool's status stays one storable Kubernetes object, at upstream's cap and beyond it.

The API server refuses objects over etcd's 1.5 MiB value limit, and a pool's status is one
object written whole by every group commit. At upstream's cap of 5,000 records
(``--max-allocated-ips``) typical records fit; records with long names (64-character
container IDs, long namespaces, pod, node and owner names) reach the size limit first, so
the engine also stops adding records to a pool whose status would pass
``MAX_STATUS_BYTES``: the next allocation is refused (PoolExhausted naming the pool and the
thresholds), never written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from spiderpool_common.errors import PoolExhausted
from spiderpool_controller.domain import pool_state
from spiderpool_controller.domain.ipset import IPSet
from spiderpool_controller.domain.models import AllocationRecord, Route
from spiderpool_controller.domain.pool_state import MAX_STATUS_BYTES, PoolState

from tests.component.engine_fixtures import allocated_in_store, new_engine, pool_manifest, request

ETCD_VALUE_LIMIT = 1_572_864  # bytes (1.5 MiB)
CAP = 5000


def typical(n: int) -> AllocationRecord:
    return AllocationRecord(
        pod=f"default/web-5d8f7c9b4-{n:05d}",
        pod_uid=f"0f0f0f0f-1e1e-2d2d-3c3c-{n:012d}",
        container_id=f"{n:064x}",
        interface="eth0",
        node="worker-07",
        network="macvlan-conf",
        owner_kind="Deployment",
        owner_name="web",
    )


def worst(n: int) -> AllocationRecord:
    return AllocationRecord(
        pod=f"a-namespace-of-forty-characters-length/statefulset-name-of-a-realistic-length-{n}",
        pod_uid=f"0f0f0f0f-1e1e-2d2d-3c3c-{n:012d}",
        container_id=f"{n:064x}",
        interface="net1",
        node="worker-node-with-a-long-name-01.example.internal",
        network="macvlan-underlay-network",
        owner_kind="StatefulSet",
        owner_name="statefulset-name-of-a-realistic-length",
        clean_gateway=True,
        routes=(Route("fd00:9999::/64", "fd00:1234:5678:9abc::fffe"),),
    )


def filled(make: object, count: int, version: int = 6) -> tuple[PoolState, int]:
    """A pool with ``count`` records and the exact size of its stored object."""
    if version == 6:
        subnet, ips = "fd00:1234:5678:9abc::/64", ["fd00:1234:5678:9abc::1-fd00:1234:5678:9abc::ffff"]
    else:
        subnet, ips = "172.16.0.0/16", ["172.16.0.1-172.16.255.254"]
    obj = pool_manifest("cap", subnet, ips)
    obj["metadata"]["resourceVersion"] = "1"
    state = PoolState.from_object(obj)
    for n in range(count):
        state.take(state.lowest_free(IPSet.empty(version)) or 0, make(n))  # type: ignore[operator]
    body = json.dumps({**obj, "status": state.status(IPSet.empty(version))}, separators=(",", ":"))
    return state, len(body.encode())


@pytest.mark.parametrize("count", [0, 1, 7, 300])
def test_the_tracked_size_is_the_stored_size_of_the_records(count: int) -> None:
    """stored_bytes() is the size of the allocatedIPs string as stored (escaped in the object),
    less its braces, plus one separator: what the records cost."""
    state, _ = filled(worst, count)
    stored = state.status(IPSet.empty(6)).get("allocatedIPs")
    escaped = len(json.dumps(stored)) - 2 if stored else 0  # inside the object, without its quotes
    assert state.stored_bytes() == (escaped - 1 if count else 0)


def test_typical_records_fit_upstreams_cap_and_long_ones_reach_the_size_limit_first() -> None:
    """5,000 typical records (IPv4 and IPv6 pools) stay under the limit; with long names the
    size limit comes first."""
    for version in (4, 6):
        _, typical_total = filled(typical, CAP, version)
        assert typical_total < MAX_STATUS_BYTES < ETCD_VALUE_LIMIT, (version, typical_total)
    state, _ = filled(worst, 200)
    per_record = state.stored_bytes() / 200
    assert per_record * CAP > MAX_STATUS_BYTES


async def test_an_allocation_past_the_size_limit_is_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the limit lowered to a few records, the next ADD fails naming the pool and the stored
    status stays under the limit."""
    engine, store = await new_engine(tmp_path / "db")
    await store.create(pool_manifest("sized", "10.16.0.0/24", ["10.16.0.1-10.16.0.250"], default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "sized"))
    one = PoolState.from_object(await store.get("SpiderIPPool", "sized")).record_bytes(1, typical(1))
    limit = 3 * one + 600
    monkeypatch.setattr("spiderpool_controller.ipam_engine.MAX_STATUS_BYTES", limit)
    monkeypatch.setattr(pool_state, "MAX_STATUS_BYTES", limit)
    allocated = 0
    with pytest.raises(PoolExhausted, match="sized") as info:
        for n in range(10):
            await engine.allocate(request(n))
            allocated += 1
    assert "bytes of status" in info.value.details
    assert 1 <= allocated < 10
    stored = (await store.get("SpiderIPPool", "sized"))["status"]["allocatedIPs"]
    assert len(json.dumps(stored)) < limit
    assert len(await allocated_in_store(store, "sized")) == allocated
    await engine.close()


async def test_the_allocation_past_the_record_cap_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    """With the threshold at 3 records, the fourth ADD fails naming the pool, which holds three."""
    engine, store = await new_engine(tmp_path / "db", max_allocated_ips=3)
    await store.create(pool_manifest("small-cap", "10.15.0.0/24", ["10.15.0.1-10.15.0.9"], default=True))
    await engine.pool_changed(await store.get("SpiderIPPool", "small-cap"))
    for n in range(3):
        await engine.allocate(request(n))
    with pytest.raises(PoolExhausted, match="small-cap") as info:
        await engine.allocate(request(3))
    assert "3 records" in info.value.details
    assert (await store.get("SpiderIPPool", "small-cap"))["status"]["allocatedIPCount"] == 3
    await engine.close()
