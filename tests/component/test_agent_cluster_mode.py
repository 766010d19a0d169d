"""The agent in a cluster, through real processes: pod facts come from the Kubernetes API.

A real controller process (SQLite store) and a real agent process with ``--pod-source
kubernetes`` and a kubeconfig for the test Kubernetes API server (``tests.kubeapi``, in
this process); every CNI call is the installed ``spiderpool`` shim run with kubelet's
``CNI_ARGS`` and no ``args.cni`` at all. Pods, namespaces, the Node and the workloads are
created in the API server as a user's client creates them, so pool selection (the pod's
``ippool`` annotation, the namespace's default pools, the Node's labels against
``nodeAffinity``, the Multus network against ``multusName``), the recorded owner and the
errors all come from what the API says.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.component.agent_harness import ServiceProcess, agent_process, pool_manifest
from tests.component.conformance_stack import Outcome, Stack, running_stack, start_service
from tests.component.kube_objects import APPS, BATCH, Kube, template, third_party
from tests.kubeapi import ServerConfig, ServerThread

NODE = "node-1"
NS = "apps"
NETWORK = "k8s-net"
CLUSTER_NETWORK = "kube-system/cluster-net"
POOLS = [
    pool_manifest("fallback", "10.70.0.0/24", ["10.70.0.10-10.70.0.60"]),
    pool_manifest("anno-pool", "10.71.0.0/24", ["10.71.0.10-10.71.0.20"]),
    pool_manifest("ns-default", "10.72.0.0/24", ["10.72.0.10-10.72.0.20"]),
    pool_manifest(
        "east", "10.73.0.0/24", ["10.73.0.10-10.73.0.20"], nodeAffinity={"matchLabels": {"zone": "east"}}
    ),
    pool_manifest(
        "west", "10.74.0.0/24", ["10.74.0.10-10.74.0.20"], nodeAffinity={"matchLabels": {"zone": "west"}}
    ),
    pool_manifest("net-a", "10.75.0.0/24", ["10.75.0.10-10.75.0.20"], multusName=["apps/macvlan-a"]),
    pool_manifest("net-b", "10.76.0.0/24", ["10.76.0.10-10.76.0.20"], multusName=["apps/macvlan-b"]),
    pool_manifest("cluster", "10.77.0.0/24", ["10.77.0.10-10.77.0.20"], multusName=[CLUSTER_NETWORK]),
    pool_manifest(
        "other-cluster", "10.78.0.0/24", ["10.78.0.10-10.78.0.20"], multusName=["kube-system/other"]
    ),
]


def kube_agent_args(srv: ServerThread, *extra: str) -> list[str]:
    return ["--pod-source", "kubernetes", "--kubeconfig", str(srv.kubeconfig_path), *extra]


def kubelet_args(pod: dict[str, Any], container_id: str, uid: str | None = None) -> str:
    meta = pod["metadata"]
    return (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE={meta['namespace']};K8S_POD_NAME={meta['name']};"
        f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid or meta['uid']}"
    )


@dataclass
class Cluster:
    srv: ServerThread
    kube: Kube
    stack: Stack

    def conf(self, *pools: str, socket: Path | None = None) -> dict[str, Any]:
        conf = self.stack.net_conf("1.1.0", NETWORK, v4=pools or ("fallback",), v6=())
        if socket is not None:
            conf["ipam"]["ipam_unix_socket_path"] = str(socket)
        return conf

    def cni(
        self,
        verb: str,
        pod: dict[str, Any],
        container_id: str,
        *pools: str,
        ifname: str = "eth0",
        uid: str | None = None,
        socket: Path | None = None,
    ) -> Outcome:
        return self.stack.run(
            verb,
            self.conf(*pools, socket=socket),
            container_id,
            args=kubelet_args(pod, container_id, uid),
            ifname=ifname,
        )

    def add(self, pod: dict[str, Any], container_id: str, *pools: str, ifname: str = "eth0") -> list[str]:
        result = self.cni("ADD", pod, container_id, *pools, ifname=ifname).result()
        return [ip["address"] for ip in result["ips"]]


def wait_ready(stack: Stack, conf: dict[str, Any], deadline: float = 20.0) -> None:
    """Poll STATUS until the agent answers ready (its informers have synced)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if stack.run("STATUS", conf).rc == 0:
            return
        time.sleep(0.05)
    raise TimeoutError("the agent did not become ready")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with ServerThread(ServerConfig(history_size=2000)) as srv:
        kube = Kube(srv)
        kube.namespace(NS, labels={"team": "web"})
        kube.namespace("teams", annotations={"ipam.spidernet.io/default-ipv4-ippool": '["ns-default"]'})
        kube.node(NODE, {"zone": "east", "kubernetes.io/os": "linux"})
        args = kube_agent_args(srv, "--cluster-network", CLUSTER_NETWORK)
        with running_stack("k8s-", POOLS, agent_args=args) as stack:
            running = Cluster(srv, kube, stack)
            wait_ready(stack, running.conf())
            yield running


