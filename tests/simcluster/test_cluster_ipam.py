"""Spiderpool's Kubernetes mode end to end in the simulated cluster (the "Kubernetes mode" issue's list).

One cluster for the module: the test API server with the generated CRDs, enforcing the Helm chart's RBAC, two
controller replicas on the Kubernetes store (leader election on the Lease), and three nodes, each with its
agent (pod facts from the API) and a kubelet stand-in running Debian's macvlan with our shims, Multus-style;
the controllers and agents run as the rendered chart starts them, as its ServiceAccounts, over its mutual TLS.
Pools are applied with kubectl, as a user would; each test uses its own pools and its own Kubernetes namespace
so tests do not interfere, except the cluster default pools (demo-v4/-v6 from deploy/examples), applied once.
The last test checks that nothing the programs asked for in the whole run was denied.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.simcluster.api import ApiError, SyncApi
from tests.simcluster.cluster import SimCluster, SimOptions
from tests.simcluster.demo import EXAMPLES
from tests.simcluster.topology import UNDERLAY, node_subnet

pytestmark = pytest.mark.netns

Obj = dict[str, Any]
POOL_API = "spiderpool.spidernet.io/v2beta1"
# Leader election scaled down (upstream's 15/10/2 s) so that a killed leader is replaced within seconds.
FAST_LEASE = {
    "spiderpoolController": {"leaderElection": {"leaseDuration": 3, "renewDeadline": 2, "retryPeriod": 0.5}}
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimCluster]:
    with SimCluster(SimOptions(values=FAST_LEASE)) as sim:
        for name in ("ippool-demo-v4.yaml", "ippool-demo-v6.yaml"):
            sim.kubectl("apply", "-f", str(EXAMPLES / name))
        yield sim


@pytest.fixture
def ns(cluster: SimCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = request.node.name.replace("_", "-")[:40].strip("-").lower()
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", ok=False)


def pool(name: str, subnet: str, first: str, last: str, gateway: str = "", **spec: Any) -> Obj:
    body: Obj = {"subnet": subnet, "ips": [f"{first}-{last}"], **spec}
    if gateway:
        body["gateway"] = gateway
    return {"apiVersion": POOL_API, "kind": "SpiderIPPool", "metadata": {"name": name}, "spec": body}


def pod(name: str, ns: str, annotations: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "c", "image": "pause"}], **spec},
    }


def on(node: str) -> dict[str, Any]:
    return {"nodeSelector": {"kubernetes.io/hostname": node}}


def ipv4(ips: list[str]) -> str:
    (found,) = [ip for ip in ips if ":" not in ip]
    return found


def holder(cluster: SimCluster, pool_name: str, ip: str) -> Obj | None:
    return cluster.pool_records(pool_name).get(ip)


def sandbox_of(record: Obj | None) -> str:
    """The container ID an allocation record names (``cid``; upstream-style ``containerID`` read too)."""
    return str((record or {}).get("cid") or (record or {}).get("containerID") or "")


def test_pools_are_chosen_by_pod_annotation_namespace_cni_config_and_cluster_default(
    cluster: SimCluster, ns: str
) -> None:
    """Upstream's priority: the pod's ippool annotation, else its namespace's default pools, else the CNI
    configuration's default pools, else the cluster default pools; each pod's IP comes from its pool."""
    cluster.apply(
        [
            pool("sel-anno", UNDERLAY.v4, "172.30.0.100", "172.30.0.104", "172.30.0.1"),
            pool("sel-ns", UNDERLAY.v4, "172.30.0.105", "172.30.0.109", "172.30.0.1"),
            pool("sel-cni", UNDERLAY.v4, "172.30.0.110", "172.30.0.114", "172.30.0.1"),
        ]
    )
    eth0_config = {
        "cniVersion": "1.0.0",
        "name": "macvlan-cni-default",
        "plugins": [
            {"type": "macvlan", "master": "master0", "mode": "bridge",
             "ipam": {"type": "spiderpool", "default_ipv4_ippool": ["sel-cni"]}},
            {"type": "coordinator"},
        ],
    }  # fmt: skip
    ns_default = f"{ns}-nsdef"
    namespace_annotations = {"ipam.spidernet.io/default-ipv4-ippool": '["sel-ns"]'}
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns_default, "annotations": namespace_annotations},
            },
            {
                "apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "cni-default", "namespace": ns},
                "spec": {"config": json.dumps(eth0_config)},
            },
        ]
    )
    cluster.apply(
        [
            pod("by-annotation", ns, {"ipam.spidernet.io/ippool": '{"ipv4": ["sel-anno"]}'}),
            pod("by-namespace", ns_default),
            pod("by-cni-config", ns, {"v1.multus-cni.io/default-network": "cni-default"}),
            pod("by-cluster-default", ns),
        ]
    )
    expected = {
        ("by-annotation", ns): "sel-anno",
        ("by-namespace", ns_default): "sel-ns",
        ("by-cni-config", ns): "sel-cni",
        ("by-cluster-default", ns): "demo-v4",
    }
    for (name, namespace), pool_name in expected.items():
        ip = ipv4(cluster.pod_ips(namespace, name))
        record = holder(cluster, pool_name, ip)
        assert record is not None, f"{name}: {ip} is not in {pool_name}"
        assert record["pod"] == f"{namespace}/{name}"
    assert len(cluster.pod_ips(ns, "by-cluster-default")) == 2  # demo-v6 is a cluster default too
    endpoint = cluster.endpoint(ns, "by-annotation")
    assert endpoint is not None
    (entry,) = endpoint["status"]["current"]["ips"]
    assert (entry["interface"], entry["ipv4Pool"]) == ("eth0", "sel-anno")
    assert "sel-anno" in cluster.kubectl("get", "sp").stdout
    cluster.kubectl("delete", "namespace", ns_default, "--wait=false")


def test_node_affine_pools_give_pods_on_different_nodes_different_subnets(
    cluster: SimCluster, ns: str
) -> None:
    """One pool per node (nodeAffinity on the hostname label, the node's own subnet) named together in the pod
    annotation: each pod gets the pool of its node, and pods on different nodes reach each other via the
    switch's router."""
    cluster.apply(
        [
            pool(f"aff-{n}", node_subnet(i).v4, f"172.32.{i}.20", f"172.32.{i}.29", f"172.32.{i}.1",
                 nodeAffinity={"matchLabels": {"kubernetes.io/hostname": n}})
            for i, n in ((1, "node1"), (2, "node2"))
        ]
    )  # fmt: skip
    annotation = {"ipam.spidernet.io/ippool": '{"ipv4": ["aff-node1", "aff-node2"]}'}
    cluster.apply([pod("a", ns, annotation, **on("node1")), pod("b", ns, annotation, **on("node2"))])
    a, b = cluster.pod_ips(ns, "a"), cluster.pod_ips(ns, "b")
    assert a[0].startswith("172.32.1.2") and b[0].startswith("172.32.2.2")
    assert holder(cluster, "aff-node1", a[0]) is not None and holder(cluster, "aff-node2", b[0]) is not None
    netns_a = cluster.pod_netns(cluster.running_pod(ns, "a"))
    assert netns_a.ping(b[0], count=2, wait_s=2)


def test_a_multi_nic_pod_gets_eth0_and_net1_from_two_network_attachment_definitions(
    cluster: SimCluster, ns: str
) -> None:
    """eth0 from the pod's default-network NAD and net1 from its networks NAD, each from the pool the
    ippools annotation names for that interface; the SpiderEndpoint and network-status list both."""
    cluster.apply([pool("nic-net1", "172.31.0.0/24", "172.31.0.100", "172.31.0.109", "172.31.0.1")])

    def nad(name: str, master: str) -> Obj:
        config = {
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [
                {"type": "macvlan", "master": master, "mode": "bridge", "ipam": {"type": "spiderpool"}},
                {"type": "coordinator"},
            ],
        }
        return {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"config": json.dumps(config)},
        }

    cluster.apply([nad("eth0-net", "master0"), nad("net1-net", "master1")])
    ippools = [
        {"interface": "eth0", "ipv4": ["demo-v4"]},
        {"interface": "net1", "ipv4": ["nic-net1"], "cleangateway": True},
    ]
    annotations = {
        "v1.multus-cni.io/default-network": "eth0-net",
        "k8s.v1.cni.cncf.io/networks": "net1-net",
        "ipam.spidernet.io/ippools": json.dumps(ippools),
    }
    cluster.apply([pod("m1", ns, annotations, **on("node1")), pod("m2", ns, annotations, **on("node2"))])
    for name in ("m1", "m2"):
        running = cluster.running_pod(ns, name)
        statuses = cluster.network_status(running)
        assert [(s["name"], s["interface"]) for s in statuses] == [
            (f"{ns}/eth0-net", "eth0"),
            (f"{ns}/net1-net", "net1"),
        ]
        net1_ip = statuses[1]["ips"][0]
        assert net1_ip.startswith("172.31.0.10") and holder(cluster, "nic-net1", net1_ip) is not None
        endpoint = cluster.endpoint(ns, name) or {}
        assert sorted(e["interface"] for e in endpoint["status"]["current"]["ips"]) == ["eth0", "net1"]
    m1 = cluster.running_pod(ns, "m1")
    m2_net1 = cluster.network_status(cluster.running_pod(ns, "m2"))[1]["ips"][0]
    m1_net1 = cluster.network_status(m1)[1]["ips"][0]
    netns = cluster.pod_netns(m1)
    ping = netns.run(["ping", "-n", "-q", "-c", "2", "-W", "2", "-I", m1_net1, m2_net1], check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_a_statefulset_member_keeps_its_ip_across_re_creation_and_releases_it_on_scale_down(
    cluster: SimCluster, ns: str
) -> None:
    """A deleted member is re-created (new UID) with the same address; scaling down frees the removed member's
    address and its SpiderEndpoint."""
    cluster.apply([pool("sts-v4", UNDERLAY.v4, "172.30.0.120", "172.30.0.129", "172.30.0.1")])
    template = {
        "metadata": {
            "labels": {"app": "db"},
            "annotations": {"ipam.spidernet.io/ippool": '{"ipv4": ["sts-v4"]}'},
        },
        "spec": {"containers": [{"name": "c", "image": "pause"}]},
    }
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": ns},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": template,
        },
    }
    cluster.apply([sts])
    first = cluster.running_pod(ns, "db-0")
    ip0 = cluster.pod_ips(ns, "db-0")
    ip1 = cluster.pod_ips(ns, "db-1")
    cluster.kubectl("delete", "pod", "-n", ns, "db-0")
    again = cluster.wait(
        lambda: (p := cluster.api.pod(ns, "db-0")) and p["metadata"]["uid"] != first["metadata"]["uid"] and p,
        "db-0 to be re-created",
    )
    assert cluster.pod_ips(ns, "db-0") == ip0
    assert holder(cluster, "sts-v4", ip0[0])["podUid"] == again["metadata"]["uid"]  # type: ignore[index]
    cluster.scale("statefulset", ns, "db", 1)
    cluster.wait(lambda: holder(cluster, "sts-v4", ip1[0]) is None, "db-1's address to be released")
    cluster.wait(lambda: cluster.endpoint(ns, "db-1") is None, "db-1's SpiderEndpoint to go")
    assert holder(cluster, "sts-v4", ip0[0]) is not None


