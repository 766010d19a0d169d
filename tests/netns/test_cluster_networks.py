"""Issue 9 with packets: the networks a cluster's SpiderMultusConfigs generate, executed for real on
nodes of different kinds, and ClusterIP access through the coordinator with the service CIDR the
controller discovered.

A controller in cluster mode (tests/netns/cluster_lab.py) generates the NetworkAttachmentDefinitions
and the SpiderCoordinator's CIDRs; each node runs its agent and our CNI runtime, which executes the
NAD's conflist (Debian's macvlan or bridge, our IPAM and coordinator shims). Node ``node-a`` is the
coordinator lab's node (tests/netns/coordinator_lab.py: master ``ensa`` with the node's address
10.6.0.2, a router holding the gateway 10.6.0.1); ``node-b`` stands in for the nodes with another
main CNI (SR-IOV or ipvlan, which this kernel lacks): Debian's bridge plugin through a custom
SpiderMultusConfig. Pools are pinned to their nodes by ``nodeAffinity``.

The kube-proxy stand-in is an nftables DNAT in the node namespace from a ClusterIP of the
discovered service CIDR to a backend pod's underlay address; the backend answers with the source
address it saw, so a reply proves the request crossed the node un-masqueraded, both ways.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from spiderpool_tools.cni_runtime import CniPluginError, result_ips
from spiderpool_tools.netns import NetNs

from tests.netns.cluster_lab import POD_NAMESPACE, ClusterLab, Node
from tests.netns.coordinator_lab import SUBNETS, Lab, routes

pytestmark = pytest.mark.netns

A = SUBNETS[0]  # 10.6.0.0/24 on node-a's master ensa
B_SUBNET, B_GATEWAY = "10.7.0.0/24", "10.7.0.1"
CLUSTER_IP, SERVICE_PORT, BACKEND_PORT = "10.96.0.10", 80, 8080
SERVICE_CIDR, POD_CIDR = "10.96.0.0/12", "10.244.0.0/16"
NODE_A_IP = A.host(2)

SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(f"backend saw {peer[0]}\\n".encode())
    c.close()
"""
CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(s.recv(200).decode().strip())
"""


def pool(name: str, subnet: str, first: str, last: str, gateway: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {
            "subnet": subnet,
            "ips": [f"{first}-{last}"],
            "gateway": gateway,
            "nodeAffinity": {"matchLabels": {"kubernetes.io/hostname": node}},
        },
    }


def smc(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderMultusConfig",
        "metadata": {"name": name, "namespace": POD_NAMESPACE},
        "spec": spec,
    }


MACVLAN_A = smc(
    "macvlan-a", {"cniType": "macvlan", "macvlan": {"master": [A.master], "ippools": {"ipv4": ["pool-a"]}}}
)
BRIDGE_CONFLIST = (
    '{"cniVersion":"1.0.0","name":"bridge-b","plugins":['
    '{"type":"bridge","bridge":"br-b","isGateway":true,"ipam":{"type":"spiderpool","default_ipv4_ippool":["pool-b"]}},'
    '{"type":"coordinator"}]}'
)
BRIDGE_B = smc("bridge-b", {"cniType": "custom", "customCNI": BRIDGE_CONFLIST})


def kubeadm_config() -> dict[str, Any]:
    text = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworking:\n"
    text += f"  podSubnet: {POD_CIDR}\n  serviceSubnet: {SERVICE_CIDR}\n"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
        "data": {"ClusterConfiguration": text},
    }


def coordinator(pod_cidr_type: str) -> dict[str, Any]:
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderCoordinator",
        "metadata": {"name": "default"},
        "spec": {"podCIDRType": pod_cidr_type},
    }


def v4(result: dict[str, Any]) -> str:
    return next(str(ipaddress.ip_interface(c).ip) for c in result_ips(result) if ":" not in c)


def kube_proxy(node: NetNs, backend: str) -> None:
    """The node's Service rule: ClusterIP:80 -> backend:8080 for traffic entering or leaving the node
    (and IPv4 forwarding, which every Kubernetes node has on: kubeadm's preflight requires it)."""
    node.sysctl("net.ipv4.ip_forward", 1)
    rule = f"ip daddr {CLUSTER_IP} tcp dport {SERVICE_PORT} dnat to {backend}:{BACKEND_PORT}"
    node.run(
        ["nft", "-f", "-"],
        input_text=(
            "table ip kubeproxy {\n"
            f"  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; {rule}; }}\n"
            f"  chain output {{ type nat hook output priority -100; policy accept; {rule}; }}\n"
            "}\n"
        ),
    )


def connect(ns: NetNs, address: str, port: int) -> str:
    return ns.run([sys.executable, "-c", CLIENT, address, str(port)], timeout=20).stdout.strip()


@pytest.fixture
def cluster() -> Iterator[ClusterLab]:
    lab = ClusterLab.start()
    try:
        yield lab
    finally:
        lab.close()


def serve(cluster: ClusterLab, pod: NetNs) -> None:
    cluster.serve(pod, [sys.executable, "-c", SERVER, str(BACKEND_PORT)])


def test_mixed_infrastructure_nodes_each_get_addresses_through_their_spidermultusconfig(
    cluster: ClusterLab, make_lab: Callable[[int], Lab], node_ns: NetNs
) -> None:
    """macvlan on node-a and Debian's bridge on node-b, each from its SpiderMultusConfig's generated
    NAD with node-affinity pools: every pod gets an address of its node's pool, reaches its gateway,
    and its node reaches it (through veth0); the bridge network on the macvlan node gets nothing
    (its pool belongs to node-b); DEL gives every address back."""
    make_lab(1)
    for obj in (
        pool("pool-a", A.v4, A.host(10), A.host(40), A.host(1), "node-a"),
        pool("pool-b", B_SUBNET, "10.7.0.10", "10.7.0.40", B_GATEWAY, "node-b"),
        MACVLAN_A,
        BRIDGE_B,
    ):
        cluster.apply(obj)
    cluster.start_controller()
    node_a = cluster.add_node("node-a", node_ns)
    node_b_ns = NetNs.create("spnodeb")
    cluster.extra_ns.append(node_b_ns)
    node_b_ns.disable_dad()
    node_b = cluster.add_node("node-b", node_b_ns, {"network.example/kind": "sriov-standin"})

    generated, _ = cluster.network(node_a, "macvlan-a")
    assert [p["type"] for p in generated["plugins"]] == ["macvlan", "coordinator"]
    assert generated["plugins"][0]["ipam"] == {"type": "spiderpool", "default_ipv4_ippool": ["pool-a"]}
    assert cluster.nad("bridge-b")["spec"]["config"] == BRIDGE_CONFLIST  # custom: byte for byte

    pod_a, pod_b = cluster.pod(), cluster.pod()
    ip_a = v4(cluster.attach(node_a, pod_a, "web-a", "macvlan-a"))
    ip_b = v4(cluster.attach(node_b, pod_b, "web-b", "bridge-b"))
    assert ipaddress.ip_address(ip_a) in ipaddress.ip_network(A.v4) and int(ip_a.split(".")[-1]) >= 10
    assert ipaddress.ip_address(ip_b) in ipaddress.ip_network(B_SUBNET) and int(ip_b.split(".")[-1]) >= 10
    assert {r["node"] for r in cluster.pool_records("pool-a").values()} == {"node-a"}
    assert {r["node"] for r in cluster.pool_records("pool-b").values()} == {"node-b"}

    pod_a.wait_ping(A.host(1), deadline_s=5)  # the router, through macvlan
    pod_b.wait_ping(B_GATEWAY, deadline_s=5)  # the bridge's gateway address on node-b
    node_a.ns.wait_ping(ip_a, deadline_s=5)
    node_b.ns.wait_ping(ip_b, deadline_s=5)
    assert "veth0" in pod_a.links() and "veth0" in pod_b.links()

    stray = cluster.pod()
    with pytest.raises(CniPluginError) as refused:
        cluster.attach(node_a, stray, "stray", "bridge-b")
    assert "pool-b" in str(refused.value)
    assert len(cluster.pool_records("pool-b")) == 1

    cluster.detach(node_a, pod_a, "web-a", "macvlan-a")
    cluster.detach(node_b, pod_b, "web-b", "bridge-b")
    assert cluster.pool_records("pool-a") == {} and cluster.pool_records("pool-b") == {}


def _underlay_cluster(cluster: ClusterLab, node_ns: NetNs, pod_cidr_type: str) -> Node:
    for obj in (
        pool("pool-a", A.v4, A.host(10), A.host(40), A.host(1), "node-a"),
        MACVLAN_A,
        kubeadm_config(),
        coordinator(pod_cidr_type),
    ):
        cluster.apply(obj)
    cluster.start_controller()
    return cluster.add_node("node-a", node_ns)


def test_underlay_pod_reaches_a_clusterip_of_the_discovered_service_cidr_through_veth0(
    cluster: ClusterLab, make_lab: Callable[[int], Lab], node_ns: NetNs
) -> None:
    """Underlay only (podCIDRType none): the controller discovers the service CIDR from the kubeadm
    ConfigMap; a macvlan pod routes it through veth0, the node's DNAT sends it to the backend pod,
    whose answer (naming the client's own address) comes back the same way; the node reaches both
    pods, by ping and by TCP (kubelet's probes)."""
    make_lab(1)
    node = _underlay_cluster(cluster, node_ns, "none")
    status = cluster.coordinator_status()
    assert status == {"phase": "Synced", "overlayPodCIDR": [], "serviceCIDR": [SERVICE_CIDR]}

    backend, client = cluster.pod(), cluster.pod()
    backend_ip = v4(cluster.attach(node, backend, "backend", "macvlan-a"))
    client_ip = v4(cluster.attach(node, client, "client", "macvlan-a"))
    serve(cluster, backend)
    kube_proxy(node.ns, backend_ip)

    assert f"{SERVICE_CIDR} via {NODE_A_IP} dev veth0" in routes(client)
    assert connect(client, CLUSTER_IP, SERVICE_PORT) == f"backend saw {client_ip}"
    node.ns.wait_ping(client_ip, deadline_s=5)
    node.ns.wait_ping(backend_ip, deadline_s=5)
    assert connect(node.ns, backend_ip, BACKEND_PORT) == f"backend saw {NODE_A_IP}"


def test_overlay_and_underlay_pod_reaches_the_clusterip_through_eth0_and_the_node_reaches_both(
    cluster: ClusterLab, make_lab: Callable[[int], Lab], node_ns: NetNs
) -> None:
    """Overlay + underlay (podCIDRType cluster): eth0 from Debian's ptp + host-local (the overlay
    stand-in), net1 from the macvlan NAD, whose coordinator runs in overlay mode with the discovered
    CIDRs: the ClusterIP is routed through eth0 to the node's DNAT and the backend underlay pod
    answers the client's eth0 address; the node reaches both of the client's addresses."""
    lab = make_lab(1)
    node = _underlay_cluster(cluster, node_ns, "cluster")
    status = cluster.coordinator_status()
    assert status == {"phase": "Synced", "overlayPodCIDR": [POD_CIDR], "serviceCIDR": [SERVICE_CIDR]}

    backend = cluster.pod()
    backend_ip = v4(cluster.attach(node, backend, "backend", "macvlan-a"))
    serve(cluster, backend)
    kube_proxy(node.ns, backend_ip)

    client = cluster.pod()
    eth0_ip = lab.overlay(client, "ctr-overlay-client")["ips"][0]["address"].split("/")[0]
    net1_ip = v4(cluster.attach(node, client, "client", "macvlan-a", "net1"))
    assert "veth0" not in client.links()  # overlay mode: eth0 already leads to the node
    assert f"{SERVICE_CIDR} via 10.244.0.1 dev eth0" in routes(client)
    assert connect(client, CLUSTER_IP, SERVICE_PORT) == f"backend saw {eth0_ip}"
    node.ns.wait_ping(eth0_ip, deadline_s=5)
    node.ns.wait_ping(net1_ip, deadline_s=5)
    cluster.detach(node, client, "client", "macvlan-a", "net1")
    assert net1_ip not in cluster.pool_records("pool-a")


def test_a_not_ready_coordinator_fails_the_add_with_its_reason_until_the_cidrs_appear(
    cluster: ClusterLab, make_lab: Callable[[int], Lab], node_ns: NetNs
) -> None:
    """podCIDRType cluster without a kubeadm ConfigMap: NotReady, and a pod's ADD fails naming what is
    missing (its address given back); once the ConfigMap is created the controller syncs and the
    next ADD succeeds with the service CIDR routed through veth0."""
    make_lab(1)
    for obj in (
        pool("pool-a", A.v4, A.host(10), A.host(40), A.host(1), "node-a"),
        MACVLAN_A,
        coordinator("cluster"),
    ):
        cluster.apply(obj)
    cluster.start_controller()
    node = cluster.add_node("node-a", node_ns)
    status = cluster.coordinator_status("NotReady")
    assert "ConfigMap kube-system/kubeadm-config does not exist" in status["reason"]
    pod = cluster.pod()
    with pytest.raises(CniPluginError) as refused:
        cluster.attach(node, pod, "early", "macvlan-a")
    assert refused.value.code == 11
    assert "SpiderCoordinator default is not ready" in str(refused.value)
    assert "kubeadm-config does not exist" in str(refused.value)
    assert cluster.pool_records("pool-a") == {}

    cluster.apply(kubeadm_config())
    cluster.coordinator_status("Synced")
    cluster.attach(node, pod, "early", "macvlan-a")
    assert f"{SERVICE_CIDR} via {NODE_A_IP} dev veth0" in routes(pod)
