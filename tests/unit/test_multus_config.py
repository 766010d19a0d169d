"""SpiderMultusConfig model, mutating-webhook defaults and validating-webhook rules (upstream's
pkg/multuscniconfig)."""

from __future__ import annotations

from typing import Any

import pytest
from spiderpool_common.errors import InvalidObject
from spiderpool_controller.domain import multus_config as mc

NAME = 'SpiderMultusConfig "kube-system/net"'


def _obj(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "net", "namespace": "kube-system"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": mc.KIND, "metadata": meta, "spec": spec}


def _refusal(obj: dict[str, Any], old: dict[str, Any] | None = None, **kw: Any) -> str:
    with pytest.raises(InvalidObject) as refused:
        mc.validate(mc.apply_defaults(obj), old, **kw)
    return str(refused.value)


def _ok(obj: dict[str, Any]) -> dict[str, Any]:
    defaulted = mc.apply_defaults(obj)
    mc.validate(defaulted)
    return defaulted


# ---------------------------------------------------------------------------------------
# model


def test_a_defaulted_config_reads_back_typed_and_writes_back_unchanged() -> None:
    """from_dict gives typed sub-configurations; to_dict writes the same manifest spec."""
    spec = _ok(
        _obj(
            {
                "cniType": "vlan",
                "vlan": {"master": ["ens192", "ens224"], "bond": {"name": "bond0", "mode": 1}},
            }
        )
    )["spec"]
    config = mc.SpiderMultusConfig.from_dict(_obj(spec))
    vlan = config.spec.sub_config
    assert isinstance(vlan, mc.VlanConfig)
    assert (vlan.master, vlan.vlan_mode, vlan.vlan_id, vlan.mtu) == (["ens192", "ens224"], "manual", 0, 0)
    assert vlan.bond == mc.BondConfig("bond0", 1, "")
    assert config.spec.coordinator is not None and config.spec.coordinator.tune_pod_routes is True
    assert config.spec.to_dict() == spec


def test_nad_name_cni_version_and_config_name_come_from_annotations() -> None:
    """cr-name renames the NAD, cni-version sets its version (default 0.3.1), cniconfig-name inner name."""
    plain = mc.SpiderMultusConfig.from_dict(_obj({}))
    assert (plain.nad_name, plain.cni_version, plain.cni_config_name) == ("net", "0.3.1", "net")
    named = mc.SpiderMultusConfig.from_dict(
        _obj({}, {mc.ANNO_CR_NAME: "nad", mc.ANNO_CNI_VERSION: "1.0.0", mc.ANNO_CNICONFIG_NAME: "inner"})
    )
    assert (named.nad_name, named.cni_version, named.cni_config_name) == ("nad", "1.0.0", "inner")


def test_sub_config_is_the_one_cni_type_selects() -> None:
    """sub_config follows cniType (ib-sriov reads spec.ibsriov) and is None for custom."""
    spec = mc.MultusConfigSpec.from_dict(
        {"cniType": "ib-sriov", "ibsriov": {"resourceName": "r"}, "macvlan": {"master": ["a"]}}
    )
    assert isinstance(spec.sub_config, mc.IBSriovConfig)
    assert mc.MultusConfigSpec.from_dict({"cniType": "custom"}).sub_config is None


# ---------------------------------------------------------------------------------------
# defaults


def test_an_empty_spec_defaults_to_custom_without_coordinator() -> None:
    """cniType custom, customCNI "", coordinator off and absent, no chained plugins."""
    assert _ok(_obj({}))["spec"] == {
        "cniType": "custom",
        "customCNI": "",
        "enableCoordinator": False,
        "disableIPAM": False,
        "chainCNIJsonData": [],
    }


def test_macvlan_defaults_fill_vlan_mtu_rdma_pools_and_a_full_coordinator() -> None:
    """Upstream's macvlan defaults, and the coordinator block the webhook adds then the schema completes."""
    spec = _ok(_obj({"cniType": "macvlan", "macvlan": {"master": ["ens192"]}}))["spec"]
    assert spec["macvlan"] == {
        "master": ["ens192"],
        "mtu": 0,
        "vlanID": 0,
        "rdmaResourceName": "",
        "ippools": {"ipv4": [], "ipv6": [], "matchMasterSubnet": False},
    }
    assert spec["enableCoordinator"] is True
    assert spec["coordinator"] == {
        "mode": "auto",
        "hijackCIDR": [],
        "policyRoutes": [],
        "vethLinkAddress": "",
        "podMACPrefix": "",
        "podDefaultRouteNIC": "",
        "podRPFilter": 0,
        "tunePodRoutes": True,
        "hostRuleTable": 500,
        "txQueueLen": 0,
    }


def test_a_given_coordinator_block_keeps_its_values_and_gets_the_schema_tune_pod_routes() -> None:
    """Set fields stay; tunePodRoutes absent from a given block is true (the schema defaults it first)."""
    spec = _ok(
        _obj(
            {
                "cniType": "ipvlan",
                "ipvlan": {"master": ["a"]},
                "coordinator": {"mode": "overlay", "podRPFilter": 2},
            }
        )
    )["spec"]
    assert spec["coordinator"]["mode"] == "overlay"
    assert spec["coordinator"]["podRPFilter"] == 2
    assert spec["coordinator"]["tunePodRoutes"] is True
    assert "vethLinkAddress" not in spec["coordinator"]


@pytest.mark.parametrize(
    ("cni_type", "key", "given", "expected"),
    [
        (
            "vlan",
            "vlan",
            {"master": ["a"]},
            {"vlanMode": "manual", "vlanID": 0, "mtu": 0, "rdmaResourceName": ""},
        ),
        ("vlan", "vlan", {"master": ["a"], "vlanMode": "auto"}, {"vlanMode": "auto", "mtu": 0}),
        (
            "sriov",
            "sriov",
            {"resourceName": "r"},
            {"vlanID": 0, "mtu": 0, "minTxRateMbps": 0, "maxTxRateMbps": 0, "rdmaIsolation": False},
        ),
        (
            "ib-sriov",
            "ibsriov",
            {"resourceName": "r"},
            {"pkey": "", "linkState": "enable", "rdmaIsolation": True, "enableIbKubernetes": False},
        ),
        ("ovs", "ovs", {"bridge": "br1"}, {"vlan": 0}),
        ("ipoib", "ipoib", {"master": "ib0"}, {}),
    ],
)
def test_per_type_defaults_are_upstreams(
    cni_type: str, key: str, given: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Each cniType's sub-configuration gets upstream's defaults, and always the empty pools."""
    sub = _ok(_obj({"cniType": cni_type, key: given}))["spec"][key]
    for name, value in expected.items():
        assert sub[name] == value, name
    assert sub["ippools"]["ipv4"] == [] and sub["ippools"]["ipv6"] == []
    if cni_type == "vlan" and given.get("vlanMode") == "auto":
        assert "vlanID" not in sub


def test_bond_options_default_to_empty_and_inject_annotations_become_labels() -> None:
    """A bond gets options ""; the inject annotations are copied to labels for the pod webhook."""
    obj = _obj(
        {
            "cniType": "macvlan",
            "macvlan": {
                "master": ["a", "b"],
                "bond": {"name": "bond0", "mode": 4},
                "rdmaResourceName": "rdma/a",
                "ippools": {"ipv4": ["p"]},
            },
        },
        {mc.ANNO_RDMA_RESOURCE_INJECT: "group-a"},
    )
    out = _ok(obj)
    assert out["spec"]["macvlan"]["bond"] == {"name": "bond0", "mode": 4, "options": ""}
    assert out["metadata"]["labels"] == {mc.ANNO_RDMA_RESOURCE_INJECT: "group-a"}


def test_defaulting_does_not_change_its_input() -> None:
    """apply_defaults returns a copy."""
    obj = _obj({"cniType": "macvlan", "macvlan": {"master": ["a"]}})
    mc.apply_defaults(obj)
    assert obj["spec"] == {"cniType": "macvlan", "macvlan": {"master": ["a"]}}


# ---------------------------------------------------------------------------------------
# validation: every rule's message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"cniType": "macvlan"}, "spec.macvlan: required when spec.cniType is macvlan"),
        ({"cniType": "ib-sriov"}, "spec.ibsriov: required when spec.cniType is ib-sriov"),
        (
            {"cniType": "macvlan", "macvlan": {"master": ["a"]}, "ipvlan": {"master": ["a"]}},
            "spec.ipvlan: must not be set when spec.cniType is macvlan",
        ),
        (
            {"cniType": "sriov", "sriov": {"resourceName": "r"}, "customCNI": "{}"},
            "spec.customCNI: must not be set when spec.cniType is sriov",
        ),
        (
            {"cniType": "custom", "ovs": {"bridge": "br"}},
            "spec.ovs: must not be set when spec.cniType is custom",
        ),
        (
            {"cniType": "macvlan", "macvlan": {"master": []}},
            "spec.macvlan.master: must name at least one interface",
        ),
        (
            {"cniType": "ipvlan", "ipvlan": {"master": ["a", "b"]}},
            "spec.ipvlan.bond: required with 2 master interfaces",
        ),
        (
            {"cniType": "vlan", "vlan": {"master": ["a", "b"], "bond": {"name": "", "mode": 1}}},
            "spec.vlan.bond.name: required",
        ),
        (
            {"cniType": "macvlan", "macvlan": {"master": ["a"], "ippools": {"matchMasterSubnet": True}}},
            "spec.macvlan.ippools.matchMasterSubnet: is not supported for macvlan",
        ),
        (
            {"cniType": "vlan", "vlan": {"master": ["a"], "vlanMode": "auto", "vlanID": 5}},
            "spec.vlan.vlanID: must not be set when vlanMode is auto",
        ),
        ({"cniType": "sriov", "sriov": {}}, "spec.sriov.resourceName: required"),
        ({"cniType": "ib-sriov", "ibsriov": {"pkey": "0x10"}}, "spec.ibsriov.resourceName: required"),
        ({"cniType": "ipoib", "ipoib": {}}, "spec.ipoib.master: required"),
        (
            {"cniType": "sriov", "sriov": {"resourceName": "r", "minTxRateMbps": 500, "maxTxRateMbps": 100}},
            "spec.sriov.minTxRateMbps: 500 must not exceed maxTxRateMbps 100",
        ),
        (
            {"cniType": "ovs", "ovs": {"bridge": "br1", "trunk": [{"minID": 20, "maxID": 10}]}},
            "spec.ovs.trunk[0].maxID: 10 is less than minID 20",
        ),
        ({"cniType": "custom", "customCNI": "{not json"}, "spec.customCNI: is not valid JSON"),
        (
            {"cniType": "macvlan", "macvlan": {"master": ["a"]}, "coordinator": {"podRPFilter": 3}},
            "spec.coordinator.podRPFilter: rp_filter 3 is not one of 0, 1, 2",
        ),
        (
            {"cniType": "macvlan", "macvlan": {"master": ["a"]}, "coordinator": {"podMACPrefix": "0b:1b"}},
            "spec.coordinator.podMACPrefix: '0b:1b' is a multicast MAC prefix",
        ),
        (
            {"cniType": "macvlan", "macvlan": {"master": ["a"]}, "chainCNIJsonData": ['{"sysctl": {}}']},
            "spec.chainCNIJsonData[0]: is not a CNI plugin configuration: missing 'type'",
        ),
        (
            {"cniType": "macvlan", "macvlan": {"master": ["a"]}, "chainCNIJsonData": ["tuning"]},
            "spec.chainCNIJsonData[0]: is not valid JSON",
        ),
        (
            {"cniType": "macvlan", "macvlan": {"master": ["a"], "vlanID": 4095}},
            "spec.macvlan.vlanID: 4095 is more than the maximum 4094",
        ),
        (
            {"cniType": "macvlan", "macvlan": {"master": ["a"], "mtu": -1}},
            "spec.macvlan.mtu: -1 is less than the minimum 0",
        ),
        ({"cniType": "bridge"}, 'spec.cniType: "bridge" is not one of "macvlan"'),
    ],
)
def test_spec_rules_refuse_naming_the_field(spec: dict[str, Any], message: str) -> None:
    """Each validating-webhook rule refuses with the object and the field's JSON path in the message."""
    text = _refusal(_obj(spec))
    assert text.startswith(f"{NAME}: ")
    assert message in text


def test_the_first_failing_rule_in_upstream_order_is_reported() -> None:
    """Annotations are checked before the spec, the sub-configuration before the coordinator."""
    bad_both = _obj(
        {"cniType": "macvlan", "macvlan": {"master": []}, "coordinator": {"podRPFilter": 7}},
        {mc.ANNO_CNI_VERSION: "0.2.0"},
    )
    assert "cni-version" in _refusal(bad_both)
    del bad_both["metadata"]["annotations"]
    assert "spec.macvlan.master" in _refusal(bad_both)


def test_max_tx_rate_zero_means_no_limit() -> None:
    """A minimum rate with maxTxRateMbps 0 (no limit, also the default) is accepted (upstream refuses it)."""
    _ok(_obj({"cniType": "sriov", "sriov": {"resourceName": "r", "minTxRateMbps": 100}}))
    _ok(
        _obj({"cniType": "sriov", "sriov": {"resourceName": "r", "minTxRateMbps": 100, "maxTxRateMbps": 100}})
    )


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {mc.ANNO_CR_NAME: "Bad_Name"},
            "metadata.annotations[multus.spidernet.io/cr-name]: 'Bad_Name' is not a valid",
        ),
        (
            {mc.ANNO_CNI_VERSION: "0.2.0"},
            "unsupported CNI version '0.2.0'; supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0",
        ),
    ],
)
def test_annotation_rules_refuse_naming_the_annotation(annotations: dict[str, str], message: str) -> None:
    """The NAD name must be a DNS-1123 subdomain; the CNI version one of the supported ones."""
    assert message in _refusal(_obj({"cniType": "macvlan", "macvlan": {"master": ["a"]}}, annotations))


