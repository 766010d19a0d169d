"""SpiderSubnet auto pools in the embedded mode: the engine, a real SQLite file, the subnet machinery.

Wired as ``server.start_controller`` wires it: manifests go through the ResourceService (the
engine hears of them in-process), the subnet cache watches the SQLite store, and the engine's
``auto_pools`` hook makes a workload's pool on its first pod's ADD, sized from the ADD's owner
(``args.cni.owner``'s replicas), resizes it on later ADDs, and keeps the SpiderSubnet's status.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from spiderpool_common.errors import (
    InvalidAnnotation,
    InvalidRequest,
    NoPoolMatched,
    PoolExhausted,
    Unavailable,
)
from spiderpool_controller.auto_pool_manager import AutoPoolSettings
from spiderpool_controller.change_feed import NotifyingStore
from spiderpool_controller.domain.ipset import IPSet
from spiderpool_controller.domain.models import new_object
from spiderpool_controller.domain.request import AllocationRequest
from spiderpool_controller.domain.validation import ValidationSettings
from spiderpool_controller.ipam_engine import IpamEngine
from spiderpool_controller.resource_service import ResourceService
from spiderpool_controller.server import start_controller
from spiderpool_controller.settings import ControllerSettings
from spiderpool_controller.store.contract import Obj, ObjectNotFound
from spiderpool_controller.store.sqlite import SqliteStore
from spiderpool_controller.subnet_reconciler import SubnetMachinery, start_embedded

from tests.component.agent_harness import wait_until
from tests.component.engine_fixtures import pool_manifest

UID = "7c6e1a52-0d1b-4c3e-9a8f-44037bd0e1aa"  # uid5: 44037


class CountingStore:
    """``inner`` counting reads and optionally holding pool spec updates until ``release`` is set."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.reads = 0
        self.hold_updates: asyncio.Event | None = None
        self.update_started = asyncio.Event()

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        self.reads += 1
        return await self.inner.get(kind, name, namespace)

    async def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None) -> Any:
        self.reads += 1
        return await self.inner.list(kind, namespace, label_selector)

    async def update(self, obj: Obj) -> Obj:
        if obj.get("kind") == "SpiderIPPool" and self.hold_updates is not None:
            self.update_started.set()
            await self.hold_updates.wait()
        return await self.inner.update(obj)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Embedded:
    store: CountingStore
    engine: IpamEngine
    resources: ResourceService
    machinery: SubnetMachinery

    async def subnet(self, name: str = "subnet-6", **spec: Any) -> Obj:
        body = {"ipVersion": 4, "subnet": "10.6.0.0/16", "ips": ["10.6.168.101-10.6.168.140"], **spec}
        stored, _, _ = await self.resources.apply(new_object("SpiderSubnet", name, spec=body))
        return stored

    async def pool(self, name: str) -> Obj:
        return await self.store.inner.get("SpiderIPPool", name)

    async def subnet_status(self, name: str = "subnet-6") -> dict[str, Any]:
        return dict((await self.store.inner.get("SpiderSubnet", name)).get("status") or {})


def add(n: int, annotations: dict[str, str] | None = None, **owner: Any) -> AllocationRequest:
    """An ADD of pod ``web-n`` of Deployment ``web`` (owner fields override)."""
    fields: dict[str, Any] = {
        "owner_kind": "Deployment",
        "owner_name": "web",
        "owner_uid": UID,
        "owner_replicas": 2,
    }
    fields.update(owner)
    return AllocationRequest(
        container_id=f"cid-{n}",
        ifname=fields.pop("ifname", "eth0"),
        pod_namespace="default",
        pod_name=f"web-{n}",
        pod_uid=f"pod-uid-{n}",
        node="node-1",
        network="net",
        pod_annotations=annotations
        if annotations is not None
        else {"ipam.spidernet.io/subnet": '{"ipv4": ["subnet-6"]}'},
        **fields,
    )


def ips_of(pool: Obj) -> IPSet:
    return IPSet.parse(pool["spec"].get("ips") or [], 4)


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Embedded]:
    env = await start(tmp_path)
    try:
        yield env
    finally:
        await stop(env)


