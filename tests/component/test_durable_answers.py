"""Everything an ADD answered survives a controller restart, byte for byte.

A pod with two NICs from the ``ippools`` annotation (net1's gateway cleaned by the
annotation), the pod's ``routes`` annotation and a Deployment owner: after the controller
process is stopped (SIGTERM, then SIGKILL) and started on the same file, a repeated ADD
prints the same bytes, CHECK with the first ADD's result passes, and the SpiderEndpoints
are the same objects. Before the records carried these facts, the restarted controller
answered net1 with a gateway and rewrote the endpoints without routes and owner.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from spiderpool.controller.v1 import resource_pb2, resource_pb2_grpc

from tests.component.agent_harness import DEADLINE, pool_manifest
from tests.component.conformance_stack import Stack, running_stack, start_service

NET_A, NET_B = "dur-net-a", "dur-net-b"
ROUTE = {"dst": "172.16.0.0/16", "gw": "10.41.0.254"}
ANNOTATIONS = {
    "ipam.spidernet.io/ippools": json.dumps(
        [
            {"interface": "eth0", "ipv4": ["eth0-v4"], "ipv6": ["eth0-v6"]},
            {"interface": "net1", "ipv4": ["net1-v4"], "cleangateway": True},
        ]
    ),
    "ipam.spidernet.io/routes": json.dumps([ROUTE]),
}
OWNER = {"kind": "Deployment", "name": "web"}
ARGS = (
    "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-1;"
    "K8S_POD_INFRA_CONTAINER_ID=ctr-web;K8S_POD_UID=uid-web"
)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    pools = [
        pool_manifest("eth0-v4", "10.41.0.0/24", ["10.41.0.10-10.41.0.20"], gateway="10.41.0.1",
                      routes=[{"dst": "10.99.0.0/16", "gw": "10.41.0.253"}]),
        pool_manifest("eth0-v6", "fd41::/64", ["fd41::10-fd41::20"], gateway="fd41::1"),
        pool_manifest("net1-v4", "10.42.0.0/24", ["10.42.0.10-10.42.0.20"], gateway="10.42.0.1"),
    ]  # fmt: skip
    with running_stack("dur-", pools) as running:
        yield running


def conf(stack: Stack, network: str, prev: dict[str, Any] | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"args": {"cni": {"annotations": ANNOTATIONS, "owner": OWNER}}}
    if prev is not None:
        extra["prevResult"] = prev
    return stack.net_conf("1.1.0", network, v4=(), v6=(), **extra)


def add_both(stack: Stack) -> dict[str, bytes]:
    out = {}
    for ifname, network in (("eth0", NET_A), ("net1", NET_B)):
        outcome = stack.run("ADD", conf(stack, network), "ctr-web", ifname=ifname, args=ARGS)
        outcome.result()
        out[ifname] = outcome.stdout
    return out


def check_both(stack: Stack, answers: dict[str, bytes]) -> None:
    for ifname, network in (("eth0", NET_A), ("net1", NET_B)):
        prev = json.loads(answers[ifname])
        stack.run(
            "CHECK", conf(stack, network, prev), "ctr-web", ifname=ifname, args=ARGS
        ).succeeded_silently()


def endpoints(stack: Stack) -> list[str]:
    stack.state()  # settled: every pod's endpoint agrees with the records
    stub = resource_pb2_grpc.ResourceServiceStub(stack.channel)
    reply = stub.List(resource_pb2.ListRequest(kind="SpiderEndpoint"), timeout=DEADLINE)
    return sorted(reply.object_json)


def test_the_first_answer_carries_the_annotations_facts(stack: Stack) -> None:
    """net1 has no gateway (cleangateway), eth0 gets the pool route and the pod's route; the
    endpoint names the owner and lists the routes."""
    answers = add_both(stack)
    eth0, net1 = json.loads(answers["eth0"]), json.loads(answers["net1"])
    assert all("gateway" not in ip for ip in net1["ips"])
    assert all("gateway" in ip for ip in eth0["ips"])
    assert {"dst": "172.16.0.0/16", "gw": "10.41.0.254"} in eth0["routes"]
    assert {"dst": "10.99.0.0/16", "gw": "10.41.0.253"} in eth0["routes"]
    assert ROUTE not in net1.get("routes", [])
    (endpoint,) = (json.loads(e) for e in endpoints(stack))
    status = endpoint["status"]
    assert (status["ownerControllerType"], status["ownerControllerName"]) == ("Deployment", "web")
    by_nic = {d["interface"]: d for d in status["current"]["ips"]}
    assert by_nic["net1"]["cleanGateway"] is True and "ipv4Gateway" not in by_nic["net1"]
    assert ROUTE in by_nic["eth0"]["routes"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_restarted_controller_answers_checks_and_describes_the_same(stack: Stack, sig: int) -> None:
    """After a stop and a start on the same file, a repeated ADD prints the same bytes, CHECK with
    the first answer passes, and the SpiderEndpoints are unchanged objects."""
    answers = add_both(stack)
    before = endpoints(stack)
    stack.controller.stop(sig)
    start_service(stack.controller)
    assert add_both(stack) == answers
    check_both(stack, answers)
    assert endpoints(stack) == before
