"""The kubelet stand-in's Multus rules: selections, interface names, CNI_ARGS, runtimeConfig, status."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.simcluster import multus
from tests.simcluster.sandbox import SandboxRecord

CLUSTER = {"cniVersion": "1.0.0", "name": "macvlan-eth0", "plugins": [{"type": "macvlan"}]}


def nad(namespace: str, name: str, config: Any) -> dict[str, Any]:
    text = config if isinstance(config, str) else json.dumps(config)
    return {"metadata": {"namespace": namespace, "name": name}, "spec": {"config": text}}


def pod(annotations: dict[str, str], namespace: str = "app") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": "p", "uid": "u1", "annotations": annotations}}


def test_text_selections_default_to_the_pod_namespace_and_take_an_interface() -> None:
    """`a, other/b@fast` is two selections: app/a and other/b on interface fast."""
    found = multus.parse_networks("a, other/b@fast", "app")
    assert [(s.key, s.interface) for s in found] == [("app/a", ""), ("other/b", "fast")]


def test_json_selections_carry_ips_mac_and_cni_args() -> None:
    """A JSON element's ips and mac become runtimeConfig, its cni-args the delegate's args.cni."""
    text = json.dumps(
        [{"name": "a", "ips": ["10.1.0.5/24"], "mac": "02:00:00:00:00:01", "cni-args": {"k": "v"}}]
    )
    (sel,) = multus.parse_networks(text, "app")
    assert sel.key == "app/a"
    assert sel.capability_args() == {"ips": ["10.1.0.5/24"], "mac": "02:00:00:00:00:01"}
    assert sel.config_args() == {"cni": {"k": "v"}}


@pytest.mark.parametrize(
    "text",
    [
        "a/b/c",
        "Bad_Name",
        "ns/",
        "a@",
        "[1]",
        '{"name": "a"}',
        '[{"name": 3}]',
        '[{"name": "a", "ips": "x"}]',
        "[oops",
    ],
)
def test_malformed_selections_are_refused(text: str) -> None:
    """Multus refuses malformed network lists, naming the annotation."""
    with pytest.raises(multus.MultusError, match=r"k8s\.v1\.cni\.cncf\.io/networks"):
        multus.parse_networks(text, "app")


def test_interfaces_are_numbered_by_position_unless_named() -> None:
    """Entry i is net{i+1}; a named entry keeps its name and still uses up its number."""
    sels = multus.parse_networks("a, b@fast, c", "app")
    assert multus.interface_names(sels) == ["net1", "fast", "net3"]


def test_an_interface_name_used_twice_is_refused() -> None:
    """Two attachments cannot share an interface (eth0 included)."""
    with pytest.raises(multus.MultusError, match="eth0"):
        multus.interface_names(multus.parse_networks("a@eth0", "app"))


def test_cni_args_follow_multus_order() -> None:
    """IgnoreUnknown, namespace, name, infra container ID, UID: in that order, on every delegate."""
    record = SandboxRecord("uid-1", "app", "web-0", "c" * 64, "ns", (), 0.0)
    assert record.cni_args() == multus.cni_args("app", "web-0", "c" * 64, "uid-1")
    assert [k for k, _ in record.cni_args()] == [
        "IgnoreUnknown",
        "K8S_POD_NAMESPACE",
        "K8S_POD_NAME",
        "K8S_POD_INFRA_CONTAINER_ID",
        "K8S_POD_UID",
    ]


def test_attachments_are_the_cluster_network_then_each_nad_in_order() -> None:
    """eth0 from the cluster network, then net1, net2 from their NADs with the element's runtimeConfig."""
    nads = {
        "app/a": nad("app", "a", {"cniVersion": "1.0.0", "name": "a", "plugins": [{"type": "macvlan"}]}),
        "other/b": nad("other", "b", {"cniVersion": "1.0.0", "type": "macvlan"}),
    }
    networks = json.dumps([{"name": "a", "ips": ["10.0.0.9/24"]}, {"name": "b", "namespace": "other"}])
    plan = multus.plan_attachments(pod({multus.NETWORKS: networks}), CLUSTER, nads)
    assert [(a.network, a.ifname, a.default) for a in plan] == [
        ("macvlan-eth0", "eth0", True),
        ("app/a", "net1", False),
        ("other/b", "net2", False),
    ]
    assert plan[1].capability_args == {"ips": ["10.0.0.9/24"]}
    assert plan[2].config["name"] == "b"  # a single plugin config without a name takes the NAD's


def test_default_network_annotation_replaces_the_cluster_network() -> None:
    """v1.multus-cni.io/default-network makes eth0 come from that NAD."""
    nads = {
        "app/alt": nad("app", "alt", {"cniVersion": "1.0.0", "name": "alt", "plugins": [{"type": "bridge"}]})
    }
    plan = multus.plan_attachments(pod({multus.DEFAULT_NETWORK: "alt"}), CLUSTER, nads)
    assert [(a.network, a.ifname, a.config["name"]) for a in plan] == [("app/alt", "eth0", "alt")]


def test_a_missing_or_empty_nad_is_an_error_naming_it() -> None:
    """A selection whose NAD does not exist, or has no config, fails the sandbox with its name."""
    with pytest.raises(multus.MultusError, match="app/a"):
        multus.plan_attachments(pod({multus.NETWORKS: "a"}), CLUSTER, {})
    with pytest.raises(multus.MultusError, match=r"spec\.config is empty"):
        multus.plan_attachments(pod({multus.NETWORKS: "a"}), CLUSTER, {"app/a": nad("app", "a", "")})


def test_network_status_lists_each_attachment_with_its_ips_mac_and_default() -> None:
    """One entry per attachment in order, addresses without prefix, the sandbox interface's MAC."""
    eth0 = {
        "interfaces": [
            {"name": "master0"},
            {"name": "eth0", "mac": "aa:bb:cc:00:00:01", "sandbox": "/run/netns/x"},
        ],
        "ips": [{"address": "172.30.0.10/24", "gateway": "172.30.0.1"}, {"address": "fd00::a/64"}],
    }
    net1 = {"interfaces": [{"name": "net1", "mac": "aa:bb:cc:00:00:02", "sandbox": "/x"}], "ips": []}
    text = multus.network_status(
        [
            multus.AttachmentStatus("macvlan-eth0", "eth0", eth0, True),
            multus.AttachmentStatus("app/a", "net1", net1, False),
        ]
    )
    assert json.loads(text) == [
        {
            "name": "macvlan-eth0",
            "interface": "eth0",
            "ips": ["172.30.0.10", "fd00::a"],
            "mac": "aa:bb:cc:00:00:01",
            "default": True,
            "dns": {},
            "gateway": ["172.30.0.1"],
        },
        {"name": "app/a", "interface": "net1", "ips": [], "mac": "aa:bb:cc:00:00:02", "dns": {}},
    ]
