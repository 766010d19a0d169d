"""Coordinator with two and three macvlan NICs on different subnets: per-NIC tables and rules.

The router drops, by strict rp_filter, any reply that reaches it on another subnet than the
request left on, so a ping from the external client to one of the pod's addresses succeeds
only when the reply leaves by the NIC the request came in on.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from spiderpool_coordinator.config import CoordinatorConfig, PolicyRoute

from tests.netns.coordinator_lab import EXT_V4, SUBNETS, Lab, routes

pytestmark = pytest.mark.netns
A, B, C = SUBNETS


@pytest.fixture
def lab(make_lab: Callable[[int], Lab]) -> Lab:
    """The coordinator lab with 3 subnet(s), closed at teardown (conftest ``make_lab``)."""
    return make_lab(3)


def _ext_ping(lab: Lab, ip: str) -> bool:
    return lab.ext.ping(ip, wait_s=0.5)


def test_each_nic_answers_through_itself_with_its_own_table(lab: Lab) -> None:
    """With eth0, net1 and net2 on three subnets, requests to each address are answered through the NIC
    they arrived on (tables 102 and 103, one rule per address), and the default route stays on eth0."""
    pod, cid, cfg = lab.pod(), "cid-multi-00001", CoordinatorConfig()
    prev = lab.macvlan(pod, cid, "eth0", A, ip=10)
    lab.coordinator("add", pod, cid, "eth0", prev, cfg)
    for ifname, sn, table in (("net1", B, 102), ("net2", C, 103)):
        prev = lab.macvlan(pod, cid, ifname, sn, ip=10, default_route=False)
        assert not _ext_ping(lab, sn.host(10)), "without the coordinator the reply leaves by eth0"
        lab.coordinator("add", pod, cid, ifname, prev, cfg)
        assert f"from {sn.host(10)} lookup {table}" in pod.ip("rule", "show")
        assert f"default via {sn.host(1)} dev {ifname}" in routes(pod, "table", str(table))
        lab.ext.wait_ping(sn.host(10), deadline_s=3)
    assert routes(pod, "default").startswith(f"default via {A.host(1)} dev eth0")
    assert _ext_ping(lab, A.host(10))
    pod.wait_ping(EXT_V4, deadline_s=3)
    pod.wait_ping(B.host(2), deadline_s=3)  # the node's address on subnet b, through veth0


def test_repeated_add_changes_nothing(lab: Lab) -> None:
    """A second ADD for every NIC leaves the same rules and routes, with nothing duplicated."""
    pod, cid, cfg = lab.pod(), "cid-again-00001", CoordinatorConfig()
    prevs = {"eth0": lab.macvlan(pod, cid, "eth0", A, ip=12)}
    lab.coordinator("add", pod, cid, "eth0", prevs["eth0"], cfg)
    prevs["net1"] = lab.macvlan(pod, cid, "net1", B, ip=12, default_route=False)
    lab.coordinator("add", pod, cid, "net1", prevs["net1"], cfg)
    before = (
        pod.ip("rule", "show"),
        routes(pod, "table", "all"),
        lab.node.ip("rule", "show"),
        routes(lab.node, "table", "500"),
        pod.run(["nft", "list", "ruleset"]).stdout,
    )
    assert "ct mark set meta mark" in before[4]
    for ifname in ("eth0", "net1"):
        lab.coordinator("add", pod, cid, ifname, prevs[ifname], cfg)
    after = (
        pod.ip("rule", "show"),
        routes(pod, "table", "all"),
        lab.node.ip("rule", "show"),
        routes(lab.node, "table", "500"),
        pod.run(["nft", "list", "ruleset"]).stdout,
    )
    assert after == before
    lab.ext.wait_ping(B.host(12), deadline_s=3)


def test_default_route_moves_to_net1_and_eth0_keeps_answering(lab: Lab) -> None:
    """With podDefaultRouteNIC net1 the main default route is net1's; eth0's routes move to table 101
    with a rule for its address, so requests to both addresses are answered through their own NIC."""
    pod, cid = lab.pod(), "cid-move-000001"
    cfg = CoordinatorConfig(pod_default_route_nic="net1")
    lab.coordinator("add", pod, cid, "eth0", lab.macvlan(pod, cid, "eth0", A, ip=13), cfg)
    assert not _ext_ping(lab, B.host(13))
    prev = lab.macvlan(pod, cid, "net1", B, ip=13, default_route=False)
    lab.coordinator("add", pod, cid, "net1", prev, cfg)
    assert routes(pod, "default").startswith(f"default via {B.host(1)} dev net1")
    assert f"from {A.host(13)} lookup 101" in pod.ip("rule", "show")
    assert f"default via {A.host(1)} dev eth0" in routes(pod, "table", "101")
    lab.ext.wait_ping(B.host(13), deadline_s=3)
    lab.ext.wait_ping(A.host(13), deadline_s=3)
    pod.wait_ping(A.host(2), deadline_s=3)


def test_policy_routes_go_into_the_nics_table(lab: Lab) -> None:
    """A policyRoutes entry is installed via its gateway in the current NIC's table and carries traffic
    from that NIC's address."""
    pod, cid = lab.pod(), "cid-policy-0001"
    cfg = CoordinatorConfig(policy_routes=(PolicyRoute("172.16.0.0/24", B.host(1)),))
    lab.coordinator("add", pod, cid, "eth0", lab.macvlan(pod, cid, "eth0", A, ip=14), cfg)
    prev = lab.macvlan(pod, cid, "net1", B, ip=14, default_route=False)
    lab.coordinator("add", pod, cid, "net1", prev, cfg)
    assert f"172.16.0.0/24 via {B.host(1)} dev net1" in routes(pod, "table", "102")
    ok = pod.run(["ping", "-n", "-q", "-c", "1", "-W", "1", "-I", B.host(14), EXT_V4], check=False)
    assert ok.returncode == 0