def test_cr_name_is_immutable_and_cannot_be_added_later() -> None:
    """On update the NAD name may not change, nor be given when the object had none."""
    spec = {"cniType": "macvlan", "macvlan": {"master": ["a"]}}
    old = mc.apply_defaults(_obj(spec, {mc.ANNO_CR_NAME: "nad-a"}))
    assert "is immutable (stored: 'nad-a', requested: 'nad-b')" in _refusal(
        _obj(spec, {mc.ANNO_CR_NAME: "nad-b"}), old
    )
    plain = mc.apply_defaults(_obj(spec))
    assert "cannot be added after creation" in _refusal(_obj(spec, {mc.ANNO_CR_NAME: "nad-a"}), plain)
    mc.validate(mc.apply_defaults(_obj(spec, {mc.ANNO_CR_NAME: "nad-a"})), old)


def test_a_nad_owned_by_another_config_is_refused() -> None:
    """The generated NAD may not take over one another SpiderMultusConfig manages; its own is fine."""
    spec = {"cniType": "macvlan", "macvlan": {"master": ["a"]}}
    text = _refusal(_obj(spec, {mc.ANNO_CR_NAME: "shared"}), nad_owner="other")
    assert (
        "metadata.annotations[multus.spidernet.io/cr-name]: "
        "the NetworkAttachmentDefinition 'shared' already exists" in text
    )
    assert "managed by SpiderMultusConfig 'other'" in text
    assert "metadata.name: the NetworkAttachmentDefinition 'net'" in _refusal(_obj(spec), nad_owner="other")
    mc.validate(mc.apply_defaults(_obj(spec)), nad_owner="net")