def test_a_re_created_sandbox_keeps_the_pods_ip_and_the_late_del_frees_nothing(
    cluster: SimCluster, ns: str
) -> None:
    """A new sandbox of the same pod (new container ID) takes the pod's addresses over; the old sandbox's DEL,
    arriving after the new ADD, leaves them allocated to the new sandbox."""
    cluster.apply([pod("sandboxed", ns, **on("node2"))])
    before = cluster.running_pod(ns, "sandboxed")
    ips = cluster.pod_ips(ns, "sandboxed")
    old_sandbox, old_netns = cluster.sandbox_id(before), cluster.pod_netns(before)
    assert sandbox_of(holder(cluster, "demo-v4", ipv4(ips))) == old_sandbox
    new_sandbox = cluster.kill_sandbox(ns, "sandboxed", "late-del")
    assert cluster.pod_ips(ns, "sandboxed") == ips
    cluster.wait(lambda: not old_netns.exists(), "the old sandbox's late DEL and teardown")
    for pool_name, ip in (("demo-v4", ipv4(ips)), ("demo-v6", next(i for i in ips if ":" in i))):
        record = holder(cluster, pool_name, ip)
        assert record is not None, f"{ip} was freed by the late DEL"
        assert (sandbox_of(record), record["podUid"]) == (new_sandbox, before["metadata"]["uid"])