def record_of(cluster: Cluster, pool: str, address: str) -> dict[str, Any]:
    return cluster.stack.records(pool)[address.split("/", maxsplit=1)[0]]


def test_the_pods_ippool_annotation_picks_the_pool(cluster: Cluster) -> None:
    """The pod's ipam.spidernet.io/ippool (read from the API) beats the network's default pool."""
    pod = cluster.kube.pod(
        NS, "anno-1", NODE, annotations={"ipam.spidernet.io/ippool": '{"ipv4": ["anno-pool"]}'}
    )
    (address,) = cluster.add(pod, "c-anno-1")
    assert address.startswith("10.71.0.")
    record = record_of(cluster, "anno-pool", address)
    assert (record["pod"], record["podUid"], record["kind"]) == (
        "apps/anno-1",
        pod["metadata"]["uid"],
        "Pod",
    )
    cluster.cni("DEL", pod, "c-anno-1").succeeded_silently()
    assert cluster.stack.records("anno-pool") == {}


def test_the_namespaces_default_pool_annotation_picks_the_pool(cluster: Cluster) -> None:
    """A pod without pool annotations in a namespace with default pools gets one of those."""
    pod = cluster.kube.pod("teams", "ns-1", NODE)
    (address,) = cluster.add(pod, "c-ns-1")
    assert address.startswith("10.72.0.")
    cluster.cni("DEL", pod, "c-ns-1").succeeded_silently()


def test_the_node_objects_labels_meet_the_pools_node_affinity(cluster: Cluster) -> None:
    """The agent has no --node-labels: its Node object's zone=east selects the east pool."""
    pod = cluster.kube.pod(NS, "aff-1", NODE)
    (address,) = cluster.add(pod, "c-aff-1", "west", "east")
    assert address.startswith("10.73.0.")
    cluster.cni("DEL", pod, "c-aff-1").succeeded_silently()


def test_the_multus_network_of_each_nic_meets_the_pools_multus_name(cluster: Cluster) -> None:
    """net2 is the networks annotation's second (unnamed) entry, fast1 the named one, eth0 the
    agent's cluster network, or the pod's default-network annotation when it has one."""
    networks = {"k8s.v1.cni.cncf.io/networks": "macvlan-b@fast1, macvlan-a"}
    pod = cluster.kube.pod(NS, "multi-1", NODE, annotations=networks)
    assert cluster.add(pod, "c-multi-1", "net-a", "net-b", ifname="net2")[0].startswith("10.75.0.")
    assert cluster.add(pod, "c-multi-1", "net-a", "net-b", ifname="fast1")[0].startswith("10.76.0.")
    assert cluster.add(pod, "c-multi-1", "other-cluster", "cluster")[0].startswith("10.77.0.")
    other = cluster.kube.pod(
        NS, "multi-2", NODE, annotations={"v1.multus-cni.io/default-network": "kube-system/other"}
    )
    assert cluster.add(other, "c-multi-2", "other-cluster", "cluster")[0].startswith("10.78.0.")
    for ifname in ("net2", "fast1", "eth0"):
        cluster.cni("DEL", pod, "c-multi-1", ifname=ifname).succeeded_silently()
    cluster.cni("DEL", other, "c-multi-2").succeeded_silently()