@pytest.mark.parametrize("cni_type", ["ovs", "custom"])
def test_resource_injection_is_refused_for_ovs_and_custom(cni_type: str) -> None:
    """RDMA and network resource injection annotations are not supported for ovs and custom."""
    spec: dict[str, Any] = {"cniType": cni_type}
    if cni_type == "ovs":
        spec["ovs"] = {"bridge": "br1"}
    for annotation in mc.INJECT_ANNOTATIONS:
        text = _refusal(_obj(spec, {annotation: "x"}))
        assert (
            f"metadata.annotations[{annotation}]: "
            f"RDMA and network resource injection is not supported for {cni_type}" in text
        )


def test_rdma_injection_needs_a_resource_and_pools() -> None:
    """rdma-resource-inject needs the sub-configuration's resource name and at least one pool."""
    annotations = {mc.ANNO_RDMA_RESOURCE_INJECT: "g"}
    text = _refusal(_obj({"cniType": "macvlan", "macvlan": {"master": ["a"]}}, annotations))
    assert (
        "spec.macvlan.rdmaResourceName: required when annotation cni.spidernet.io/rdma-resource-inject is set"
        in text
    )
    text = _refusal(_obj({"cniType": "sriov", "sriov": {"resourceName": "r"}}, annotations))
    assert "spec.sriov.ippools: at least one ipv4 or ipv6 pool is required when annotation" in text
    _ok(_obj({"cniType": "ipoib", "ipoib": {"master": "ib0", "ippools": {"ipv6": ["p6"]}}}, annotations))


