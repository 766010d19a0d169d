"""ResourceService over a real SQLite store: kubectl-apply semantics, cross-object validation, IP counts."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from spiderpool_common.errors import Conflict, InvalidObject, InvalidRequest
from spiderpool_controller.domain import models
from spiderpool_controller.resource_service import ResourceService
from spiderpool_controller.store.contract import Obj, ObjectNotFound, Store
from spiderpool_controller.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    yield s
    await s.close()


@pytest.fixture
def service(store: SqliteStore) -> ResourceService:
    return ResourceService(store)


def pool(name: str = "demo-v4", **spec: Any) -> Obj:
    base: dict[str, Any] = {
        "subnet": "172.30.0.0/24",
        "ips": ["172.30.0.10-172.30.0.60"],
        "gateway": "172.30.0.1",
    }
    base.update(spec)
    return models.new_object(models.KIND_IPPOOL, name, spec=base)


async def allocate(store: SqliteStore, name: str, ips: dict[str, str]) -> Obj:
    """Record allocations the way the IPAM engine does: a status write on the pool."""
    current = await store.get(models.KIND_IPPOOL, name)
    records = {ip: models.AllocationRecord(pod=pod, pod_uid=f"uid-{pod}") for ip, pod in ips.items()}
    status = models.pool_status_dict(records, current["status"]["totalIPCount"])
    return await store.update_status({**current, "status": status})


async def test_apply_creates_a_defaulted_pool_with_ip_counts(service: ResourceService) -> None:
    """A new pool is stored defaulted (version, label, finalizer) with allocatedIPCount 0 and its total."""
    stored, created, unchanged = await service.apply(pool())
    assert (created, unchanged) == (True, False)
    assert stored["spec"]["ipVersion"] == 4
    assert stored["metadata"]["labels"] == {"ipam.spidernet.io/ippool-cidr": "172-30-0-0-24"}
    assert stored["metadata"]["finalizers"] == ["spiderpool.spidernet.io"]
    assert stored["status"] == {"allocatedIPCount": 0, "totalIPCount": 51}
    assert await service.get(models.KIND_IPPOOL, "demo-v4") == stored


async def test_apply_of_the_same_manifest_is_unchanged(service: ResourceService) -> None:
    """Re-applying an identical manifest writes nothing (same resourceVersion)."""
    first, _, _ = await service.apply(pool())
    again, created, unchanged = await service.apply(pool())
    assert (created, unchanged) == (False, True)
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_apply_updates_spec_and_labels_and_keeps_allocations(
    service: ResourceService, store: SqliteStore
) -> None:
    """A changed manifest replaces spec and labels; allocations stay and totalIPCount follows the spec."""
    await service.apply(pool())
    await allocate(store, "demo-v4", {"172.30.0.10": "default/web-0"})
    changed = pool(ips=["172.30.0.10-172.30.0.100"])
    changed["metadata"]["labels"] = {"team": "web"}
    stored, created, unchanged = await service.apply(changed)
    assert (created, unchanged) == (False, False)
    assert stored["spec"]["ips"] == ["172.30.0.10-172.30.0.100"]
    assert stored["metadata"]["labels"] == {"team": "web", "ipam.spidernet.io/ippool-cidr": "172-30-0-0-24"}
    assert stored["status"]["totalIPCount"] == 91
    assert models.IPPool.from_dict(stored).allocated["172.30.0.10"].pod == "default/web-0"


async def test_apply_never_writes_status_from_the_manifest(service: ResourceService) -> None:
    """A status in the manifest (e.g. from `get -o yaml`) is ignored: status is the IPAM engine's."""
    manifest = pool()
    manifest["status"] = {"allocatedIPCount": 7, "totalIPCount": 1, "allocatedIPs": '{"172.30.0.11":{}}'}
    stored, _, _ = await service.apply(manifest)
    assert stored["status"] == {"allocatedIPCount": 0, "totalIPCount": 51}


async def test_changed_subnet_is_refused_and_the_pool_unchanged(service: ResourceService) -> None:
    """The subnet is immutable; the stored object stays as it was."""
    before, _, _ = await service.apply(pool())
    with pytest.raises(InvalidObject) as info:
        await service.apply(pool(subnet="172.31.0.0/24", ips=["172.31.0.10"], gateway="172.31.0.1"))
    assert info.value.message == (
        'SpiderIPPool "demo-v4": spec.subnet: is immutable '
        "(stored: 172.30.0.0/24, requested: 172.31.0.0/24); "
        "create a new object for another subnet"
    )
    assert await service.get(models.KIND_IPPOOL, "demo-v4") == before