def test_pods_deleted_on_a_lost_node_get_their_ips_back_through_gc(cluster: SimCluster, ns: str) -> None:
    """With node3 lost (kubelet and agent dead: no CNI DEL), deleting its pods frees their addresses through
    the controller's garbage collection."""
    cluster.apply([pool("lost-v4", UNDERLAY.v4, "172.30.0.130", "172.30.0.139", "172.30.0.1")])
    annotation = {"ipam.spidernet.io/ippool": '{"ipv4": ["lost-v4"]}'}
    cluster.apply([pod(f"gone-{i}", ns, annotation, **on("node3")) for i in range(3)])
    ips = [cluster.pod_ips(ns, f"gone-{i}")[0] for i in range(3)]
    assert all(holder(cluster, "lost-v4", ip) for ip in ips)
    cluster.kill_node("node3")
    try:
        cluster.kubectl("delete", "pod", "-n", ns, "gone-0", "gone-1", "gone-2")
        cluster.wait(
            lambda: not cluster.pool_records("lost-v4"), "GC to release the lost node's addresses", 60
        )
    finally:
        cluster.restart_node("node3")
    assert all(cluster.endpoint(ns, f"gone-{i}") is None for i in range(3))


def test_the_leader_killed_mid_storm_leaves_no_duplicate_no_leak_and_every_pod_addressed(
    cluster: SimCluster, ns: str
) -> None:
    """While a Deployment's 24 pods are being created, the leading controller is killed; the standby takes
    over, every pod runs with an address, no address is held twice, and the pool holds exactly the pods'
    addresses."""
    cluster.apply([pool("storm-v4", UNDERLAY.v4, "172.30.0.140", "172.30.0.199", "172.30.0.1")])
    leader = cluster.leader_index()
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "storm", "namespace": ns},
        "spec": {
            "replicas": 24,
            "selector": {"matchLabels": {"app": "storm"}},
            "template": {
                "metadata": {
                    "labels": {"app": "storm"},
                    "annotations": {"ipam.spidernet.io/ippool": '{"ipv4": ["storm-v4"]}'},
                },
                "spec": {"containers": [{"name": "c", "image": "pause"}]},
            },
        },
    }
    cluster.apply([deploy])
    cluster.wait(lambda: len(cluster.pool_records("storm-v4")) >= 4, "the storm to be under way")
    cluster.controllers[leader].kill()
    try:

        def all_running() -> list[Obj] | None:
            pods = [p for p in cluster.api.pods(ns) if (p.get("status") or {}).get("phase") == "Running"]
            return pods if len(pods) == 24 else None

        pods = cluster.wait(all_running, "all 24 pods to run", 120)
        assert cluster.leader_index() != leader
    finally:
        cluster.restart(cluster.controllers[leader])
    ips = [ipv4([e["ip"] for e in p["status"]["podIPs"]]) for p in pods]
    assert len(set(ips)) == 24
    records = cluster.wait(
        lambda: (r := cluster.pool_records("storm-v4")) and len(r) == 24 and r,
        "the pool to hold exactly 24",
        60,
    )
    assert set(records) == set(ips)
    assert {r["podUid"] for r in records.values()} == {p["metadata"]["uid"] for p in pods}


