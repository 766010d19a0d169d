"""Coordinator DEL and CHECK, stale state from an earlier pod, and the per-pod tuning knobs."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from spiderpool_coordinator.config import CoordinatorConfig
from spiderpool_coordinator.errors import CheckFailed
from spiderpool_tools.netns import NetNs, wait_for

from tests.netns.coordinator_lab import SUBNETS, Lab, routes

pytestmark = pytest.mark.netns
A, B = SUBNETS[0], SUBNETS[1]


@pytest.fixture
def lab(make_lab: Callable[[int], Lab]) -> Lab:
    """The coordinator lab with 2 subnet(s), closed at teardown (conftest ``make_lab``)."""
    return make_lab(2)


def _table(ns: NetNs, table: str) -> str:
    """The routes of one table; empty once the kernel dropped the table with its last route."""
    return ns.run(["ip", "route", "show", "table", table], check=False).stdout


def _host_state(lab: Lab) -> tuple[str, str, list[str]]:
    return lab.node.ip("rule", "show"), _table(lab.node, "500"), lab.node.links()


def test_del_removes_host_veth_routes_and_rules_and_repeats(lab: Lab) -> None:
    """DEL removes the host veth, the table-500 routes and the rules for the pod's addresses; a second
    DEL and a DEL after the namespace is gone both succeed."""
    pod, cid, cfg = lab.pod(), "cid-del-0000001", CoordinatorConfig()
    prev = lab.macvlan(pod, cid, "eth0", A, ip=30, dual=True)
    before = _host_state(lab)
    lab.coordinator("add", pod, cid, "eth0", prev, cfg)
    assert A.host(30) in routes(lab.node, "table", "500")
    assert f"to {A.host(30)} lookup 500" in lab.node.ip("rule", "show")
    lab.coordinator("del", pod, cid, "eth0", prev, cfg)
    rules, table, links = _host_state(lab)
    assert A.host(30) not in rules and A.host(30) not in table
    assert "vethcid-del-00" not in links
    assert (rules, table, links) == before
    lab.coordinator("del", pod, cid, "eth0", prev, cfg)
    pod.delete()
    lab.coordinator("del", pod, cid, "eth0", prev, cfg)
    assert _host_state(lab) == before


def test_background_work_of_add_and_del_ends_on_its_own(lab: Lab) -> None:
    """The threads ADD and DEL leave behind (closing the announcement's packet socket, waiting out the
    kernel's link deletion) end by themselves, and DEL answers only once the veth pair is gone."""
    pod, cid, cfg = lab.pod(), "cid-threads-001", CoordinatorConfig()
    prev = lab.macvlan(pod, cid, "eth0", A, ip=37, dual=True)
    lab.coordinator("add", pod, cid, "eth0", prev, cfg)
    lab.coordinator("del", pod, cid, "eth0", prev, cfg)
    assert "veth0" not in pod.links()
    assert "vethcid-threa" not in lab.node.ip("link", "show")

    def settled() -> bool:
        names = [t.name for t in threading.enumerate()]
        return not any(n.startswith(("link-del:", "packet-socket-close", "coordinator-")) for n in names)

    wait_for(settled, deadline_s=5, what="the coordinator's background threads to end")


def test_stale_state_of_an_earlier_pod_is_replaced_not_duplicated(lab: Lab) -> None:
    """A pod that reuses an address whose earlier pod vanished without DEL gets exactly one rule and one
    route on the node, both pointing to it, and the late DEL of the earlier pod leaves them alone."""
    cfg = CoordinatorConfig()
    old, old_cid = lab.pod(), "cid-stale-old01"
    old_prev = lab.macvlan(old, old_cid, "eth0", A, ip=31)
    lab.coordinator("add", old, old_cid, "eth0", old_prev, cfg)
    lab.node.ip("neigh", "replace", A.host(31), "lladdr", "02:de:ad:be:ef:01", "dev", A.master)
    old.delete()  # the veth dies with the namespace; the rule and the neighbour entry stay behind
    new, new_cid = lab.pod(), "cid-stale-new01"
    prev = lab.macvlan(new, new_cid, "eth0", A, ip=31)
    lab.coordinator("add", new, new_cid, "eth0", prev, cfg)
    assert lab.node.ip("rule", "show").count(f"to {A.host(31)} lookup 500") == 1
    assert routes(lab.node, "table", "500").count(A.host(31)) == 1
    neigh = lab.node.ip("neigh", "show", A.host(31))
    assert "02:de:ad:be:ef:01" not in neigh
    lab.node.wait_ping(A.host(31), deadline_s=3)
    lab.coordinator("del", old, old_cid, "eth0", old_prev, cfg)
    assert f"to {A.host(31)} lookup 500" in lab.node.ip("rule", "show")
    lab.node.wait_ping(A.host(31), deadline_s=3)


def test_check_passes_after_add_and_names_a_route_deleted_behind_its_back(lab: Lab) -> None:
    """CHECK succeeds on a fresh ADD and fails naming the route someone removed, and the missing rule."""
    pod, cid, cfg = lab.pod(), "cid-check-00001", CoordinatorConfig()
    prev = lab.macvlan(pod, cid, "eth0", A, ip=32)
    lab.coordinator("add", pod, cid, "eth0", prev, cfg)
    prev1 = lab.macvlan(pod, cid, "net1", B, ip=32, default_route=False)
    lab.coordinator("add", pod, cid, "net1", prev1, cfg)
    lab.coordinator("check", pod, cid, "eth0", prev, cfg)
    lab.coordinator("check", pod, cid, "net1", prev1, cfg)
    pod.ip("route", "del", A.host(2), "dev", "veth0")
    with pytest.raises(CheckFailed) as caught:
        lab.coordinator("check", pod, cid, "eth0", prev, cfg)
    assert f"pod route {A.host(2)}/32 dev veth0 table 254" in str(caught.value)
    pod.ip("rule", "del", "from", B.host(32), "lookup", "102")
    with pytest.raises(CheckFailed) as caught:
        lab.coordinator("check", pod, cid, "net1", prev1, cfg)
    assert f"from {B.host(32)}/32 lookup 102" in str(caught.value)


def test_check_fails_when_the_host_veth_is_gone(lab: Lab) -> None:
    """CHECK names the host veth when it was deleted on the node."""
    pod, cid, cfg = lab.pod(), "cid-check-veth1", CoordinatorConfig()
    prev = lab.macvlan(pod, cid, "eth0", A, ip=33)
    lab.coordinator("add", pod, cid, "eth0", prev, cfg)
    lab.node.ip("link", "del", "vethcid-check-v")
    with pytest.raises(CheckFailed) as caught:
        lab.coordinator("check", pod, cid, "eth0", prev, cfg)
    assert "veth0" in str(caught.value)


def test_mac_prefix_txqueuelen_rp_filter_veth_and_hijack_cidr(lab: Lab) -> None:
    """podMACPrefix sets eth0's MAC from the address and is announced to the router, txQueueLen and
    podRPFilter are applied, veth0 gets vethMTU and vethLinkAddress, and a hijacked CIDR is reached
    through the node."""
    pod, cid = lab.pod(), "cid-knobs-00001"
    cfg = CoordinatorConfig(
        pod_mac_prefix="0a:1b",
        tx_queue_len=2000,
        pod_rp_filter=2,
        veth_mtu=1400,
        veth_link_address="169.254.100.1",
        hijack_cidr=("169.254.25.10/32",),
    )
    prev = lab.macvlan(pod, cid, "eth0", A, ip=34)
    lab.router.ip("neigh", "replace", A.host(34), "lladdr", "02:de:ad:be:ef:02", "dev", "gwa", "nud", "stale")
    assert not pod.ping("169.254.25.10", wait_s=0.3)
    lab.node.add_address("lo", "169.254.25.10/32")
    lab.coordinator("add", pod, cid, "eth0", prev, cfg)
    assert pod.mac("eth0") == "0a:1b:0a:06:00:22"
    assert "0a:1b:0a:06:00:22" in lab.router.ip("neigh", "show", A.host(34))
    assert "qlen 2000" in pod.ip("link", "show", "eth0")
    for key in ("all", "eth0"):
        assert pod.run(["sysctl", "-n", f"net.ipv4.conf.{key}.rp_filter"]).stdout.strip() == "2"
    assert "mtu 1400" in pod.ip("link", "show", "veth0")
    assert "169.254.100.1/32" in pod.ip("addr", "show", "veth0")
    assert f"169.254.25.10 via {A.host(2)} dev veth0" in routes(pod)
    pod.wait_ping("169.254.25.10", deadline_s=3)
    lab.router.wait_ping(A.host(34), deadline_s=3)


def test_disabled_mode_changes_nothing(lab: Lab) -> None:
    """Mode disabled leaves the pod and the node untouched."""
    pod, cid = lab.pod(), "cid-disabled-01"
    prev = lab.macvlan(pod, cid, "eth0", A, ip=35)
    before = (_host_state(lab), routes(pod, "table", "all"), pod.links())
    lab.coordinator("add", pod, cid, "eth0", prev, CoordinatorConfig(mode="disabled"))
    assert (_host_state(lab), routes(pod, "table", "all"), pod.links()) == before


def test_check_names_missing_connmark_rules_and_a_repeated_add_restores_them(lab: Lab) -> None:
    """CHECK names the pod's connmark table when it is gone and a rule when a chain was flushed; a
    repeated ADD puts back exactly the rules, after which CHECK passes."""
    pod, cid, cfg = lab.pod(), "cid-connmark-01", CoordinatorConfig()
    prev = lab.macvlan(pod, cid, "eth0", A, ip=36)
    lab.coordinator("add", pod, cid, "eth0", prev, cfg)
    whole = pod.run(["nft", "list", "table", "inet", "spiderpool_coordinator"]).stdout
    pod.run(["nft", "delete", "table", "inet", "spiderpool_coordinator"])
    with pytest.raises(CheckFailed) as caught:
        lab.coordinator("check", pod, cid, "eth0", prev, cfg)
    assert "nftables table inet spiderpool_coordinator" in str(caught.value)
    lab.coordinator("add", pod, cid, "eth0", prev, cfg)
    pod.run(["nft", "flush", "chain", "inet", "spiderpool_coordinator", "output"])
    with pytest.raises(CheckFailed) as caught:
        lab.coordinator("check", pod, cid, "eth0", prev, cfg)
    assert "output: meta mark set ct mark" in str(caught.value)
    lab.coordinator("add", pod, cid, "eth0", prev, cfg)
    assert pod.run(["nft", "list", "table", "inet", "spiderpool_coordinator"]).stdout == whole
    lab.coordinator("check", pod, cid, "eth0", prev, cfg)
