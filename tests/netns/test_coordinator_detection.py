"""IP conflict and gateway detection over ARP/NDP, and dual-stack routing, with real namespaces."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from spiderpool_cni import codes
from spiderpool_coordinator.config import CoordinatorConfig
from spiderpool_coordinator.errors import GatewayUnreachable, IPConflict
from spiderpool_tools.netns import NetNs

from tests.netns.coordinator_lab import EXT_V6, SUBNETS, Lab

pytestmark = pytest.mark.netns
A, B = SUBNETS[0], SUBNETS[1]
DETECT = CoordinatorConfig(detect_ip_conflict=True, detect_gateway=True)


@pytest.fixture
def lab(make_lab: Callable[[int], Lab]) -> Lab:
    """The coordinator lab with 2 subnet(s), closed at teardown (conftest ``make_lab``)."""
    return make_lab(2)


def _squatter(lab: Lab, cidr: str) -> NetNs:
    """Another host on subnet a (a macvlan in its own namespace) already holding ``cidr``."""
    sq = lab.pod()
    lab.node.ip("link", "add", "sq0", "link", A.master, "type", "macvlan", "mode", "bridge")
    lab.node.ip("link", "set", "sq0", "netns", sq.name)
    sq.add_address("sq0", cidr, nodad=True)
    sq.set_up("sq0")
    return sq


@pytest.mark.parametrize("version", [4, 6])
def test_address_held_by_another_host_fails_add_with_ip_conflict(lab: Lab, version: int) -> None:
    """When another host answers ARP (IPv4) or NDP (IPv6) for the pod's address, ADD fails with code 103
    naming the address and the other host's MAC, before any route is made."""
    prefix = 24 if version == 4 else 64
    sq = _squatter(lab, f"{A.host(40, version)}/{prefix}")
    pod, cid = lab.pod(), f"cid-conflict-{version}"
    prev = lab.macvlan(pod, cid, "eth0", A, ip=40, dual=True)
    with pytest.raises(IPConflict) as caught:
        lab.coordinator("add", pod, cid, "eth0", prev, DETECT)
    assert caught.value.cni_code == codes.IP_CONFLICT
    assert A.host(40, version) in str(caught.value)
    assert sq.mac("sq0") in str(caught.value)
    assert "veth0" not in pod.links()


def test_conflict_is_reported_before_an_unreachable_gateway(lab: Lab) -> None:
    """With a conflicting address and a silent gateway, the conflict check runs first and wins (#4475)."""
    _squatter(lab, f"{A.host(41)}/24")
    pod, cid = lab.pod(), "cid-conflict-gw"
    prev = lab.macvlan(pod, cid, "eth0", A, ip=41)
    prev["ips"][0]["gateway"] = A.host(99)
    with pytest.raises(IPConflict):
        lab.coordinator("add", pod, cid, "eth0", prev, DETECT)


def test_present_gateway_passes_and_silent_gateway_fails_fast(lab: Lab) -> None:
    """A gateway that answers ARP/NDP lets ADD succeed; one that never answers fails ADD with code 104
    after 3 tries of 100 ms, well under a second."""
    pod, cid = lab.pod(), "cid-gateway-001"
    prev = lab.macvlan(pod, cid, "eth0", A, ip=42, dual=True)
    lab.coordinator("add", pod, cid, "eth0", prev, DETECT)
    other, cid2 = lab.pod(), "cid-gateway-002"
    prev2 = lab.macvlan(other, cid2, "eth0", A, ip=43)
    prev2["ips"][0]["gateway"] = A.host(99)
    started = time.monotonic()
    with pytest.raises(GatewayUnreachable) as caught:
        lab.coordinator("add", other, cid2, "eth0", prev2, DETECT)
    assert caught.value.cni_code == codes.GATEWAY_UNREACHABLE
    assert A.host(99) in str(caught.value)
    assert time.monotonic() - started < 2.0


def test_silent_ipv6_gateway_fails_add(lab: Lab) -> None:
    """An IPv6 gateway that never answers a neighbour solicitation fails ADD naming it."""
    pod, cid = lab.pod(), "cid-gateway-v6"
    prev = lab.macvlan(pod, cid, "eth0", A, ip=44, dual=True)
    for entry in prev["ips"]:
        if ":" in entry["address"]:
            entry["gateway"] = A.host(99, 6)
    with pytest.raises(GatewayUnreachable) as caught:
        lab.coordinator("add", pod, cid, "eth0", prev, DETECT)
    assert A.host(99, 6) in str(caught.value)


def test_dual_stack_pod_routes_both_families_through_veth0_and_per_nic_tables(lab: Lab) -> None:
    """A dual-stack pod reaches the node's IPv4 and IPv6 addresses through veth0, the node reaches it in
    both families, and net1's IPv6 address answers the client through net1 by its own table."""
    pod, cid = lab.pod(), "cid-dual-000001"
    prev = lab.macvlan(pod, cid, "eth0", A, ip=45, dual=True)
    lab.coordinator("add", pod, cid, "eth0", prev, DETECT)
    assert pod.run(["sysctl", "-n", "net.ipv6.conf.all.disable_ipv6"]).stdout.strip() == "0"
    for version in (4, 6):
        pod.wait_ping(A.host(2, version), deadline_s=3)
        lab.node.wait_ping(A.host(45, version), deadline_s=3)
    assert "fwmark 0x1/0x1 lookup 100" in pod.ip("-6", "rule", "show")
    prev1 = lab.macvlan(pod, cid, "net1", B, ip=45, dual=True, default_route=False)
    lab.coordinator("add", pod, cid, "net1", prev1, DETECT)
    assert f"from {B.host(45, 6)} lookup 102" in pod.ip("-6", "rule", "show")
    assert f"default via {B.host(1, 6)} dev net1" in pod.ip("-6", "route", "show", "table", "102")
    lab.ext.wait_ping(B.host(45, 6), deadline_s=3)
    pod.wait_ping(EXT_V6, deadline_s=3)
