"""Sandbox identity through the installed shim, a real agent and a real controller.

Kubelet re-creates a pod's sandbox after it dies: the container ID changes, the pod UID
does not. The new sandbox's ADD takes the pod's allocation over, so a late DEL of the dead
sandbox, or a CNI GC that lists only the new sandbox, frees nothing and no other pod ever
gets the address; the new sandbox's own DEL frees it (upstream #1187, #2526, #3778). Each
sandbox is a real network namespace; every call is the installed ``spiderpool`` executable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from spiderpool_tools.netns import NetNs

from tests.component.agent_harness import pool_manifest
from tests.component.conformance_stack import Stack, running_stack, start_service

pytestmark = pytest.mark.netns

V4, V6 = "sbx-v4", "sbx-v6"
NET_A, NET_B = "sbx-net-a", "sbx-net-b"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    pools = [
        pool_manifest(V4, "10.40.0.0/24", ["10.40.0.10-10.40.0.40"], gateway="10.40.0.1"),
        pool_manifest(V6, "fd40::/64", ["fd40::10-fd40::40"], gateway="fd40::1"),
    ]
    with running_stack("sbx-", pools) as running:
        yield running


@pytest.fixture
def sandboxes() -> Iterator[list[NetNs]]:
    made = [NetNs.create("sbx") for _ in range(3)]
    try:
        yield made
    finally:
        for ns in made:
            ns.delete()


def k8s_args(pod: str, uid: str, container_id: str) -> str:
    return (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME={pod};"
        f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}"
    )


def conf(stack: Stack, network: str = NET_A, **cni_args: Any) -> dict[str, Any]:
    extra = {"args": {"cni": cni_args}} if cni_args else {}
    return stack.net_conf("1.1.0", network, v4=(V4,), v6=(V6,), **extra)


def call(
    stack: Stack,
    verb: str,
    cid: str,
    pod: str,
    uid: str,
    netns: NetNs | None = None,
    *,
    ifname: str = "eth0",
    network: str = NET_A,
    **cni_args: Any,
) -> Any:
    return stack.run(
        verb,
        conf(stack, network, **cni_args),
        cid,
        ifname=ifname,
        netns=netns.path if netns else "/proc/self/ns/net",
        args=k8s_args(pod, uid, cid),
    )


def held(stack: Stack, uid: str) -> dict[str, dict[str, Any]]:
    """IP -> record of every address the pod UID holds."""
    return {
        ip: rec for pool in (V4, V6) for ip, rec in stack.records(pool).items() if rec.get("podUid") == uid
    }


def gc(stack: Stack, network: str, valid: list[tuple[str, str]]) -> None:
    attachments = [{"containerID": cid, "ifname": ifname} for cid, ifname in valid]
    body = {**conf(stack, network), "cni.dev/valid-attachments": attachments}
    stack.run("GC", body).succeeded_silently()


def addresses(result: dict[str, Any]) -> list[str]:
    return sorted(ip["address"] for ip in result["ips"])


def test_a_new_sandbox_keeps_the_address_a_late_del_and_gc_of_the_old_one_free_nothing(
    stack: Stack, sandboxes: list[NetNs]
) -> None:
    """Sandbox B of pod U takes over A's address; A's late DEL and a GC listing only B keep it,
    another pod gets other addresses, and B's DEL frees it."""
    old, new, other = sandboxes
    first = call(stack, "ADD", "sbx-a", "web", "uid-u", old).result()
    second = call(stack, "ADD", "sbx-b", "web", "uid-u", new).result()
    assert addresses(second) == addresses(first)
    assert {rec["cid"] for rec in held(stack, "uid-u").values()} == {"sbx-b"}
    call(stack, "DEL", "sbx-a", "web", "uid-u", old).succeeded_silently()
    gc(stack, NET_A, [("sbx-b", "eth0")])
    assert {rec["cid"] for rec in held(stack, "uid-u").values()} == {"sbx-b"}
    assert len(held(stack, "uid-u")) == 2
    bystander = call(stack, "ADD", "sbx-c", "db", "uid-v", other).result()
    assert not set(addresses(bystander)) & set(addresses(first))
    call(stack, "CHECK", "sbx-b", "web", "uid-u", new).succeeded_silently()
    call(stack, "DEL", "sbx-b", "web", "uid-u", new).succeeded_silently()
    assert held(stack, "uid-u") == {}
    call(stack, "DEL", "sbx-c", "db", "uid-v", other).succeeded_silently()