async def start(tmp_path: Path, **settings: Any) -> Embedded:
    sqlite = SqliteStore(tmp_path / "db")
    store = CountingStore(sqlite)
    engine = IpamEngine(store)  # type: ignore[arg-type]
    await engine.start()
    machinery = start_embedded(store, engine, AutoPoolSettings(**settings), auto_pools=True)  # type: ignore[arg-type]
    resources = ResourceService(NotifyingStore(store, engine))  # type: ignore[arg-type]
    await machinery.subnets.synced.wait()
    return Embedded(store, engine, resources, machinery)


async def stop(env: Embedded) -> None:
    await env.machinery.stop(env.engine)
    await env.engine.close()
    await env.store.inner.close()


async def test_the_first_add_creates_the_workloads_pool_sized_by_replicas_plus_one(
    embedded: Embedded,
) -> None:
    """Deployment web (2 replicas, no ip-number): auto4-web-eth0-44037 with the subnet's 3 lowest
    addresses, upstream's labels, the pod gets the first; the subnet's status counts it."""
    await embedded.subnet(gateway="10.6.0.1")
    result = await embedded.engine.allocate(add(1))
    assert [a.address for a in result.ips] == ["10.6.168.101/16"]
    assert result.ips[0].pool == "auto4-web-eth0-44037"
    pool = await embedded.pool("auto4-web-eth0-44037")
    assert pool["spec"]["ips"] == ["10.6.168.101-10.6.168.103"]
    assert pool["spec"]["gateway"] == "10.6.0.1"
    labels = pool["metadata"]["labels"]
    assert labels["ipam.spidernet.io/owner-application-uid"] == UID
    assert labels["ipam.spidernet.io/owner-spider-subnet"] == "subnet-6"
    assert pool["metadata"]["annotations"]["ipam.spidernet.io/ippool-ip-number"] == "+1"
    await wait_until(
        lambda: _status_is(embedded, allocatedIPCount=3, totalIPCount=40), "the subnet status", deadline=5
    )
    controlled = json.loads((await embedded.subnet_status())["controlledIPPools"])
    assert controlled == {
        "auto4-web-eth0-44037": {
            "ips": ["10.6.168.101-10.6.168.103"],
            "application": "apps_v1_Deployment_default_web",
        }
    }


async def _status_is(env: Embedded, **wanted: Any) -> bool:
    status = await env.subnet_status()
    return all(status.get(k) == v for k, v in wanted.items())


async def test_later_adds_resize_the_pool_to_the_owners_replicas(embedded: Embedded) -> None:
    """An ADD naming 5 replicas grows the pool to 6 (lowest free addresses); one naming 1 replica
    shrinks it towards 2 by its highest free addresses, never below what pods hold (that ADD then
    finds the pool full: the workload runs more pods than its owner says)."""
    await embedded.subnet()
    for n in range(1, 4):
        await embedded.engine.allocate(add(n, owner_replicas=5))
    pool = await embedded.pool("auto4-web-eth0-44037")
    assert ips_of(pool) == IPSet.parse(["10.6.168.101-10.6.168.106"], 4)
    with pytest.raises(PoolExhausted):
        await embedded.engine.allocate(add(4, owner_replicas=1))
    pool = await embedded.pool("auto4-web-eth0-44037")
    assert ips_of(pool) == IPSet.parse(["10.6.168.101-10.6.168.103"], 4)  # three pods hold these
    await embedded.engine.release("pod-uid-2", "eth0", container_id="cid-2")
    await embedded.engine.release("pod-uid-3", "eth0", container_id="cid-3")
    result = await embedded.engine.allocate(add(5, owner_replicas=1))
    assert result.ips[0].address == "10.6.168.102/16"
    pool = await embedded.pool("auto4-web-eth0-44037")
    assert ips_of(pool) == IPSet.parse(["10.6.168.101-10.6.168.102"], 4)
    await wait_until(lambda: _status_is(embedded, allocatedIPCount=2), "the subnet status", deadline=5)


