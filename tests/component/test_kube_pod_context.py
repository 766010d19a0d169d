"""``KubernetesPodContext`` against the test Kubernetes API server: real HTTP, real
kubernetes-asyncio, informers on a real watch. Each test has its own server; the faults
(delays on watches and lists, errors, a stopped server) stand for a busy or absent API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from spiderpool_agent.cni_call import Invocation, OwnerRef, Verb, parse_call
from spiderpool_agent.kube_pod_context import KubernetesPodContext
from spiderpool_cni import codes
from spiderpool_common.errors import CniError, InvalidAnnotation, Unavailable
from spiderpool_common.kube.config import api_client
from spiderpool_common.kube.rest import KubeRest

from tests.component.kube_objects import APPS, Kube, template
from tests.kubeapi import ServerConfig, ServerThread

NODE = "node-1"
NS = "apps"


@dataclass
class Call:
    config: bytes
    args: str
    ifname: str = "eth0"
    command: str = ""
    container_id: str = "ctr-1"
    netns: str = "/run/netns/pod"
    present: list[str] = field(default_factory=lambda: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])


CONFIG = json.dumps({"cniVersion": "1.0.0", "name": "net-a", "ipam": {"type": "spiderpool"}}).encode()


def invocation(
    verb: Verb, pod: dict[str, Any] | str, uid: str | None = None, *, ifname: str = "eth0"
) -> Invocation:
    """The call kubelet makes for ``pod`` (an object, or a name with ``uid``)."""
    if isinstance(pod, dict):
        name, uid = pod["metadata"]["name"], uid or pod["metadata"]["uid"]
    else:
        name = pod
    args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NS};K8S_POD_NAME={name};K8S_POD_UID={uid or ''}"
    return parse_call(Call(CONFIG, args, ifname), verb)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(history_size=1000)) as server:
        yield server


@pytest.fixture
def kube(srv: ServerThread) -> Kube:
    k = Kube(srv)
    k.namespace(
        NS, labels={"team": "web"}, annotations={"ipam.spidernet.io/default-ipv4-ippool": '["ns-pool"]'}
    )
    k.node(NODE, {"topology.kubernetes.io/zone": "east"})
    return k


@dataclass
class Running:
    ctx: KubernetesPodContext
    clock: Clock


async def start(srv: ServerThread, **options: Any) -> tuple[KubernetesPodContext, Any]:
    client = await api_client(str(srv.kubeconfig_path))
    ctx = KubernetesPodContext(NODE, **options)
    await ctx.start(KubeRest(client, timeout_s=2.0))
    return ctx, client


@pytest.fixture
async def running(srv: ServerThread, kube: Kube) -> AsyncIterator[Running]:
    clock = Clock()
    ctx, client = await start(srv, clock=clock, cluster_network="kube-system/cluster-net", lookup_timeout=3.0)
    assert await wait_for(lambda: ctx.unready_reason() == "")
    yield Running(ctx, clock)
    await ctx.stop()
    await client.close()


async def wait_for(predicate: Any, deadline: float = 10.0) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return False


def hold_pod_watches(srv: ServerThread, seconds: float) -> None:
    """Close the pod watch and hold its re-opening: the informer misses what happens meanwhile."""
    srv.faults.delay(seconds, verb="watch", resource="pods")
    srv.drop_watches()


async def test_an_add_gets_pod_namespace_node_owner_and_multus_facts_from_the_api(
    running: Running, kube: Kube
) -> None:
    """Every selection input of an ADD is the API's: labels and annotations of the pod and its
    namespace, the Node's labels, the StatefulSet with its replicas, the networks annotation's NAD."""
    sts = kube.workload(APPS, "StatefulSet", NS, "db", replicas=2, **template({"app": "db"}))
    networks = {"k8s.v1.cni.cncf.io/networks": "macvlan-a, other/macvlan-b@fast1"}
    pod = kube.pod(NS, "db-1", NODE, annotations=networks, labels={"app": "db"}, owner=sts)
    assert await wait_for(
        lambda: running.ctx.informers is not None and running.ctx.informers.pods.get(f"{NS}/db-1")
    )
    found = await running.ctx.for_add(invocation(Verb.ADD, pod, ifname="fast1"))
    assert dict(found.labels) == {"app": "db"}
    assert dict(found.annotations) == networks
    assert found.namespace_labels["team"] == "web"
    assert found.namespace_annotations == {"ipam.spidernet.io/default-ipv4-ippool": '["ns-pool"]'}
    assert found.node_labels == {"topology.kubernetes.io/zone": "east"}
    assert found.owner == OwnerRef("StatefulSet", "db", sts["metadata"]["uid"], 2, True, "apps/v1")
    assert found.multus_name == "other/macvlan-b"
    assert (
        await running.ctx.for_add(invocation(Verb.ADD, pod, ifname="net1"))
    ).multus_name == "apps/macvlan-a"
    assert (await running.ctx.for_add(invocation(Verb.ADD, pod))).multus_name == "kube-system/cluster-net"


async def test_a_pod_created_a_moment_ago_is_read_directly(
    running: Running, kube: Kube, srv: ServerThread
) -> None:
    """The informer has not seen the pod yet: one direct GET serves the ADD."""
    hold_pod_watches(srv, 3.0)
    pod = kube.pod(NS, "fresh", NODE)
    assert running.ctx.informers is not None
    assert running.ctx.informers.pods.get(f"{NS}/fresh") is None
    gets = srv.faults.count("get", "pods")
    found = await running.ctx.for_add(invocation(Verb.ADD, pod))
    assert found.owner == OwnerRef("Pod", "fresh", pod["metadata"]["uid"], 0, True, "v1")
    assert srv.faults.count("get", "pods") == gets + 1


async def test_a_cached_pod_is_not_read_again(running: Running, kube: Kube, srv: ServerThread) -> None:
    """A pod in the informer's cache with the right UID costs no request."""
    pod = kube.pod(NS, "cached", NODE)
    assert running.ctx.informers is not None
    informers = running.ctx.informers
    assert await wait_for(lambda: informers.pods.get(f"{NS}/cached") is not None)
    gets = srv.faults.count("get", "pods")
    await running.ctx.for_add(invocation(Verb.ADD, pod))
    assert srv.faults.count("get", "pods") == gets


