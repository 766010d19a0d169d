"""The leader's write fence, closed tight: a write frozen between the fence's check and the moment it
leaves the HTTP client is not sent (the cluster chaos storm saw an old leader's pool status write
accepted 0.1 s after SIGCONT, the gate having been checked before its SIGSTOP). The same fence covers
the writes the reconcilers make outside the Store (NetworkAttachmentDefinitions, Events): a fenced
replica has none accepted, and the cluster mode hands its reconcilers that fenced client.

Real parts: the test API server with the generated CRDs, the Kubernetes store and the JSON client on
kubernetes-asyncio with the last-moment check installed as the cluster mode installs it, the real
Multus reconciler and cluster controller, and the API server's write log to see what was accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from spiderpool_common.kube import write_fence
from spiderpool_common.kube.config import api_client, user_agent
from spiderpool_common.kube.rest import KubeError
from spiderpool_controller.cluster_mode import ClusterController, ClusterOptions, LeaderContext
from spiderpool_controller.domain import multus_config as mc
from spiderpool_controller.domain import nad_render
from spiderpool_controller.engine_slot import EngineSlot
from spiderpool_controller.fenced_rest import FencedRest
from spiderpool_controller.leader import LeaseTiming
from spiderpool_controller.multus_reconciler import REASON_INVALID, MultusConfigReconciler
from spiderpool_controller.store.fenced import FencedStore, NotLeader
from spiderpool_controller.store.kubernetes import KubernetesStore

from tests.component.cluster_api import NADS, ClusterApi, cluster_api, eventually
from tests.component.engine_fixtures import pool_manifest
from tests.component.test_multus_reconciler import NS, nad_path, smc, smc_path


def open_then_closed() -> Callable[[], bool]:
    """A gate that is open when the fence checks it and closed ever after: the process froze right after
    the check and resumed once another replica held the Lease."""
    calls = [0]

    def may_write() -> bool:
        calls[0] += 1
        return calls[0] == 1

    return may_write


async def test_a_write_whose_gate_closes_before_it_leaves_is_not_sent_and_reports_not_leader() -> None:
    async with cluster_api() as api:
        client = await api_client(str(api.server.kubeconfig_path))
        write_fence.install(client)
        write_fence.install(client)  # idempotent
        try:
            store = KubernetesStore(api_client=client)
            pool = await store.create(pool_manifest("fenced", "10.20.0.0/24", ["10.20.0.1-10.20.0.9"]))
            written = {**pool, "status": {"allocatedIPCount": 0}}
            writes: list[Callable[[FencedStore], Awaitable[Any]]] = [
                lambda s: s.update_status(written),
                lambda s: s.create(pool_manifest("fenced-2", "10.21.0.0/24", ["10.21.0.1"])),
                lambda s: s.delete("SpiderIPPool", "fenced"),
            ]
            for write in writes:
                before = time.time()
                with pytest.raises(NotLeader):
                    await write(FencedStore(store, open_then_closed()))
                assert api.server.writes.entries(before) == []
            assert await store.get("SpiderIPPool", "fenced")
            before = time.time()
            await FencedStore(store, lambda: True).update_status(written)  # an open gate writes
            (entry,) = api.server.writes.entries(before)
            assert (entry["verb"], entry["resource"]) == ("update", "spiderippools/status")
            await store.create(pool_manifest("unfenced", "10.22.0.0/24", ["10.22.0.1"]))  # no gate set: sent
        finally:
            await client.close()


def event_for(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta.get("namespace") or "default"},
        "involvedObject": {"kind": obj["kind"], "name": meta["name"], "namespace": meta.get("namespace", "")},
        "reason": "Fenced",
        "message": "written by a replica whose gate was open",
        "type": "Warning",
    }


async def test_the_leaders_plain_writes_pass_the_same_fence_at_the_last_moment() -> None:
    """NetworkAttachmentDefinitions and Events (``FencedRest``, what the reconcilers write with) are
    gated as the Store's writes: one frozen after the first check sends nothing and fails as a
    ``KubeError`` NOT_LEADER; a read passes a closed gate; an open gate writes."""
    async with cluster_api() as api:
        await api.namespace(NS)
        client = await api_client(str(api.server.kubeconfig_path))
        write_fence.install(client)
        try:
            config = smc("fenced")
            config["metadata"]["uid"] = "uid-of-fenced"
            nad = nad_render.render(mc.apply_defaults(config))
            writes: list[tuple[str, dict[str, Any]]] = [
                (f"/api/v1/namespaces/{NS}/events", event_for(config)),
                (f"{NADS}/namespaces/{NS}/network-attachment-definitions", nad),
            ]
            for path, body in writes:
                before = time.time()
                with pytest.raises(KubeError) as info:
                    await FencedRest(client, open_then_closed()).create(path, body)
                assert (info.value.code, info.value.reason) == (0, NotLeader.reason)
                assert api.server.writes.entries(before) == []
            assert await FencedRest(client, lambda: False).get(f"/api/v1/namespaces/{NS}/events")
            before = time.time()
            await FencedRest(client, lambda: True).create(*writes[0])
            (entry,) = api.server.writes.entries(before)
            assert (entry["verb"], entry["resource"]) == ("create", "events")
        finally:
            await client.close()


class Gate:
    def __init__(self) -> None:
        self.open = False

    def __call__(self) -> bool:
        return self.open


async def test_a_fenced_multus_reconciler_writes_no_nad_and_no_event_and_converges_once_it_leads() -> None:
    """A SpiderMultusConfig and an invalid one (an Event) arrive at a replica whose gate is closed: the
    API server accepts nothing from it while it keeps trying; once the gate opens the NAD is created,
    and the Event it could not write is written at the next change."""
    async with cluster_api() as api:
        await api.namespace(NS)
        agent = user_agent("spiderpool-controller", "fenced-replica")
        client = await api_client(str(api.server.kubeconfig_path), agent)
        write_fence.install(client)
        gate = Gate()
        reconciler = MultusConfigReconciler(FencedRest(client, gate), retry_base_s=0.02, retry_max_s=0.1)
        task = asyncio.create_task(reconciler.run())
        try:
            before = time.time()
            await api.create(smc_path(), smc("macvlan-a"))
            bad = smc("macvlan-bad")
            bad["spec"]["macvlan"]["master"] = ["ens192", "ens224"]  # two masters, no bond: invalid
            await api.create(smc_path(), bad)
            await eventually(
                lambda: reconciler.syncs >= 4 or api.server.writes.entries(before, user_agent=agent),
                "the valid configuration retried (or a write accepted)",
            )
            assert api.server.writes.entries(before, user_agent=agent) == []
            assert await api.get(nad_path("macvlan-a")) is None
            gate.open = True
            await eventually(lambda: api.get(nad_path("macvlan-a")), "the NAD once the replica leads")
            await api.rest.merge_patch(smc_path("macvlan-bad"), {"metadata": {"labels": {"touched": "1"}}})
            await eventually(lambda: events(api, REASON_INVALID), "the Event at the next change")
            accepted = api.server.writes.entries(before, user_agent=agent)
            written = {(e["verb"], e["resource"]) for e in accepted}
            assert written == {("create", "network-attachment-definitions"), ("create", "events")}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()


async def events(api: ClusterApi, reason: str) -> list[dict[str, Any]]:
    listing = await api.rest.get(f"/api/v1/namespaces/{NS}/events")
    return [e for e in listing.get("items") or [] if e.get("reason") == reason]


async def test_a_leader_paused_past_its_renew_deadline_has_no_reconciler_write_accepted() -> None:
    """The cluster mode hands its reconcilers the fenced client: a leader frozen past its renew
    deadline (the event loop blocked, as SIGSTOP freezes it) sends nothing the moment it resumes,
    and writes again once it has renewed the Lease."""
    timing = LeaseTiming(duration_s=1.0, renew_deadline_s=0.6, retry_period_s=0.1)
    async with cluster_api() as api:
        await api.namespace(NS)
        contexts: asyncio.Queue[LeaderContext] = asyncio.Queue()

        async def reconciler(ctx: LeaderContext) -> None:
            contexts.put_nowait(ctx)
            await asyncio.Event().wait()

        options = ClusterOptions(
            identity="ctl-paused",
            advertise="unix:/nonexistent",
            lease_namespace="kube-system",
            kubeconfig=str(api.server.kubeconfig_path),
            timing=timing,
            gc_interval_s=3600.0,
            reconcilers=(("probe", reconciler),),
        )
        cluster = ClusterController(options, EngineSlot())
        await cluster.start()
        try:
            ctx = await asyncio.wait_for(contexts.get(), 10.0)
            path, body = f"/api/v1/namespaces/{NS}/events", event_for(smc("paused"))
            time.sleep(timing.renew_deadline_s + 0.1)  # frozen: nothing else runs, the clock does
            before = time.time()
            with pytest.raises(KubeError) as info:
                await ctx.rest.create(path, body)
            assert info.value.reason == NotLeader.reason
            assert [e for e in api.server.writes.entries(before) if e["resource"] == "events"] == []
            assert cluster.elector is not None
            await eventually(cluster.elector.may_write, "the Lease renewed")
            await ctx.rest.create(path, body)
        finally:
            await cluster.stop()
