"""IP garbage collection against the test API server: tracing, the full scan, and its safety rules.

The leader's engine on the Kubernetes store (permissive CRDs), a real informer-fed collector,
pods created and deleted through the API. Tracing releases a deleted pod's address without a
full scan; a finished pod's and a terminating one past its deadline go; a StatefulSet member
keeps its address while its replica is valid; a record newer than the pod data it would be
judged from is skipped; a pod the informer has not seen yet is read directly before anything
is released.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from spiderpool_common.kube.config import api_client
from spiderpool_common.kube.rest import KubeRest
from spiderpool_controller.domain.gc_policy import GcSettings
from spiderpool_controller.ip_gc import GcReport, IpGarbageCollector
from spiderpool_controller.ipam_engine import EngineSettings, IpamEngine
from spiderpool_controller.store.kubernetes import KubernetesStore

from tests.component.engine_fixtures import pool_manifest, request
from tests.component.kube_backend import install, permissive_crd
from tests.kubeapi import KubeApiServer, ServerConfig

NS = "ns"


@dataclass
class Env:
    rest: KubeRest
    engine: IpamEngine
    store: KubernetesStore
    server: KubeApiServer

    async def pod(self, name: str, **extra: Any) -> dict[str, Any]:
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, **extra}}
        body["spec"] = {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]}
        return await self.rest.create(f"/api/v1/namespaces/{NS}/pods", body)

    async def allocate(self, pod: dict[str, Any], n: int, **kw: Any) -> None:
        meta = pod["metadata"]
        await self.engine.allocate(
            request(n, pod_uid=meta["uid"], pod_name=meta["name"], pod_namespace=NS, **kw)
        )

    def held(self, name: str) -> bool:
        return any(e.record.pod == f"{NS}/{name}" for e in self.engine.held_records())


async def eventually(predicate: Any, what: str, deadline: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not predicate():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    server = KubeApiServer(ServerConfig())
    await server.start()
    kinds = ("SpiderIPPool", "SpiderEndpoint", "SpiderReservedIP")
    await install(server, (permissive_crd(k) for k in kinds), (NS,))
    client = await api_client(str(server.kubeconfig_path))
    store = KubernetesStore(api_client=client)
    await store.create(pool_manifest("gc-pool", "10.77.0.0/24", ["10.77.0.1-10.77.0.200"], default=True))
    engine = IpamEngine(store, EngineSettings(endpoint_resync_s=0))
    await engine.start()
    try:
        yield Env(KubeRest(client), engine, store, server)
    finally:
        await engine.close()
        await client.close()
        await server.stop()


@contextlib.asynccontextmanager
async def collector(env: Env, **settings: Any) -> AsyncIterator[IpGarbageCollector]:
    gc = IpGarbageCollector(
        env.engine, env.rest, env.store, settings=GcSettings(**settings), interval_s=3600, trace_delay_s=0.05
    )
    task = asyncio.create_task(gc.run())
    try:
        await asyncio.wait_for(gc.pods.synced.wait(), 10)
        yield gc
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_deleted_pods_address_is_released_by_tracing_and_a_live_ones_is_kept(env: Env) -> None:
    """Deleting the pod releases its address within moments (no full scan); its neighbour keeps its own."""
    keep, gone = await env.pod("keep"), await env.pod("gone")
    await env.allocate(keep, 1)
    await env.allocate(gone, 2)
    async with collector(env) as gc:
        await env.rest.delete(f"/api/v1/namespaces/{NS}/pods/gone")
        await eventually(lambda: gc.total.reasons == {"pod deleted": 1}, "the deleted pod's release")
        assert not env.held("gone")
        assert env.held("keep")


async def test_a_finished_pod_and_one_terminating_past_its_deadline_are_released(env: Env) -> None:
    """A Succeeded pod releases; a terminating pod releases once deletionTimestamp plus the delay passed."""
    done = await env.pod("done")
    late = await env.pod("late", finalizers=["test.io/hold"])
    await env.allocate(done, 1)
    await env.allocate(late, 2)
    async with collector(env):
        await env.rest.merge_patch(
            f"/api/v1/namespaces/{NS}/pods/done/status", {"status": {"phase": "Succeeded"}}
        )
        await eventually(lambda: not env.held("done"), "the finished pod's release")
        await env.rest.delete(f"/api/v1/namespaces/{NS}/pods/late")  # a finalizer keeps it terminating
        await eventually(lambda: not env.held("late"), "the terminating pod's release")


async def test_a_terminating_pod_within_its_grace_keeps_its_address(env: Env) -> None:
    """With an additional grace delay of an hour, a terminating pod's address stays."""
    late = await env.pod("grace", finalizers=["test.io/hold"])
    await env.allocate(late, 1)
    async with collector(env, additional_grace_s=3600) as gc:
        await env.rest.delete(f"/api/v1/namespaces/{NS}/pods/grace")
        report = await gc.run_once()
        assert report.released == 0 and env.held("grace")


async def test_a_valid_statefulset_member_keeps_its_address_and_a_scaled_away_one_does_not(env: Env) -> None:
    """db-1 deleted while its StatefulSet has 2 replicas keeps its address; after scaling to 1 the
    next scan releases it."""
    await env.rest.create(
        f"/apis/apps/v1/namespaces/{NS}/statefulsets",
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": NS},
            "spec": {"replicas": 2},
        },
    )
    member = await env.pod("db-1")
    await env.allocate(member, 1, owner_kind="StatefulSet", owner_name="db")
    async with collector(env) as gc:
        await env.rest.delete(f"/api/v1/namespaces/{NS}/pods/db-1")
        await asyncio.sleep(0.3)  # the tracer has looked
        assert env.held("db-1")
        await env.rest.merge_patch(
            f"/apis/apps/v1/namespaces/{NS}/statefulsets/db", {"spec": {"replicas": 1}}
        )
        await eventually(
            lambda: gc.statefulset(NS, "db").replicas == 1, "the informer's view of the scale-down"
        )
        report = await gc.run_once()
        assert report.reasons == {"pod deleted": 1} and not env.held("db-1")


async def test_a_record_newer_than_the_pod_data_is_skipped(env: Env) -> None:
    """Judged with a mark taken before the allocation, the record is skipped, not released."""
    gc = IpGarbageCollector(env.engine, env.rest, env.store)
    mark = env.engine.allocation_sequence()
    ghost = {"metadata": {"name": "ghost", "uid": "uid-ghost"}}
    await env.allocate(ghost, 1)  # no such pod in the API
    report = GcReport()
    await gc.judge(env.engine.held_records(), mark, report)
    assert (report.skipped_newer, report.released) == (1, 0)
    await gc.judge(env.engine.held_records(), env.engine.allocation_sequence(), report)
    assert report.released == 1


async def test_a_pod_the_cache_has_not_seen_is_read_before_anything_is_released(env: Env) -> None:
    """With an empty informer cache (a pod created a moment ago), the direct read finds the pod
    and its address stays."""
    fresh = await env.pod("fresh")
    await env.allocate(fresh, 1)
    gc = IpGarbageCollector(env.engine, env.rest, env.store)  # informers never ran: empty cache
    report = GcReport()
    await gc.judge(env.engine.held_records(), env.engine.allocation_sequence(), report)
    assert (report.judged, report.released) == (1, 0)
    assert env.held("fresh")