def test_an_invalid_pool_is_refused_by_the_webhook(cluster: SimCluster) -> None:
    """kubectl apply of a pool whose range lies outside its subnet is refused by our admission webhook, naming
    the field; nothing is stored."""
    bad = pool("bad-range", "172.30.0.0/24", "172.31.0.10", "172.31.0.20")
    result = cluster.apply([bad], ok=False)
    assert result.returncode != 0
    assert 'admission webhook "spiderippool.spiderpool.spidernet.io" denied the request' in result.stderr
    assert "spec.ips" in result.stderr and "172.30.0.0/24" in result.stderr
    assert cluster.pool("bad-range") is None


def test_a_pod_whose_multus_selection_asks_for_an_address_gets_exactly_it(
    cluster: SimCluster, ns: str
) -> None:
    """The networks annotation's element carries "ips"; Multus passes them as runtimeConfig to a NAD
    declaring the ips capability, and net1 gets exactly that address, recorded as requested."""
    cluster.apply([pool("ask-net1", "172.31.0.0/24", "172.31.0.120", "172.31.0.129", "172.31.0.1")])
    config = {
        "cniVersion": "1.0.0",
        "name": "ask-net",
        "plugins": [
            {
                "type": "macvlan",
                "master": "master1",
                "mode": "bridge",
                "capabilities": {"ips": True},
                "ipam": {"type": "spiderpool", "default_ipv4_ippool": ["ask-net1"]},
            },
        ],
    }
    nad = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "ask-net", "namespace": ns},
        "spec": {"config": json.dumps(config)},
    }
    cluster.apply([nad])
    networks = json.dumps([{"name": "ask-net", "ips": ["172.31.0.127/24"]}])
    cluster.apply([pod("asker", ns, {"k8s.v1.cni.cncf.io/networks": networks}, **on("node2"))])
    statuses = cluster.network_status(cluster.running_pod(ns, "asker"))
    assert [(s["interface"], s["ips"]) for s in statuses[1:]] == [("net1", ["172.31.0.127"])]
    record = holder(cluster, "ask-net1", "172.31.0.127") or {}
    assert record.get("requested") is True