def test_the_ippools_annotation_allocates_every_listed_nic_on_the_first_add(cluster: Cluster) -> None:
    """ipam.spidernet.io/ippools names eth0's and net1's pools: eth0's ADD allocates both NICs,
    net1's ADD answers the address already held."""
    ippools = json.dumps(
        [{"interface": "eth0", "ipv4": ["anno-pool"]}, {"interface": "net1", "ipv4": ["east"]}]
    )
    pod = cluster.kube.pod(NS, "two-nics", NODE, annotations={"ipam.spidernet.io/ippools": ippools})
    (eth0,) = cluster.add(pod, "c-two-nics")
    assert eth0.startswith("10.71.0.")
    held = [ip for ip, rec in cluster.stack.records("east").items() if rec["pod"] == "apps/two-nics"]
    assert len(held) == 1
    assert cluster.add(pod, "c-two-nics", ifname="net1") == [f"{held[0]}/24"]
    for ifname in ("eth0", "net1"):
        cluster.cni("DEL", pod, "c-two-nics", ifname=ifname).succeeded_silently()


def test_workload_owners_are_resolved_and_recorded(cluster: Cluster) -> None:
    """Deployment (through its ReplicaSet), CronJob (through its Job) and a third-party
    controller are the owners the controller records."""
    kube = cluster.kube
    dep = kube.workload(APPS, "Deployment", NS, "web", replicas=2, **template({"app": "web"}))
    rs = kube.workload(APPS, "ReplicaSet", NS, "web-6b", owner=dep, replicas=2, **template({"app": "web"}))
    cron = kube.workload(BATCH, "CronJob", NS, "nightly", schedule="0 3 * * *", jobTemplate={"spec": {}})
    job = kube.workload(BATCH, "Job", NS, "nightly-29", owner=cron, **template({"job": "nightly"}))
    pods = {
        ("Deployment", "web"): kube.pod(NS, "web-6b-x1", NODE, owner=rs),
        ("CronJob", "nightly"): kube.pod(NS, "nightly-29-x1", NODE, owner=job),
        ("Workload", "w"): kube.pod(NS, "w-0", NODE, owner=third_party("Workload", "w", "uid-w")),
    }
    for i, (owner, pod) in enumerate(pods.items()):
        (address,) = cluster.add(pod, f"c-own-{i}")
        record = record_of(cluster, "fallback", address)
        assert (record["kind"], record["owner"]) == owner
        cluster.cni("DEL", pod, f"c-own-{i}").succeeded_silently()


def test_a_statefulset_member_keeps_its_address_until_the_set_is_scaled_down(cluster: Cluster) -> None:
    """db-1's DEL keeps the address while the StatefulSet has 2 replicas; after scaling to 1
    (read afresh by the DEL, right away) the next DEL releases it."""
    kube = cluster.kube
    sts = kube.workload(APPS, "StatefulSet", NS, "db", replicas=2, **template({"app": "db"}))
    pod = kube.pod(NS, "db-1", NODE, owner=sts)
    (address,) = cluster.add(pod, "c-db-1")
    record = record_of(cluster, "fallback", address)
    assert (record["kind"], record["owner"]) == ("StatefulSet", "db")
    cluster.cni("DEL", pod, "c-db-1").succeeded_silently()
    assert address.split("/")[0] in cluster.stack.records("fallback")
    kube.patch(f"{APPS}/namespaces/{NS}/statefulsets/db", {"spec": {"replicas": 1}})
    cluster.cni("DEL", pod, "c-db-1").succeeded_silently()
    assert address.split("/")[0] not in cluster.stack.records("fallback")


