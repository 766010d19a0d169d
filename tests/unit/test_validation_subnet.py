"""SpiderSubnet defaulting and validation: upstream's subnet webhook rules, with the exact text users see."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from spiderpool_common.errors import InvalidObject
from spiderpool_controller.domain import models, validation
from spiderpool_controller.domain.validation import ValidationSettings

P = 'SpiderSubnet "subnet-a": '  # every message names the object first


def subnet(name: str = "subnet-a", **spec: Any) -> dict[str, Any]:
    """A defaulted SpiderSubnet manifest; ``spec`` keywords override the base spec."""
    base: dict[str, Any] = {"subnet": "10.6.0.0/16", "ips": ["10.6.0.10-10.6.0.200"], "gateway": "10.6.0.1"}
    base.update(spec)
    base = {k: v for k, v in base.items() if v is not None}
    return validation.default_object(models.new_object(models.KIND_SUBNET, name, spec=base))


def create_error(obj: dict[str, Any], peers: list[dict[str, Any]] | None = None, **settings: bool) -> str:
    with pytest.raises(InvalidObject) as info:
        validation.validate_create(obj, peers or [], ValidationSettings(**settings))
    return info.value.message


def update_error(old: dict[str, Any], new: dict[str, Any], peers: list[dict[str, Any]] | None = None) -> str:
    with pytest.raises(InvalidObject) as info:
        validation.validate_update(old, new, peers or [])
    return info.value.message


def test_defaulting_sets_version_subnet_cidr_label_and_finalizer() -> None:
    """The subnet mutating webhook: ipVersion, the subnet-cidr label, the finalizer, merged ranges."""
    obj = subnet(ips=["10.6.0.20-10.6.0.30", "10.6.0.10-10.6.0.19"])
    assert obj["spec"]["ipVersion"] == 4
    assert obj["metadata"]["labels"] == {"ipam.spidernet.io/subnet-cidr": "10-6-0-0-16"}
    assert obj["metadata"]["finalizers"] == ["spiderpool.spidernet.io"]
    assert obj["spec"]["ips"] == ["10.6.0.10-10.6.0.30"]
    assert "default" not in obj["spec"]  # pool-only fields are not invented for subnets


def test_valid_subnet_passes() -> None:
    """A subnet with ranges, excludes, gateway and a route is accepted."""
    validation.validate_create(
        subnet(excludeIPs=["10.6.0.100"], routes=[{"dst": "10.7.0.0/16", "gw": "10.6.0.254"}])
    )


def test_pool_only_fields_are_unknown_on_a_subnet() -> None:
    """podAffinity belongs to pools; on a subnet it is an unknown field."""
    assert (
        create_error(subnet(podAffinity={"matchLabels": {"a": "b"}})) == P + "spec.podAffinity: unknown field"
    )


def test_subnet_must_be_canonical() -> None:
    """The network address is required, as for pools."""
    assert create_error(subnet(subnet="10.6.0.1/16")) == (
        P + "spec.subnet: 10.6.0.1/16 is not in canonical form; use 10.6.0.0/16 (the network address)"
    )


def test_disabled_family_is_rejected() -> None:
    """A subnet of a disabled family is refused."""
    v6 = subnet(subnet="fd00::/64", ips=["fd00::10"], gateway="fd00::1")
    assert create_error(v6, enable_ipv6=False) == P + "spec.ipVersion: IPv6 is disabled"


def test_ips_and_gateway_rules_apply() -> None:
    """ips inside the subnet; gateway inside the subnet and not among ips unless excluded."""
    assert (
        create_error(subnet(ips=["10.7.0.1"]))
        == P + "spec.ips[0]: 10.7.0.1 is not inside spec.subnet 10.6.0.0/16"
    )
    assert create_error(subnet(ips=["10.6.0.1-10.6.0.9"])) == (
        P + "spec.gateway: 10.6.0.1 is inside spec.ips[0] 10.6.0.1-10.6.0.9; "
        "add it to spec.excludeIPs or remove it from spec.ips"
    )
    validation.validate_create(subnet(ips=["10.6.0.1-10.6.0.9"], excludeIPs=["10.6.0.1"]))


def test_route_rules_apply() -> None:
    """Routes: no default route, gw inside the subnet."""
    assert create_error(subnet(routes=[{"dst": "0.0.0.0/0", "gw": "10.6.0.1"}])) == (
        P + "spec.routes[0].dst: 0.0.0.0/0 is the default route; use spec.gateway for it"
    )
    assert create_error(subnet(routes=[{"dst": "10.7.0.0/16", "gw": "10.8.0.1"}])) == (
        P + "spec.routes[0].gw: 10.8.0.1 is not inside spec.subnet 10.6.0.0/16"
    )


def test_overlapping_subnets_are_rejected() -> None:
    """SpiderSubnets of one family never overlap."""
    other = subnet("subnet-b", subnet="10.6.128.0/17", ips=[], gateway=None)
    assert create_error(subnet(), [other]) == (
        P + 'spec.subnet: 10.6.0.0/16 overlaps spec.subnet 10.6.128.0/17 of SpiderSubnet "subnet-b"'
    )


def test_identical_subnets_are_rejected() -> None:
    """Unlike pools, two SpiderSubnets may not claim the same CIDR (the subnet-cidr label must be unique)."""
    other = subnet("subnet-b", ips=["10.6.1.0-10.6.1.9"])
    assert (
        create_error(subnet(), [other])
        == P + 'spec.subnet: 10.6.0.0/16 is already the subnet of SpiderSubnet "subnet-b"'
    )


def test_pools_are_not_peers_of_subnets() -> None:
    """A pool inside a subnet's CIDR is no overlap between subnets."""
    pool = validation.default_object(
        models.new_object(models.KIND_IPPOOL, "pool", spec={"subnet": "10.6.0.0/24", "ips": ["10.6.0.10"]})
    )
    validation.validate_create(subnet(), [pool])


def test_subnet_and_version_are_immutable() -> None:
    """spec.subnet and spec.ipVersion cannot change on update."""
    old = subnet()
    assert update_error(old, subnet(subnet="10.8.0.0/16", ips=[], gateway=None)) == (
        P + "spec.subnet: is immutable (stored: 10.6.0.0/16, requested: 10.8.0.0/16); "
        "create a new object for another subnet"
    )
    new = copy.deepcopy(old)
    new["spec"]["ipVersion"] = 6
    assert update_error(old, new) == P + "spec.ipVersion: is immutable (stored: 4, requested: 6)"


def test_update_of_ranges_is_allowed_and_revalidated() -> None:
    """Ranges may change on update, under the create rules."""
    old = subnet()
    validation.validate_update(old, subnet(ips=["10.6.0.10-10.6.0.250"]), [old])
    assert update_error(old, subnet(ips=["10.6.0.10-10.7.0.250"]), [old]) == (
        P + "spec.ips[0]: 10.6.0.10-10.7.0.250 is not inside spec.subnet 10.6.0.0/16"
    )


def test_total_ip_count_of_a_subnet() -> None:
    """A subnet's totalIPCount is |ips - excludeIPs| (reserved IPs are a pool matter)."""
    assert validation.total_ip_count(subnet(ips=["10.6.0.10-10.6.0.19"], excludeIPs=["10.6.0.10"])) == 9
