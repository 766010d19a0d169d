"""Requested addresses through the installed ``spiderpool`` shim and real controller and agent processes.

A runtime asks for an address two ways (CNI CONVENTIONS.md): ``runtimeConfig.ips`` of the
``ips`` capability (what Multus writes from a selection element's ``"ips"``) and ``CNI_ARGS``
``IP=``. The address is granted when a pool the pod may use holds it free;
otherwise ADD fails with a code and a message naming the failed rule, and the controller's
store and the agent's journal are exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from spiderpool_cni import codes

from tests.component.agent_harness import pool_manifest
from tests.component.conformance_stack import Stack, kubelet_args, running_stack

VERSIONS = ("0.3.1", "1.0.0", "1.1.0")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    pools = [
        pool_manifest("conf-v4", "10.60.0.0/24", ["10.60.0.10-10.60.0.90"], excludeIPs=["10.60.0.50"]),
        pool_manifest("conf-v6", "fd60::/64", ["fd60::10-fd60::90"]),
        pool_manifest("pinned", "10.60.0.0/24", ["10.60.0.100-10.60.0.110"], nodeName=["elsewhere"]),
    ]
    with running_stack("req-", pools) as running:
        yield running


def with_ips(stack: Stack, version: str, ips: list[str], **extra: Any) -> dict[str, Any]:
    """A network config as a runtime passes it when the plugin declared the ips capability:
    ``runtimeConfig`` injected and ``capabilities`` removed (SPEC.md)."""
    return stack.net_conf(version, runtimeConfig={"ips": ips}, **extra)


def addresses(result: dict[str, Any]) -> list[str]:
    return sorted(ip["address"] for ip in result["ips"])


@pytest.mark.parametrize("version", VERSIONS)
def test_runtime_config_ips_get_exactly_those_addresses_and_del_frees_them(
    stack: Stack, version: str
) -> None:
    """Dual-stack ADD with runtimeConfig.ips prints exactly the asked addresses, the records say
    requested, a repeated ADD prints the same, DEL frees both."""
    cid = stack.new_id("rc")
    last = {"0.3.1": "21", "1.0.0": "22", "1.1.0": "23"}[version]
    config = with_ips(stack, version, [f"10.60.0.{last}/24", f"fd60::{last}"])
    first = stack.run("ADD", config, cid).result()
    assert addresses(first) == [f"10.60.0.{last}/24", f"fd60::{last}/64"]
    assert stack.records("conf-v4")[f"10.60.0.{last}"]["requested"] is True
    assert stack.records("conf-v6")[f"fd60::{last}"]["requested"] is True
    assert stack.run("ADD", config, cid).result() == first
    stack.run("DEL", config, cid).succeeded_silently()
    assert stack.ips_of(cid, "conf-v4", "conf-v6") == {}


def test_cni_args_ip_is_a_request_too(stack: Stack) -> None:
    """IP= in CNI_ARGS (host-local's convention) gets its address; a capabilities object that does
    not declare ips (libcni leaves it in) makes runtimeConfig.ips count for nothing."""
    cid = stack.new_id("arg")
    env_args = f"{kubelet_args(cid)};IP=10.60.0.31"
    by_env = stack.run("ADD", stack.net_conf("1.1.0", v6=()), cid, args=env_args).result()
    assert addresses(by_env) == ["10.60.0.31/24"]
    cid2 = stack.new_id("arg")
    undeclared = with_ips(stack, "1.1.0", ["10.60.0.32"], capabilities={"mac": True})
    assert "10.60.0.32/24" not in addresses(stack.run("ADD", undeclared, cid2).result())
    assert set(stack.ips_of(cid, "conf-v4")) == {"10.60.0.31"}


@pytest.mark.parametrize(
    ("ips", "code", "says"),
    [
        (["10.60.0.50"], codes.REQUESTED_IP_NOT_ALLOWED, "spec.excludeIPs of IPPool conf-v4 excludes it"),
        (["10.60.0.95"], codes.REQUESTED_IP_NOT_ALLOWED, "outside spec.ips of IPPool conf-v4"),
        (["10.99.0.5"], codes.REQUESTED_IP_NOT_ALLOWED, "in none of the pod's IPv4 pools for eth0: conf-v4"),
        (["10.60.0.105"], codes.REQUESTED_IP_NOT_ALLOWED, "node node-1 is not in nodeName of IPPool pinned"),
        (["10.60.0.40/16"], codes.REQUESTED_IP_NOT_ALLOWED, "asked as /16"),
        (["10.60.0.40", "fd60::99"], codes.REQUESTED_IP_NOT_ALLOWED, "outside spec.ips of IPPool conf-v6"),
        (["10.60.0.11"], codes.REQUESTED_IP_IN_USE, "gave it to pod conformance/"),
        (["10.60.0.40", "10.60.0.41"], codes.INVALID_CONFIG, "both IPv4"),
        (["not-an-ip"], codes.INVALID_CONFIG, "runtimeConfig.ips[0]"),
    ],
    ids=["excluded", "outside", "no-pool", "filtered", "prefix", "v6-outside", "in-use", "two-v4", "garbage"],
)
def test_an_address_that_cannot_be_granted_fails_with_its_code_and_changes_nothing(
    stack: Stack, ips: list[str], code: int, says: str
) -> None:
    """Each refusal has its code and names the rule; nothing is allocated (not even the other family)."""
    holder = stack.new_id("holder")
    stack.run("ADD", with_ips(stack, "1.1.0", ["10.60.0.11"]), holder).result()
    before = stack.state()
    cid = stack.new_id("bad")
    error = stack.run("ADD", with_ips(stack, "1.1.0", ips), cid).cni_error(code, "1.1.0")
    assert says in error["msg"]
    assert stack.state() == before
    stack.run("DEL", with_ips(stack, "1.1.0", ["10.60.0.11"]), holder).succeeded_silently()


def test_a_malformed_ip_arg_is_code_4_and_changes_nothing(stack: Stack) -> None:
    """CNI_ARGS IP= that is not an address answers code 4 before anything is asked of the controller."""
    before = stack.state()
    cid = stack.new_id("badarg")
    args = f"IgnoreUnknown=1;K8S_POD_NAME={cid};K8S_POD_UID=uid-{cid};IP=10.60.0.999"
    stack.run("ADD", stack.net_conf("1.1.0"), cid, args=args).cni_error(codes.INVALID_ENVIRONMENT, "1.1.0")
    assert stack.state() == before
