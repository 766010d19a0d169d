"""The operators' views over a real engine on SQLite: check never holds up an allocation, explain
shows the address the engine's own pick would take, and a pod's allocations are described per NIC."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from spiderpool_common.errors import NotFound
from spiderpool_controller.admin_service import AdminService
from spiderpool_controller.domain import consistency
from spiderpool_controller.domain.consistency import Report, Snapshot
from spiderpool_controller.domain.models import new_object
from spiderpool_controller.engine_slot import EngineSlot
from spiderpool_controller.ipam_engine import IpamEngine
from spiderpool_controller.store.contract import Store

from tests.component.engine_fixtures import new_engine, pool_manifest, request


async def started(tmp_path: Path, **settings: object) -> tuple[IpamEngine, Store]:
    engine, store = await new_engine(tmp_path / "state.db", **settings)  # type: ignore[arg-type]
    for manifest in (
        pool_manifest("a4", "10.1.0.0/24", ["10.1.0.10-10.1.0.12"], gateway="10.1.0.1"),
        pool_manifest("a6", "fd00:1::/64", ["fd00:1::10-fd00:1::20"]),
    ):
        await engine.pool_changed(await store.create(manifest))
    return engine, store


async def test_a_check_in_progress_does_not_hold_up_allocations(tmp_path: Path) -> None:
    """While the check's computation is stuck in its worker thread, an allocation completes; the
    check then reports on the records it read (the new allocation was not in its first reading)."""
    engine, store = await started(tmp_path)
    entered, go = threading.Event(), threading.Event()

    def slow(snapshot: Snapshot) -> Report:
        entered.set()
        assert go.wait(timeout=30)
        return consistency.check(snapshot)

    service = AdminService(EngineSlot(engine), store, compute=slow)
    try:
        await engine.allocate(request(1, default_ipv4_pools=("a4",)))
        checking = asyncio.create_task(service.check())
        assert await asyncio.to_thread(entered.wait, 30)
        result = await asyncio.wait_for(engine.allocate(request(2, default_ipv4_pools=("a4",))), timeout=10)
        assert [a.address for a in result.ips] == ["10.1.0.11/24"]
        assert not checking.done()
        go.set()
        outcome = await asyncio.wait_for(checking, timeout=30)
        assert (outcome.pools, outcome.addresses, outcome.pods) == (2, 1, None)
    finally:
        go.set()
        await engine.close()
        await store.close()


async def test_check_reports_an_address_a_reserved_ip_now_covers(tmp_path: Path) -> None:
    """A SpiderReservedIP applied over a held address: the pod keeps it, the check names it."""
    engine, store = await started(tmp_path)
    try:
        await engine.allocate(request(1, default_ipv4_pools=("a4",)))
        await engine.flush_endpoints()
        await store.create(
            new_object("SpiderReservedIP", "hold", spec={"ipVersion": 4, "ips": ["10.1.0.10"]})
        )
        await engine.reserved_changed()
        outcome = await AdminService(EngineSlot(engine), store).check()
        assert [(f.kind, f.pool, f.ip, f.pod) for f in outcome.report.findings] == [
            ("reserved", "a4", "10.1.0.10", "ns/pod-1")
        ]
    finally:
        await engine.close()
        await store.close()


async def test_explain_shows_the_address_the_allocation_then_takes(tmp_path: Path) -> None:
    """The chosen pool's next address is exactly what the following ADD gets; an exhausted pool is
    kept by the filters but not chosen, and the next one is."""
    engine, store = await started(tmp_path)
    await engine.pool_changed(await store.create(pool_manifest("b4", "10.2.0.0/24", ["10.2.0.10-10.2.0.19"])))
    service = AdminService(EngineSlot(engine), store)
    try:
        req = request(9, default_ipv4_pools=("a4", "b4"), default_ipv6_pools=("a6",))
        first = await service.explain(req)
        (nic,) = first.nics
        v4, v6 = nic.families
        assert [(p.pool, p.kept, p.next_free, p.free, p.chosen) for p in v4.pools] == [
            ("a4", True, "10.1.0.10", 3, True),
            ("b4", True, "10.2.0.10", 10, False),
        ]
        assert [(p.next_free, p.chosen) for p in v6.pools] == [("fd00:1::10", True)]
        got = await engine.allocate(req)
        assert sorted(a.address for a in got.ips) == ["10.1.0.10/24", "fd00:1::10/64"]
        assert [a.address for a in (await service.explain(req)).nics[0].held] == [
            "10.1.0.10/24",
            "fd00:1::10/64",
        ]
        for n in (10, 11):
            await engine.allocate(request(n, default_ipv4_pools=("a4",)))
        full = (await service.explain(request(12, default_ipv4_pools=("a4", "b4")))).nics[0].families[0]
        assert [(p.pool, p.next_free, p.free, p.chosen) for p in full.pools] == [
            ("a4", "", 0, False),
            ("b4", "10.2.0.10", 10, True),
        ]
        assert full.error == ""
        exhausted = (await service.explain(request(13, default_ipv4_pools=("a4",)))).nics[0].families[0]
        assert exhausted.error.startswith("no free IPv4 address for eth0 in IPPools [a4]")
    finally:
        await engine.close()
        await store.close()


async def test_explain_skips_an_address_cooling_in_its_reuse_delay_as_the_allocation_does(
    tmp_path: Path,
) -> None:
    """With a reuse delay, a just-released address is not the one explain shows, nor the one the ADD
    takes: both say the next address (explain read the lowest free before it used the engine's pick)."""
    engine, store = await started(tmp_path, ip_reuse_delay_s=300)
    service = AdminService(EngineSlot(engine), store)
    try:
        await engine.allocate(request(1, default_ipv4_pools=("a4",)))
        await engine.release("uid-1", "eth0", container_id="cid-1")
        req = request(2, default_ipv4_pools=("a4",))
        (pool,) = (await service.explain(req)).nics[0].families[0].pools
        assert (pool.next_free, pool.free, pool.chosen) == ("10.1.0.11", 3, True)
        assert [a.address for a in (await engine.allocate(req)).ips] == ["10.1.0.11/24"]
    finally:
        await engine.close()
        await store.close()


async def test_a_pod_is_described_per_interface_from_the_records(tmp_path: Path) -> None:
    """Both NICs of a pod with their addresses, pools, gateways, sandbox, network and node; a pod
    without allocations is NotFound naming it."""
    engine, store = await started(tmp_path)
    service = AdminService(EngineSlot(engine), store)
    try:
        await engine.allocate(request(1, default_ipv4_pools=("a4",), default_ipv6_pools=("a6",)))
        await engine.allocate(request(1, "net1", default_ipv6_pools=("a6",), clean_gateway=True))
        detail = service.describe_endpoint("ns", "pod-1")
        assert (detail.pod_uid, detail.owner_kind) == ("uid-1", "Pod")
        assert [
            (i.interface, i.container_id, i.network, i.node, i.clean_gateway) for i in detail.interfaces
        ] == [
            ("eth0", "cid-1", "net-a", "node-1", False),
            ("net1", "cid-1", "net-a", "node-1", True),
        ]
        assert [(a.address, a.pool, a.gateway) for a in detail.interfaces[0].addresses] == [
            ("10.1.0.10/24", "a4", "10.1.0.1"),
            ("fd00:1::10/64", "a6", None),
        ]
        with pytest.raises(NotFound, match="no allocation of pod ns/nobody"):
            service.describe_endpoint("ns", "nobody")
    finally:
        await engine.close()
        await store.close()


async def test_the_records_snapshot_is_a_copy_of_one_moment(tmp_path: Path) -> None:
    """Allocations and releases after the snapshot do not change it; it carries each record's
    take number, which the check compares with the number read before the pods."""
    engine, store = await started(tmp_path)
    try:
        await engine.allocate(request(1, default_ipv4_pools=("a4",)))
        snapshot = engine.records_snapshot()
        mark = engine.allocation_sequence()
        await engine.allocate(request(2, default_ipv4_pools=("a4",)))
        await engine.release("uid-1", "eth0", container_id="cid-1")
        pools = {name: records for name, _, records in snapshot.pools}
        assert [r.pod for r in pools["a4"].values()] == ["ns/pod-1"]
        assert pools["a6"] == {}
        assert list(snapshot.sequences.values()) == [mark]
        after = {name: records for name, _, records in engine.records_snapshot().pools}
        assert [r.pod for r in after["a4"].values()] == ["ns/pod-2"]
    finally:
        await engine.close()
        await store.close()