async def test_a_fixed_ip_number_and_a_second_family_and_nic(embedded: Embedded) -> None:
    """subnets: eth0 dual stack and net1 IPv4, fixed "2": each (NIC, family) gets its own pool of 2."""
    await embedded.subnet()
    await embedded.subnet("subnet-7", subnet="10.7.0.0/16", ips=["10.7.0.10-10.7.0.20"])
    await embedded.subnet("subnet-v6", ipVersion=6, subnet="fd00:6::/64", ips=["fd00:6::10-fd00:6::20"])
    annotations = {
        "ipam.spidernet.io/subnets": json.dumps(
            [
                {"interface": "eth0", "ipv4": ["subnet-6"], "ipv6": ["subnet-v6"]},
                {"interface": "net1", "ipv4": ["subnet-7"]},
            ]
        ),
        "ipam.spidernet.io/ippool-ip-number": "2",
    }
    eth0 = await embedded.engine.allocate(add(1, annotations, owner_replicas=9))
    assert {a.pool for a in eth0.ips} == {"auto4-web-eth0-44037", "auto6-web-eth0-44037"}
    net1 = await embedded.engine.allocate(add(1, annotations, ifname="net1"))
    assert [a.address for a in net1.ips if a.nic == "net1"] == ["10.7.0.10/16"]
    for name in ("auto4-web-eth0-44037", "auto6-web-eth0-44037", "auto4-web-net1-44037"):
        assert ips_of_any(await embedded.pool(name)) == 2


def ips_of_any(pool: Obj) -> int:
    version = pool["spec"]["ipVersion"]
    return IPSet.parse(pool["spec"]["ips"], version).count()


async def test_pools_of_the_same_subnet_never_share_an_address(embedded: Embedded) -> None:
    """Twenty workloads' first ADDs at once: twenty pools of 3, pairwise disjoint, all inside the subnet."""
    await embedded.subnet(ips=["10.6.168.101-10.6.168.200"])
    results = await asyncio.gather(
        *(embedded.engine.allocate(add(n, owner_name=f"app{n}", owner_uid=f"u-{n:05d}")) for n in range(20))
    )
    assert len({r.ips[0].address for r in results}) == 20
    pools = [await embedded.pool(f"auto4-app{n}-eth0-{n:05d}") for n in range(20)]
    seen = IPSet.empty(4)
    for pool in pools:
        assert ips_of(pool).count() == 3
        assert not ips_of(pool).overlaps(seen)
        seen = seen | ips_of(pool)
    assert seen.issubset(IPSet.parse(["10.6.168.101-10.6.168.160"], 4))
    await wait_until(lambda: _status_is(embedded, allocatedIPCount=60), "the subnet status", deadline=5)


async def test_an_add_waits_for_its_subnet_without_polling_and_succeeds_when_it_appears(
    tmp_path: Path,
) -> None:
    """The subnet does not exist yet: the ADD waits (no store read while it waits), and is
    answered from the new pool once the subnet is applied."""
    env = await start(tmp_path, wait_s=10.0)
    try:
        pending = asyncio.create_task(env.engine.allocate(add(1)))
        await asyncio.sleep(0.5)
        assert not pending.done()
        reads_while_waiting = env.store.reads
        await asyncio.sleep(0.5)
        assert env.store.reads == reads_while_waiting
        await env.subnet()
        result = await asyncio.wait_for(pending, 5)
        assert result.ips[0].pool == "auto4-web-eth0-44037"
    finally:
        await stop(env)


async def test_an_add_whose_subnet_never_comes_answers_code_11_naming_it(tmp_path: Path) -> None:
    """After the wait, Unavailable (CNI 11) says which subnet is missing and how long it waited."""
    env = await start(tmp_path, wait_s=0.3)
    try:
        with pytest.raises(
            Unavailable, match=r"SpiderSubnet subnet-6 .* does not exist .*waited 0.3s"
        ) as err:
            await env.engine.allocate(add(1))
        assert err.value.cni_code == 11
        assert env.engine.pool_states() == {}
    finally:
        await stop(env)


