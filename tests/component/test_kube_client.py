"""The shared Kubernetes client (``spiderpool_common.kube``) against the test API server:
cancellation, client configuration errors, and the informer's view after a watch gap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spiderpool_common.kube.config import KubeConfigError, api_client, user_agent
from spiderpool_common.kube.informer import Informer
from spiderpool_common.kube.rest import KubeRest

from tests.component.kube_objects import Kube
from tests.kubeapi import ServerConfig, ServerThread


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(history_size=10)) as server:
        yield server


async def test_a_cancelled_request_ends_cancelled(srv: ServerThread) -> None:
    """Cancelling a GET at any point of its flight cancels it: the cancellation is never lost
    (asyncio.wait_for on Python 3.11 dropped one that arrived as the response completed)."""
    client = await api_client(str(srv.kubeconfig_path))
    rest = KubeRest(client, timeout_s=2.0)
    try:
        started = time.monotonic()
        await rest.get("/api/v1/namespaces/default")
        took = time.monotonic() - started
        lost = 0
        for i in range(200):
            task = asyncio.create_task(rest.get("/api/v1/namespaces/default"))
            await asyncio.sleep(took * (i % 20) / 10)  # from before the request to after its answer
            requested = task.cancel()
            await asyncio.wait([task], timeout=5)
            assert task.done()
            if requested and not task.cancelled():
                lost += 1
        assert lost == 0
    finally:
        await client.close()


async def test_a_cancelled_informer_stops(srv: ServerThread) -> None:
    """An informer cancelled right after its list (its watch request in flight) stops at once,
    so a service's shutdown never waits for a watch to time out."""
    client = await api_client(str(srv.kubeconfig_path))
    rest = KubeRest(client, timeout_s=2.0)
    try:
        still_running = 0
        for i in range(60):
            informer = Informer(rest, "/api/v1/namespaces", watch_timeout_s=60)
            task = asyncio.create_task(informer.run())
            await informer.synced.wait()
            await asyncio.sleep(0.0005 * (i % 8))
            task.cancel()
            await asyncio.wait([task], timeout=2)
            if not task.done():
                still_running += 1
                task.cancel()
                await asyncio.wait([task], timeout=2)
        assert still_running == 0
    finally:
        await client.close()


async def test_an_informer_delivers_what_happened_while_its_watch_was_gone(srv: ServerThread) -> None:
    """Watch held, history compacted (410 on the way back): the re-list reports the deletion
    and the creation it missed."""
    kube = Kube(srv)
    kube.namespace("before")
    client = await api_client(str(srv.kubeconfig_path))
    informer = Informer(KubeRest(client, timeout_s=2.0), "/api/v1/namespaces", watch_timeout_s=60)
    events: list[tuple[str, str]] = []
    informer.add_handler(lambda kind, obj: events.append((kind, obj["metadata"]["name"])))
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
        srv.faults.delay(1.0, verb="watch", resource="namespaces")
        srv.drop_watches()
        kube.delete("/api/v1/namespaces/before")
        kube.namespace("after")
        srv.compact()
        srv.faults.clear()
        end = time.monotonic() + 10
        while time.monotonic() < end and ("ADDED", "after") not in events:
            await asyncio.sleep(0.02)
        assert ("DELETED", "before") in events
        assert ("ADDED", "after") in events
        assert informer.get("before") is None
        assert informer.relists == 2
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=5)
        await client.close()


async def test_a_bad_kubeconfig_is_one_error_naming_the_file(tmp_path: Path) -> None:
    """Missing or malformed, the kubeconfig is named in a KubeConfigError (a ValueError)."""
    missing = tmp_path / "absent"
    with pytest.raises(KubeConfigError, match=f"^kubeconfig {missing}: "):
        await api_client(str(missing))
    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nclusters: [\n")
    with pytest.raises(KubeConfigError, match=f"^kubeconfig {broken}: "):
        await api_client(str(broken))


async def test_no_in_cluster_environment_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a pod (no KUBERNETES_SERVICE_HOST) the in-cluster configuration says so."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeConfigError, match=r"^in-cluster configuration: Service host/port is not set"):
        await api_client(None)


async def test_a_client_named_by_its_user_agent_is_named_in_the_servers_write_log(srv: ServerThread) -> None:
    """``user_agent("spiderpool-controller", identity)`` goes out on every request, so the API server's
    audit trail tells which replica wrote."""
    agent = user_agent("spiderpool-controller", "spiderpool-controller-0_ab12")
    assert agent.startswith("spiderpool-controller/") and agent.endswith(" (spiderpool-controller-0_ab12)")
    client = await api_client(str(srv.kubeconfig_path), agent)
    try:
        made = await KubeRest(client).create(
            "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "named"}}
        )
    finally:
        await client.close()
    (entry,) = [e for e in srv.server.writes.entries() if e["name"] == "named"]
    assert (entry["user_agent"], entry["resource_version"]) == (agent, made["metadata"]["resourceVersion"])


async def test_an_informer_caches_and_hands_out_the_transformed_objects(srv: ServerThread) -> None:
    """With a transform, the listed and the watched objects (also a deletion) are cached and handed to
    the handlers as the transform made them, resourceVersion kept for the watch to resume."""
    kube = Kube(srv)
    kube.namespace("listed")
    client = await api_client(str(srv.kubeconfig_path))

    def keep_name(obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return {"metadata": {"name": meta["name"], "resourceVersion": meta["resourceVersion"]}}

    informer = Informer(KubeRest(client, timeout_s=2.0), "/api/v1/namespaces", transform=keep_name)
    seen: list[tuple[str, dict[str, Any]]] = []
    informer.add_handler(lambda kind, obj: seen.append((kind, obj)))
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
        kube.namespace("watched")
        kube.delete("/api/v1/namespaces/listed")
        end = time.monotonic() + 10
        while time.monotonic() < end and not any(k == "DELETED" for k, _ in seen):
            await asyncio.sleep(0.02)
        assert {k for k, _ in seen} >= {"ADDED", "DELETED"}
        assert all(
            set(obj) == {"metadata"} and set(obj["metadata"]) == {"name", "resourceVersion"}
            for _, obj in seen
        )
        assert informer.get("watched") == keep_name(kube.get("/api/v1/namespaces/watched"))
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=5)
        await client.close()


async def test_the_proxy_is_read_once_and_requests_do_not_consult_the_environment(
    srv: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY is honoured from the start (NO_PROXY too), and the session no longer looks the
    environment and ~/.netrc up on every request."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "")
    client = await api_client(str(srv.kubeconfig_path))
    try:
        assert client.configuration.proxy == "http://proxy.example:3128"
        assert client.rest_client.pool_manager.trust_env is False
    finally:
        await client.close()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    bypassed = await api_client(str(srv.kubeconfig_path))
    try:
        assert bypassed.configuration.proxy is None
        assert await KubeRest(bypassed, timeout_s=5.0).get("/api/v1/namespaces/default")
    finally:
        await bypassed.close()
