"""The agent's reading of requested addresses: runtimeConfig.ips and CNI_ARGS IP=."""

from __future__ import annotations

import json
from typing import Any

import pytest
from spiderpool_agent.cni_call import Verb, parse_call
from spiderpool_cni import codes
from spiderpool_common.errors import CniError

from tests.unit.test_cni_call import Call, call_with, conf


def requested(config: dict[str, Any], args: str = "") -> tuple[str, ...]:
    return parse_call(call_with(config, args=args), Verb.ADD).requested_ips


def refusal(config: dict[str, Any], args: str = "") -> tuple[int, str]:
    with pytest.raises(CniError) as caught:
        parse_call(call_with(config, args=args), Verb.ADD)
    return caught.value.cni_code, caught.value.message


def test_runtime_config_ips_are_read_with_or_without_a_prefix() -> None:
    """runtimeConfig.ips (the capability's key) yields the addresses as written, CIDR or plain."""
    config = conf(runtimeConfig={"ips": ["10.1.0.5/24", "fd00::5"]})
    assert requested(config) == ("10.1.0.5/24", "fd00::5")


def test_runtime_config_ips_count_when_the_capability_is_declared_or_stripped() -> None:
    """Honoured with capabilities stripped (SPEC.md) or declaring ips; ignored when declared without it."""
    ips: dict[str, Any] = {"ips": ["10.1.0.5"]}
    assert requested(conf(runtimeConfig=ips)) == ("10.1.0.5",)
    assert requested(conf(capabilities={"ips": True}, runtimeConfig=ips)) == ("10.1.0.5",)
    assert requested(conf(capabilities={"mac": True}, runtimeConfig=ips)) == ()
    assert requested(conf(capabilities={"ips": False}, runtimeConfig=ips)) == ()


def test_both_sources_merge_and_repeats_count_once() -> None:
    """runtimeConfig.ips and IP= merge in that order; the same address twice is kept once; args.cni.ips
    belongs to other plugins (host-local) and is neither read nor checked."""
    config = conf(runtimeConfig={"ips": ["10.1.0.5"]}, args={"cni": {"ips": ["not ours", 5]}})
    assert requested(config, "IP=10.1.0.5,fd00::5/64") == ("10.1.0.5", "fd00::5/64")
    assert requested(conf(), "IgnoreUnknown=1;IP=10.1.0.7,fd00::7") == ("10.1.0.7", "fd00::7")
    assert requested(conf(), "IP=10.1.0.7/24") == ("10.1.0.7/24",)


def test_two_addresses_of_one_family_are_refused_naming_both() -> None:
    """Code 7 when the config (or config and IP=) ask for two IPv4 addresses; code 4 for IP= alone."""
    code, message = refusal(conf(runtimeConfig={"ips": ["10.1.0.5"]}), "IP=10.1.0.6")
    assert code == codes.INVALID_CONFIG
    assert "10.1.0.5 and 10.1.0.6 are both IPv4" in message
    code, message = refusal(conf(), "IP=10.1.0.5,10.1.0.6")
    assert code == codes.INVALID_ENVIRONMENT
    assert "CNI_ARGS IP" in message


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"runtimeConfig": {"ips": "10.1.0.5"}}, "runtimeConfig.ips must be an array"),
        ({"runtimeConfig": {"ips": ["10.1.0.500"]}}, "runtimeConfig.ips[0] '10.1.0.500'"),
        ({"runtimeConfig": ["ips"]}, "runtimeConfig must be an object"),
    ],
)
def test_malformed_requests_in_the_config_are_code_7_naming_the_key(
    overrides: dict[str, Any], where: str
) -> None:
    """A malformed runtimeConfig or runtimeConfig.ips is refused with code 7 naming the key."""
    code, message = refusal(conf(**overrides))
    assert code == codes.INVALID_CONFIG
    assert where in message


def test_a_malformed_ip_arg_is_code_4() -> None:
    """IP= with something that is neither an IP nor a CIDR is an invalid environment variable."""
    code, message = refusal(conf(), "IP=10.1.0.1/99")
    assert code == codes.INVALID_ENVIRONMENT
    assert "not an IP address or CIDR" in message


def test_only_add_reads_the_request() -> None:
    """DEL and CHECK neither read nor refuse runtimeConfig.ips (a release never fails over it)."""
    bad = json.dumps(conf(runtimeConfig={"ips": ["nonsense"]})).encode()
    for verb in (Verb.DEL, Verb.CHECK):
        assert parse_call(Call(config=bad), verb).requested_ips == ()