def test_the_chart_s_rbac_denied_nothing_the_programs_asked_for(cluster: SimCluster) -> None:
    """Last in the module: in the whole run the API server, enforcing the chart's roles per ServiceAccount
    token, denied no request of the controllers and agents. Enforcement is on (a request outside the agent's
    role, with the token the agents use, is refused and recorded) and the webhook configurations the API
    server calls are the chart's."""
    assert cluster.denied() == []
    kubeconfig = cluster.paths.kubeconfig_of("spiderpool-agent")
    cmdline = Path(f"/proc/{cluster.agent('node1').pid}/cmdline").read_bytes().decode().split("\0")
    assert f"--kubeconfig={kubeconfig}" in cmdline
    agent_api = SyncApi.from_kubeconfig(kubeconfig)
    with pytest.raises(ApiError) as refused:
        agent_api.get("/api/v1/namespaces/kube-system/secrets")
    agent_api.close()
    assert refused.value.status == 403
    assert [(d["user"], d["verb"], d["resource"]) for d in cluster.denied()] == [
        ("system:serviceaccount:kube-system:spiderpool-agent", "list", "secrets")
    ]
    assert cluster.chart is not None
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        served = cluster.api.get(
            f"/apis/admissionregistration.k8s.io/v1/{kind.lower()}s/spiderpool-controller"
        )
        assert served["webhooks"] == cluster.chart.rendered.get(kind, "spiderpool-controller")["webhooks"]
