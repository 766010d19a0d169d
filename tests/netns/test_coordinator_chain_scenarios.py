"""The coordinator's scenarios of issue 4, driven through the whole chain as a runtime or Multus would.

Our CNI runtime execs Debian's macvlan (on a master ``ens<x>`` of the node namespace), which execs
our spiderpool IPAM shim, then our coordinator shim with macvlan's result; the controller (SQLite)
and the agent run as processes in the node namespace, so the coordinator's host side is that
namespace. Around it stands the coordinator lab (tests/netns/coordinator_lab.py): a router holding
the subnets' gateways with strict rp_filter (and, here, the same check for IPv6 by an nftables fib
rule), and an external client behind it. A reply that leaves the pod by another NIC than the request
came in on is dropped by the router, so every successful ping from the client proves the path.

Covered here (the library-level tests cover the same behaviours with host-local and direct calls):
three macvlan NICs, overlay (ptp) + underlay, the default route moved to net1 by a SpiderCoordinator,
policyRoutes, podMACPrefix, txQueueLen, podRPFilter, dual stack.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from spiderpool_tools.cni_runtime import CniRuntime, NetworkConfigList, result_ips
from spiderpool_tools.netns import NetNs
from spiderpool_tools.node_stack import NodeStack

from tests.netns.coordinator_lab import (
    EXT_V4,
    EXT_V6,
    SUBNETS,
    Lab,
    Subnet,
    pod_attachment,
    routes,
    spider_pool,
    spiderpool_network,
    strict_ipv6_rp_filter,
)

pytestmark = pytest.mark.netns

REFERENCE_PLUGINS = Path("/usr/lib/cni")
A, B, C = SUBNETS
NOGW_B4, NOGW_B6 = "lab-b-v4-nogw", "lab-b-v6-nogw"  # subnet b without a gateway: .50-.60
POOLS = [
    *(spider_pool(sn, version) for sn in SUBNETS for version in (4, 6)),
    spider_pool(B, first=50, last=60, gateway=False, name=NOGW_B4),
    spider_pool(B, 6, first=50, last=60, gateway=False, name=NOGW_B6),
]


@dataclass
class ChainLab:
    """The lab, a running stack with the lab's pools, and the runtime that calls the chain."""

    lab: Lab
    stack: NodeStack
    runtime: CniRuntime
    tmp: Path

    def network(
        self,
        name: str,
        sn: Subnet,
        *,
        dual: bool = False,
        v4_pool: str = "",
        v6_pool: str = "",
        coordinator: dict[str, Any] | None = None,
    ) -> NetworkConfigList:
        """macvlan on ``sn``'s master with its pool(s), then the coordinator with ``coordinator``'s fields."""
        pools = ([v4_pool or f"lab-{sn.letter}-v4"], [v6_pool or f"lab-{sn.letter}-v6"] if dual else [])
        layout = self.stack.layout
        return spiderpool_network(layout.agent_socket, layout.log_dir, name, sn.master, pools, coordinator)

    def add(self, network: NetworkConfigList, pod: NetNs, name: str, ifname: str = "eth0") -> dict[str, Any]:
        return self.runtime.add(network, pod_attachment(pod, name, ifname))

    def apply(self, manifest: dict[str, Any]) -> None:
        path = self.tmp / f"{manifest['kind']}-{manifest['metadata']['name']}.json"
        path.write_text(json.dumps(manifest))
        self.stack.ctl("apply", "-f", str(path))


def addresses(result: dict[str, Any], version: int) -> list[str]:
    ips = [ipaddress.ip_interface(c).ip for c in result_ips(result)]
    return [str(ip) for ip in ips if ip.version == version]


def v4(result: dict[str, Any]) -> str:
    return addresses(result, 4)[0]


def dev_for(ns: NetNs, *route_get: str) -> str:
    """The device the kernel picks for ``ip route get ...`` in ``ns``."""
    out = ns.run(["ip", "route", "get", *route_get]).stdout.split()
    return out[out.index("dev") + 1]


