"""The coordinator's pure decisions: modes, tables, MAC prefixes, frames and the routing plan."""

from __future__ import annotations

import ipaddress

import pytest
from spiderpool_coordinator import detection
from spiderpool_coordinator import plan as p
from spiderpool_coordinator.config import CoordinatorConfig, PolicyRoute
from spiderpool_coordinator.errors import CoordinatorError


@pytest.mark.parametrize(
    ("mode", "ifname", "veth0", "expected"),
    [
        ("auto", "eth0", False, ("underlay", True)),
        ("auto", "net1", True, ("underlay", False)),
        ("auto", "net1", False, ("overlay", False)),
        ("underlay", "eth0", False, ("underlay", True)),
        ("overlay", "net1", False, ("overlay", False)),
        ("disabled", "eth0", False, ("disabled", False)),
    ],
)
def test_mode_resolution_follows_upstream(
    mode: str, ifname: str, veth0: bool, expected: tuple[str, bool]
) -> None:
    """auto is underlay on eth0 or when veth0 exists, overlay otherwise; the first NIC is eth0."""
    assert p.resolve_mode(mode, ifname, "eth0", veth0) == expected


@pytest.mark.parametrize(
    ("mode", "ifname", "veth0", "text"),
    [
        ("underlay", "net1", False, "veth0 is missing"),
        ("overlay", "eth0", False, "overlay CNI"),
        ("overlay", "net1", True, "veth0 exists"),
    ],
)
def test_impossible_mode_combinations_are_errors(mode: str, ifname: str, veth0: bool, text: str) -> None:
    """Underlay net1 without veth0, overlay on eth0 and overlay with veth0 are refused with a reason."""
    with pytest.raises(CoordinatorError, match=text):
        p.resolve_mode(mode, ifname, "eth0", veth0)


def test_nic_tables_follow_nic_order_not_creation_order() -> None:
    """eth0 is table 101, net1 102, net2 103, net10 after net2 (numeric order); veth0, lo do not count."""
    nics = ["net2", "lo", "veth0", "eth0", "net1", "net10"]
    assert [p.nic_table(n, nics, "eth0") for n in ("eth0", "net1", "net2", "net10")] == [101, 102, 103, 104]


def test_mac_from_prefix_uses_the_last_four_address_bytes() -> None:
    """0a:1b with 10.6.168.101 gives 0a:1b:0a:06:a8:65 (as upstream's coordinator); IPv6 uses its
    last 4 bytes."""
    assert p.mac_from_prefix("0a:1b", ipaddress.ip_address("10.6.168.101")) == "0a:1b:0a:06:a8:65"
    assert p.mac_from_prefix("0a:1b", ipaddress.ip_address("fd00::aabb:ccdd")) == "0a:1b:aa:bb:cc:dd"


def test_host_veth_name_fits_ifnamsiz() -> None:
    """The host veth is veth + 11 characters of the container ID: 15 characters at most."""
    assert p.host_veth_name("0123456789abcdef") == "veth0123456789a"


def _state(with_net1: bool) -> tuple[p.PodState, p.HostState]:
    links = {
        "lo": p.Link("lo", 1, ""),
        "eth0": p.Link("eth0", 2, "02:00:00:00:00:02"),
        "veth0": p.Link("veth0", 3, "02:00:00:00:00:03", "veth", 9),
    }
    addrs: dict[str, list[p.IPInterface]] = {"eth0": [ipaddress.ip_interface("10.6.0.10/24")]}
    main = [
        p.RouteEntry("0.0.0.0/0", "eth0", gw="10.6.0.1"),
        p.RouteEntry("10.6.0.0/24", "eth0", scope="link"),
    ]
    if with_net1:
        links["net1"] = p.Link("net1", 4, "02:00:00:00:00:04")
        addrs["net1"] = [ipaddress.ip_interface("10.7.0.10/24")]
        main.append(p.RouteEntry("10.7.0.0/24", "net1", scope="link"))
    host = p.HostState(
        {"vethabc": p.Link("vethabc", 9, "02:00:00:00:00:09", "veth", 3)}, {4: ["10.6.0.2", "10.7.0.2"]}
    )
    return p.PodState(links, addrs, main), host


def test_first_underlay_nic_plan_routes_host_and_hijack_cidrs_through_veth0() -> None:
    """eth0's plan: node addresses and service/hijack CIDRs via veth0 in main, connmark table 100, host
    route and rule for the pod address in table 500, no policy table of its own."""
    pod, host = _state(False)
    cfg = CoordinatorConfig(service_cidr=("10.96.0.0/12",), hijack_cidr=("169.254.0.0/16",))
    plan = p.build_plan(
        cfg,
        ifname="eth0",
        mode="underlay",
        first=True,
        pod=pod,
        host=host,
        host_dev="vethabc",
        pod_dev="veth0",
        gateways={4: "10.6.0.1"},
    )
    assert plan.table == p.MAIN_TABLE and plan.connmark and not plan.pod_moves
    dsts = {(r.dst, r.table, r.gw) for r in plan.pod_routes}
    assert ("10.6.0.2/32", 254, "") in dsts
    assert ("10.96.0.0/12", 254, "10.6.0.2") in dsts
    assert ("169.254.0.0/16", 254, "10.6.0.2") in dsts
    assert ("0.0.0.0/0", 100, "10.6.0.2") in dsts
    assert p.RuleEntry(4, 100, 999, fwmark=1) in plan.pod_rules
    assert plan.host_routes == [p.RouteEntry("10.6.0.10/32", "vethabc", 500, scope="link")]
    assert plan.host_rules == [p.RuleEntry(4, 500, 1000, dst="10.6.0.10/32")]