def test_tune_pod_routes_false_leaves_routes_alone(lab: Lab) -> None:
    """With tunePodRoutes false the second NIC gets no rule and its routes stay in main, none in its table."""
    pod, cid = lab.pod(), "cid-notune-0001"
    cfg = CoordinatorConfig(tune_pod_routes=False)
    lab.coordinator("add", pod, cid, "eth0", lab.macvlan(pod, cid, "eth0", A, ip=15), cfg)
    prev = lab.macvlan(pod, cid, "net1", B, ip=15, default_route=False)
    lab.coordinator("add", pod, cid, "net1", prev, cfg)
    assert f"from {B.host(15)}" not in pod.ip("rule", "show")
    assert f"{B.v4} dev net1" in routes(pod)
    assert "dev net1" not in routes(pod, "table", "102")


def test_second_nics_subnet_routes_move_out_of_main_in_both_families(lab: Lab) -> None:
    """ADD of net1 moves its kernel subnet routes (IPv4 scope link and IPv6) from main into table 102,
    so main keeps no IPv4 route through net1 and only the IPv6 link-local one, and CHECK still passes."""
    pod, cid, cfg = lab.pod(), "cid-moved-00001", CoordinatorConfig()
    lab.coordinator("add", pod, cid, "eth0", lab.macvlan(pod, cid, "eth0", A, ip=16, dual=True), cfg)
    prev = lab.macvlan(pod, cid, "net1", B, ip=16, dual=True, default_route=False)
    assert f"{B.v4} dev net1" in routes(pod), "the kernel made net1's IPv4 subnet route in main"
    lab.coordinator("add", pod, cid, "net1", prev, cfg)
    assert "dev net1" not in routes(pod)
    assert f"{B.v6} dev net1" not in pod.ip("-6", "route", "show", "table", "main")
    assert f"{B.v4} dev net1" in routes(pod, "table", "102")
    assert f"{B.v6} dev net1" in pod.ip("-6", "route", "show", "table", "102")
    lab.coordinator("check", pod, cid, "net1", prev, cfg)
    lab.ext.wait_ping(B.host(16), deadline_s=3)
    lab.ext.wait_ping(B.host(16, 6), deadline_s=3)
