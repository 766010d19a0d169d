"""Every documented selection input reaches the engine, through the shim and real processes.

Without Kubernetes the node's labels are the agent's ``--node-labels``; the workload owner
and the Multus network name come from the network configuration's ``args.cni``. So a pool
with ``nodeAffinity`` serves the matching node, a StatefulSet member keeps its address
across delete and re-create and gives it up when scaled down, and a ``multusName`` pool is
chosen by network name. A "no pool matched" error names each candidate and its filter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.component.agent_harness import pool_manifest
from tests.component.conformance_stack import Stack, running_stack

NETWORK = "sel-net"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    zone = {"matchLabels": {"topology.kubernetes.io/zone": "east"}}
    other_zone = {"matchLabels": {"topology.kubernetes.io/zone": "west"}}
    pools = [
        pool_manifest("east", "10.50.0.0/24", ["10.50.0.10-10.50.0.20"], nodeAffinity=zone),
        pool_manifest("west", "10.51.0.0/24", ["10.51.0.10-10.51.0.20"], nodeAffinity=other_zone),
        pool_manifest("north", "10.55.0.0/24", ["10.55.0.10-10.55.0.20"], nodeName=["node-north"]),
        pool_manifest("sts", "10.52.0.0/24", ["10.52.0.10-10.52.0.20"]),
        pool_manifest("net-a", "10.53.0.0/24", ["10.53.0.10-10.53.0.20"], multusName=["ns1/macvlan-a"]),
        pool_manifest("net-b", "10.54.0.0/24", ["10.54.0.10-10.54.0.20"], multusName=["ns1/macvlan-b"]),
    ]
    args = ["--node-labels", "topology.kubernetes.io/zone=east,kubernetes.io/os=linux"]
    with running_stack("sel-", pools, agent_args=args) as running:
        yield running


def k8s_args(pod: str, uid: str, cid: str) -> str:
    return (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME={pod};"
        f"K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID={uid}"
    )


def conf(stack: Stack, pools: list[str], **cni_args: Any) -> dict[str, Any]:
    extra = {"args": {"cni": cni_args}} if cni_args else {}
    return stack.net_conf("1.1.0", NETWORK, v4=tuple(pools), v6=(), **extra)


def run(stack: Stack, verb: str, pools: list[str], pod: str, uid: str, cid: str, **cni_args: Any) -> Any:
    return stack.run(verb, conf(stack, pools, **cni_args), cid, args=k8s_args(pod, uid, cid))


def addresses(result: dict[str, Any]) -> list[str]:
    return [ip["address"] for ip in result["ips"]]


def test_a_node_affinity_pool_serves_the_matching_node(stack: Stack) -> None:
    """The agent's node labels meet the pool's nodeAffinity; with both zones listed, the
    other zone's pool is filtered out and this node's is used."""
    result = run(stack, "ADD", ["west", "east"], "api-1", "uid-api-1", "aff-1").result()
    assert addresses(result) == ["10.50.0.10/24"]
    run(stack, "DEL", ["west", "east"], "api-1", "uid-api-1", "aff-1").succeeded_silently()


def test_a_pool_of_another_node_is_refused_naming_each_pool_and_its_filter(stack: Stack) -> None:
    """Only other nodes' pools: code 101, and the message lists every candidate pool with the
    filter that excluded it; nothing is allocated."""
    err = run(stack, "ADD", ["west", "north"], "api-2", "uid-api-2", "aff-2").cni_error(101, "1.1.0")
    assert "node-1 does not match nodeAffinity of IPPool west" in err["msg"]
    assert "node node-1 is not in nodeName of IPPool north" in err["msg"]
    assert stack.ips_of("aff-2", "west", "north", "east") == {}


def test_a_statefulset_member_keeps_its_address_across_re_creation_and_loses_it_when_scaled_down(
    stack: Stack,
) -> None:
    """db-0 deleted while its StatefulSet has 2 replicas keeps its address; re-created (new UID,
    new sandbox) it gets the same one; deleted after a scale-down to 0 it releases it."""
    owner = {"kind": "StatefulSet", "name": "db", "replicas": 2}
    first = run(stack, "ADD", ["sts"], "db-0", "uid-db-0-a", "sts-1", owner=owner).result()
    run(stack, "DEL", ["sts"], "db-0", "uid-db-0-a", "sts-1", owner=owner).succeeded_silently()
    assert [r["pod"] for r in stack.records("sts").values()] == ["ns1/db-0"]
    bystander = run(stack, "ADD", ["sts"], "other-0", "uid-other", "sts-x").result()
    assert addresses(bystander) != addresses(first)
    second = run(stack, "ADD", ["sts"], "db-0", "uid-db-0-b", "sts-2", owner=owner).result()
    assert addresses(second) == addresses(first)
    (record,) = (r for r in stack.records("sts").values() if r["pod"] == "ns1/db-0")
    assert (record["podUid"], record["cid"], record["kind"]) == (
        "uid-db-0-b",
        "sts-2",
        "StatefulSet",
    )
    scaled_down = {**owner, "replicas": 0}
    run(stack, "DEL", ["sts"], "db-0", "uid-db-0-b", "sts-2", owner=scaled_down).succeeded_silently()
    assert [r["pod"] for r in stack.records("sts").values()] == ["ns1/other-0"]
    run(stack, "DEL", ["sts"], "other-0", "uid-other", "sts-x").succeeded_silently()


def test_a_multus_name_pool_is_chosen_by_the_network_name(stack: Stack) -> None:
    """With both networks' pools as candidates, args.cni multusName picks the pool of that network."""
    result = run(
        stack, "ADD", ["net-a", "net-b"], "mn", "uid-mn", "mn-1", multusName="ns1/macvlan-b"
    ).result()
    assert addresses(result) == ["10.54.0.10/24"]
    run(stack, "DEL", ["net-a", "net-b"], "mn", "uid-mn", "mn-1").succeeded_silently()
    err = run(stack, "ADD", ["net-a"], "mn", "uid-mn", "mn-2", multusName="ns1/macvlan-b").cni_error(
        101, "1.1.0"
    )
    assert "network ns1/macvlan-b of eth0 is not in multusName of IPPool net-a" in err["msg"]


def test_a_malformed_owner_is_refused_on_add_and_ignored_on_del(stack: Stack) -> None:
    """ADD with an owner lacking its kind is code 7 naming the key; a DEL with it still releases."""
    err = run(stack, "ADD", ["sts"], "bad", "uid-bad", "bad-1", owner={"name": "x"}).cni_error(7, "1.1.0")
    assert "args.cni.owner.kind" in err["msg"]
    run(stack, "ADD", ["sts"], "bad", "uid-bad", "bad-2").result()
    run(stack, "DEL", ["sts"], "bad", "uid-bad", "bad-2", owner={"replicas": "x"}).succeeded_silently()
    assert stack.ips_of("bad-2", "sts") == {}
