"""The simulated cluster's network: a switch namespace and one namespace per node, never the root's links.

Owns the addresses and links (pure data in `Layout`, kernel work in `build_switch`/`build_node`):

    root namespace:  test API server, controllers, control-plane stand-in, tests and kubectl (127.0.0.1)
    switch (netns):  bridge br0 = the underlay L2 of eth0, bridge br1 = net1's; the gateways of every subnet
                     live on the bridges and the switch forwards between them (a router on a stick), so pods
                     on different nodes and different subnets reach each other
    nodeN (netns):   master0 <-> nN-0 (on br0), master1 <-> nN-1 (on br1): the macvlan masters; the node's
                     own address on each (.1+N; master0's is its InternalIP) and a default route via the
                     switch; the agent and the kubelet run here

Subnets (IPv4 and IPv6 each): eth0's shared underlay 172.30.0.0/24 + fd00:172:30::/64 (the pools of
deploy/examples live there), net1's 172.31.0.0/24 + fd00:172:31::/64, and one per node, 172.32.N.0/24 +
fd00:172:32:N::/64, on br0 too, for node-affine pools (each node's pods in their own subnet, routed by the
switch). Gateways are `.1` / `::1`; nodes take `.2`, `.3`, ...; pool ranges must stay above `.9`.

Every link is created inside a namespace made here (veth pairs start in the node namespace and their peer is
moved into the switch), so the machine's root namespace is never touched. IPv6 DAD is off everywhere
(addresses usable at once).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from spiderpool_tools.netns import NetNs

MASTERS = ("master0", "master1")  # eth0's and net1's macvlan master in every node
BRIDGES = ("br0", "br1")


@dataclass(frozen=True)
class Subnet:
    v4: str
    v6: str

    @property
    def gateways(self) -> tuple[str, str]:
        return (str(ipaddress.ip_network(self.v4)[1]), str(ipaddress.ip_network(self.v6)[1]))

    def host(self, index: int) -> tuple[str, str]:
        """The ``index``-th address of each family, with its prefix length."""
        n4, n6 = ipaddress.ip_network(self.v4), ipaddress.ip_network(self.v6)
        return (f"{n4[index]}/{n4.prefixlen}", f"{n6[index]}/{n6.prefixlen}")

    def gateway_cidrs(self) -> tuple[str, str]:
        return self.host(1)


UNDERLAY = Subnet("172.30.0.0/24", "fd00:172:30::/64")  # eth0, shared by every node (br0)
NET1 = Subnet("172.31.0.0/24", "fd00:172:31::/64")  # net1 (br1)


def node_subnet(index: int) -> Subnet:
    """Node ``index``'s own subnet (on br0, routed by the switch), for node-affine pools."""
    return Subnet(f"172.32.{index}.0/24", f"fd00:172:32:{index}::/64")


@dataclass(frozen=True)
class NodeSpec:
    """One node: its name, its number (1-based) and extra labels for the Node object."""

    name: str
    index: int
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def addresses(self) -> tuple[str, str]:
        """The node's own addresses on eth0's underlay (its InternalIPs), with prefix length."""
        return UNDERLAY.host(1 + self.index)

    @property
    def host_ips(self) -> tuple[str, str]:
        return tuple(a.split("/", 1)[0] for a in self.addresses)  # type: ignore[return-value]

    @property
    def net1_addresses(self) -> tuple[str, str]:
        return NET1.host(1 + self.index)

    @property
    def subnet(self) -> Subnet:
        return node_subnet(self.index)


def default_nodes(count: int = 3) -> tuple[NodeSpec, ...]:
    return tuple(
        NodeSpec(f"node{i}", i, (("spiderpool.test/rack", f"rack{i}"),)) for i in range(1, count + 1)
    )


def build_switch(prefix: str, node_count: int) -> NetNs:
    """The switch namespace: both bridges up with every subnet's gateways, forwarding on."""
    switch = NetNs.create(f"{prefix}-switch")
    try:
        switch.disable_dad()
        switch.sysctl("net.ipv4.ip_forward", 1)
        switch.sysctl("net.ipv6.conf.all.forwarding", 1)
        for bridge in BRIDGES:
            switch.ip("link", "add", bridge, "type", "bridge")
            switch.set_up(bridge)
        subnets = [UNDERLAY, *(node_subnet(i) for i in range(1, node_count + 1))]
        for subnet in subnets:
            for cidr in subnet.gateway_cidrs():
                switch.add_address(BRIDGES[0], cidr, nodad=True)
        for cidr in NET1.gateway_cidrs():
            switch.add_address(BRIDGES[1], cidr, nodad=True)
    except BaseException:
        switch.delete()
        raise
    return switch


def build_node(prefix: str, spec: NodeSpec, switch: NetNs) -> NetNs:
    """A node namespace with its masters wired to the switch's bridges and its own addresses on them."""
    node = NetNs.create(f"{prefix}-{spec.name}")
    try:
        node.disable_dad()
        addresses = (spec.addresses, spec.net1_addresses)
        for master, bridge, cidrs in zip(MASTERS, BRIDGES, addresses, strict=True):
            port = f"n{spec.index}-{master[-1]}"
            node.add_veth(master, port, switch)
            switch.ip("link", "set", port, "master", bridge)
            for cidr in cidrs:
                node.add_address(master, cidr, nodad=True)
        for gateway in UNDERLAY.gateways:  # a node has a default route, through the underlay's router
            node.ip("route", "add", "default", "via", gateway, "dev", MASTERS[0])
    except BaseException:
        node.delete()
        raise
    return node
