"""SpiderSubnet auto pools without Kubernetes, through the installed shim and real processes.

A controller process on SQLite with a SpiderSubnet applied, an agent process, and CNI ADDs
whose network configuration carries the pod's ``ipam.spidernet.io/subnet`` annotation and its
owner in ``args.cni`` (kind, name, uid, replicas, apiVersion): the first ADD makes the owner's
pool sized from its replicas, a later one resizes it, and an ADD that cannot have a pool says
why with its CNI code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.component.conformance_stack import Stack, running_stack

NETWORK = "subnet-net"
SUBNET = {
    "apiVersion": "spiderpool.spidernet.io/v2beta1",
    "kind": "SpiderSubnet",
    "metadata": {"name": "subnet-6"},
    "spec": {"subnet": "10.6.0.0/16", "ips": ["10.6.168.101-10.6.168.200"], "gateway": "10.6.0.1"},
}
ANNOTATIONS = {"ipam.spidernet.io/subnet": json.dumps({"ipv4": ["subnet-6"]})}
OWNER = {"kind": "CloneSet", "apiVersion": "apps.kruise.io/v1alpha1", "name": "web", "uid": "u-1-a5bd3"}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    os.environ["SPIDERPOOL_AUTO_POOL_WAIT_SECONDS"] = "1"  # the controller's wait for a pool
    try:
        with running_stack("subnet-", [SUBNET]) as running:
            yield running
    finally:
        del os.environ["SPIDERPOOL_AUTO_POOL_WAIT_SECONDS"]


def add(stack: Stack, cid: str, **cni_args: Any) -> Any:
    conf = stack.net_conf("1.1.0", NETWORK, v4=(), v6=(), args={"cni": cni_args})
    del conf["ipam"]["default_ipv4_ippool"]
    args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={cid};K8S_POD_INFRA_CONTAINER_ID={cid}"
    return stack.run("ADD", conf, cid, args=args)


def pool_ips(stack: Stack, name: str) -> list[str]:
    from spiderpool.controller.v1 import resource_pb2, resource_pb2_grpc  # noqa: PLC0415

    stub = resource_pb2_grpc.ResourceServiceStub(stack.channel)
    reply = stub.Get(resource_pb2.GetRequest(kind="SpiderIPPool", name=name), timeout=10)
    return list(json.loads(reply.object_json)["spec"]["ips"])


def test_the_first_add_creates_the_owners_pool_and_a_later_add_resizes_it(stack: Stack) -> None:
    """Owner web with 2 replicas: auto4-web-eth0-a5bd3 of 3 addresses (its gateway the subnet's),
    the pod gets the first; an ADD naming 4 replicas grows the pool to 5."""
    result = add(stack, "web-1", annotations=ANNOTATIONS, owner={**OWNER, "replicas": 2}).result()
    assert [(ip["address"], ip.get("gateway")) for ip in result["ips"]] == [("10.6.168.101/16", "10.6.0.1")]
    assert pool_ips(stack, "auto4-web-eth0-a5bd3") == ["10.6.168.101-10.6.168.103"]
    assert set(stack.records("auto4-web-eth0-a5bd3")) == {"10.6.168.101"}
    add(stack, "web-2", annotations=ANNOTATIONS, owner={**OWNER, "replicas": 4}).result()
    assert pool_ips(stack, "auto4-web-eth0-a5bd3") == ["10.6.168.101-10.6.168.105"]


def test_an_add_without_an_owner_uid_is_refused_with_its_reason(stack: Stack) -> None:
    """No uid in args.cni.owner: code 7 (invalid request) naming what to give; nothing allocated."""
    err = add(stack, "anon-1", annotations=ANNOTATIONS, owner={"kind": "Deployment", "name": "anon"})
    obj = err.cni_error(7, "1.1.0")
    assert "args.cni.owner.name and uid" in obj["msg"]


def test_a_pod_without_a_controller_cannot_use_a_subnet(stack: Stack) -> None:
    """No owner at all: refused (as upstream: "doesn't support no-controller pod")."""
    obj = add(stack, "bare-1", annotations=ANNOTATIONS).cni_error(7, "1.1.0")
    assert "a pod without a controller cannot use a SpiderSubnet" in obj["msg"]


def test_a_subnet_that_does_not_exist_is_try_again_later(stack: Stack) -> None:
    """Naming an unknown subnet: after the controller's wait (1 s here), code 11 naming it."""
    missing = {"ipam.spidernet.io/subnet": json.dumps({"ipv4": ["nope"]})}
    obj = add(stack, "miss-1", annotations=missing, owner={**OWNER, "name": "miss", "uid": "u-2"}).cni_error(
        11, "1.1.0"
    )
    assert "SpiderSubnet nope" in obj["msg"]
