"""SpiderCoordinator model, webhook defaults and validation (upstream's pkg/coordinatormanager)."""

from __future__ import annotations

from typing import Any

import pytest
from spiderpool_common.errors import InvalidObject
from spiderpool_controller.domain import coordinator_spec as cs


def _obj(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "default"}, "spec": {"podCIDRType": "cluster", **spec}}


def test_round_trip_keeps_upstream_field_names() -> None:
    """A manifest with every spec field loads and writes back with the same keys and values."""
    spec = {
        "mode": "overlay",
        "podCIDRType": "calico",
        "hijackCIDR": ["169.254.0.0/16"],
        "policyRoutes": [{"dst": "10.9.0.0/16", "gw": "10.6.0.1"}],
        "podMACPrefix": "0a:1b",
        "tunePodRoutes": False,
        "podDefaultRouteNIC": "net1",
        "hostRuleTable": 600,
        "podRPFilter": 2,
        "txQueueLen": 1000,
        "vethLinkAddress": "169.254.100.1",
        "vethMTU": 9000,
    }
    obj = cs.SpiderCoordinator.from_dict(
        {
            "metadata": {"name": "default"},
            "spec": spec,
            "status": {"phase": "Synced", "serviceCIDR": ["10.96.0.0/12"]},
        }
    )
    assert obj.spec.to_dict() == spec
    assert obj.synced
    assert obj.status.to_dict()["serviceCIDR"] == ["10.96.0.0/12"]


def test_defaults_fill_unset_fields_like_the_upstream_webhook() -> None:
    """Unset fields get mode auto, tunePodRoutes true, table 500, rp_filter 0, txQueueLen 0, vethMTU 1500."""
    spec = cs.apply_defaults(_obj())["spec"]
    assert spec == {
        "podCIDRType": "cluster",
        "mode": "auto",
        "tunePodRoutes": True,
        "hostRuleTable": 500,
        "podRPFilter": 0,
        "txQueueLen": 0,
        "vethMTU": 1500,
        "hijackCIDR": [],
        "policyRoutes": [],
    }


def test_defaults_keep_values_the_user_set() -> None:
    """A set field is never overwritten by its default."""
    spec = cs.apply_defaults(_obj(vethMTU=9000, tunePodRoutes=False, mode="disable"))["spec"]
    assert (spec["vethMTU"], spec["tunePodRoutes"], spec["mode"]) == (9000, False, "disabled")


def test_defaults_normalise_hijack_cidrs_and_policy_route_destinations() -> None:
    """A bare IP in hijackCIDR becomes /32 or /128 and a policy route dst is made canonical."""
    spec = cs.apply_defaults(
        _obj(
            hijackCIDR=["169.254.25.10", "fd00::1", "10.1.2.3/8"],
            policyRoutes=[{"dst": "10.9.1.1/16", "gw": "10.6.0.1"}],
        )
    )["spec"]
    assert spec["hijackCIDR"] == ["169.254.25.10/32", "fd00::1/128", "10.0.0.0/8"]
    assert spec["policyRoutes"] == [{"dst": "10.9.0.0/16", "gw": "10.6.0.1"}]


def test_valid_defaulted_object_passes_validation() -> None:
    """A defaulted object with every field set sensibly is accepted."""
    cs.validate(cs.apply_defaults(_obj(podMACPrefix="0a:1b", vethLinkAddress="169.254.100.1")))


@pytest.mark.parametrize(
    ("spec", "field", "text"),
    [
        ({"podCIDRType": ""}, "podCIDRType", "not allowed to be empty"),
        ({"podCIDRType": "flannel"}, "podCIDRType", "flannel"),
        ({"mode": "sideways"}, "mode", "sideways"),
        ({"podMACPrefix": "0b:1b"}, "podMACPrefix", "multicast"),
        ({"podMACPrefix": "0a:1b:2c"}, "podMACPrefix", "2-byte"),
        ({"podRPFilter": 3}, "podRPFilter", "0, 1, 2"),
        ({"txQueueLen": -1}, "txQueueLen", ">= 0"),
        ({"vethMTU": 0}, "vethMTU", ">= 1"),
        ({"hostRuleTable": 254}, "hostRuleTable", "254"),
        ({"hijackCIDR": ["10.0.0.0/33"]}, "hijackCIDR", "10.0.0.0/33"),
        ({"policyRoutes": [{"dst": "10.0.0.0/8", "gw": "fd00::1"}]}, "policyRoutes", "another IP family"),
        ({"policyRoutes": [{"dst": "10.0.0.0/8", "gw": "nope"}]}, "policyRoutes", "nope"),
        ({"vethLinkAddress": "169.254.300.1"}, "vethLinkAddress", "169.254.300.1"),
        ({"tunePodRoutes": "yes"}, "tunePodRoutes", "boolean"),
    ],
)
def test_invalid_field_is_rejected_naming_the_field(spec: dict[str, Any], field: str, text: str) -> None:
    """Each webhook rule rejects its bad value with an InvalidObject naming spec.<field>."""
    with pytest.raises(InvalidObject) as info:
        cs.validate(_obj(**spec))
    assert f"spec.{field}" in str(info.value)
    assert text in str(info.value)


def test_negative_rp_filter_is_accepted_as_leave_alone() -> None:
    """Any negative podRPFilter is valid and means the pod's rp_filter is left unchanged."""
    cs.validate(_obj(podRPFilter=-5))