def test_a_pod_created_a_moment_ago_succeeds_through_a_direct_read(cluster: Cluster) -> None:
    """The pod watch is held, so the informer has not seen the pod: the ADD reads it directly."""
    cluster.srv.faults.delay(3.0, verb="watch", resource="pods")
    try:
        cluster.srv.drop_watches()
        pod = cluster.kube.pod(
            NS, "fresh-1", NODE, annotations={"ipam.spidernet.io/ippool": '{"ipv4": ["anno-pool"]}'}
        )
        gets = cluster.srv.faults.count("get", "pods")
        (address,) = cluster.add(pod, "c-fresh-1")
        assert address.startswith("10.71.0.")
        assert cluster.srv.faults.count("get", "pods") >= gets + 1
    finally:
        cluster.srv.faults.clear()
    cluster.cni("DEL", pod, "c-fresh-1").succeeded_silently()


def test_a_missing_pod_and_a_uid_mismatch_are_code_3_and_allocate_nothing(cluster: Cluster) -> None:
    """No such pod: code 3 naming it. The pod exists with another UID: code 3 naming both UIDs."""
    before = cluster.stack.state()
    ghost = {"metadata": {"namespace": NS, "name": "ghost", "uid": "uid-ghost"}}
    err = cluster.cni("ADD", ghost, "c-ghost").cni_error(3, "1.1.0")
    assert err["msg"] == "pod apps/ghost does not exist"
    pod = cluster.kube.pod(NS, "replaced", NODE)
    err = cluster.cni("ADD", pod, "c-replaced", uid="uid-of-the-deleted-pod").cni_error(3, "1.1.0")
    assert "uid-of-the-deleted-pod" in err["msg"]
    assert pod["metadata"]["uid"] in err["msg"]
    assert cluster.stack.state() == before


@pytest.mark.parametrize(
    ("annotations", "ifname", "named"),
    [
        (
            {"ipam.spidernet.io/ippool": "{ipv4: [anno-pool]}"},
            "eth0",
            "annotation ipam.spidernet.io/ippool: invalid JSON",
        ),
        (
            {"ipam.spidernet.io/ippools": '{"interface": "eth0"}'},
            "eth0",
            "annotation ipam.spidernet.io/ippools: ",
        ),
        ({"k8s.v1.cni.cncf.io/networks": "a@b@c"}, "net1", "annotation k8s.v1.cni.cncf.io/networks: 'a@b@c'"),
        (
            {"ipam.spidernet.io/ippool-ip-number": "many"},
            "eth0",
            "annotation ipam.spidernet.io/ippool-ip-number: ",
        ),
        (
            {"ipam.spidernet.io/default-route-nic": "net 1"},
            "eth0",
            "annotation ipam.spidernet.io/default-route-nic",
        ),
    ],
    ids=["ippool", "ippools", "networks", "ip-number", "default-route-nic"],
)
def test_a_malformed_annotation_is_code_105_naming_it(
    cluster: Cluster, annotations: dict[str, str], ifname: str, named: str
) -> None:
    """The ADD fails naming the annotation and what is wrong; nothing is allocated."""
    before = cluster.stack.state()
    name = "bad-" + next(iter(annotations)).rsplit("/", 1)[1].replace(".", "-")
    pod = cluster.kube.pod(NS, name, NODE, annotations=annotations)
    err = cluster.cni("ADD", pod, f"c-{name}", ifname=ifname).cni_error(105, "1.1.0")
    assert err["msg"].startswith(named), err["msg"]
    assert cluster.stack.state() == before


# -- agents of their own: first sync, an API server that is down -------------------------------


@dataclass
class ExtraAgent:
    agent: ServiceProcess
    workdir: Path


def start_extra_agent(cluster: Cluster, srv: ServerThread, *extra: str) -> ExtraAgent:
    """One more agent process (own socket and state) on the module's controller."""
    workdir = Path(tempfile.mkdtemp(prefix="k8s-x-", dir="/tmp"))
    agent = agent_process(workdir, cluster.stack.controller, node=NODE, extra=kube_agent_args(srv, *extra))
    start_service(agent)
    return ExtraAgent(agent, workdir)


