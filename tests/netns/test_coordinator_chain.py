"""macvlan + spiderpool IPAM + coordinator, chained through our CNI runtime as Multus would call it.

Real everything: the controller (SQLite) and the agent run as processes in the node
namespace, so the coordinator's host side is that namespace; the runtime execs Debian's
macvlan, which execs our IPAM shim, then our coordinator shim with macvlan's result as
prevResult. The subnets' gateways live in a separate ``gw`` namespace (the peers of the
macvlan masters), and the node's own address sits on the master, where a macvlan pod cannot
reach it directly: only veth0 gets it there.

Covered: one underlay NIC (node reachable via veth0, default route kept on eth0, DEL
removes the host veth, routes and rules, DEL twice and after the namespace is gone), CHECK
naming a route deleted behind its back, two macvlan NICs on two subnets (policy table for
net1), a SpiderCoordinator applied with spiderpoolctl (and a CNI config field beating it),
and the IPAM ADD's detection switched on by the controller: an IP conflict (103, address
released), a present and an absent gateway (104), and the announcement after success.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from spiderpool_tools.cni_runtime import (
    CniPluginError,
    CniRuntime,
    NetworkConfigList,
    RuntimeConf,
    load_config,
    result_ips,
)
from spiderpool_tools.netns import NetNs
from spiderpool_tools.node_stack import NodeStack

pytestmark = pytest.mark.netns

REFERENCE_PLUGINS = Path("/usr/lib/cni")
POD_NAMESPACE = "chain"
NODE_V4, NODE_V6 = "172.30.0.2", "fd00:172:30::2"
GW_V4, GW_V6 = "172.30.0.1", "fd00:172:30::1"
NODE_B, GW_B = "172.31.0.2", "172.31.0.1"
FIRST_V4 = "172.30.0.10"  # the lowest address of pool chain-a-v4: the first one handed out
POOL_A4, POOL_A6, POOL_B4 = "chain-a-v4", "chain-a-v6", "chain-b-v4"


def pool(name: str, subnet: str, ips: str, gateway: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"subnet": subnet, "ips": [ips], "gateway": gateway}
    if ":" in subnet:
        spec["ipVersion"] = 6
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": spec,
    }


POOLS = [
    pool(POOL_A4, "172.30.0.0/24", "172.30.0.10-172.30.0.30", GW_V4),
    pool(POOL_A6, "fd00:172:30::/64", "fd00:172:30::10-fd00:172:30::30", GW_V6),
    pool(POOL_B4, "172.31.0.0/24", "172.31.0.10-172.31.0.30", GW_B),
]


@dataclass
class Chain:
    """The node, the gateways' namespace, a running stack and the runtime that calls the chain."""

    node: NetNs
    gw: NetNs
    stack: NodeStack
    runtime: CniRuntime
    tmp: Path
    make_pod: Callable[[], NetNs]

    def network(
        self,
        name: str = "chain-a",
        *,
        master: str = "master0",
        pools: tuple[list[str], list[str]] = ([POOL_A4], [POOL_A6]),
        coordinator: dict[str, Any] | None = None,
        with_coordinator: bool = True,
    ) -> NetworkConfigList:
        """[macvlan with spiderpool IPAM, coordinator] as a conflist at CNI 1.0.0."""
        layout = self.stack.layout
        ipam = {
            "type": "spiderpool",
            "default_ipv4_ippool": pools[0],
            "default_ipv6_ippool": pools[1],
            "ipam_unix_socket_path": str(layout.agent_socket),
            "log_file_path": str(layout.log_dir / "ipam-shim.log"),
            "del_spool_dir": str(layout.spool_dir),
        }
        plugins: list[dict[str, Any]] = [
            {"type": "macvlan", "master": master, "mode": "bridge", "ipam": ipam}
        ]
        if with_coordinator:
            plugins.append(
                {
                    "type": "coordinator",
                    "ipam_unix_socket_path": str(layout.agent_socket),
                    "del_spool_dir": str(layout.spool_dir),
                    "logOptions": {"logFile": str(layout.log_dir / "coordinator-shim.log")},
                    **(coordinator or {}),
                }
            )
        return load_config({"cniVersion": "1.0.0", "name": name, "plugins": plugins})

    def allocated(self, *pools: str) -> set[str]:
        return {ip for name in pools or (POOL_A4, POOL_A6, POOL_B4) for ip in self.stack.allocated_ips(name)}

    def apply(self, manifest: dict[str, Any]) -> None:
        path = self.tmp / f"{manifest['kind']}-{manifest['metadata']['name']}.json"
        path.write_text(json.dumps(manifest))
        self.stack.ctl("apply", "-f", str(path))


