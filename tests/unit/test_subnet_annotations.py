"""The pod template's SpiderSubnet annotations, parsed with upstream's rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from spiderpool_common.errors import InvalidAnnotation
from spiderpool_controller.domain.subnet_annotations import (
    POD_IPPOOL_IP_NUMBER,
    POD_IPPOOL_RECLAIM,
    POD_SUBNET,
    POD_SUBNETS,
    IPNumber,
    SubnetItem,
    has_subnet_annotation,
    parse_ip_number,
    parse_reclaim,
    parse_subnet_config,
)


def subnet(value: Any) -> dict[str, str]:
    return {POD_SUBNET: json.dumps(value)}


def subnets(value: Any) -> dict[str, str]:
    return {POD_SUBNETS: json.dumps(value)}


def test_no_subnet_annotation_is_none_whatever_else_the_pod_says() -> None:
    """Without subnet or subnets, the pool annotations decide: no config, not an error."""
    annotations = {POD_IPPOOL_IP_NUMBER: "bogus", "ipam.spidernet.io/ippool": '{"ipv4": ["a"]}'}
    assert parse_subnet_config(annotations, 1) is None
    assert not has_subnet_annotation(annotations)


def test_the_single_subnet_annotation_serves_eth0_by_default_with_the_cluster_flexible_number() -> None:
    """Upstream's example: one IPv4 subnet, no interface (eth0), no ip-number (+default), reclaim on."""
    config = parse_subnet_config(subnet({"ipv4": ["subnet-6"]}), default_flexible=1)
    assert config is not None
    assert config.items == (SubnetItem("eth0", "subnet-6", ""),)
    assert (config.ip_number, config.ip_number_given, config.reclaim) == (IPNumber(1, True), False, True)
    assert config.source == POD_SUBNET
    assert config.subnet_names() == {"subnet-6"}


def test_the_single_annotation_may_name_its_interface_and_both_families() -> None:
    """An explicit interface and a dual-stack item."""
    config = parse_subnet_config(subnet({"interface": "net1", "ipv4": ["s4"], "ipv6": ["s6"]}), 0)
    assert config is not None
    assert config.items == (SubnetItem("net1", "s4", "s6"),)
    assert config.items[0].families == (4, 6)


def test_only_the_first_name_of_each_family_is_used() -> None:
    """Upstream keeps only the first SpiderSubnet of a family list."""
    config = parse_subnet_config(subnet({"ipv4": ["first", "second"], "ipv6": []}), 1)
    assert config is not None
    assert config.items == (SubnetItem("eth0", "first", ""),)


def test_keys_match_without_regard_to_case_as_go_decodes_them() -> None:
    """Go's encoding/json: IPv4, Interface work; unknown keys are ignored."""
    config = parse_subnet_config(subnet({"Interface": "eth0", "IPv4": ["s"], "extra": 1}), 1)
    assert config is not None
    assert config.items == (SubnetItem("eth0", "s", ""),)


def test_subnets_wins_over_subnet_and_lists_one_item_per_nic() -> None:
    """Upstream's multi-NIC example: eth0 and net1 from two subnets; subnets beats subnet."""
    annotations = {
        **subnets([{"interface": "eth0", "ipv4": ["subnet-6"]}, {"interface": "net1", "ipv4": ["subnet-7"]}]),
        **subnet({"ipv4": ["ignored"]}),
    }
    config = parse_subnet_config(annotations, 1)
    assert config is not None
    assert config.source == POD_SUBNETS
    assert config.items == (SubnetItem("eth0", "subnet-6"), SubnetItem("net1", "subnet-7"))
    assert config.item_for("net1") == SubnetItem("net1", "subnet-7")
    assert config.item_for("net2") is None


