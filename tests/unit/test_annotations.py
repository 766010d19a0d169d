"""Pod, namespace and Multus annotations: upstream value shapes parse, malformed ones are named."""

from __future__ import annotations

import json

import pytest
from spiderpool_common.errors import InvalidAnnotation
from spiderpool_controller.domain.annotations import (
    MULTUS_DEFAULT_NETWORK,
    MULTUS_NETWORKS,
    NS_DEFAULT_IPV4_IPPOOL,
    NS_DEFAULT_IPV6_IPPOOL,
    POD_DEFAULT_ROUTE_NIC,
    POD_IPPOOL,
    POD_IPPOOLS,
    POD_ROUTES,
    NetworkSelection,
    NicPools,
    PoolNames,
    multus_name_matches,
    multus_network_for_nic,
    parse_default_route_nic,
    parse_ippool,
    parse_ippools,
    parse_multus_default_network,
    parse_multus_networks,
    parse_namespace_default_pools,
    parse_routes,
)
from spiderpool_controller.domain.models import Route


def _raises(key: str, fragment: str) -> pytest.RaisesExc[InvalidAnnotation]:
    """Expect InvalidAnnotation whose message names ``key`` and contains ``fragment``."""
    return pytest.raises(InvalidAnnotation, match=rf"^annotation {key}: .*{fragment}")


# ---------------------------------------------------------------------------------------
# ipam.spidernet.io/ippool


def test_ippool_absent_is_none() -> None:
    """A pod without the ippool annotation has no pools from it."""
    assert parse_ippool({"other": "x"}) is None


def test_ippool_parses_both_families() -> None:
    """The ippool annotation yields the IPv4 and IPv6 name lists in order."""
    value = json.dumps({"ipv4": ["a", "b*"], "ipv6": ["v6"]})
    assert parse_ippool({POD_IPPOOL: value}) == PoolNames(("a", "b*"), ("v6",))


def test_ippool_keys_match_without_case_and_unknown_keys_are_ignored() -> None:
    """Like Go's encoding/json, keys match in any case and unknown keys are ignored."""
    value = json.dumps({"IPv4": ["a"], "interface": "eth0", "ipv6": None})
    assert parse_ippool({POD_IPPOOL: value}) == PoolNames(("a",), ())


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("{not json", "invalid JSON"),
        ('["a"]', "the value must be a JSON object"),
        ('{"ipv4": "a"}', "ipv4 must be a list of pool names"),
        ('{"ipv6": [1]}', "ipv6 holds 1, not a pool name"),
        ('{"ipv4": [""]}', "ipv4 holds '', not a pool name"),
    ],
)
def test_ippool_malformed_values_are_rejected(value: str, fragment: str) -> None:
    """A malformed ippool annotation raises InvalidAnnotation naming the key and the fault."""
    with _raises(POD_IPPOOL, fragment):
        parse_ippool({POD_IPPOOL: value})


# ---------------------------------------------------------------------------------------
# ipam.spidernet.io/ippools


def test_ippools_with_interface_names_keep_them() -> None:
    """Items naming their interface keep that name, pools and cleangateway."""
    value = json.dumps(
        [
            {"interface": "eth0", "ipv4": ["a"], "ipv6": ["a6"], "cleangateway": False},
            {"interface": "ens5", "ipv4": ["b"], "cleangateway": True},
        ]
    )
    assert parse_ippools({POD_IPPOOLS: value}) == (
        NicPools("eth0", PoolNames(("a",), ("a6",)), False),
        NicPools("ens5", PoolNames(("b",), ()), True),
    )