def attachment(pod: NetNs, name: str, ifname: str = "eth0") -> RuntimeConf:
    args = (
        ("IgnoreUnknown", "true"),
        ("K8S_POD_NAMESPACE", POD_NAMESPACE),
        ("K8S_POD_NAME", name),
        ("K8S_POD_UID", f"uid-{name}"),
    )
    return RuntimeConf(f"ctr-{name}", ifname, pod.path, args)


def bare(result: dict[str, Any], version: int | None = None) -> list[str]:
    ips = [ipaddress.ip_interface(c).ip for c in result_ips(result)]
    return [str(ip) for ip in ips if version is None or ip.version == version]


def host_veth(container_id: str) -> str:
    return "veth" + container_id[:11]


def rules_for(ns: NetNs, ip: str) -> list[str]:
    """The namespace's policy rules (both families) that mention ``ip``."""
    return [
        line for family in ("-4", "-6") for line in ns.ip(family, "rule", "show").splitlines() if ip in line
    ]


@pytest.fixture
def chain_factory(
    node_ns: NetNs,
    make_stack: Callable[..., NodeStack],
    make_pod: Callable[[], NetNs],
    tmp_path: Path,
) -> Iterator[Callable[..., Chain]]:
    """``make(**settings)``: the gw namespace and two subnets wired, then a stack with ``settings``."""
    gw = NetNs.create("spgw")
    try:
        node_ns.disable_dad()
        gw.disable_dad()
        node_ns.ip("link", "set", "wire0", "netns", gw.name)
        gw.set_up("wire0")
        gw.add_address("wire0", f"{GW_V4}/24")
        gw.add_address("wire0", f"{GW_V6}/64", nodad=True)
        node_ns.add_address("master0", f"{NODE_V4}/24")
        node_ns.add_address("master0", f"{NODE_V6}/64", nodad=True)
        node_ns.add_veth("master1", "wire1", gw)
        gw.add_address("wire1", f"{GW_B}/24")
        node_ns.add_address("master1", f"{NODE_B}/24")
        manifests = []
        for manifest in POOLS:
            path = tmp_path / f"{manifest['metadata']['name']}.json"
            path.write_text(json.dumps(manifest))
            manifests.append(path)

        def make(**settings: str) -> Chain:
            stack = make_stack(manifests, **settings)
            layout = stack.layout
            runtime = CniRuntime(
                [str(layout.bin_dir), str(REFERENCE_PLUGINS)], layout.cache_dir, exec_context=node_ns.entered
            )
            return Chain(node_ns, gw, stack, runtime, tmp_path, make_pod)

        yield make
    finally:
        gw.delete()


@pytest.fixture
def chain(chain_factory: Callable[..., Chain]) -> Chain:
    """A chain whose controller does no detection (upstream's default)."""
    return chain_factory()


@pytest.fixture
def detecting(chain_factory: Callable[..., Chain]) -> Chain:
    """A chain whose controller switches IP-conflict and gateway detection on."""
    return chain_factory(enable_ip_conflict_detection="true", enable_gateway_detection="true")


# -- one underlay NIC -----------------------------------------------------------------------------


def test_single_nic_reaches_the_node_via_veth0_keeps_its_default_route_and_del_cleans_up(
    chain: Chain,
) -> None:
    """The chain's result is macvlan's (the coordinator passes prevResult through); the pod pings the
    node's own addresses through veth0 while its default routes stay on eth0 and reach the gateway;
    DEL removes the host veth, the table-500 routes and the rules for the pod's addresses and
    releases them, and a second DEL succeeds."""
    config = chain.network()
    pod = chain.make_pod()
    rt = attachment(pod, "single")
    result = chain.runtime.add(config, rt)
    v4, v6 = bare(result, 4)[0], bare(result, 6)[0]
    assert [i["name"] for i in result["interfaces"]] == ["eth0"]  # macvlan's result, unchanged
    assert chain.allocated() == {v4, v6}

    for node_ip in (NODE_V4, NODE_V6):
        pod.wait_ping(node_ip, deadline_s=5)
        assert "dev veth0" in pod.run(["ip", "route", "get", node_ip]).stdout
    assert pod.ip("-4", "route", "show", "default").startswith(f"default via {GW_V4} dev eth0")
    assert pod.ip("-6", "route", "show", "default").startswith(f"default via {GW_V6} dev eth0")
    pod.wait_ping(GW_V4, deadline_s=5)
    chain.node.wait_ping(v4, deadline_s=5)  # and the node reaches the pod through its host route

    veth = host_veth(rt.container_id)
    assert veth in chain.node.links()
    table = chain.node.ip("-4", "route", "show", "table", "500") + chain.node.ip(
        "-6", "route", "show", "table", "500"
    )
    assert f"{v4} dev {veth}" in table and f"{v6} dev {veth}" in table
    assert rules_for(chain.node, v4) and rules_for(chain.node, v6)

    chain.runtime.delete(config, rt)
    assert veth not in chain.node.links()
    assert chain.node.ip("route", "show", "table", "500").strip() == ""
    assert rules_for(chain.node, v4) == [] and rules_for(chain.node, v6) == []
    assert chain.allocated() == set()
    chain.runtime.delete(config, rt)