async def test_a_re_created_pod_is_read_directly_and_the_old_uid_is_refused_naming_both(
    running: Running, kube: Kube, srv: ServerThread
) -> None:
    """While the cache still holds the deleted pod, the new UID is served by a direct read;
    a late ADD of the deleted pod's sandbox gets code 3 naming both UIDs."""
    old = kube.pod(NS, "web-0", NODE)
    assert running.ctx.informers is not None
    informers = running.ctx.informers
    assert await wait_for(lambda: informers.pods.get(f"{NS}/web-0") is not None)
    hold_pod_watches(srv, 3.0)
    kube.delete(f"/api/v1/namespaces/{NS}/pods/web-0")
    new = kube.pod(NS, "web-0", NODE, annotations={"ipam.spidernet.io/ippool": '{"ipv4": ["p"]}'})
    assert informers.pods.get(f"{NS}/web-0")["metadata"]["uid"] == old["metadata"]["uid"]  # type: ignore[index]
    found = await running.ctx.for_add(invocation(Verb.ADD, new))
    assert found.annotations == {"ipam.spidernet.io/ippool": '{"ipv4": ["p"]}'}
    srv.faults.clear()  # the watch comes back; the cache catches up with the new pod
    new_uid = new["metadata"]["uid"]
    assert await wait_for(lambda: informers.pods.get(f"{NS}/web-0")["metadata"]["uid"] == new_uid)  # type: ignore[index]
    gets = srv.faults.count("get", "pods")
    with pytest.raises(CniError) as err:
        await running.ctx.for_add(invocation(Verb.ADD, old))
    assert err.value.cni_code == codes.UNKNOWN_CONTAINER
    assert old["metadata"]["uid"] in err.value.message
    assert new_uid in err.value.message
    assert "apps/web-0" in err.value.message
    assert srv.faults.count("get", "pods") == gets + 1  # refused only after the direct read


async def test_a_pod_that_does_not_exist_is_code_3_naming_it(running: Running) -> None:
    """No such pod, even after the direct read: code 3 with the pod's name."""
    with pytest.raises(CniError) as err:
        await running.ctx.for_add(invocation(Verb.ADD, "ghost", "uid-ghost"))
    assert (err.value.cni_code, err.value.message) == (
        codes.UNKNOWN_CONTAINER,
        "pod apps/ghost does not exist",
    )