def test_second_nic_plan_moves_its_routes_to_its_table_with_a_source_rule() -> None:
    """net1's connected route leaves main for table 102, with its default via its gateway, a from-rule,
    and a policy route whose gateway is on net1's subnet (one on another subnet is not net1's)."""
    pod, host = _state(True)
    cfg = CoordinatorConfig(
        policy_routes=(PolicyRoute("172.16.0.0/24", "10.7.0.1"), PolicyRoute("172.17.0.0/24", "10.6.0.1"))
    )
    plan = p.build_plan(
        cfg,
        ifname="net1",
        mode="underlay",
        first=False,
        pod=pod,
        host=host,
        host_dev="vethabc",
        pod_dev="veth0",
        gateways={4: "10.7.0.1"},
    )
    assert plan.table == 102
    assert plan.pod_moves == [p.RouteEntry("10.7.0.0/24", "net1", 102, scope="link")]
    assert p.RuleEntry(4, 102, 1000, src="10.7.0.10/32") in plan.pod_rules
    assert p.RouteEntry("0.0.0.0/0", "net1", 102, gw="10.7.0.1") in plan.pod_routes
    assert p.RouteEntry("172.16.0.0/24", "net1", 102, gw="10.7.0.1") in plan.pod_routes
    assert not any(r.dst == "172.17.0.0/24" for r in plan.pod_routes)


def test_default_route_nic_elsewhere_moves_the_old_holders_routes() -> None:
    """podDefaultRouteNIC net1: eth0's routes go to table 101 with a rule for its address, and net1's
    default via its gateway goes into main."""
    pod, host = _state(True)
    plan = p.build_plan(
        CoordinatorConfig(pod_default_route_nic="net1"),
        ifname="net1",
        mode="underlay",
        first=False,
        pod=pod,
        host=host,
        host_dev="vethabc",
        pod_dev="veth0",
        gateways={4: "10.7.0.1"},
    )
    assert {(r.dst, r.table) for r in plan.pod_moves} == {("0.0.0.0/0", 101), ("10.6.0.0/24", 101)}
    assert p.RuleEntry(4, 101, 1000, src="10.6.0.10/32") in plan.pod_rules
    assert p.RouteEntry("0.0.0.0/0", "net1", 254, gw="10.7.0.1") in plan.pod_routes


def test_arp_and_ndp_frames_parse_back() -> None:
    """An ARP reply and a neighbour advertisement built here are recognised by the answer parser."""
    mac = bytes.fromhex("020000000001")
    reply = detection.arp_frame(
        2,
        mac,
        ipaddress.IPv4Address("10.6.0.9"),
        ipaddress.IPv4Address("10.6.0.10"),
        dst=bytes.fromhex("020000000002"),
    )
    assert detection.parse_answer(reply) == (ipaddress.IPv4Address("10.6.0.9"), mac)
    na = detection.unsolicited_na_frame(mac, ipaddress.IPv6Address("fd06::9"))
    assert detection.parse_answer(na) == (ipaddress.IPv6Address("fd06::9"), mac)
    request = detection.arp_frame(1, mac, ipaddress.IPv4Address(0), ipaddress.IPv4Address("10.6.0.10"))
    assert detection.parse_answer(request) is None


def test_second_nic_with_its_own_default_route_leaves_eth0_the_holder() -> None:
    """When net1's IPAM also gave it a default route (listed first in main), eth0 still counts as the
    default NIC: net1's default and connected routes move to table 102 and eth0's stay in main."""
    pod, host = _state(True)
    pod.main_routes.insert(0, p.RouteEntry("0.0.0.0/0", "net1", gw="10.7.0.1"))
    assert pod.default_nic(4) == "net1"
    assert pod.default_nic(4, besides="net1") == "eth0"
    plan = p.build_plan(
        CoordinatorConfig(),
        ifname="net1",
        mode="underlay",
        first=False,
        pod=pod,
        host=host,
        host_dev="vethabc",
        pod_dev="veth0",
        gateways={4: "10.7.0.1"},
    )
    assert {(r.dst, r.dev, r.table) for r in plan.pod_moves} == {
        ("0.0.0.0/0", "net1", 102),
        ("10.7.0.0/24", "net1", 102),
    }
    assert p.RuleEntry(4, 102, 1000, src="10.7.0.10/32") in plan.pod_rules