@pytest.fixture
def make_chain_lab(
    make_lab: Callable[[int], Lab],
    make_stack: Callable[..., NodeStack],
    node_ns: NetNs,
    tmp_path: Path,
) -> Iterator[Callable[..., ChainLab]]:
    """``make(subnets, **settings)``: the lab with ``subnets`` subnets, then a stack (``settings`` as in
    ``make_stack``) holding a v4 and a v6 pool per subnet and subnet b's pool without a gateway."""
    pools = tmp_path / "lab-pools.json"
    pools.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": POOLS}))

    def make(subnets: int, **settings: str) -> ChainLab:
        lab = make_lab(subnets)
        stack = make_stack([pools], **settings)
        layout = stack.layout
        runtime = CniRuntime(
            [str(layout.bin_dir), str(REFERENCE_PLUGINS)], layout.cache_dir, exec_context=node_ns.entered
        )
        return ChainLab(lab, stack, runtime, tmp_path)

    yield make


# -- three macvlan NICs ----------------------------------------------------------------------------


def test_three_macvlan_nics_each_answer_through_the_nic_the_request_arrived_on(
    make_chain_lab: Callable[..., ChainLab],
) -> None:
    """eth0, net1 and net2 on three subnets through the chain: net1 and net2 get tables 102 and 103 with
    a rule for their address, the main default stays on eth0, and the client behind the strict router
    reaches all three addresses (each reply leaves by its own NIC); once net2's rule is removed its
    replies leave by eth0 and the router drops them."""
    cl = make_chain_lab(3)
    lab, pod = cl.lab, cl.lab.pod()
    ips = {"eth0": v4(cl.add(cl.network("three-a", A), pod, "three"))}
    for ifname, sn in (("net1", B), ("net2", C)):
        ips[ifname] = v4(cl.add(cl.network(f"three-{sn.letter}", sn), pod, "three", ifname))

    rules = pod.ip("rule", "show")
    for ifname, sn, table in (("net1", B, 102), ("net2", C, 103)):
        assert f"from {ips[ifname]} lookup {table}" in rules
        assert f"default via {sn.host(1)} dev {ifname}" in routes(pod, "table", str(table))
    assert routes(pod, "default").startswith(f"default via {A.host(1)} dev eth0")
    for ip in ips.values():
        lab.ext.wait_ping(ip, deadline_s=5)
    pod.wait_ping(C.host(2), deadline_s=5)  # the node's own address on subnet c: through veth0
    assert dev_for(pod, C.host(2)) == "veth0"

    pod.ip("rule", "del", "from", ips["net2"], "lookup", "103")
    assert not lab.ext.ping(ips["net2"], wait_s=0.5), "without its rule net2's reply leaves by eth0"


# -- overlay + underlay ----------------------------------------------------------------------------


def test_overlay_eth0_from_ptp_and_underlay_net1_answer_through_their_own_nic(
    make_chain_lab: Callable[..., ChainLab],
) -> None:
    """eth0 from Debian's ptp + host-local and net1 from macvlan + spiderpool IPAM with the coordinator in
    overlay mode: the default route and the service CIDR stay on eth0, so the overlay peer is reached
    by eth0; net1's address reaches the underlay subnet by net1 (the strict router accepts no other
    source there); the node reaches both addresses and the external client reaches net1's, each
    answered by its own NIC."""
    cl = make_chain_lab(1)
    lab, pod = cl.lab, cl.lab.pod()
    eth0_ip = lab.overlay(pod, "ctr-overlay")["ips"][0]["address"].split("/")[0]
    net1 = cl.network("ov-net1", A, coordinator={"mode": "overlay", "serviceCIDR": ["10.96.0.0/12"]})
    net1_ip = v4(cl.add(net1, pod, "overlay", "net1"))

    assert routes(pod, "default").startswith("default via 10.244.0.1 dev eth0")
    assert "10.96.0.0/12 via 10.244.0.1 dev eth0" in routes(pod)
    assert f"from {net1_ip} lookup 102" in pod.ip("rule", "show")
    assert "veth0" not in pod.links()  # overlay mode: eth0 already leads to the node
    pod.wait_ping("10.244.0.1", deadline_s=5)
    assert dev_for(pod, "10.244.0.1") == "eth0"
    # net1's subnet route went to table 102 with the rest of its routes (as upstream moves them), so
    # what uses net1's address reaches the underlay subnet by net1, which the strict router requires.
    probe = ["ping", "-n", "-q", "-c", "1", "-W", "1", "-I", net1_ip, A.host(1)]
    assert pod.run(probe, check=False).returncode == 0
    assert dev_for(pod, A.host(1), "from", net1_ip) == "net1"
    lab.node.wait_ping(eth0_ip, deadline_s=5)
    lab.node.wait_ping(net1_ip, deadline_s=5)
    lab.ext.wait_ping(net1_ip, deadline_s=5)