def test_del_succeeds_and_cleans_the_host_when_the_pod_namespace_is_already_gone(chain: Chain) -> None:
    """With the pod's namespace deleted first (its veth pair goes with it), DEL still succeeds,
    removes the host rules for the pod's addresses and releases them; a repeated DEL succeeds."""
    config = chain.network()
    pod = chain.make_pod()
    rt = attachment(pod, "gone")
    v4 = bare(chain.runtime.add(config, rt), 4)[0]
    assert rules_for(chain.node, v4)
    pod.delete()
    chain.runtime.delete(config, rt)
    chain.runtime.delete(config, rt)
    assert rules_for(chain.node, v4) == []
    assert host_veth(rt.container_id) not in chain.node.links()
    assert chain.allocated() == set()


def test_check_passes_after_add_and_names_a_host_route_deleted_behind_its_back(chain: Chain) -> None:
    """CHECK of the whole chain succeeds after ADD; once the node's table-500 route to the pod is
    deleted by hand, CHECK fails with code 120 naming that route; DEL still succeeds."""
    config = chain.network()
    pod = chain.make_pod()
    rt = attachment(pod, "checked")
    v4 = bare(chain.runtime.add(config, rt), 4)[0]
    chain.runtime.check(config, rt)

    chain.node.ip("route", "del", f"{v4}/32", "table", "500")
    with pytest.raises(CniPluginError) as caught:
        chain.runtime.check(config, rt)
    assert caught.value.code == 120
    assert caught.value.plugin == "coordinator"
    assert f"host route {v4}/32 dev {host_veth(rt.container_id)} table 500" in caught.value.msg
    chain.runtime.delete(config, rt)


# -- two NICs --------------------------------------------------------------------------------------


def test_second_macvlan_nic_on_another_subnet_gets_its_own_policy_table(chain: Chain) -> None:
    """eth0 on subnet a and net1 on subnet b, each through the chain: the main default route stays on
    eth0, net1's routes (its subnet and default via its gateway) live in table 102 and no longer in
    main, with a rule for its address, so traffic from net1's address leaves through net1; the
    coordinator's CHECK passes; both DELs clean up."""
    net_a = chain.network()
    net_b = chain.network("chain-b", master="master1", pools=([POOL_B4], []))
    pod = chain.make_pod()
    eth0, net1 = attachment(pod, "multi"), attachment(pod, "multi", "net1")
    chain.runtime.add(net_a, eth0)
    b_ip = bare(chain.runtime.add(net_b, net1), 4)[0]
    assert ipaddress.ip_address(b_ip) in ipaddress.ip_network("172.31.0.0/24")

    assert pod.ip("-4", "route", "show", "default").startswith(f"default via {GW_V4} dev eth0")
    assert f"default via {GW_B} dev net1" in pod.ip("route", "show", "table", "102")
    assert "172.31.0.0/24 dev net1" in pod.ip("route", "show", "table", "102")
    assert "dev net1" not in pod.ip("-4", "route", "show", "table", "main")
    assert f"from {b_ip} lookup 102" in pod.ip("rule", "show")
    assert "dev net1" in pod.run(["ip", "route", "get", "192.0.2.1", "from", b_ip]).stdout
    assert "dev eth0" in pod.run(["ip", "route", "get", "192.0.2.1"]).stdout
    pod.wait_ping(NODE_B, deadline_s=5)  # the node's address on subnet b, through veth0
    # Debian macvlan's CHECK wants net1's prefix route in main, which the coordinator moved (as
    # upstream does; the demo's net1 says disableCheck): CHECK the coordinator alone.
    chain.runtime.check(replace(net_b, plugins=net_b.plugins[1:]), net1)

    chain.runtime.delete(net_b, net1)
    chain.runtime.delete(net_a, eth0)
    assert host_veth(eth0.container_id) not in chain.node.links()
    assert chain.node.ip("route", "show", "table", "500").strip() == ""
    assert chain.allocated() == set()


# -- SpiderCoordinator -----------------------------------------------------------------------------


