"""The leader's write fence, closed tight: a write frozen between the fence's check and the moment it
leaves the HTTP client is not sent (the cluster chaos storm saw an old leader's pool status write
accepted 0.1 s after SIGCONT, the gate having been checked before its SIGSTOP).

Real parts: the test API server with the generated CRDs, the Kubernetes store on kubernetes-asyncio with
the last-moment check installed as the cluster mode installs it, and the API server's write log to see
what was accepted.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from spiderpool_common.kube import write_fence
from spiderpool_common.kube.config import api_client
from spiderpool_controller.store.fenced import FencedStore, NotLeader
from spiderpool_controller.store.kubernetes import KubernetesStore

from tests.component.cluster_api import cluster_api
from tests.component.engine_fixtures import pool_manifest


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
