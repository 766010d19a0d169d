"""The Multus network an interface came from, read from the pod's annotations as Multus does."""

from __future__ import annotations

import pytest
from spiderpool_agent.multus_networks import (
    DEFAULT_NETWORK,
    NETWORKS,
    NetworkRef,
    cluster_network_problem,
    network_for_interface,
    parse_networks,
)
from spiderpool_cni import codes
from spiderpool_common.errors import InvalidAnnotation


def test_text_form_names_namespace_network_and_interface() -> None:
    """``ns/name@if``, ``name@if``, ``ns/name`` and ``name`` with spaces around items."""
    found = parse_networks(NETWORKS, " kube-system/a@eth5 , b@net7, other/c ,d", "apps")
    assert found == (
        NetworkRef("kube-system", "a", "eth5"),
        NetworkRef("apps", "b", "net7"),
        NetworkRef("other", "c", ""),
        NetworkRef("apps", "d", ""),
    )


def test_json_form_reads_name_namespace_and_interface_and_the_deprecated_key() -> None:
    """The JSON list's ``interface`` (or Multus' older ``interfaceRequest``) names the NIC."""
    text = (
        '[{"name": "a", "namespace": "ns1", "interface": "eth5", "ips": ["10.0.0.1"]},'
        ' {"name": "b", "interfaceRequest": "net9"}, {"name": "c"}]'
    )
    assert parse_networks(NETWORKS, text, "apps") == (
        NetworkRef("ns1", "a", "eth5"),
        NetworkRef("apps", "b", "net9"),
        NetworkRef("apps", "c", ""),
    )


def test_other_nics_take_the_matching_entry_or_their_position() -> None:
    """net1 is the first entry without a name, net3 the third; a named entry matches by name."""
    annotations = {NETWORKS: "macvlan-a, ns2/macvlan-b@fast0, macvlan-c"}
    assert network_for_interface(annotations, "apps", "net1") == "apps/macvlan-a"
    assert network_for_interface(annotations, "apps", "fast0") == "ns2/macvlan-b"
    assert network_for_interface(annotations, "apps", "net3") == "apps/macvlan-c"
    assert network_for_interface(annotations, "apps", "net2") == ""  # entry 2 is named fast0
    assert network_for_interface(annotations, "apps", "net4") == ""
    assert network_for_interface({}, "apps", "net1") == ""


def test_eth0_is_the_default_network_annotation_else_the_cluster_network() -> None:
    """The pod's default-network annotation wins; without it the agent's setting; else unknown."""
    pod = {DEFAULT_NETWORK: "kube-system/calico-alt", NETWORKS: "macvlan-a"}
    assert network_for_interface(pod, "apps", "eth0", "kube-system/cluster") == "kube-system/calico-alt"
    assert network_for_interface({NETWORKS: "macvlan-a"}, "apps", "eth0", "kube-system/cluster") == (
        "kube-system/cluster"
    )
    assert network_for_interface({}, "apps", "eth0") == ""


def test_a_bare_default_network_stays_bare() -> None:
    """Multus looks a bare default network up in its own namespace, unknown here: no namespace is invented."""
    assert network_for_interface({DEFAULT_NETWORK: "calico"}, "apps", "eth0") == "calico"
    assert network_for_interface({}, "apps", "eth0", " cluster ") == "cluster"


@pytest.mark.parametrize(
    ("key", "value", "fault"),
    [
        (NETWORKS, "a/b/c", "more than one '/'"),
        (NETWORKS, "a@b@c", "more than one '@'"),
        (NETWORKS, "Macvlan", "not a DNS-1123 label"),
        (NETWORKS, "a, ,b", "names no network"),
        (NETWORKS, "/a", "empty namespace"),
        (NETWORKS, "a@", "empty interface"),
        (NETWORKS, '[{"name": "a"', "invalid JSON"),
        (NETWORKS, '{"name": "a"}', "must be a list"),
        (NETWORKS, '[{"namespace": "x"}]', "item 0 needs a name"),
        (NETWORKS, '["a"]', "item 0 must be an object"),
        (NETWORKS, '[{"name": "a", "interface": 5}]', "item 0 interface must be a string"),
    ],
)
def test_a_malformed_networks_annotation_is_code_105_naming_it(key: str, value: str, fault: str) -> None:
    """Every malformed value of the networks annotation names the annotation and what is wrong."""
    with pytest.raises(InvalidAnnotation) as err:
        network_for_interface({key: value}, "apps", "net1")
    assert err.value.cni_code == codes.INVALID_ANNOTATION
    assert str(err.value).startswith(f"annotation {key}: ")
    assert fault in str(err.value)


def test_a_default_network_naming_two_networks_is_refused() -> None:
    """The default network is exactly one network."""
    with pytest.raises(InvalidAnnotation, match=f"annotation {DEFAULT_NETWORK}: expected exactly one"):
        network_for_interface({DEFAULT_NETWORK: "a,b"}, "apps", "eth0")


def test_only_the_annotation_of_the_interface_is_read() -> None:
    """A malformed networks annotation does not fail eth0, which Multus gives the default network."""
    annotations = {NETWORKS: "a/b/c"}
    assert network_for_interface(annotations, "apps", "eth0", "cluster") == "cluster"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", ""),
        ("kube-system/calico", ""),
        ("calico", ""),
        ("a/b/c", "more than one '/'"),
        ("calico@eth0", "names an interface"),
    ],
)
def test_the_cluster_network_setting_is_checked(value: str, problem: str) -> None:
    """The setting takes [namespace/]name; anything else is named at start."""
    found = cluster_network_problem(value)
    if problem:
        assert problem in found
        assert "annotation" not in found
    else:
        assert found == ""
