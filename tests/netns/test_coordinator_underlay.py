"""Coordinator in underlay mode with one macvlan NIC, against real namespaces and packets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from spiderpool_coordinator.config import CoordinatorConfig

from tests.netns.coordinator_lab import EXT_V4, SUBNETS, Lab, routes

pytestmark = pytest.mark.netns
A = SUBNETS[0]


@pytest.fixture
def lab(make_lab: Callable[[int], Lab]) -> Lab:
    """The coordinator lab with 1 subnet(s), closed at teardown (conftest ``make_lab``)."""
    return make_lab(1)


def test_pod_reaches_the_node_through_veth0_and_keeps_its_default_route(lab: Lab) -> None:
    """Before the coordinator the node's own address is unreachable over macvlan; after it, the pod
    pings it through veth0, while its default route stays on eth0 and reaches a host behind the router."""
    pod = lab.pod()
    prev = lab.macvlan(pod, "cid-single-0001", "eth0", A, ip=10)
    assert not pod.ping(A.host(2), wait_s=0.3)
    lab.coordinator("add", pod, "cid-single-0001", "eth0", prev, CoordinatorConfig())
    pod.wait_ping(A.host(2), deadline_s=3)
    assert "dev veth0" in pod.run(["ip", "route", "get", A.host(2)]).stdout
    assert routes(pod, "default").startswith(f"default via {A.host(1)} dev eth0")
    pod.wait_ping(EXT_V4, deadline_s=3)
    assert "vethcid-single-" in lab.node.links()


def test_connection_from_the_node_is_answered_through_veth0(lab: Lab) -> None:
    """The node reaches the pod through its table-500 host route, and a reply to a source the pod has
    no route for still returns through veth0 (connmark); without the mangle rules it does not."""
    pod = lab.pod()
    prev = lab.macvlan(pod, "cid-reply-00001", "eth0", A, ip=11)
    lab.coordinator("add", pod, "cid-reply-00001", "eth0", prev, CoordinatorConfig())
    assert A.host(11) in lab.node.ip("route", "show", "table", "500")
    assert "lookup 500" in lab.node.ip("rule", "show")
    lab.node.wait_ping(A.host(11), deadline_s=3)
    lab.node.add_address("lo", "192.168.77.1/32")
    probe = ["ping", "-n", "-q", "-c", "1", "-W", "1", "-I", "192.168.77.1", A.host(11)]
    assert lab.node.run(probe, check=False).returncode == 0
    pod.run(["nft", "delete", "table", "inet", "spiderpool_coordinator"])
    assert lab.node.run(probe, check=False).returncode != 0