def test_ippools_without_names_are_eth0_then_net_index() -> None:
    """Items without interface names map to eth0, net1, net2 by position."""
    value = json.dumps([{"ipv4": ["a"]}, {"ipv4": ["b"]}, {"ipv6": ["c"]}])
    parsed = parse_ippools({POD_IPPOOLS: value})
    assert parsed is not None
    assert [item.nic for item in parsed] == ["eth0", "net1", "net2"]
    assert parsed[2].pools == PoolNames((), ("c",))
    assert parsed[0].clean_gateway is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("[", "invalid JSON"),
        ('{"interface": "eth0"}', "the value must be a JSON list"),
        ("[]", "at least one item"),
        ('["eth0"]', "item 0 must be a JSON object"),
        ('[{"interface": "eth0", "ipv4": ["a"]}, {"ipv4": ["b"]}]', "on all items or on none"),
        ('[{"interface": "eth0"}, {"interface": "eth0"}]', "duplicate interface eth0"),
        ('[{"interface": 3}]', "item 0 interface must be a string"),
        ('[{"interface": "eth0", "cleangateway": "yes"}]', "cleangateway must be true or false"),
        ('[{"interface": "eth0", "ipv4": {"a": 1}}]', "item 0 ipv4 must be a list"),
    ],
)
def test_ippools_malformed_values_are_rejected(value: str, fragment: str) -> None:
    """A malformed ippools annotation raises InvalidAnnotation naming the key and the fault."""
    with _raises(POD_IPPOOLS, fragment):
        parse_ippools({POD_IPPOOLS: value})


# ---------------------------------------------------------------------------------------
# routes and default-route-nic


def test_routes_parse_to_route_objects() -> None:
    """The routes annotation yields normalised (dst, gw) routes of either family."""
    value = json.dumps([{"dst": "10.0.0.0/16", "gw": "192.168.1.1"}, {"dst": "fd00::/64", "gw": "fd01::1"}])
    assert parse_routes({POD_ROUTES: value}) == (
        Route("10.0.0.0/16", "192.168.1.1"),
        Route("fd00::/64", "fd01::1"),
    )


def test_routes_absent_is_empty() -> None:
    """A pod without the routes annotation has no custom routes."""
    assert parse_routes({}) == ()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("nope", "invalid JSON"),
        ('{"dst": "10.0.0.0/8"}', "must be a JSON list"),
        ('[{"dst": "10.0.0.0/8"}]', "item 0 needs string dst and gw"),
        ('[{"dst": "10.0.0/33", "gw": "10.0.0.1"}]', "dst '10.0.0/33' is not a CIDR"),
        ('[{"dst": "10.0.0.0/8", "gw": "gateway"}]', "gw 'gateway' is not an IP address"),
        ('[{"dst": "10.0.0.0/8", "gw": "fd00::1"}]', "mixes IPv4 dst 10.0.0.0/8 with IPv6 gw"),
    ],
)
def test_routes_malformed_values_are_rejected(value: str, fragment: str) -> None:
    """A malformed routes annotation raises InvalidAnnotation naming the key and the fault."""
    with _raises(POD_ROUTES, fragment):
        parse_routes({POD_ROUTES: value})


def test_default_route_nic_is_the_trimmed_interface_name() -> None:
    """The default-route-nic annotation names one interface."""
    assert parse_default_route_nic({POD_DEFAULT_ROUTE_NIC: " net1 "}) == "net1"
    assert parse_default_route_nic({}) is None


@pytest.mark.parametrize("value", ["", "a" * 16, "net 1", "ns/net1"])
def test_default_route_nic_rejects_non_interface_names(value: str) -> None:
    """A value that cannot be a Linux interface name is rejected."""
    with _raises(POD_DEFAULT_ROUTE_NIC, "is not an interface name"):
        parse_default_route_nic({POD_DEFAULT_ROUTE_NIC: value})


# ---------------------------------------------------------------------------------------
# namespace defaults


def test_namespace_default_pools_parse_json_arrays() -> None:
    """The namespace default pool annotations are JSON arrays per family."""
    parsed = parse_namespace_default_pools(
        {NS_DEFAULT_IPV4_IPPOOL: '["p1", "p2"]', NS_DEFAULT_IPV6_IPPOOL: '["p6"]'}
    )
    assert parsed == PoolNames(("p1", "p2"), ("p6",))
    assert parse_namespace_default_pools({}).is_empty()


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        (NS_DEFAULT_IPV4_IPPOOL, "p1", "invalid JSON"),
        (NS_DEFAULT_IPV6_IPPOOL, '"p6"', "must be a list of pool names"),
        (NS_DEFAULT_IPV4_IPPOOL, "[true]", "holds True, not a pool name"),
    ],
)
def test_namespace_default_pools_malformed_values_are_rejected(key: str, value: str, fragment: str) -> None:
    """A malformed namespace default pool annotation raises InvalidAnnotation naming its key."""
    with _raises(key, fragment):
        parse_namespace_default_pools({key: value})


