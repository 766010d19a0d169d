"""Moving a workload to another pool: the re-created pod lands in the new pool, the old address is freed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spiderpool_controller.domain.annotations import POD_IPPOOL
from spiderpool_controller.ipam_engine import IpamEngine
from spiderpool_controller.store.contract import Store

from tests.component.engine_fixtures import allocated_in_store, new_engine, pool_manifest, request

STS: dict[str, Any] = {
    "owner_kind": "StatefulSet",
    "owner_name": "db",
    "owner_replicas": 2,
    "owner_exists": True,
}


def in_pool(name: str) -> dict[str, str]:
    return {POD_IPPOOL: json.dumps({"ipv4": [name]})}


async def two_pools(tmp_path: Path) -> tuple[IpamEngine, Store]:
    engine, store = await new_engine(tmp_path / "db")
    for manifest in (
        pool_manifest("old", "10.9.0.0/24", ["10.9.0.10-10.9.0.20"]),
        pool_manifest("new", "10.9.1.0/24", ["10.9.1.10-10.9.1.20"]),
    ):
        await store.create(manifest)
        await engine.pool_changed(await store.get("SpiderIPPool", manifest["metadata"]["name"]))
    return engine, store


async def test_a_statefulset_member_whose_annotation_names_another_pool_moves_there(tmp_path: Path) -> None:
    """db-0 keeps .10 of "old" across re-creation; re-created with the annotation naming "new" it gets
    an address of "new" and "old" is empty (upstream #3543)."""
    engine, store = await two_pools(tmp_path)
    first = await engine.allocate(request("a", pod_name="db-0", pod_annotations=in_pool("old"), **STS))
    await engine.release("uid-a", "eth0", pod_key="ns/db-0", owner_kind="StatefulSet", owner_name="db",
                         owner_replicas=2, owner_exists=True)  # fmt: skip
    again = await engine.allocate(request("b", pod_name="db-0", pod_annotations=in_pool("old"), **STS))
    assert [a.address for a in again.ips] == [a.address for a in first.ips]
    moved = await engine.allocate(request("c", pod_name="db-0", pod_annotations=in_pool("new"), **STS))
    assert [(a.pool, a.address) for a in moved.ips] == [("new", "10.9.1.10/24")]
    assert await allocated_in_store(store, "old") == {}
    assert [r["podUid"] for r in (await allocated_in_store(store, "new")).values()] == ["uid-c"]


async def test_any_pod_recreated_under_its_name_frees_its_predecessors_address(tmp_path: Path) -> None:
    """A bare pod web in "old" whose DEL never came is re-created (new UID) with the annotation naming
    "new": it gets an address of "new" and the predecessor's .10 is freed at once."""
    engine, store = await two_pools(tmp_path)
    await engine.allocate(request("a", pod_name="web", pod_annotations=in_pool("old")))
    moved = await engine.allocate(request("b", pod_name="web", pod_annotations=in_pool("new")))
    assert [(a.pool, a.address) for a in moved.ips] == [("new", "10.9.1.10/24")]
    assert await allocated_in_store(store, "old") == {}
    assert engine.attachment("uid-a", "eth0") == []
    late = await engine.release("uid-a", "eth0", container_id="cid-a")  # the predecessor's late DEL
    assert late.released == []
    assert [r["podUid"] for r in (await allocated_in_store(store, "new")).values()] == ["uid-b"]


async def test_a_predecessor_in_the_same_pool_is_freed_too_and_other_pods_are_untouched(
    tmp_path: Path,
) -> None:
    """Re-created in the same pool, the pod's predecessor is released as well; pods of other names,
    and records without a pod UID (identified by container), are left alone."""
    engine, store = await two_pools(tmp_path)
    await engine.allocate(request("a", pod_name="web", pod_annotations=in_pool("old")))
    await engine.allocate(request("x", pod_name="other", pod_annotations=in_pool("old")))
    await engine.allocate(request("c1", pod_name="bare", pod_uid="", pod_annotations=in_pool("old")))
    await engine.allocate(request("b", pod_name="web", pod_annotations=in_pool("old")))
    await engine.allocate(request("c2", pod_name="bare", pod_uid="", pod_annotations=in_pool("old")))
    holders = sorted(r["podUid"] or r["cid"] for r in (await allocated_in_store(store, "old")).values())
    assert holders == ["cid-c1", "cid-c2", "uid-b", "uid-x"]