def test_spider_coordinator_applied_with_spiderpoolctl_shapes_the_next_pod(
    chain_factory: Callable[..., Chain],
) -> None:
    """Without a SpiderCoordinator the pod gets no hijack route; after ``spiderpoolctl apply`` of the
    ``default`` object with hijackCIDR the next pod routes that CIDR via the node through veth0, and
    a hijackCIDR set in the coordinator's CNI config overrides the object's."""
    chain = chain_factory(coordinator_config_ttl="0")  # every call reads the object afresh
    hijack, own = "10.233.0.0/18", "10.234.0.0/16"
    before = chain.make_pod()
    chain.runtime.add(chain.network(), attachment(before, "before"))
    assert "10.233.0.0" not in before.ip("route", "show")

    chain.apply(
        {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderCoordinator",
            "metadata": {"name": "default"},
            "spec": {"podCIDRType": "none", "hijackCIDR": [hijack]},
        }
    )
    after = chain.make_pod()
    chain.runtime.add(chain.network(), attachment(after, "after"))
    assert f"{hijack} via {NODE_V4} dev veth0" in after.ip("route", "show")

    custom = chain.make_pod()
    chain.runtime.add(
        chain.network("chain-own", coordinator={"hijackCIDR": [own]}), attachment(custom, "own")
    )
    routes = custom.ip("route", "show")
    assert f"{own} via {NODE_V4} dev veth0" in routes
    assert "10.233.0.0" not in routes


# -- detection in the IPAM ADD ---------------------------------------------------------------------


def squatter(chain: Chain, cidr: str) -> NetNs:
    """Another host on subnet a (a macvlan of master0 in its own namespace) holding ``cidr``."""
    ns = chain.make_pod()
    chain.node.ip("link", "add", "sq0", "link", "master0", "type", "macvlan", "mode", "bridge")
    chain.node.ip("link", "set", "sq0", "netns", ns.name)
    ns.add_address("sq0", cidr, nodad=True)
    ns.set_up("sq0")
    return ns


def test_address_held_by_another_host_fails_add_with_103_and_is_released(detecting: Chain) -> None:
    """With conflict detection on, ADD of a pod whose first address is already held by another host
    fails with code 103 naming the address and that host's MAC; the addresses are released in the
    controller, and the conflicting one is set aside, so the runtime's plain retry gets another
    address and works (upstream #3081)."""
    sq = squatter(detecting, f"{FIRST_V4}/24")
    config = detecting.network()
    pod = detecting.make_pod()
    rt = attachment(pod, "conflict")
    with pytest.raises(CniPluginError) as caught:
        detecting.runtime.add(config, rt)
    assert caught.value.code == 103
    assert FIRST_V4 in caught.value.msg
    assert sq.mac("sq0") in caught.value.msg
    assert "released" in caught.value.msg
    assert detecting.allocated() == set()
    detecting.runtime.delete(config, rt)  # a runtime cleans up after a failed ADD

    result = detecting.runtime.add(config, rt)
    assert bare(result, 4) != [FIRST_V4]
    assert detecting.allocated(POOL_A4) == set(bare(result, 4))
    pod.wait_ping(NODE_V4, deadline_s=5)


def test_gateway_present_passes_and_the_address_is_announced(detecting: Chain) -> None:
    """With detection on and both gateways answering ARP/NDP, ADD (macvlan + IPAM alone) succeeds, and
    a neighbour that cached a stale MAC for the pod's address learns the pod's MAC from the
    gratuitous ARP sent after the checks (upstream #4650); the neighbour's locktime is raised so
    only a gratuitous ARP may override its entry."""
    bystander = squatter(detecting, "172.30.0.99/24")
    bystander.sysctl("net.ipv4.neigh.sq0.locktime", 100000)
    bystander.ip("neigh", "add", FIRST_V4, "lladdr", "02:00:00:00:00:99", "dev", "sq0", "nud", "stale")
    pod = detecting.make_pod()
    result = detecting.runtime.add(detecting.network(with_coordinator=False), attachment(pod, "gwok"))
    assert bare(result, 4) == [FIRST_V4]
    entry = json.loads(bystander.ip("-j", "neigh", "show", FIRST_V4, "dev", "sq0"))
    assert entry and entry[0]["lladdr"] == pod.mac("eth0")


def test_silent_gateway_fails_add_with_104_and_releases_the_addresses(detecting: Chain) -> None:
    """With gateway detection on and the IPv4 gateway gone, ADD fails with code 104 naming the gateway,
    the addresses are released, and the next ADD succeeds once the gateway is back."""
    detecting.gw.ip("addr", "del", f"{GW_V4}/24", "dev", "wire0")
    config = detecting.network()
    pod = detecting.make_pod()
    rt = attachment(pod, "gwgone")
    with pytest.raises(CniPluginError) as caught:
        detecting.runtime.add(config, rt)
    assert caught.value.code == 104
    assert f"gateway {GW_V4}" in caught.value.msg
    assert detecting.allocated() == set()
    detecting.runtime.delete(config, rt)

    detecting.gw.add_address("wire0", f"{GW_V4}/24")
    detecting.runtime.add(config, rt)
    assert len(detecting.allocated()) == 2