@pytest.mark.parametrize(
    ("args", "fault"),
    [
        ("K8S_POD_NAME=p", "K8S_POD_NAMESPACE missing"),
        ("K8S_POD_NAMESPACE=apps", "K8S_POD_NAME missing"),
        ("K8S_POD_NAMESPACE=Apps;K8S_POD_NAME=p", "K8S_POD_NAMESPACE='Apps' is not a namespace name"),
        ("K8S_POD_NAMESPACE=apps;K8S_POD_NAME=../nodes/x", "K8S_POD_NAME='../nodes/x' is not a pod name"),
    ],
)
async def test_cni_args_that_name_no_pod_are_code_4(running: Running, args: str, fault: str) -> None:
    """Without a usable pod identity the API cannot be asked: code 4 naming the variable."""
    inv = parse_call(Call(CONFIG, "IgnoreUnknown=1;" + args), Verb.ADD)
    with pytest.raises(CniError) as err:
        await running.ctx.for_add(inv)
    assert err.value.cni_code == codes.INVALID_ENVIRONMENT
    assert fault in err.value.message


async def test_a_malformed_annotation_is_code_105_naming_it(running: Running, kube: Kube) -> None:
    """The networks annotation of the NIC, or an ip-number, that is malformed names itself."""
    bad_net = kube.pod(NS, "bad-net", NODE, annotations={"k8s.v1.cni.cncf.io/networks": "a/b/c"})
    with pytest.raises(
        InvalidAnnotation, match=r"annotation k8s\.v1\.cni\.cncf\.io/networks: 'a/b/c' has more"
    ):
        await running.ctx.for_add(invocation(Verb.ADD, bad_net, ifname="net1"))
    bad_number = kube.pod(NS, "bad-number", NODE, annotations={"ipam.spidernet.io/ippool-ip-number": "-1"})
    with pytest.raises(InvalidAnnotation, match=r"annotation ipam\.spidernet\.io/ippool-ip-number: '-1'"):
        await running.ctx.for_add(invocation(Verb.ADD, bad_number))


async def test_owner_reads_are_reused_for_the_ttl_then_read_again(
    running: Running, kube: Kube, srv: ServerThread
) -> None:
    """Deployment pods: the ReplicaSet is read once per owner_ttl (2 s on the injected clock)."""
    dep = kube.workload(APPS, "Deployment", NS, "web", replicas=3, **template({"app": "web"}))
    rs = kube.workload(APPS, "ReplicaSet", NS, "web-7f", owner=dep, replicas=3, **template({"app": "web"}))
    pods = [kube.pod(NS, f"web-7f-{i}", NODE, owner=rs) for i in range(3)]
    reads = srv.faults.count("get", "replicasets")
    for pod in pods[:2]:
        found = await running.ctx.for_add(invocation(Verb.ADD, pod))
        assert found.owner == OwnerRef("Deployment", "web", dep["metadata"]["uid"], 0, True, "apps/v1")
    assert srv.faults.count("get", "replicasets") == reads + 1
    running.clock.now += 2.5
    await running.ctx.for_add(invocation(Verb.ADD, pods[2]))
    assert srv.faults.count("get", "replicasets") == reads + 2


async def test_a_del_reads_the_statefulsets_replicas_afresh(
    running: Running, kube: Kube, srv: ServerThread
) -> None:
    """Scaled down right after the ADD (well inside the owner TTL), the DEL sees replicas 0."""
    sts = kube.workload(APPS, "StatefulSet", NS, "db", replicas=2, **template({"app": "db"}))
    pod = kube.pod(NS, "db-1", NODE, owner=sts)
    assert (await running.ctx.for_add(invocation(Verb.ADD, pod))).owner == OwnerRef(
        "StatefulSet", "db", sts["metadata"]["uid"], 2, True, "apps/v1"
    )
    kube.patch(f"{APPS}/namespaces/{NS}/statefulsets/db", {"spec": {"replicas": 0}})
    owner = await running.ctx.owner_for_release(invocation(Verb.DEL, pod))
    assert owner == OwnerRef("StatefulSet", "db", sts["metadata"]["uid"], 0, True, "apps/v1")


async def test_a_del_uses_the_last_statefulset_read_when_the_api_fails(
    running: Running, kube: Kube, srv: ServerThread
) -> None:
    """The StatefulSet read answers 500: the DEL keeps the last known replicas instead of none."""
    sts = kube.workload(APPS, "StatefulSet", NS, "db", replicas=2, **template({"app": "db"}))
    pod = kube.pod(NS, "db-0", NODE, owner=sts)
    await running.ctx.for_add(invocation(Verb.ADD, pod))
    srv.faults.errors(None, status=500, verb="get", resource="statefulsets")
    owner = await running.ctx.owner_for_release(invocation(Verb.DEL, pod))
    assert owner == OwnerRef("StatefulSet", "db", sts["metadata"]["uid"], 2, True, "apps/v1")


