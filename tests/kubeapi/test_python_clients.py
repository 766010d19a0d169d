"""The official `kubernetes` client (37) and kubernetes-asyncio (the project's client, 36) on the server."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import kubernetes
import kubernetes_asyncio
import pytest
import yaml
from kubernetes.client.rest import ApiException
from kubernetes_asyncio.client.exceptions import ApiException as AsyncApiException

from .conftest import TESTDATA
from .server import ServerThread

GROUP, VERSION, PLURAL = "spiderpool.spidernet.io", "v2beta1", "spiderippools"


def _pool(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {"ipVersion": 4, "subnet": "10.6.0.0/16", **spec},
    }


@pytest.fixture
def client(srv: ServerThread) -> Iterator[kubernetes.client.ApiClient]:
    api = kubernetes.config.new_client_from_config(config_file=str(srv.kubeconfig_path))
    crd = yaml.safe_load((TESTDATA / "spiderippool-crd.yaml").read_text())
    kubernetes.client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    yield api
    api.close()


def test_configmap_crud_round_trips(client: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(client)
    body = {"metadata": {"name": "cm1", "labels": {"a": "1"}}, "data": {"k": "v"}}
    created = core.create_namespaced_config_map("default", body)
    assert created.metadata.uid and created.metadata.creation_timestamp
    created.data["k"] = "w"
    replaced = core.replace_namespaced_config_map("cm1", "default", created)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    patched = core.patch_namespaced_config_map("cm1", "default", {"data": {"k2": "x"}})  # strategic merge
    assert patched.data == {"k": "w", "k2": "x"}
    assert [
        c.metadata.name for c in core.list_namespaced_config_map("default", label_selector="a=1").items
    ] == ["cm1"]
    core.delete_namespaced_config_map("cm1", "default")
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("cm1", "default")
    assert err.value.status == 404


def test_replace_with_a_stale_resource_version_is_a_409_conflict(client: kubernetes.client.ApiClient) -> None:
    co = kubernetes.client.CustomObjectsApi(client)
    first = co.create_cluster_custom_object(GROUP, VERSION, PLURAL, _pool("pool-a"))
    newer = copy.deepcopy(first)
    newer["spec"]["gateway"] = "10.6.0.1"
    co.replace_cluster_custom_object(GROUP, VERSION, PLURAL, "pool-a", newer)
    first["spec"]["gateway"] = "10.6.0.2"
    with pytest.raises(ApiException) as err:
        co.replace_cluster_custom_object(GROUP, VERSION, PLURAL, "pool-a", first)
    assert err.value.status == 409
    assert "the object has been modified" in err.value.body
    assert '"reason":"Conflict"' in err.value.body


def test_status_is_ignored_on_main_writes_and_status_writes_keep_generation(
    client: kubernetes.client.ApiClient,
) -> None:
    co = kubernetes.client.CustomObjectsApi(client)
    body = _pool("pool-s")
    body["status"] = {"allocatedIPCount": 5}
    created = co.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    assert "status" not in created and created["metadata"]["generation"] == 1
    created["status"] = {"allocatedIPCount": 2}
    after_main = co.replace_cluster_custom_object(GROUP, VERSION, PLURAL, "pool-s", created)
    assert "status" not in after_main
    after_main["status"] = {"allocatedIPCount": 2}
    after_main["spec"]["gateway"] = "10.6.0.1"
    after_status = co.replace_cluster_custom_object_status(GROUP, VERSION, PLURAL, "pool-s", after_main)
    assert after_status["status"] == {"allocatedIPCount": 2}
    assert "gateway" not in after_status["spec"]
    assert after_status["metadata"]["generation"] == 1
    spec_change = co.patch_cluster_custom_object(GROUP, VERSION, PLURAL, "pool-s", {"spec": {"vlan": 3}})
    assert spec_change["metadata"]["generation"] == 2


def test_watch_from_a_resource_version_delivers_exactly_the_later_events(
    client: kubernetes.client.ApiClient,
) -> None:
    core = kubernetes.client.CoreV1Api(client)
    core.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
    core.delete_namespaced_config_map("after", "default")
    w = kubernetes.watch.Watch()
    events = []
    for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5):
        events.append((ev["type"], ev["object"].metadata.name))
        if len(events) == 2:
            w.stop()
    assert events == [("ADDED", "after"), ("DELETED", "after")]


def test_watch_without_resource_version_starts_with_synthetic_added_events(
    client: kubernetes.client.ApiClient,
) -> None:
    core = kubernetes.client.CoreV1Api(client)
    core.create_namespaced_config_map("default", {"metadata": {"name": "one"}})
    w = kubernetes.watch.Watch()
    events = []
    for e in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=5):
        events.append((e["type"], e["object"].metadata.name))
        w.stop()
    assert events == [("ADDED", "one")]


def test_watch_from_a_compacted_resource_version_raises_410(
    client: kubernetes.client.ApiClient, srv: ServerThread
) -> None:
    core = kubernetes.client.CoreV1Api(client)
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    srv.compact()
    w = kubernetes.watch.Watch()
    with pytest.raises(ApiException) as err:
        list(w.stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2))
    assert err.value.status == 410
    assert "Expired" in str(err.value.reason)


# --- kubernetes-asyncio -------------------------------------------------------------------------------------


def _async_cm(name: str) -> kubernetes_asyncio.client.V1ConfigMap:
    return kubernetes_asyncio.client.V1ConfigMap(metadata=kubernetes_asyncio.client.V1ObjectMeta(name=name))


async def _async_client(srv: ServerThread) -> kubernetes_asyncio.client.ApiClient:
    return await kubernetes_asyncio.config.new_client_from_config(config_file=str(srv.kubeconfig_path))


async def test_asyncio_patch_without_content_type_sends_json_patch_and_gets_the_real_400(
    client: kubernetes.client.ApiClient, srv: ServerThread
) -> None:
    async with await _async_client(srv) as api:
        co = kubernetes_asyncio.client.CustomObjectsApi(api)
        await co.create_cluster_custom_object(GROUP, VERSION, PLURAL, _pool("pool-p"))
        with pytest.raises(AsyncApiException) as err:
            await co.patch_cluster_custom_object(GROUP, VERSION, PLURAL, "pool-p", {"spec": {"vlan": 1}})
        assert err.value.status == 400
        assert "json: cannot unmarshal object into Go value of type jsonpatch.Patch" in str(err.value.body)
        patched = await co.patch_cluster_custom_object(  # type: ignore[call-arg]  # taken by **kwargs at run time
            GROUP,
            VERSION,
            PLURAL,
            "pool-p",
            {"spec": {"vlan": 1}},
            _content_type="application/merge-patch+json",
        )
        assert patched["spec"]["vlan"] == 1


async def test_asyncio_watch_sends_watch_True_and_gets_a_stream(
    client: kubernetes.client.ApiClient, srv: ServerThread
) -> None:
    async with await _async_client(srv) as api:
        core = kubernetes_asyncio.client.CoreV1Api(api)
        await core.create_namespaced_config_map("default", _async_cm("w1"))
        w = kubernetes_asyncio.watch.Watch()
        seen = []
        async for e in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=5):
            seen.append((e["type"], e["object"].metadata.name))
            w.stop()
        assert seen == [("ADDED", "w1")]
    assert srv.faults.count("watch", "configmaps") == 1


async def test_asyncio_watch_from_a_too_old_resource_version_raises_api_exception_410(
    client: kubernetes.client.ApiClient, srv: ServerThread
) -> None:
    async with await _async_client(srv) as api:
        core = kubernetes_asyncio.client.CoreV1Api(api)
        rv = (await core.list_namespaced_config_map("default")).metadata.resource_version
        await core.create_namespaced_config_map("default", _async_cm("y"))
        srv.compact()
        w = kubernetes_asyncio.watch.Watch()
        with pytest.raises(AsyncApiException) as err:
            async for _ in w.stream(
                core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2
            ):
                pass
        assert err.value.status == 410