@pytest.mark.parametrize(
    ("owner", "error", "fragment"),
    [
        ({"owner_kind": ""}, InvalidRequest, "without a controller"),
        ({"owner_kind": "Pod", "owner_name": "web-1"}, InvalidRequest, "without a controller"),
        ({"owner_uid": ""}, InvalidRequest, "no name or UID"),
        ({"ifname": "net2"}, NoPoolMatched, "names no SpiderSubnet for interface net2"),
    ],
)
async def test_adds_that_cannot_have_an_auto_pool_are_refused_and_change_nothing(
    embedded: Embedded, owner: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    """A bare pod, an owner without UID, a NIC the annotation does not name: refused, no pool made."""
    await embedded.subnet()
    with pytest.raises(error, match=fragment):
        await embedded.engine.allocate(add(1, **owner))
    assert embedded.engine.pool_states() == {}


async def test_a_subnet_of_the_wrong_family_and_a_malformed_annotation_are_refused(
    embedded: Embedded,
) -> None:
    """Naming an IPv6 subnet under ipv4, or a bad ip-number: code 105, nothing made."""
    await embedded.subnet("v6", ipVersion=6, subnet="fd00:6::/64", ips=["fd00:6::10-fd00:6::20"])
    with pytest.raises(InvalidAnnotation, match="SpiderSubnet v6 is IPv6"):
        await embedded.engine.allocate(add(1, {"ipam.spidernet.io/subnet": '{"ipv4": ["v6"]}'}))
    bad = {"ipam.spidernet.io/subnet": '{"ipv4": ["v6"]}', "ipam.spidernet.io/ippool-ip-number": "-1"}
    with pytest.raises(InvalidAnnotation, match="ippool-ip-number"):
        await embedded.engine.allocate(add(1, bad))
    assert embedded.engine.pool_states() == {}


async def test_auto_pools_disabled_refuse_a_pod_naming_a_subnet(embedded: Embedded) -> None:
    """Without the hook (--enable-auto-pool false) the ADD says why instead of using other rules."""
    await embedded.subnet()
    embedded.engine.auto_pools = None
    with pytest.raises(InvalidRequest, match="automatic pools are disabled"):
        await embedded.engine.allocate(add(1))


async def test_a_shrink_withholds_the_removed_addresses_until_the_new_spec_is_written(
    embedded: Embedded,
) -> None:
    """While the smaller spec is being written, ADDs that reach the pool another way (here the
    pods' ippool annotation naming it) get only addresses it keeps: the removed ones are withheld,
    so no allocation ends up outside the pool's new ips."""
    await embedded.subnet()
    await embedded.engine.allocate(add(1, owner_replicas=5))  # pool of 6, 10.6.168.101 allocated
    embedded.store.hold_updates = asyncio.Event()
    shrink = asyncio.create_task(embedded.engine.allocate(add(2, owner_replicas=1)))  # down to 2
    await asyncio.wait_for(embedded.store.update_started.wait(), 5)
    by_name = {"ipam.spidernet.io/ippool": '{"ipv4": ["auto4-web-eth0-44037"]}'}
    got: list[str] = []
    for n in (3, 4, 5):
        try:
            result = await asyncio.wait_for(embedded.engine.allocate(add(n, by_name)), 5)
        except PoolExhausted:
            continue
        got += [a.address for a in result.ips]
    assert got == ["10.6.168.102/16"]  # 103-106 are being removed: withheld
    asked = add(6, by_name, requested_ips=("10.6.168.104",))  # the runtime asks for one of them
    with pytest.raises(Unavailable, match=r"10\.6\.168\.104.*leaving IPPool auto4-web-eth0-44037"):
        await asyncio.wait_for(embedded.engine.allocate(asked), 5)
    embedded.store.hold_updates.set()
    with pytest.raises(PoolExhausted):  # web-2's own ADD finds the shrunk pool full
        await asyncio.wait_for(shrink, 5)
    pool = ips_of(await embedded.pool("auto4-web-eth0-44037"))
    assert pool == IPSet.parse(["10.6.168.101-10.6.168.102"], 4)


async def test_the_subnet_adopts_a_manual_pool_of_its_cidr_and_counts_it(embedded: Embedded) -> None:
    """A pool applied before its subnet becomes the subnet's (owner label and reference, the
    subnet's gateway) and is counted; auto pools then avoid its addresses."""
    await embedded.resources.apply(pool_manifest("manual", "10.6.0.0/16", ["10.6.168.101-10.6.168.110"]))
    await embedded.subnet(gateway="10.6.0.1")
    await wait_until(lambda: _status_is(embedded, allocatedIPCount=10), "the adoption", deadline=5)
    manual = await embedded.pool("manual")
    assert manual["metadata"]["labels"]["ipam.spidernet.io/owner-spider-subnet"] == "subnet-6"
    assert manual["metadata"]["ownerReferences"][0]["kind"] == "SpiderSubnet"
    assert manual["spec"]["gateway"] == "10.6.0.1"
    result = await embedded.engine.allocate(add(1))
    assert result.ips[0].address == "10.6.168.111/16"
    await wait_until(lambda: _status_is(embedded, allocatedIPCount=13), "the auto pool counted", deadline=5)


async def test_a_pool_with_addresses_outside_the_subnet_is_not_adopted(embedded: Embedded) -> None:
    """A pool of the CIDR holding addresses the subnet's ips do not have stays an orphan. (The
    webhook rules keep such a pair from being made while the subnet feature is on; here the pool
    was applied with it off, enable_spider_subnet false, as an installation may have done.)"""
    await embedded.subnet()
    feature_off = ResourceService(
        NotifyingStore(embedded.store, embedded.engine),  # type: ignore[arg-type]
        ValidationSettings(enable_spider_subnet=False),
    )
    await feature_off.apply(pool_manifest("wide", "10.6.0.0/16", ["10.6.0.1-10.6.0.5"]))
    await asyncio.sleep(0.3)
    wide = await embedded.pool("wide")
    assert "ipam.spidernet.io/owner-spider-subnet" not in (wide["metadata"].get("labels") or {})
    assert await _status_is(embedded, allocatedIPCount=0)


async def test_deleting_the_subnet_deletes_its_pools_then_itself(embedded: Embedded) -> None:
    """The subnet waits for its pools; a pool with an allocation waits for the release."""
    await embedded.subnet()
    await embedded.engine.allocate(add(1))
    await wait_until(lambda: _status_is(embedded, allocatedIPCount=3), "the subnet status", deadline=5)
    await embedded.resources.delete("SpiderSubnet", "subnet-6")
    await wait_until(
        lambda: bool(embedded.engine.pool_states()["auto4-web-eth0-44037"].terminating),
        "the pool marked",
        deadline=5,
    )
    assert (await embedded.store.inner.get("SpiderSubnet", "subnet-6"))["metadata"]["deletionTimestamp"]
    await embedded.engine.release("pod-uid-1", "eth0", container_id="cid-1")
    await wait_until(lambda: _gone(embedded, "SpiderSubnet", "subnet-6"), "the subnet gone", deadline=5)
    assert await _gone(embedded, "SpiderIPPool", "auto4-web-eth0-44037")


async def _gone(env: Embedded, kind: str, name: str) -> bool:
    try:
        await env.store.inner.get(kind, name)
    except ObjectNotFound:
        return True
    return False


@pytest.mark.parametrize(
    ("switches", "outcome"),
    [
        ({"enable_spider_subnet": False}, "ignored"),
        ({"enable_auto_pool": False}, "refused"),
        ({}, "auto pool"),
    ],
)
async def test_the_controllers_switches_decide_what_a_subnet_annotation_does(
    tmp_path: Path, switches: dict[str, Any], outcome: str
) -> None:
    """As upstream: with enable_spider_subnet off the subnet annotations are ignored (the pod's
    ippool annotation picks, and no subnet machinery runs); with it on and enable_auto_pool off
    the ADD is refused; both on, the auto pool serves it. The controller as server.py wires it."""
    settings = replace(
        ControllerSettings(store=f"sqlite://{tmp_path / 'db'}", listen=f"unix:{tmp_path / 's.sock'}"),
        **switches,
    ).validate()
    controller = await start_controller(settings)
    try:
        resources = ResourceService(NotifyingStore(controller.store, controller.engine), settings.validation)
        await resources.apply(pool_manifest("manual", "10.7.0.0/16", ["10.7.0.10-10.7.0.20"]))
        if controller.subnets is not None:
            await controller.subnets.subnets.synced.wait()
        await resources.apply(
            new_object(
                "SpiderSubnet",
                "subnet-6",
                spec={"ipVersion": 4, "subnet": "10.6.0.0/16", "ips": ["10.6.0.10"]},
            )
        )
        both = {
            "ipam.spidernet.io/subnet": '{"ipv4": ["subnet-6"]}',
            "ipam.spidernet.io/ippool": '{"ipv4": ["manual"]}',
        }
        assert (controller.subnets is None) == (outcome == "ignored")
        if outcome == "refused":
            with pytest.raises(InvalidRequest, match="automatic pools are disabled"):
                await controller.engine.allocate(add(1, both))
            return
        result = await asyncio.wait_for(controller.engine.allocate(add(1, both)), 5)
        expected = "manual" if outcome == "ignored" else "auto4-web-eth0-44037"
        assert [a.pool for a in result.ips] == [expected]
    finally:
        await controller.stop()
