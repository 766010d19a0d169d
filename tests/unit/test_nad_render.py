"""The NetworkAttachmentDefinition a SpiderMultusConfig generates: exact conflist text per cniType
(upstream's plugin order, field names and Go's JSON encoding), annotations and owner reference."""

from __future__ import annotations

import json
from typing import Any

import pytest
from spiderpool_common.errors import InvalidObject
from spiderpool_controller.domain import multus_config as mc
from spiderpool_controller.domain import nad_render

UID = "6f1c0d2e-0000-4000-8000-000000000001"
# what a defaulted spec.coordinator becomes: unset/empty fields left to the SpiderCoordinator
COORD = '{"txQueueLen":0,"tunePodRoutes":true,"mode":"auto","type":"coordinator","podRPFilter":0}'
SPIDERPOOL = '{"type":"spiderpool"}'


def _smc(
    spec: dict[str, Any], annotations: dict[str, str] | None = None, name: str = "net"
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "kube-system", "uid": UID}
    if annotations is not None:
        meta["annotations"] = annotations
    obj = {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": mc.KIND, "metadata": meta, "spec": spec}
    defaulted = mc.apply_defaults(obj)
    mc.validate(defaulted)
    return defaulted


def _config(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> str:
    nad = nad_render.render(_smc(spec, annotations))
    config = nad["spec"]["config"]
    assert isinstance(config, str)
    json.loads(config)  # always valid JSON
    return config


def _conflist(*plugins: str, name: str = "net", version: str = "0.3.1") -> str:
    return f'{{"cniVersion":"{version}","name":"{name}","plugins":[{",".join(plugins)}]}}'


# ---------------------------------------------------------------------------------------
# per cniType


def test_macvlan_is_the_main_plugin_in_bridge_mode_with_spiderpool_ipam_and_the_coordinator() -> None:
    """A one-master macvlan: no ifacer, mtu 0 written, empty pool lists left out, coordinator last."""
    config = _config({"cniType": "macvlan", "macvlan": {"master": ["ens192"]}})
    assert config == _conflist(
        '{"type":"macvlan","master":"ens192","mode":"bridge","mtu":0,"ipam":{"type":"spiderpool"}}', COORD
    )


def test_macvlan_with_a_vlan_id_gets_ifacer_first_and_the_vlan_sub_interface_as_master() -> None:
    """vlanID 100: ifacer makes ens192.100, macvlan uses it; the pools become the IPAM defaults."""
    config = _config(
        {
            "cniType": "macvlan",
            "macvlan": {
                "master": ["ens192"],
                "vlanID": 100,
                "mtu": 1400,
                "ippools": {"ipv4": ["v4"], "ipv6": ["v6"]},
            },
        }
    )
    assert config == _conflist(
        '{"vlanID":100,"type":"ifacer","interfaces":["ens192"]}',
        '{"type":"macvlan","master":"ens192.100","mode":"bridge","mtu":1400,'
        '"ipam":{"type":"spiderpool","default_ipv4_ippool":["v4"],"default_ipv6_ippool":["v6"]}}',
        COORD,
    )


def test_macvlan_on_two_masters_bonds_them_through_ifacer() -> None:
    """Two masters: ifacer carries the bond (options defaulted to ""), macvlan's master is the bond."""
    config = _config(
        {
            "cniType": "macvlan",
            "macvlan": {"master": ["ens192", "ens224"], "bond": {"name": "bond0", "mode": 1}},
        }
    )
    assert config == _conflist(
        '{"type":"ifacer","interfaces":["ens192","ens224"],"bond":{"name":"bond0","mode":1,"options":""}}',
        '{"type":"macvlan","master":"bond0","mode":"bridge","mtu":0,"ipam":{"type":"spiderpool"}}',
        COORD,
    )


def test_ipvlan_has_no_mode_key() -> None:
    """ipvlan: type, master (with the VLAN suffix), mtu, ipam; ifacer only with a VLAN or a bond."""
    plain = _config({"cniType": "ipvlan", "ipvlan": {"master": ["eth1"]}})
    assert plain == _conflist('{"type":"ipvlan","master":"eth1","mtu":0,"ipam":{"type":"spiderpool"}}', COORD)
    tagged = _config({"cniType": "ipvlan", "ipvlan": {"master": ["eth1"], "vlanID": 7}})
    assert tagged == _conflist(
        '{"vlanID":7,"type":"ifacer","interfaces":["eth1"]}',
        '{"type":"ipvlan","master":"eth1.7","mtu":0,"ipam":{"type":"spiderpool"}}',
        COORD,
    )


def test_vlan_writes_vlan_mode_and_the_id_only_in_manual_mode() -> None:
    """vlan: vlanMode always, vlanId only when manual, the master without a VLAN suffix."""
    manual = _config({"cniType": "vlan", "vlan": {"master": ["eth1"], "vlanID": 200}})
    assert manual == _conflist(
        '{"type":"vlan","master":"eth1","vlanMode":"manual","vlanId":200,"mtu":0,"ipam":{"type":"spiderpool"}}',
        COORD,
    )
    auto = _config({"cniType": "vlan", "vlan": {"master": ["eth1"], "vlanMode": "auto"}})
    assert auto == _conflist(
        '{"type":"vlan","master":"eth1","vlanMode":"auto","mtu":0,"ipam":{"type":"spiderpool"}}', COORD
    )


def test_vlan_on_two_masters_gets_ifacer_without_a_vlan_id() -> None:
    """Bonded vlan: ifacer builds the bond only (the vlan plugin tags), the master is the bond."""
    config = _config(
        {"cniType": "vlan", "vlan": {"master": ["a", "b"], "vlanID": 5, "bond": {"name": "bond1", "mode": 4}}}
    )
    plugins = json.loads(config)["plugins"]
    assert plugins[0] == {
        "type": "ifacer",
        "interfaces": ["a", "b"],
        "bond": {"name": "bond1", "mode": 4, "options": ""},
    }
    assert plugins[1]["master"] == "bond1" and plugins[1]["vlanId"] == 5


def test_sriov_gets_rates_vlan_and_the_resource_name_annotation() -> None:
    """sriov: Go struct order (vlan, rates, type, ipam), its NAD annotated with the resource name."""
    nad = nad_render.render(
        _smc({"cniType": "sriov", "sriov": {"resourceName": "intel.com/sriov_netdevice"}})
    )
    assert nad["spec"]["config"] == _conflist(
        '{"vlan":0,"min_tx_rate":0,"max_tx_rate":0,"type":"sriov","ipam":{"type":"spiderpool"}}', COORD
    )
    assert nad["metadata"]["annotations"] == {"k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov_netdevice"}


def test_sriov_with_rdma_isolation_mtu_and_chained_plugins_keeps_upstreams_order() -> None:
    """sriov, rdma, the chained plugins, the coordinator, tuning (the MTU) last; matchMasterSubnet kept."""
    config = _config(
        {
            "cniType": "sriov",
            "sriov": {
                "resourceName": "r",
                "vlanID": 12,
                "mtu": 9000,
                "minTxRateMbps": 10,
                "maxTxRateMbps": 100,
                "rdmaIsolation": True,
                "ippools": {"ipv4": ["v4"], "matchMasterSubnet": True},
            },
            "chainCNIJsonData": ['{"type":"bandwidth","ingressRate":100}'],
        }
    )
    assert config == _conflist(
        '{"vlan":12,"min_tx_rate":10,"max_tx_rate":100,"type":"sriov",'
        '"ipam":{"type":"spiderpool","default_ipv4_ippool":["v4"],"match_master_subnet":true}}',
        '{"type":"rdma"}',
        '{"ingressRate":100,"type":"bandwidth"}',
        COORD,
        '{"type":"tuning","mtu":9000}',
    )


def test_ib_sriov_writes_its_link_settings_and_the_resource_name_annotation() -> None:
    """ib-sriov: pkey, link_state (default enable), rdmaIsolation (default true), ibKubernetesEnabled."""
    nad = nad_render.render(_smc({"cniType": "ib-sriov", "ibsriov": {"resourceName": "mellanox/ib"}}))
    assert nad["spec"]["config"] == _conflist(
        '{"type":"ib-sriov","pkey":"","link_state":"enable","rdmaIsolation":true,"ibKubernetesEnabled":false,'
        '"ipam":{"type":"spiderpool"}}',
        COORD,
    )
    assert nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"] == "mellanox/ib"


def test_ipoib_names_its_master() -> None:
    """ipoib: type, master, ipam."""
    config = _config({"cniType": "ipoib", "ipoib": {"master": "ib0"}})
    assert config == _conflist('{"type":"ipoib","master":"ib0","ipam":{"type":"spiderpool"}}', COORD)


def test_ovs_with_a_device_id_gets_trunks_and_the_ovs_resource_annotation() -> None:
    """ovs: vlan, type, bridge, deviceID, ipam, trunk (in that order); deviceID adds the resource name."""
    nad = nad_render.render(
        _smc(
            {
                "cniType": "ovs",
                "ovs": {
                    "bridge": "br1",
                    "deviceID": "0000:00:01.0",
                    "trunk": [{"minID": 10, "maxID": 20}, {"id": 30}],
                },
            }
        )
    )
    assert nad["spec"]["config"] == _conflist(
        '{"vlan":0,"type":"ovs","bridge":"br1","deviceID":"0000:00:01.0","ipam":{"type":"spiderpool"},'
        '"trunk":[{"minID":10,"maxID":20},{"id":30}]}',
        COORD,
    )
    assert nad["metadata"]["annotations"] == {
        "k8s.v1.cni.cncf.io/resourceName": "ovs-cni.network.kubevirt.io/br1"
    }


def test_ovs_without_a_device_id_has_no_resource_annotation() -> None:
    """A plain ovs network names no device-plugin resource."""
    nad = nad_render.render(_smc({"cniType": "ovs", "ovs": {"bridge": "br1"}}))
    assert "annotations" not in nad["metadata"]
    assert '"deviceID"' not in nad["spec"]["config"]


def test_custom_config_is_written_byte_for_byte_and_an_empty_one_gives_no_config() -> None:
    """custom: customCNI unchanged (spacing, key order); none or empty: the NAD has an empty spec."""
    text = '{ "cniVersion": "1.0.0", "name": "x", "plugins": [ {"type": "bridge", "bridge": "br0"} ] }'
    assert _config({"cniType": "custom", "customCNI": text}) == text
    assert nad_render.render(_smc({"cniType": "custom"}))["spec"] == {}


# ---------------------------------------------------------------------------------------
# switches, coordinator fields, annotations


def test_disable_ipam_and_disabled_coordinator_leave_their_plugins_out() -> None:
    """disableIPAM drops the ipam key; enableCoordinator false drops the coordinator."""
    config = _config(
        {
            "cniType": "macvlan",
            "macvlan": {"master": ["eth1"]},
            "disableIPAM": True,
            "enableCoordinator": False,
        }
    )
    assert config == _conflist('{"type":"macvlan","master":"eth1","mode":"bridge","mtu":0}')


def test_every_coordinator_field_is_written_under_upstreams_cni_name() -> None:
    """spec.coordinator becomes the coordinator's CNI fields (podDefaultRouteNic as the plugin spells it)."""
    config = _config(
        {
            "cniType": "macvlan",
            "macvlan": {"master": ["eth1"]},
            "coordinator": {
                "mode": "underlay",
                "podDefaultRouteNIC": "net1",
                "hijackCIDR": ["10.0.0.0/8"],
                "policyRoutes": [{"dst": "172.16.0.0/16", "gw": "10.6.0.1"}],
                "podMACPrefix": "0a:1b",
                "vethLinkAddress": "169.254.100.1",
                "vethMTU": 1400,
                "txQueueLen": 1000,
                "podRPFilter": 2,
                "tunePodRoutes": False,
            },
        }
    )
    assert json.loads(config)["plugins"][1] == json.loads(
        '{"txQueueLen":1000,"vethLinkAddress":"169.254.100.1","vethMTU":1400,"tunePodRoutes":false,'
        '"podMACPrefix":"0a:1b","mode":"underlay","type":"coordinator","podDefaultRouteNic":"net1",'
        '"podRPFilter":2,"hijackCIDR":["10.0.0.0/8"],"policyRoutes":[{"dst":"172.16.0.0/16","gw":"10.6.0.1"}]}'
    )
    assert config.index('"txQueueLen"') < config.index('"vethLinkAddress"') < config.index('"policyRoutes"')


def test_annotations_name_the_nad_the_config_and_the_version_and_are_copied() -> None:
    """cr-name names the NAD, cniconfig-name the conflist, cni-version its version; the
    SpiderMultusConfig's annotations are copied except kubectl's last-applied-configuration."""
    annotations = {
        mc.ANNO_CR_NAME: "nad-x",
        mc.ANNO_CNICONFIG_NAME: "inner",
        mc.ANNO_CNI_VERSION: "1.0.0",
        "team": "net",
        nad_render.LAST_APPLIED_ANNOTATION: "{}",
    }
    nad = nad_render.render(_smc({"cniType": "ipoib", "ipoib": {"master": "ib0"}}, annotations))
    assert nad["metadata"]["name"] == "nad-x" and nad["metadata"]["namespace"] == "kube-system"
    assert nad["spec"]["config"].startswith('{"cniVersion":"1.0.0","name":"inner","plugins":[')
    assert nad["metadata"]["annotations"] == {
        k: v for k, v in annotations.items() if k != nad_render.LAST_APPLIED_ANNOTATION
    }


def test_the_nad_is_controlled_by_its_spidermultusconfig() -> None:
    """A controller ownerReference to the SpiderMultusConfig: garbage collection deletes the NAD with it."""
    nad = nad_render.render(_smc({"cniType": "ipoib", "ipoib": {"master": "ib0"}}))
    assert (nad["apiVersion"], nad["kind"]) == ("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition")
    assert nad["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderMultusConfig",
            "name": "net",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


# ---------------------------------------------------------------------------------------
# Go's JSON


def test_chained_plugins_are_reencoded_as_go_does_sorted_escaped_and_float64() -> None:
    """A chained plugin goes through Go's interface{}: keys sorted, <>& escaped, numbers as float64."""
    chain = (
        '{"type":"x","a":"<b&c>","n":1e21,"m":0.0000001,"k":1.0,"big":12345678901234567890,'
        '"s":"\\f\\b\\u2028é"}'
    )
    config = _config({"cniType": "macvlan", "macvlan": {"master": ["eth1"]}, "chainCNIJsonData": [chain]})
    second = config.split('"mode":"bridge","mtu":0,"ipam":{"type":"spiderpool"}},', 1)[1].split(
        ',{"txQueueLen"'
    )[0]
    assert second == (
        '{"a":"\\u003cb\\u0026c\\u003e","big":12345678901234567000,"k":1,"m":1e-7,"n":1e+21,'
        '"s":"\\u000c\\u0008\\u2028é","type":"x"}'
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (-0.0, "-0"), (1500.0, "1500"), (0.5, "0.5"), (1e20, "100000000000000000000"),
     (1e21, "1e+21"), (1.5e300, "1.5e+300"), (1e-6, "0.000001"), (1.25e-7, "1.25e-7"), (-2e-10, "-2e-10")],
)  # fmt: skip
def test_go_float_text_matches_strconv(value: float, text: str) -> None:
    """float64 in Go's encoding/json: plain between 1e-6 and 1e21, exponent form outside."""
    assert nad_render.go_json(nad_render.GoFloat(value)) == text


def test_a_chained_plugin_that_is_not_json_is_refused_by_path() -> None:
    """render names the chained entry it cannot decode (validation normally refuses it first)."""
    obj = _smc({"cniType": "macvlan", "macvlan": {"master": ["eth1"]}})
    obj["spec"]["chainCNIJsonData"] = ["{nope"]
    with pytest.raises(InvalidObject, match=r"spec\.chainCNIJsonData\[0\]: is not valid JSON"):
        nad_render.render(obj)


def test_a_missing_sub_configuration_is_refused() -> None:
    """cniType macvlan without spec.macvlan cannot be rendered."""
    obj = _smc({"cniType": "macvlan", "macvlan": {"master": ["eth1"]}})
    del obj["spec"]["macvlan"]
    with pytest.raises(InvalidObject, match=r"spec\.macvlan: required"):
        nad_render.render(obj)
