"""SpiderReservedIP defaulting and validation: upstream's reservedip webhook rules, as users see them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from spiderpool_common.errors import InvalidObject
from spiderpool_controller.domain import models, validation
from spiderpool_controller.domain.validation import ValidationSettings

P = 'SpiderReservedIP "reserved-a": '  # every message names the object first


def reserved(name: str = "reserved-a", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"ips": ["10.6.0.40-10.6.0.41"]}
    base.update(spec)
    base = {k: v for k, v in base.items() if v is not None}
    return validation.default_object(models.new_object(models.KIND_RESERVED_IP, name, spec=base))


def create_error(obj: dict[str, Any], **settings: bool) -> str:
    with pytest.raises(InvalidObject) as info:
        validation.validate_create(obj, [], ValidationSettings(**settings))
    return info.value.message


def test_defaulting_derives_version_from_first_ip_and_merges() -> None:
    """ipVersion comes from ips[0]; ranges are merged; no finalizer and no label are added."""
    obj = reserved(ips=["fd00::5", "fd00::1-fd00::4"])
    assert obj["spec"] == {"ipVersion": 6, "ips": ["fd00::1-fd00::5"]}
    assert "finalizers" not in obj["metadata"] and "labels" not in obj["metadata"]


def test_valid_reserved_ip_passes() -> None:
    """A list of IPv4 ranges is accepted."""
    validation.validate_create(reserved())


def test_ips_are_required() -> None:
    """A SpiderReservedIP without IPs reserves nothing and is refused."""
    assert (
        create_error(reserved(ips=[]))
        == P + "spec.ips: required: a SpiderReservedIP must list at least one IP or range"
    )


def test_ips_must_match_the_version() -> None:
    """Every range is of the object's family."""
    assert (
        create_error(reserved(ips=["10.6.0.1", "fd00::1"]))
        == P + "spec.ips[1]: 'fd00::1' is not an IPv4 address"
    )
    assert create_error(reserved(ipVersion=6)) == P + "spec.ips[0]: '10.6.0.40' is not an IPv6 address"


def test_ips_must_be_valid_ranges() -> None:
    """Malformed ranges are named by index."""
    assert create_error(reserved(ips=["10.6.0.1-10.6.0.2-10.6.0.3"], ipVersion=4)) == (
        P + "spec.ips[0]: '10.6.0.1-10.6.0.2-10.6.0.3' is not an IP range: expected 'IP' or 'IP-IP'"
    )


def test_an_unparseable_first_ip_is_named_when_no_version_is_given() -> None:
    """Without spec.ipVersion a first entry that is no IP is reported as spec.ips[0], the field to fix."""
    assert create_error(reserved(ips=["banana"])) == (P + "spec.ips[0]: 'banana' is not a valid IP address")


def test_version_must_be_enabled_and_valid() -> None:
    """ipVersion is 4 or 6 and of an enabled family."""
    assert create_error(reserved(), enable_ipv4=False) == P + "spec.ipVersion: IPv4 is disabled"
    assert create_error(reserved(ipVersion=5)) == P + "spec.ipVersion: must be 4 or 6, got 5"


def test_unknown_fields_are_rejected() -> None:
    """A reserved IP has only ipVersion and ips; subnet is an unknown field."""
    assert create_error(reserved(subnet="10.6.0.0/16")) == P + "spec.subnet: unknown field"


def test_version_is_immutable() -> None:
    """ipVersion cannot change on update."""
    old = reserved()
    new = copy.deepcopy(old)
    new["spec"] = {"ipVersion": 6, "ips": ["fd00::1"]}
    with pytest.raises(InvalidObject) as info:
        validation.validate_update(old, new)
    assert info.value.message == P + "spec.ipVersion: is immutable (stored: 4, requested: 6)"


def test_ips_may_change_on_update() -> None:
    """The reserved ranges themselves may be edited."""
    validation.validate_update(reserved(), reserved(ips=["10.6.0.50"]))


def test_reserved_ips_union_by_family() -> None:
    """reserved_ips unites every SpiderReservedIP of one family and ignores the other."""
    objs = [
        reserved("a", ips=["10.6.0.1-10.6.0.2"]),
        reserved("b", ips=["10.6.0.3"]),
        reserved("c", ips=["fd00::1"]),
    ]
    assert validation.reserved_ips(objs, 4).to_ranges() == ["10.6.0.1-10.6.0.3"]
    assert validation.reserved_ips(objs, 6).to_ranges() == ["fd00::1"]