async def test_a_del_for_a_pod_that_is_gone_or_without_identity_has_no_owner(
    running: Running, srv: ServerThread
) -> None:
    """Nothing to read: no owner, no error (the controller judges by its own view), and no request: a
    DEL mostly follows its pod's deletion, and the agent used to read every released pod (a 404 each)."""
    reads = srv.faults.count("get", "pods")
    assert await running.ctx.owner_for_release(invocation(Verb.DEL, "gone", "uid-gone")) is None
    assert srv.faults.count("get", "pods") == reads
    no_identity = parse_call(Call(CONFIG, ""), Verb.DEL)
    assert await running.ctx.owner_for_release(no_identity) is None


async def test_the_nodes_labels_follow_the_node_object(running: Running, kube: Kube) -> None:
    """A relabelled Node reaches the next ADD through the node informer."""
    pod = kube.pod(NS, "p1", NODE)
    kube.patch(f"/api/v1/nodes/{NODE}", {"metadata": {"labels": {"topology.kubernetes.io/zone": "west"}}})
    assert running.ctx.informers is not None
    nodes = running.ctx.informers.nodes
    assert await wait_for(
        lambda: nodes.cache[NODE]["metadata"]["labels"]["topology.kubernetes.io/zone"] == "west"
    )
    assert (await running.ctx.for_add(invocation(Verb.ADD, pod))).node_labels[
        "topology.kubernetes.io/zone"
    ] == "west"


async def test_only_this_nodes_pods_are_cached(running: Running, kube: Kube) -> None:
    """The pod informer's field selector keeps other nodes' pods out (they are read on demand)."""
    kube.pod(NS, "mine", NODE)
    kube.pod(NS, "theirs", "node-2")
    assert running.ctx.informers is not None
    pods = running.ctx.informers.pods
    assert await wait_for(lambda: pods.get(f"{NS}/mine") is not None)
    assert pods.get(f"{NS}/theirs") is None


async def test_an_add_waits_for_the_first_sync(srv: ServerThread, kube: Kube) -> None:
    """Listing pods takes 1.5 s: the unready reason names the pods cache; the ADD waits and succeeds."""
    pod = kube.pod(NS, "early", NODE)
    srv.faults.delay(1.5, verb="list", resource="pods")
    ctx, client = await start(srv, sync_timeout=10.0)
    try:
        assert await wait_for(lambda: ctx.unready_reason().endswith("caches of pods have not synced yet"))
        started = time.monotonic()
        found = await ctx.for_add(invocation(Verb.ADD, pod))
        assert found.owner is not None
        assert time.monotonic() - started > 0.5
        assert ctx.unready_reason() == ""
    finally:
        await ctx.stop()
        await client.close()


async def test_an_add_gives_up_with_11_when_the_sync_takes_too_long(srv: ServerThread, kube: Kube) -> None:
    """With the list held beyond sync_timeout the ADD answers code 11 naming what has not synced."""
    pod = kube.pod(NS, "early", NODE)
    srv.faults.delay(5.0, verb="list", resource="namespaces")
    ctx, client = await start(srv, sync_timeout=0.5)
    try:
        with pytest.raises(CniError) as err:
            await ctx.for_add(invocation(Verb.ADD, pod))
        assert err.value.cni_code == codes.TRY_AGAIN_LATER
        assert "namespaces have not synced yet (waited 0.5s)" in err.value.message
    finally:
        await ctx.stop()
        await client.close()


async def test_an_unreachable_api_makes_an_add_11_and_a_del_ownerless(srv: ServerThread, kube: Kube) -> None:
    """The API server stopped: an ADD that needs a read is code 11 (not 3); a DEL has no owner, quickly."""
    sts = kube.workload(APPS, "StatefulSet", NS, "db", replicas=1, **template({"app": "db"}))
    pod = kube.pod(NS, "db-0", NODE, owner=sts)
    ctx, client = await start(srv, lookup_timeout=2.0, owner_ttl=0.0)
    try:
        assert await wait_for(lambda: ctx.unready_reason() == "")
        srv.stop()
        with pytest.raises(Unavailable) as err:
            await ctx.for_add(invocation(Verb.ADD, "uncached", "uid-x"))
        assert err.value.cni_code == codes.TRY_AGAIN_LATER
        assert "Kubernetes API" in err.value.message
        with pytest.raises(Unavailable):
            await ctx.for_add(invocation(Verb.ADD, pod))  # cached pod, but its StatefulSet must be read
        started = time.monotonic()
        assert await ctx.owner_for_release(invocation(Verb.DEL, pod)) is None
        assert time.monotonic() - started < 2.5
    finally:
        await ctx.stop()
        await client.close()