async def test_removing_an_allocated_ip_is_refused(service: ResourceService, store: SqliteStore) -> None:
    """Shrinking ips below an address a pod holds names the pod, and nothing is written."""
    await service.apply(pool())
    allocated = await allocate(store, "demo-v4", {"172.30.0.50": "default/web-1"})
    with pytest.raises(InvalidObject) as info:
        await service.apply(pool(ips=["172.30.0.10-172.30.0.40"]))
    assert "remove an IP address 172.30.0.50 that is being used by Pod default/web-1" in info.value.message
    assert await service.get(models.KIND_IPPOOL, "demo-v4") == allocated


async def test_overlapping_pools_are_refused_against_the_store(service: ResourceService) -> None:
    """Cross-object rules read the stored pools: a second pool may not share IPs of the same subnet."""
    await service.apply(pool())
    with pytest.raises(InvalidObject) as info:
        await service.apply(pool("other", ips=["172.30.0.60-172.30.0.70"]))
    assert info.value.message.startswith(
        'SpiderIPPool "other": spec.ips: 172.30.0.60 also belong to SpiderIPPool "demo-v4"'
    )
    with pytest.raises(ObjectNotFound):
        await service.get(models.KIND_IPPOOL, "other")
    stored, created, _ = await service.apply(pool("other", ips=["172.30.0.61-172.30.0.70"]))
    assert created and stored["status"]["totalIPCount"] == 10


async def test_reserved_ips_lower_pool_totals(service: ResourceService) -> None:
    """Applying or deleting a SpiderReservedIP keeps every pool's totalIPCount current."""
    await service.apply(pool())
    reserved = models.new_object(models.KIND_RESERVED_IP, "hold", spec={"ips": ["172.30.0.59-172.30.0.65"]})
    stored, created, _ = await service.apply(reserved)
    assert created and stored["spec"] == {"ipVersion": 4, "ips": ["172.30.0.59-172.30.0.65"]}
    assert (await service.get(models.KIND_IPPOOL, "demo-v4"))["status"]["totalIPCount"] == 49
    await service.delete(models.KIND_RESERVED_IP, "hold")
    assert (await service.get(models.KIND_IPPOOL, "demo-v4"))["status"]["totalIPCount"] == 51


async def test_subnet_gets_ip_counts(service: ResourceService) -> None:
    """A SpiderSubnet is stored with its label, finalizer and totalIPCount."""
    subnet = models.new_object(
        models.KIND_SUBNET, "s", spec={"subnet": "10.6.0.0/16", "ips": ["10.6.0.10-10.6.0.19"]}
    )
    stored, _, _ = await service.apply(subnet)
    assert stored["metadata"]["labels"] == {"ipam.spidernet.io/subnet-cidr": "10-6-0-0-16"}
    assert stored["status"] == {"allocatedIPCount": 0, "totalIPCount": 10}


async def test_delete_of_an_idle_pool_removes_it(service: ResourceService) -> None:
    """A pool with no allocations loses its finalizer and is gone at once."""
    await service.apply(pool())
    await service.delete(models.KIND_IPPOOL, "demo-v4")
    with pytest.raises(ObjectNotFound) as info:
        await service.get(models.KIND_IPPOOL, "demo-v4")
    assert info.value.message == 'SpiderIPPool "demo-v4" not found'


async def test_delete_of_a_pool_in_use_keeps_it_terminating(
    service: ResourceService, store: SqliteStore
) -> None:
    """A pool in use is only marked (its finalizer waits for the IPAM engine), and apply refuses it."""
    await service.apply(pool())
    await allocate(store, "demo-v4", {"172.30.0.10": "default/web-0"})
    result = await service.delete(models.KIND_IPPOOL, "demo-v4")
    assert result["metadata"]["deletionTimestamp"]
    assert result["metadata"]["finalizers"] == ["spiderpool.spidernet.io"]
    kept = await service.get(models.KIND_IPPOOL, "demo-v4")
    assert kept["metadata"]["deletionTimestamp"]
    with pytest.raises(Conflict) as info:
        await service.apply(pool())
    assert info.value.message == 'SpiderIPPool "demo-v4" is being deleted; apply it again once it is gone'


async def test_delete_of_a_missing_object_is_not_found(service: ResourceService) -> None:
    """Deleting what does not exist names it."""
    with pytest.raises(ObjectNotFound) as info:
        await service.delete(models.KIND_SUBNET, "nope")
    assert info.value.message == 'SpiderSubnet "nope" not found'


