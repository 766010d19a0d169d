"""A pod whose Multus annotation carries "ips", in the simulated cluster: real controller and agent
processes, the agent reading pods from the test Kubernetes API server, the installed shim.

Multus turns a selection element's ``"ips"`` into ``runtimeConfig.ips`` of that interface's ADD
(when the NetworkAttachmentDefinition declares the ``ips`` capability); this test plays Multus
by passing that runtimeConfig. With the ``ippools`` annotation the first ADD allocates every
listed NIC, so the other NICs' requests come from the annotation the agent read from the API:
each NIC ends with exactly the address its element asked for, and a request that cannot be
granted fails the whole ADD.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from spiderpool_cni import codes

from tests.component.agent_harness import pool_manifest
from tests.component.conformance_stack import Outcome, Stack, running_stack
from tests.component.kube_objects import Kube
from tests.component.test_agent_cluster_mode import kube_agent_args, kubelet_args, wait_ready
from tests.kubeapi import ServerConfig, ServerThread

NODE = "node-1"
NS = "apps"
POOLS = [
    pool_manifest("m-a", "10.91.0.0/24", ["10.91.0.10-10.91.0.30"], multusName=["apps/macvlan-a"]),
    pool_manifest("m-b", "10.92.0.0/24", ["10.92.0.10-10.92.0.30"], multusName=["apps/macvlan-b"]),
]
IPPOOLS = json.dumps([{"interface": "net1", "ipv4": ["m-a"]}, {"interface": "net2", "ipv4": ["m-b"]}])


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Kube, Stack]]:
    with ServerThread(ServerConfig(history_size=2000)) as srv:
        kube = Kube(srv)
        kube.namespace(NS)
        kube.node(NODE, {"zone": "east"})
        with running_stack("kreq-", POOLS, agent_args=kube_agent_args(srv)) as stack:
            wait_ready(stack, stack.net_conf("1.1.0", "k8s-net", v4=("m-a",), v6=()))
            yield kube, stack


def networks(net1_ips: list[str], net2_ips: list[str]) -> str:
    return json.dumps(
        [
            {"name": "macvlan-a", "interface": "net1", "ips": net1_ips},
            {"name": "macvlan-b", "interface": "net2", "ips": net2_ips},
        ]
    )


def multus_add(stack: Stack, pod: dict[str, Any], cid: str, ifname: str, ips: list[str]) -> Outcome:
    """The ADD Multus makes for one NIC: its element's ips as runtimeConfig.ips (capabilities stripped);
    the network's default pool is the NIC's (macvlan-a: m-a for net1, macvlan-b: m-b for net2)."""
    pool = "m-a" if ifname == "net1" else "m-b"
    conf = stack.net_conf("1.1.0", "k8s-net", v4=(pool,), v6=(), runtimeConfig={"ips": ips})
    return stack.run("ADD", conf, cid, args=kubelet_args(pod, cid), ifname=ifname)


def test_each_nic_gets_the_address_its_multus_element_asks_for(cluster: tuple[Kube, Stack]) -> None:
    """net1's ADD allocates net1 and net2 (ippools); net2's address is the one its Multus element
    names, read from the API; net2's own ADD answers it again; both records say requested."""
    kube, stack = cluster
    annotations = {"ipam.spidernet.io/ippools": IPPOOLS, "k8s.v1.cni.cncf.io/networks": networks(
        ["10.91.0.15/24"], ["10.92.0.25/24"])}  # fmt: skip
    pod = kube.pod(NS, "asker", NODE, annotations=annotations)
    first = multus_add(stack, pod, "c-asker", "net1", ["10.91.0.15/24"]).result()
    assert [ip["address"] for ip in first["ips"]] == ["10.91.0.15/24"]
    second = multus_add(stack, pod, "c-asker", "net2", ["10.92.0.25/24"]).result()
    assert [ip["address"] for ip in second["ips"]] == ["10.92.0.25/24"]
    for pool, address in (("m-a", "10.91.0.15"), ("m-b", "10.92.0.25")):
        record = stack.records(pool)[address]
        assert (record["pod"], record["requested"]) == ("apps/asker", True)


def test_a_multus_request_for_a_held_address_fails_every_nic(cluster: tuple[Kube, Stack]) -> None:
    """net2's element asks for the address another pod holds: net1's ADD fails with 109 and allocates
    neither NIC (the store is as it was)."""
    kube, stack = cluster
    holder = kube.pod(NS, "holder", NODE, annotations={"k8s.v1.cni.cncf.io/networks": networks([], [])})
    multus_add(stack, holder, "c-holder", "net2", ["10.92.0.28"]).result()
    annotations = {"ipam.spidernet.io/ippools": IPPOOLS, "k8s.v1.cni.cncf.io/networks": networks(
        ["10.91.0.18"], ["10.92.0.28"])}  # fmt: skip
    pod = kube.pod(NS, "late", NODE, annotations=annotations)
    before = stack.state()
    error = multus_add(stack, pod, "c-late", "net1", ["10.91.0.18"]).cni_error(
        codes.REQUESTED_IP_IN_USE, "1.1.0"
    )
    assert "10.92.0.28 for net2" in error["msg"]
    assert "apps/holder" in error["msg"]
    assert stack.state() == before