# -- default route on net1 -------------------------------------------------------------------------


def test_spider_coordinator_moves_the_default_route_to_net1_and_eth0_keeps_answering(
    make_chain_lab: Callable[..., ChainLab],
) -> None:
    """With a SpiderCoordinator (applied with spiderpoolctl) naming net1 as podDefaultRouteNIC, the main
    default route is net1's, eth0's routes move to table 101 with a rule for its address, and the
    client behind the strict router reaches both addresses (each reply by its own NIC)."""
    cl = make_chain_lab(2, coordinator_config_ttl="0")
    cl.apply(
        {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderCoordinator",
            "metadata": {"name": "default"},
            "spec": {"podCIDRType": "none", "podDefaultRouteNIC": "net1"},
        }
    )
    lab, pod = cl.lab, cl.lab.pod()
    eth0_ip = v4(cl.add(cl.network("move-a", A), pod, "moved"))
    net1_ip = v4(cl.add(cl.network("move-b", B), pod, "moved", "net1"))

    assert routes(pod, "default").startswith(f"default via {B.host(1)} dev net1")
    assert f"from {eth0_ip} lookup 101" in pod.ip("rule", "show")
    assert f"default via {A.host(1)} dev eth0" in routes(pod, "table", "101")
    assert dev_for(pod, EXT_V4) == "net1"
    lab.ext.wait_ping(net1_ip, deadline_s=5)
    lab.ext.wait_ping(eth0_ip, deadline_s=5)
    pod.wait_ping(EXT_V4, deadline_s=5)  # from net1's address, by net1: the router accepts it
    pod.wait_ping(A.host(2), deadline_s=5)  # the node, through veth0


def test_pod_default_route_nic_annotation_from_the_runtime_moves_the_default_route_to_net1(
    make_chain_lab: Callable[..., ChainLab],
) -> None:
    """No SpiderCoordinator names net1, but the pod's ipam.spidernet.io/default-route-nic annotation,
    which the runtime passes in each plugin's args.cni (the embedded mode's pod metadata), does: the
    main default route is net1's and eth0 keeps answering through table 101."""
    cl = make_chain_lab(2)
    lab, pod = cl.lab, cl.lab.pod()
    annotations = {"cni": {"annotations": {"ipam.spidernet.io/default-route-nic": "net1"}}}

    def attach(network: NetworkConfigList, ifname: str) -> str:
        rt = replace(pod_attachment(pod, "annotated", ifname), config_args=annotations)
        return v4(cl.runtime.add(network, rt))

    eth0_ip = attach(cl.network("annot-a", A), "eth0")
    net1_ip = attach(cl.network("annot-b", B), "net1")
    assert routes(pod, "default").startswith(f"default via {B.host(1)} dev net1")
    assert f"default via {A.host(1)} dev eth0" in routes(pod, "table", "101")
    lab.ext.wait_ping(net1_ip, deadline_s=5)
    lab.ext.wait_ping(eth0_ip, deadline_s=5)


# -- policyRoutes ----------------------------------------------------------------------------------


