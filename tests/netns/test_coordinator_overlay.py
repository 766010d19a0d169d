"""Coordinator in overlay mode: eth0 from an overlay CNI (Debian's ptp or bridge), net1 from macvlan."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from spiderpool_coordinator.config import CoordinatorConfig

from tests.netns.coordinator_lab import SUBNETS, Lab, routes

pytestmark = pytest.mark.netns
A = SUBNETS[0]


@pytest.fixture
def lab(make_lab: Callable[[int], Lab]) -> Lab:
    """The coordinator lab with 1 subnet(s), closed at teardown (conftest ``make_lab``)."""
    return make_lab(1)


@pytest.mark.parametrize("plugin", ["ptp", "bridge"])
def test_overlay_keeps_default_on_eth0_and_answers_underlay_through_net1(lab: Lab, plugin: str) -> None:
    """eth0 keeps the default route and the service CIDR; net1 gets table 102 and its rule, so the
    client behind the router reaches net1's address and the node reaches it through eth0's link."""
    pod, cid = lab.pod(), f"cid-ov-{plugin}-01"
    lab.overlay(pod, cid, plugin)
    prev = lab.macvlan(pod, cid, "net1", A, ip=20, default_route=False)
    assert not lab.ext.ping(A.host(20), wait_s=0.5)
    cfg = CoordinatorConfig(mode="overlay", service_cidr=("10.96.0.0/12",))
    lab.coordinator("add", pod, cid, "net1", prev, cfg)
    assert "dev eth0" in routes(pod, "default")
    assert "10.96.0.0/12 via 10.244.0.1 dev eth0" in routes(pod)
    assert f"from {A.host(20)} lookup 102" in pod.ip("rule", "show")
    lab.ext.wait_ping(A.host(20), deadline_s=3)
    lab.node.wait_ping(A.host(20), deadline_s=3)
    pod.wait_ping("10.244.0.1", deadline_s=3)
    lab.coordinator("check", pod, cid, "net1", prev, cfg)


def test_overlay_default_route_moved_to_net1_keeps_service_cidr_on_eth0(lab: Lab) -> None:
    """With podDefaultRouteNIC net1 the default leaves eth0, eth0's routes go to table 101, and the
    service CIDR stays on eth0 while the client reaches net1."""
    pod, cid = lab.pod(), "cid-ov-move-001"
    prev_eth0 = lab.overlay(pod, cid)
    eth0_ip = prev_eth0["ips"][0]["address"].split("/")[0]
    prev = lab.macvlan(pod, cid, "net1", A, ip=21, default_route=False)
    cfg = CoordinatorConfig(service_cidr=("10.96.0.0/12",), pod_default_route_nic="net1")
    lab.coordinator("add", pod, cid, "net1", prev, cfg)
    assert routes(pod, "default").startswith(f"default via {A.host(1)} dev net1")
    assert "10.96.0.0/12 via 10.244.0.1 dev eth0" in routes(pod)
    assert f"from {eth0_ip} lookup 101" in pod.ip("rule", "show")
    lab.ext.wait_ping(A.host(21), deadline_s=3)
    lab.node.wait_ping(eth0_ip, deadline_s=3)