def test_network_injection_needs_pools_only_when_a_resource_is_named() -> None:
    """network-resource-inject without a resource name is fine; with one it needs a pool."""
    annotations = {mc.ANNO_NETWORK_RESOURCE_INJECT: "g"}
    _ok(_obj({"cniType": "vlan", "vlan": {"master": ["a"], "vlanID": 10}}, annotations))
    text = _refusal(
        _obj(
            {"cniType": "vlan", "vlan": {"master": ["a"], "vlanID": 10, "rdmaResourceName": "r"}}, annotations
        )
    )
    assert (
        "spec.vlan.ippools: at least one ipv4 or ipv6 pool is required when annotation "
        "cni.spidernet.io/network-resource-inject" in text
    )


def test_validation_changes_nothing_and_accepts_every_cni_type() -> None:
    """A valid config of every cniType passes; validation leaves the object as it was."""
    specs: dict[str, dict[str, Any]] = {
        "macvlan": {"macvlan": {"master": ["a"]}},
        "ipvlan": {"ipvlan": {"master": ["a"]}},
        "vlan": {"vlan": {"master": ["a"], "vlanID": 7}},
        "sriov": {"sriov": {"resourceName": "r"}},
        "ovs": {"ovs": {"bridge": "br1", "trunk": [{"minID": 1, "maxID": 5}, {"id": 9}]}},
        "ib-sriov": {"ibsriov": {"resourceName": "r"}},
        "ipoib": {"ipoib": {"master": "ib0"}},
        "custom": {"customCNI": '{"cniVersion": "0.3.1", "type": "bridge"}'},
    }
    assert set(specs) == set(mc.CNI_TYPES)
    for cni_type, spec in specs.items():
        defaulted = mc.apply_defaults(_obj({"cniType": cni_type, **spec}))
        snapshot = repr(defaulted)
        mc.validate(defaulted)
        assert repr(defaulted) == snapshot