def test_check_of_the_old_sandbox_is_a_mismatch_naming_the_holder(
    stack: Stack, sandboxes: list[NetNs]
) -> None:
    """After the takeover, CHECK for the dead sandbox answers 107 and names the sandbox holding it."""
    old, new, _ = sandboxes
    call(stack, "ADD", "chk-a", "api", "uid-chk", old).result()
    call(stack, "ADD", "chk-b", "api", "uid-chk", new).result()
    err = call(stack, "CHECK", "chk-a", "api", "uid-chk", old).cni_error(107, "1.1.0")
    assert "chk-b" in err["msg"]
    call(stack, "DEL", "chk-b", "api", "uid-chk", new).succeeded_silently()


def test_a_statefulset_member_across_two_sandboxes(stack: Stack, sandboxes: list[NetNs]) -> None:
    """A StatefulSet member whose sandbox is re-created keeps its address against the old
    sandbox's DEL (even one saying the set was scaled down) and a GC; its own DEL after the
    scale-down frees it."""
    old, new, _ = sandboxes
    owner = {"kind": "StatefulSet", "name": "db", "replicas": 1}
    scaled_down = {**owner, "replicas": 0}
    first = call(stack, "ADD", "sts-a", "db-0", "uid-db0", old, owner=owner).result()
    second = call(stack, "ADD", "sts-b", "db-0", "uid-db0", new, owner=owner).result()
    assert addresses(second) == addresses(first)
    call(stack, "DEL", "sts-a", "db-0", "uid-db0", old, owner=scaled_down).succeeded_silently()
    gc(stack, NET_A, [("sts-b", "eth0")])
    assert {rec["cid"] for rec in held(stack, "uid-db0").values()} == {"sts-b"}
    call(stack, "DEL", "sts-b", "db-0", "uid-db0", new, owner=scaled_down).succeeded_silently()
    assert held(stack, "uid-db0") == {}


def test_a_pod_with_two_nics_across_two_sandboxes(stack: Stack, sandboxes: list[NetNs]) -> None:
    """Both NICs of a pod move to the new sandbox on its first ADD; the old sandbox's DELs of
    eth0 and net1 and GCs of both networks listing only the new sandbox keep all four addresses."""
    old, new, _ = sandboxes
    uid = "uid-multi"
    before = {}
    for ifname, network in (("eth0", NET_A), ("net1", NET_B)):
        before[ifname] = addresses(
            call(stack, "ADD", "mn-a", "multi", uid, old, ifname=ifname, network=network).result()
        )
    after = {}
    for ifname, network in (("eth0", NET_A), ("net1", NET_B)):
        after[ifname] = addresses(
            call(stack, "ADD", "mn-b", "multi", uid, new, ifname=ifname, network=network).result()
        )
    assert after == before
    for ifname, network in (("eth0", NET_A), ("net1", NET_B)):
        call(stack, "DEL", "mn-a", "multi", uid, old, ifname=ifname, network=network).succeeded_silently()
    gc(stack, NET_A, [("mn-b", "eth0")])
    gc(stack, NET_B, [("mn-b", "net1")])
    records = held(stack, uid)
    assert len(records) == 4
    assert {(r["cid"], r["nic"], r["net"]) for r in records.values()} == {
        ("mn-b", "eth0", NET_A),
        ("mn-b", "net1", NET_B),
    }
    for ifname, network in (("eth0", NET_A), ("net1", NET_B)):
        call(stack, "DEL", "mn-b", "multi", uid, new, ifname=ifname, network=network).succeeded_silently()
    assert held(stack, uid) == {}


def test_the_takeover_is_durable_before_the_add_answers(stack: Stack, sandboxes: list[NetNs]) -> None:
    """The controller killed right after sandbox B's ADD answered still knows B holds the address."""
    old, new, _ = sandboxes
    call(stack, "ADD", "dur-a", "durable", "uid-dur", old).result()
    call(stack, "ADD", "dur-b", "durable", "uid-dur", new).result()
    stack.controller.stop(9)
    start_service(stack.controller)
    assert {rec["cid"] for rec in held(stack, "uid-dur").values()} == {"dur-b"}
    call(stack, "DEL", "dur-a", "durable", "uid-dur", old).succeeded_silently()
    assert len(held(stack, "uid-dur")) == 2
    call(stack, "DEL", "dur-b", "durable", "uid-dur", new).succeeded_silently()
    assert held(stack, "uid-dur") == {}


def test_records_name_the_sandbox_in_the_pool_status(stack: Stack, sandboxes: list[NetNs]) -> None:
    """The pool's allocatedIPs record carries the pod, its UID and the holding container ID."""
    _, new, _ = sandboxes
    call(stack, "ADD", "rec-b", "recorded", "uid-rec", new).result()
    records = held(stack, "uid-rec")
    assert {json.dumps([r["pod"], r["cid"], r["nic"]]) for r in records.values()} == {
        json.dumps(["ns1/recorded", "rec-b", "eth0"])
    }
    call(stack, "DEL", "rec-b", "recorded", "uid-rec", new).succeeded_silently()
