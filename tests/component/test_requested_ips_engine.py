"""Requested addresses through the IPAM engine over a real SQLite file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from spiderpool_common.errors import RequestedIPInUse, RequestedIPNotAllowed
from spiderpool_controller.domain.annotations import MULTUS_NETWORKS, POD_IPPOOLS
from spiderpool_controller.ipam_engine import IpamEngine
from spiderpool_controller.store.contract import Store

from tests.component.engine_fixtures import allocated_in_store, new_engine, pool_manifest, request


async def engine_with(tmp_path: Path, *manifests: dict[str, Any]) -> tuple[IpamEngine, Store]:
    engine, store = await new_engine(tmp_path / "db")
    for manifest in manifests:
        await store.create(manifest)
        await engine.pool_changed(await store.get("SpiderIPPool", manifest["metadata"]["name"]))
    return engine, store


def v4(default: bool = True) -> dict[str, Any]:
    return pool_manifest("v4", "10.5.0.0/24", ["10.5.0.10-10.5.0.50"], default=default)


def v6() -> dict[str, Any]:
    return pool_manifest("v6", "fd00:5::/64", ["fd00:5::10-fd00:5::50"], default=True)


async def snapshot(store: Store) -> list[tuple[str, str]]:
    """Every pool's name, resourceVersion and records: equal snapshots mean nothing changed."""
    pools, _ = await store.list("SpiderIPPool")
    return sorted(
        (p["metadata"]["name"], p["metadata"]["resourceVersion"] + json.dumps(p.get("status"))) for p in pools
    )


async def test_the_requested_address_is_granted_recorded_as_requested_and_idempotent(tmp_path: Path) -> None:
    """ADD asking for .33 gets exactly it, the record says requested, a repeated ADD answers the same."""
    engine, store = await engine_with(tmp_path, v4())
    first = await engine.allocate(request(1, requested_ips=("10.5.0.33/24",)))
    assert [a.address for a in first.ips] == ["10.5.0.33/24"]
    records = await allocated_in_store(store, "v4")
    assert records["10.5.0.33"]["requested"] is True
    again = await engine.allocate(request(1, requested_ips=("10.5.0.33",)))
    assert again.ips == first.ips
    plain = await engine.allocate(request(2))
    assert [a.address for a in plain.ips] == ["10.5.0.10/24"]
    assert "requested" not in (await allocated_in_store(store, "v4"))["10.5.0.10"]


async def test_a_repeated_add_asking_for_another_address_fails_and_changes_nothing(tmp_path: Path) -> None:
    """Once an attachment holds .33, its ADD asking for .34 is refused (108); the store is untouched."""
    engine, store = await engine_with(tmp_path, v4())
    await engine.allocate(request(1, requested_ips=("10.5.0.33",)))
    await engine.close()
    engine, _ = await new_engine(tmp_path / "db", store)
    before = await snapshot(store)
    with pytest.raises(RequestedIPNotAllowed, match=r"eth0 already holds 10.5.0.33/24, not the requested"):
        # a new sandbox of the pod: the refusal must come before the take-over is written
        await engine.allocate(replace(request(1, requested_ips=("10.5.0.34",)), container_id="cid-new"))
    assert await snapshot(store) == before


async def test_an_address_in_use_fails_the_whole_dual_stack_add(tmp_path: Path) -> None:
    """Asking for another pod's IPv4 address fails with 109 and the IPv6 address is not taken either."""
    engine, store = await engine_with(tmp_path, v4(), v6())
    await engine.allocate(request(1, requested_ips=("10.5.0.40",)))
    with pytest.raises(RequestedIPInUse, match=r"gave it to pod ns/pod-1 \(interface eth0\)"):
        await engine.allocate(request(2, requested_ips=("10.5.0.40", "fd00:5::44")))
    assert set(await allocated_in_store(store, "v4")) == {"10.5.0.40"}
    assert set(await allocated_in_store(store, "v6")) == {"fd00:5::10"}


async def test_a_requested_family_gets_its_address_and_the_other_family_is_picked(tmp_path: Path) -> None:
    """Dual stack with only an IPv6 request: IPv6 is the asked one, IPv4 the lowest free."""
    engine, store = await engine_with(tmp_path, v4(), v6())
    got = await engine.allocate(request(1, requested_ips=("fd00:5::44/64",)))
    assert sorted(a.address for a in got.ips) == ["10.5.0.10/24", "fd00:5::44/64"]
    assert (await allocated_in_store(store, "v6"))["fd00:5::44"]["requested"] is True
    assert "requested" not in (await allocated_in_store(store, "v4"))["10.5.0.10"]