# ---------------------------------------------------------------------------------------
# Multus annotations


def test_multus_networks_text_form() -> None:
    """The text form lists [namespace/]name[@interface]; a bare name is in the pod's namespace."""
    parsed = parse_multus_networks({MULTUS_NETWORKS: "kube-system/macvlan@eth1, sriov , other/ipvlan"}, "app")
    assert parsed == (
        NetworkSelection("kube-system", "macvlan", "eth1"),
        NetworkSelection("app", "sriov", ""),
        NetworkSelection("other", "ipvlan", ""),
    )


def test_multus_networks_json_form() -> None:
    """The JSON form lists objects with name, optional namespace and interface."""
    value = json.dumps([{"name": "macvlan", "namespace": "kube-system", "interface": "ens1"}, {"name": "b"}])
    assert parse_multus_networks({MULTUS_NETWORKS: value}, "app") == (
        NetworkSelection("kube-system", "macvlan", "ens1"),
        NetworkSelection("app", "b", ""),
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a/b/c", "is not \\[namespace/\\]name\\[@interface\\]"),
        ("/b", "is not \\[namespace/\\]name\\[@interface\\]"),
        ("ns/", "names no network"),
        ("a, ,b", "names no network"),
        ("a@if@x", "more than one '@'"),
        ("a@", "empty interface after '@'"),
        ('[{"namespace": "x"}]', "item 0 needs a name"),
        ('[{"name": "a", "interface": 1}]', "item 0 interface must be a string"),
        ("[{", "invalid JSON"),
    ],
)
def test_multus_networks_malformed_values_are_rejected(value: str, fragment: str) -> None:
    """A malformed Multus networks annotation raises InvalidAnnotation naming the key."""
    with _raises(MULTUS_NETWORKS, fragment):
        parse_multus_networks({MULTUS_NETWORKS: value}, "app")


def test_multus_default_network_keeps_an_unknown_namespace_empty() -> None:
    """A bare default network lives in Multus' own namespace, which the pod does not say."""
    assert parse_multus_default_network({MULTUS_DEFAULT_NETWORK: "calico"}) == NetworkSelection("", "calico")
    assert parse_multus_default_network({MULTUS_DEFAULT_NETWORK: "kube-system/calico"}) == NetworkSelection(
        "kube-system", "calico"
    )
    assert parse_multus_default_network({}) is None


def test_multus_default_network_must_name_one_network() -> None:
    """The default network annotation with two networks is rejected."""
    with _raises(MULTUS_DEFAULT_NETWORK, "exactly one network"):
        parse_multus_default_network({MULTUS_DEFAULT_NETWORK: "a, b"})


def test_network_for_nic_uses_default_network_for_eth0_and_networks_for_others() -> None:
    """eth0 comes from the default network; other NICs by interface or Multus' net<index+1>."""
    annotations = {
        MULTUS_DEFAULT_NETWORK: "kube-system/calico",
        MULTUS_NETWORKS: "macvlan, kube-system/sriov@ens9, ipvlan",
    }
    assert multus_network_for_nic(annotations, "app", "eth0") == "kube-system/calico"
    assert multus_network_for_nic(annotations, "app", "net1") == "app/macvlan"
    assert multus_network_for_nic(annotations, "app", "ens9") == "kube-system/sriov"
    assert multus_network_for_nic(annotations, "app", "net3") == "app/ipvlan"
    assert multus_network_for_nic(annotations, "app", "net2") == ""
    assert multus_network_for_nic({}, "app", "eth0") == ""


@pytest.mark.parametrize(
    ("allowed", "network", "expected"),
    [
        (["kube-system/macvlan"], "kube-system/macvlan", True),
        (["kube-system/macvlan"], "app/macvlan", False),
        (["macvlan"], "app/macvlan", True),
        (["macvlan"], "app/ipvlan", False),
        (["kube-system/calico"], "calico", True),
        (["a/x", "b/y"], "b/y", True),
        (["macvlan"], "", False),
    ],
)
def test_multus_name_matching(allowed: list[str], network: str, expected: bool) -> None:
    """ns/name entries match exactly; a bare name matches that NAD in any namespace."""
    assert multus_name_matches(allowed, network) is expected