def test_policy_route_is_the_only_way_out_of_a_gatewayless_net1(
    make_chain_lab: Callable[..., ChainLab],
) -> None:
    """net1's pool has no gateway, so its table 102 holds no default route; the coordinator's
    policyRoutes entry (the client's subnet via subnet b's router address) is installed in table 102
    and carries net1's traffic: the client reaches net1's address and net1's address reaches the
    client, which the strict router would refuse by eth0."""
    cl = make_chain_lab(2)
    lab, pod = cl.lab, cl.lab.pod()
    cl.add(cl.network("policy-a", A), pod, "policy")
    net1 = cl.network(
        "policy-b",
        B,
        v4_pool=NOGW_B4,
        coordinator={"policyRoutes": [{"dst": "172.16.0.0/24", "gw": B.host(1)}]},
    )
    net1_ip = v4(cl.add(net1, pod, "policy", "net1"))

    table = routes(pod, "table", "102")
    assert "default" not in table
    assert f"172.16.0.0/24 via {B.host(1)} dev net1" in table
    lab.ext.wait_ping(net1_ip, deadline_s=5)
    probe = ["ping", "-n", "-q", "-c", "1", "-W", "1", "-I", net1_ip, EXT_V4]
    assert pod.run(probe, check=False).returncode == 0


# -- podMACPrefix and txQueueLen ------------------------------------------------------------------


def test_pod_mac_prefix_gives_eth0_a_mac_from_its_address_that_the_gateway_learns(
    make_chain_lab: Callable[..., ChainLab],
) -> None:
    """With podMACPrefix 0a:1b, eth0's MAC becomes the prefix followed by its IPv4 address' four bytes
    (not the one macvlan reported), and the router, which pings the pod, holds that MAC for it."""
    cl = make_chain_lab(1)
    lab, pod = cl.lab, cl.lab.pod()
    result = cl.add(cl.network("mac-a", A, coordinator={"podMACPrefix": "0a:1b"}), pod, "mac")
    ip = v4(result)
    expected = "0a:1b:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)
    assert pod.mac("eth0") == expected
    assert result["interfaces"][0]["mac"].lower() != expected
    lab.router.wait_ping(ip, deadline_s=5)
    assert f"lladdr {expected}" in lab.router.ip("neigh", "show", ip, "dev", "gwa")


def test_tx_queue_len_is_set_on_the_nic_whose_config_asks_for_it(
    make_chain_lab: Callable[..., ChainLab],
) -> None:
    """txQueueLen 2000 in eth0's coordinator config sets eth0's queue length; net1, attached without it,
    keeps macvlan's own length."""
    cl = make_chain_lab(2)
    pod = cl.lab.pod()
    cl.add(cl.network("txq-a", A, coordinator={"txQueueLen": 2000}), pod, "txq")
    cl.add(cl.network("txq-b", B), pod, "txq", "net1")

    def qlen(dev: str) -> int:
        return int(json.loads(pod.ip("-j", "link", "show", dev))[0].get("txqlen", 0))  # 0 is not shown

    assert qlen("eth0") == 2000
    assert qlen("net1") != 2000


# -- podRPFilter -----------------------------------------------------------------------------------


def prober_on(lab: Lab, sn: Subnet, host: int) -> NetNs:
    """Another host on ``sn`` (a macvlan of its master in its own namespace) at ``.host``."""
    ns = lab.pod()
    dev = f"prb{sn.letter}"
    lab.node.ip("link", "add", dev, "link", sn.master, "type", "macvlan", "mode", "bridge")
    lab.node.ip("link", "set", dev, "netns", ns.name)
    ns.add_address(dev, f"{sn.host(host)}/24")
    ns.set_up(dev)
    return ns


def test_pod_rp_filter_strict_drops_what_arrives_on_the_wrong_nic_and_loose_accepts_it(
    make_chain_lab: Callable[..., ChainLab],
) -> None:
    """A host on subnet b sends to a pod's eth0 address through the pod's net1: with podRPFilter 1 the
    pod drops it (its route back to the sender is on eth0), with podRPFilter 2 it answers (by eth0);
    the pods' rp_filter sysctls hold the configured values."""
    cl = make_chain_lab(2)
    prober = prober_on(cl.lab, B, 99)
    answered: dict[int, bool] = {}
    for mode in (1, 2):
        pod, name = cl.lab.pod(), f"rp{mode}"
        coordinator = {"podRPFilter": mode}
        eth0_ip = v4(cl.add(cl.network(f"rp{mode}-a", A, coordinator=coordinator), pod, name))
        net1_ip = v4(cl.add(cl.network(f"rp{mode}-b", B, coordinator=coordinator), pod, name, "net1"))
        for key in ("all", "eth0", "net1"):
            assert pod.run(["sysctl", "-n", f"net.ipv4.conf.{key}.rp_filter"]).stdout.strip() == str(mode)
        prober.wait_ping(net1_ip, deadline_s=5)  # net1 is reachable and its MAC resolved
        prober.ip("route", "add", f"{eth0_ip}/32", "via", net1_ip)
        if mode == 2:
            prober.wait_ping(eth0_ip, deadline_s=5)
        answered[mode] = prober.ping(eth0_ip, wait_s=0.5)
    assert answered == {1: False, 2: True}