@pytest.mark.parametrize(
    ("annotations", "fragment"),
    [
        (subnet({"ipv4": [""]}), "empty SpiderSubnet"),
        (subnet({"ipv4": [], "ipv6": []}), "names no IPv4 and no IPv6"),
        (subnet({}), "names no IPv4 and no IPv6"),
        (subnet({"ipv4": "s"}), "must be a list"),
        (subnet(["s"]), "must be a JSON object"),
        ({POD_SUBNET: "{not json"}, "invalid JSON"),
        (subnets([]), "non-empty JSON list"),
        (subnets({"interface": "eth0"}), "non-empty JSON list"),
        (subnets([{"ipv4": ["a"]}]), "needs an interface"),
        (subnets([{"interface": "eth0", "ipv4": ["a"]}, {"interface": "eth0", "ipv4": ["b"]}]), "both name"),
        (
            subnets([{"interface": "eth0", "ipv4": ["a"]}, {"interface": "net1", "ipv4": ["a"]}]),
            "more than one",
        ),
        (subnets([{"interface": 3, "ipv4": ["a"]}]), "interface must be a string"),
    ],
)
def test_malformed_subnet_annotations_are_refused_naming_the_key(
    annotations: dict[str, str], fragment: str
) -> None:
    """Every fault of the value is InvalidAnnotation naming the annotation and what is wrong."""
    with pytest.raises(InvalidAnnotation) as err:
        parse_subnet_config(annotations, 1)
    key = POD_SUBNETS if POD_SUBNETS in annotations else POD_SUBNET
    assert key in str(err.value)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected", "recorded"),
    [
        ("2", IPNumber(2, False), "2"),
        ("+1", IPNumber(1, True), "+1"),
        ("0", IPNumber(0, False), "0"),
        ("+0", IPNumber(0, True), "+0"),
        ("007", IPNumber(7, False), "7"),
    ],
)
def test_ip_number_is_fixed_or_flexible(text: str, expected: IPNumber, recorded: str) -> None:
    """ "N" is a fixed size, "+N" replicas plus N (Go Atoi after one '+': leading zeros allowed);
    the pool records it in upstream's spelling."""
    assert parse_ip_number(text) == expected
    assert expected.text == recorded


@pytest.mark.parametrize("text", ["", "-1", "+-1", "++1", "1.5", " 2", "two", "+"])
def test_a_malformed_ip_number_is_refused(text: str) -> None:
    """Negative numbers, two signs, blanks and words are refused, naming the annotation."""
    with pytest.raises(InvalidAnnotation, match=POD_IPPOOL_IP_NUMBER):
        parse_ip_number(text)


def test_the_desired_size_is_fixed_or_replicas_plus_n() -> None:
    """Fixed ignores replicas; flexible adds them (never below zero replicas)."""
    assert IPNumber(2, False).desired(10) == 2
    assert IPNumber(1, True).desired(3) == 4
    assert IPNumber(1, True).desired(-5) == 1


def test_the_ip_number_annotation_overrides_the_cluster_default() -> None:
    """A given ip-number is recorded as given (third-party controllers must give one)."""
    config = parse_subnet_config({**subnet({"ipv4": ["s"]}), POD_IPPOOL_IP_NUMBER: "3"}, 1)
    assert config is not None
    assert (config.ip_number, config.ip_number_given) == (IPNumber(3, False), True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("True", True), ("1", True), ("t", True), ("false", False), ("F", False), ("0", False)],
)
def test_reclaim_takes_go_parsebool_spellings(text: str, expected: bool) -> None:
    """strconv.ParseBool's spellings; the default is true."""
    assert parse_reclaim(text) is expected
    config = parse_subnet_config({**subnet({"ipv4": ["s"]}), POD_IPPOOL_RECLAIM: text}, 1)
    assert config is not None
    assert config.reclaim is expected


@pytest.mark.parametrize("text", ["yes", "no", "", "TRUE "])
def test_a_malformed_reclaim_is_refused(text: str) -> None:
    """Anything else is refused naming the annotation."""
    with pytest.raises(InvalidAnnotation, match=POD_IPPOOL_RECLAIM):
        parse_reclaim(text)
