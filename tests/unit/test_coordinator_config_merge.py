"""The coordinator's effective configuration: SpiderCoordinator < CNI config < pod annotation."""

from __future__ import annotations

import pytest
from spiderpool_cni import codes
from spiderpool_coordinator import config
from spiderpool_coordinator.errors import InvalidCoordinatorConfig

SCC = {
    "metadata": {"name": "default"},
    "spec": {
        "mode": "underlay",
        "podCIDRType": "cluster",
        "hijackCIDR": ["169.254.0.0/16"],
        "podDefaultRouteNIC": "net1",
        "hostRuleTable": 600,
        "vethMTU": 1400,
        "podMACPrefix": "0A-1B",
        "policyRoutes": [{"dst": "10.9.0.0/16", "gw": "10.6.0.1"}],
    },
    "status": {"phase": "Synced", "overlayPodCIDR": ["10.244.0.0/16"], "serviceCIDR": ["10.96.0.0/12"]},
}


def test_spider_coordinator_spec_and_status_form_the_base() -> None:
    """Spec fields and status CIDRs of the SpiderCoordinator become the configuration."""
    cfg = config.from_spider_coordinator(SCC)
    assert cfg.mode == "underlay"
    assert cfg.host_rule_table == 600
    assert cfg.veth_mtu == 1400
    assert cfg.pod_mac_prefix == "0a:1b"
    assert cfg.pod_default_route_nic == "net1"
    assert cfg.routes_via_host() == ("10.244.0.0/16", "10.96.0.0/12", "169.254.0.0/16")
    assert cfg.policy_routes == (config.PolicyRoute("10.9.0.0/16", "10.6.0.1"),)


def test_missing_coordinator_gives_upstream_defaults() -> None:
    """Without a SpiderCoordinator the defaults are mode auto, table 500, vethMTU 1500, tune routes."""
    cfg = config.from_spider_coordinator(None)
    assert (cfg.mode, cfg.host_rule_table, cfg.veth_mtu, cfg.tune_pod_routes) == ("auto", 500, 1500, True)


def test_cni_config_fields_override_the_coordinator() -> None:
    """Fields set in the CNI config win; unset or empty ones keep the SpiderCoordinator's values."""
    cfg = config.merge(
        config.from_spider_coordinator(SCC),
        {
            "type": "coordinator",
            "mode": "overlay",
            "vethMTU": 9000,
            "hijackCIDR": [],
            "podDefaultRouteNic": "eth0",
            "serviceCIDR": ["10.100.0.0/16"],
            "podRPFilter": -1,
        },
    )
    assert cfg.mode == "overlay"
    assert cfg.veth_mtu == 9000
    assert cfg.hijack_cidr == ("169.254.0.0/16",)
    assert cfg.pod_default_route_nic == "eth0"
    assert cfg.service_cidr == ("10.100.0.0/16",)
    assert cfg.pod_rp_filter == -1
    assert cfg.host_rule_table == 600


def test_pod_annotation_overrides_the_default_route_nic() -> None:
    """The pod annotation ipam.spidernet.io/default-route-nic beats both the CNI config and the object."""
    cfg = config.merge(
        config.from_spider_coordinator(SCC),
        {"podDefaultRouteNic": "eth0"},
        {config.DEFAULT_ROUTE_NIC_ANNOTATION: "net2"},
    )
    assert cfg.pod_default_route_nic == "net2"


def test_disable_spelling_of_upstream_plugin_means_disabled() -> None:
    """The plugin's "disable" and the CRD's "disabled" are the same mode."""
    assert config.merge(config.CoordinatorConfig(), {"mode": "disable"}).mode == "disabled"


@pytest.mark.parametrize(
    ("conf", "text"),
    [
        ({"mode": "tunnel"}, "mode"),
        ({"podMACPrefix": "01:00"}, "podMACPrefix"),
        ({"vethMTU": 0}, "vethMTU"),
        ({"overlayPodCIDR": ["10.244.0.0/99"]}, "overlayPodCIDR"),
        ({"serviceCIDR": "10.96.0.0/12"}, "serviceCIDR"),
        ({"policyRoutes": [{"dst": "fd00::/64", "gw": "10.0.0.1"}]}, "policyRoutes"),
        ({"txQueueLen": "1000"}, "txQueueLen"),
    ],
)
def test_invalid_cni_config_field_fails_with_invalid_config_code(conf: dict[str, object], text: str) -> None:
    """A bad coordinator field in the CNI config raises an error naming it, with CNI code 7."""
    with pytest.raises(InvalidCoordinatorConfig) as info:
        config.merge(config.CoordinatorConfig(), conf)
    assert text in str(info.value)
    assert info.value.cni_code == codes.INVALID_CONFIG