# -- dual stack ------------------------------------------------------------------------------------


def test_dual_stack_pod_is_routed_in_both_families_through_veth0_and_the_per_nic_table(
    make_chain_lab: Callable[..., ChainLab],
) -> None:
    """With IPv4 and IPv6 pools on both NICs, the pod reaches the node's IPv4 and IPv6 addresses through
    veth0 and the node reaches the pod's in both families (table 500); net1's IPv4 and IPv6 routes
    and rules live in table 102 (its IPv6 way out is a policy route), so
    the client behind the router, strict for both families, reaches all four addresses."""
    cl = make_chain_lab(2)
    lab, pod = cl.lab, cl.lab.pod()
    strict_ipv6_rp_filter(lab.router)
    eth0 = cl.add(cl.network("dual-a", A, dual=True), pod, "dual")
    to_ext_v6 = {"policyRoutes": [{"dst": "fd16::/64", "gw": B.host(1, 6)}]}
    net1_net = cl.network("dual-b", B, dual=True, v6_pool=NOGW_B6, coordinator=to_ext_v6)
    net1 = cl.add(net1_net, pod, "dual", "net1")
    net1_v4, net1_v6 = addresses(net1, 4)[0], addresses(net1, 6)[0]

    for node_ip in (A.host(2), A.host(2, 6)):
        pod.wait_ping(node_ip, deadline_s=5)
        assert dev_for(pod, node_ip) == "veth0"
    for ip in addresses(eth0, 4) + addresses(eth0, 6):
        lab.node.wait_ping(ip, deadline_s=5)
        assert ip in lab.node.ip("-6" if ":" in ip else "-4", "route", "show", "table", "500")
    rules = pod.ip("-4", "rule", "show") + pod.ip("-6", "rule", "show")
    assert f"from {net1_v4} lookup 102" in rules and f"from {net1_v6} lookup 102" in rules
    assert f"{B.v6} dev net1" in pod.ip("-6", "route", "show", "table", "102")
    assert f"{B.v6} dev net1" not in pod.ip("-6", "route", "show", "table", "main")
    assert pod.ip("-6", "route", "show", "default").startswith(f"default via {A.host(1, 6)} dev eth0")
    for ip in (*addresses(eth0, 4), *addresses(eth0, 6), net1_v4, net1_v6):
        lab.ext.wait_ping(ip, deadline_s=5)
    pod.wait_ping(EXT_V6, deadline_s=5)


def test_second_nic_with_an_ipv6_gateway_keeps_the_ipv6_default_on_eth0_and_gets_its_rule(
    make_chain_lab: Callable[..., ChainLab],
) -> None:
    """When net1's IPv6 pool has a gateway (so its IPAM result carries an IPv6 default, which Debian's
    macvlan appends to eth0's as a second nexthop), the main IPv6 default stays on eth0 and net1
    gets its IPv6 rule for table 102."""
    cl = make_chain_lab(2)
    pod = cl.lab.pod()
    cl.add(cl.network("dual6-a", A, dual=True), pod, "dual6")
    net1_v6 = addresses(cl.add(cl.network("dual6-b", B, dual=True), pod, "dual6", "net1"), 6)[0]
    assert pod.ip("-6", "route", "show", "default").startswith(f"default via {A.host(1, 6)} dev eth0")
    assert f"from {net1_v6} lookup 102" in pod.ip("-6", "rule", "show")