async def test_apply_retries_when_the_engine_writes_in_between(store: SqliteStore) -> None:
    """A status write between apply's read and its CAS update is retried, never lost or overwritten."""

    class RacingStore:
        """The real store, with one engine-style status write injected before the first spec update."""

        raced = False

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def update(self, obj: Obj) -> Obj:
            if not self.raced:
                self.raced = True
                await allocate(store, obj["metadata"]["name"], {"172.30.0.11": "default/racer"})
            return await store.update(obj)  # carries the resourceVersion apply read: a stale CAS

    racing = RacingStore()
    service = ResourceService(cast(Store, racing))
    await service.apply(pool())
    stored, _, _ = await service.apply(pool(ips=["172.30.0.10-172.30.0.80"]))
    assert racing.raced
    assert stored["spec"]["ips"] == ["172.30.0.10-172.30.0.80"]
    assert "172.30.0.11" in models.IPPool.from_dict(stored).allocated
    assert stored["status"]["totalIPCount"] == 71


async def test_list_filters_by_label_selector(service: ResourceService) -> None:
    """list passes the Kubernetes label selector to the store."""
    tagged = pool("a", ips=["172.30.0.10"])
    tagged["metadata"]["labels"] = {"team": "web"}
    await service.apply(tagged)
    await service.apply(pool("b", ips=["172.30.0.11"]))
    objs, version = await service.list(models.KIND_IPPOOL, label_selector="team=web")
    assert [o["metadata"]["name"] for o in objs] == ["a"]
    assert version
    objs, _ = await service.list(models.KIND_IPPOOL)
    assert [o["metadata"]["name"] for o in objs] == ["a", "b"]
    with pytest.raises(InvalidRequest):
        await service.list(models.KIND_IPPOOL, label_selector="team in web")


async def test_endpoints_are_read_only_and_namespaced(service: ResourceService, store: SqliteStore) -> None:
    """SpiderEndpoints cannot be applied; they are read by namespace."""
    endpoint = models.new_object(models.KIND_ENDPOINT, "web-0", "default", status={"current": {"node": "n1"}})
    with pytest.raises(InvalidObject) as info:
        await service.apply(copy.deepcopy(endpoint))
    assert "cannot be applied" in info.value.message
    await store.create(endpoint)
    assert (await service.get(models.KIND_ENDPOINT, "web-0", "default"))["metadata"]["name"] == "web-0"
    with pytest.raises(InvalidRequest):
        await service.get(models.KIND_ENDPOINT, "web-0")
    objs, _ = await service.list(models.KIND_ENDPOINT, None)
    assert len(objs) == 1


async def test_coordinator_apply_keeps_the_controllers_status(
    service: ResourceService, store: SqliteStore
) -> None:
    """A SpiderCoordinator is defaulted and validated by its own rules, and apply leaves its status alone."""
    manifest = models.new_object(models.KIND_COORDINATOR, "default", spec={"podCIDRType": "none"})
    stored, created, _ = await service.apply(manifest)
    assert created and stored["spec"]["mode"] == "auto"
    await store.update_status({**stored, "status": {"phase": "Synced"}})
    updated, _, unchanged = await service.apply(
        models.new_object(models.KIND_COORDINATOR, "default", spec={"podCIDRType": "none", "vethMTU": 1400})
    )
    assert not unchanged and updated["spec"]["vethMTU"] == 1400
    assert updated["status"] == {"phase": "Synced"}
    with pytest.raises(InvalidObject):
        await service.apply(models.new_object(models.KIND_COORDINATOR, "default", spec={"mode": "auto"}))


async def test_delete_reports_a_pool_the_engine_finalized_first_as_gone(store: SqliteStore) -> None:
    """When the IPAM engine drops the finalizer first, delete still reports the pool gone."""

    class EngineFinalizes:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def delete(
            self, kind: str, name: str, namespace: str = "", resource_version: str | None = None
        ) -> Any:
            marked = await store.delete(kind, name, namespace, resource_version)
            assert marked is not None
            await store.update({**marked, "metadata": {**marked["metadata"], "finalizers": []}})
            return marked

    service = ResourceService(cast(Store, EngineFinalizes()))
    await service.apply(pool())
    result = await service.delete(models.KIND_IPPOOL, "demo-v4")
    assert result["metadata"]["finalizers"] == []
    with pytest.raises(ObjectNotFound):
        await service.get(models.KIND_IPPOOL, "demo-v4")