def test_status_is_50_and_an_add_waits_until_the_agent_has_synced(cluster: Cluster) -> None:
    """Listing pods takes 3 s: STATUS answers 50 naming the cache meanwhile, and an ADD made
    then waits for the sync and succeeds."""
    with ServerThread() as srv:
        kube = Kube(srv)
        kube.namespace(NS)
        kube.node(NODE, {"zone": "east"})
        pod = kube.pod(NS, "early-1", NODE)
        srv.faults.delay(3.0, verb="list", resource="pods")
        extra = start_extra_agent(cluster, srv)
        try:
            status = cluster.stack.run("STATUS", cluster.conf(socket=extra.agent.socket_path))
            err = status.cni_error(50, "1.1.0")
            assert "have not synced yet" in err["msg"]
            started = time.monotonic()
            result = cluster.cni("ADD", pod, "c-early-1", socket=extra.agent.socket_path).result()
            assert time.monotonic() - started > 0.5
            assert result["ips"][0]["address"].startswith("10.70.0.")
            assert cluster.stack.run("STATUS", cluster.conf(socket=extra.agent.socket_path)).rc == 0
            cluster.cni("DEL", pod, "c-early-1", socket=extra.agent.socket_path).succeeded_silently()
        finally:
            extra.agent.stop()
            shutil.rmtree(extra.workdir, ignore_errors=True)


def test_an_add_gives_up_with_11_when_the_first_sync_takes_too_long(cluster: Cluster) -> None:
    """With --kube-sync-timeout 1 and the namespace list held for 10 s, the ADD answers 11."""
    with ServerThread() as srv:
        kube = Kube(srv)
        kube.namespace(NS)
        kube.node(NODE, {"zone": "east"})
        pod = kube.pod(NS, "late-1", NODE)
        srv.faults.delay(10.0, verb="list", resource="namespaces")
        extra = start_extra_agent(cluster, srv, "--kube-sync-timeout", "1")
        try:
            before = cluster.stack.state()
            err = cluster.cni("ADD", pod, "c-late-1", socket=extra.agent.socket_path).cni_error(11, "1.1.0")
            assert "namespaces have not synced yet (waited 1s)" in err["msg"]
            assert cluster.stack.state().pools == before.pools
        finally:
            srv.faults.clear()
            extra.agent.stop()
            shutil.rmtree(extra.workdir, ignore_errors=True)


def test_with_the_api_server_down_an_add_is_11_and_a_del_still_succeeds() -> None:
    """The API server stops: an ADD for a pod the agent never saw is code 11 (not "does not
    exist"); DELs succeed, released at the controller, or journaled when it is down too."""
    with ServerThread() as srv:
        kube = Kube(srv)
        kube.namespace(NS)
        kube.node(NODE, {"zone": "east"})
        web = kube.pod(NS, "web-1", NODE)
        sts = kube.workload(APPS, "StatefulSet", NS, "db", replicas=1, **template({"app": "db"}))
        db = kube.pod(NS, "db-0", NODE, owner=sts)
        with running_stack("k8s-down-", [POOLS[0]], agent_args=kube_agent_args(srv)) as stack:
            cluster = Cluster(srv, kube, stack)
            wait_ready(stack, cluster.conf())
            (web_ip,) = cluster.add(web, "c-web-1")
            (db_ip,) = cluster.add(db, "c-db-0")
            srv.stop()
            unseen = {"metadata": {"namespace": NS, "name": "unseen", "uid": "uid-unseen"}}
            err = cluster.cni("ADD", unseen, "c-unseen").cni_error(11, "1.1.0")
            assert "Kubernetes API" in err["msg"]
            cluster.cni("DEL", web, "c-web-1").succeeded_silently()
            assert web_ip.split("/")[0] not in stack.records("fallback")
            stack.controller.stop()
            cluster.cni("DEL", db, "c-db-0").succeeded_silently()
            journal = stack.workdir / "agent-state" / "release-journal.jsonl"
            intents = [
                json.loads(line)["intent"] for line in journal.read_text().splitlines() if line.strip()
            ]
            db_intents = [i for i in intents if i["container_id"] == "c-db-0"]
            assert db_intents, intents
            # The owner the DEL journaled is the StatefulSet's last known state (the API is down).
            assert (db_intents[-1]["owner_kind"], db_intents[-1]["owner_replicas"]) == ("StatefulSet", 1)
            assert db_ip.startswith("10.70.0.")