async def test_a_released_requested_address_can_be_asked_for_again(tmp_path: Path) -> None:
    """DEL frees a requested address like any other; the next pod asking for it gets it."""
    engine, store = await engine_with(tmp_path, v4())
    await engine.allocate(request(1, requested_ips=("10.5.0.45",)))
    released = await engine.release("uid-1", "eth0")
    assert [a.address for a in released.released] == ["10.5.0.45/24"]
    again = await engine.allocate(request(2, requested_ips=("10.5.0.45",)))
    assert [a.address for a in again.ips] == ["10.5.0.45/24"]
    assert (await allocated_in_store(store, "v4"))["10.5.0.45"]["podUid"] == "uid-2"


async def test_a_multi_nic_add_is_all_or_nothing_when_one_nics_request_fails(tmp_path: Path) -> None:
    """The ippools annotation allocates eth0 and net1; net1's Multus "ips" names an excluded address,
    so the ADD fails with 108 and eth0's requested address is not taken."""
    net1 = pool_manifest("net1", "10.6.0.0/24", ["10.6.0.10-10.6.0.50"], excludeIPs=["10.6.0.20"])
    engine, store = await engine_with(tmp_path, v4(default=False), net1)
    ippools = json.dumps([{"interface": "eth0", "ipv4": ["v4"]}, {"interface": "net1", "ipv4": ["net1"]}])

    def add(n: int, net1_ip: str) -> Any:
        networks = json.dumps([{"name": "macvlan-net1", "interface": "net1", "ips": [net1_ip]}])
        annotations = {POD_IPPOOLS: ippools, MULTUS_NETWORKS: networks}
        return engine.allocate(request(n, requested_ips=("10.5.0.30",), pod_annotations=annotations))

    with pytest.raises(RequestedIPNotAllowed, match=r"10.6.0.20 for net1: spec.excludeIPs of IPPool net1"):
        await add(1, "10.6.0.20/24")
    assert await allocated_in_store(store, "v4") == {}
    assert await allocated_in_store(store, "net1") == {}
    got = await add(1, "10.6.0.21/24")
    assert sorted((a.nic, a.address) for a in got.ips) == [("eth0", "10.5.0.30/24"), ("net1", "10.6.0.21/24")]
    assert (await allocated_in_store(store, "net1"))["10.6.0.21"]["requested"] is True


async def test_requested_marks_survive_an_engine_restart(tmp_path: Path) -> None:
    """After a restart the record still says requested and a repeated ADD answers the same address."""
    engine, store = await engine_with(tmp_path, v4())
    first = await engine.allocate(request(1, requested_ips=("10.5.0.22",)))
    await engine.close()
    engine, _ = await new_engine(tmp_path / "db", store)
    entry = next(e for e in engine.held_records() if e.record.pod_uid == "uid-1")
    assert entry.record.requested
    assert (await engine.allocate(request(1, requested_ips=("10.5.0.22",)))).ips == first.ips


async def test_a_statefulset_member_asking_for_another_address_moves_and_frees_the_old(
    tmp_path: Path,
) -> None:
    """web-0 re-created asking for .41 instead of its kept .40 gets .41; .40 is free again."""
    engine, store = await engine_with(tmp_path, v4())
    sts: dict[str, Any] = {"owner_kind": "StatefulSet", "owner_name": "web", "owner_replicas": 1}
    sts["owner_exists"] = True
    await engine.allocate(request("a", pod_name="web-0", requested_ips=("10.5.0.40",), **sts))
    kept = await engine.release("uid-a", "eth0", pod_key="ns/web-0", owner_kind="StatefulSet",
                                owner_name="web", owner_replicas=1, owner_exists=True)  # fmt: skip
    assert kept.kept
    same = await engine.allocate(request("b", pod_name="web-0", requested_ips=("10.5.0.40",), **sts))
    assert [a.address for a in same.ips] == ["10.5.0.40/24"]
    moved = await engine.allocate(request("c", pod_name="web-0", requested_ips=("10.5.0.41",), **sts))
    assert [a.address for a in moved.ips] == ["10.5.0.41/24"]
    records = await allocated_in_store(store, "v4")
    assert set(records) == {"10.5.0.41"}
    assert records["10.5.0.41"] == {**records["10.5.0.41"], "podUid": "uid-c", "requested": True}
