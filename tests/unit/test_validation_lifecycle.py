"""Rules both front doors share beyond one object's fields: defaults on stored objects, deletion, subnets."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from spiderpool_common.errors import Conflict, InvalidObject
from spiderpool_controller.domain import models, validation
from spiderpool_controller.domain.validation import ValidationSettings

FINALIZER = "spiderpool.spidernet.io"


def pool(name: str = "pool-a", **spec: Any) -> dict[str, Any]:
    """A defaulted SpiderIPPool of 10.6.0.0/16."""
    base: dict[str, Any] = {"subnet": "10.6.0.0/16", "ips": ["10.6.0.10-10.6.0.20"], "gateway": "10.6.0.1"}
    base.update(spec)
    return validation.default_object(models.new_object(models.KIND_IPPOOL, name, spec=base))


def subnet(name: str = "subnet-a", **spec: Any) -> dict[str, Any]:
    """A defaulted SpiderSubnet of 10.6.0.0/16."""
    base: dict[str, Any] = {"subnet": "10.6.0.0/16", "ips": ["10.6.0.10-10.6.0.100"], "gateway": "10.6.0.1"}
    base.update(spec)
    return validation.default_object(models.new_object(models.KIND_SUBNET, name, spec=base))


def stored(obj: dict[str, Any], **status: Any) -> dict[str, Any]:
    """``obj`` as a store returns it: server metadata and a status."""
    out = copy.deepcopy(obj)
    out["metadata"].update(uid="u-1", resourceVersion="7", creationTimestamp="2026-01-01T00:00:00Z")
    out["status"] = status
    return out


def allocated(obj: dict[str, Any], records: dict[str, str]) -> dict[str, Any]:
    """A stored pool whose status holds ``records`` (IP -> pod)."""
    raw = {ip: {"pod": pod, "podUid": f"uid-{pod}"} for ip, pod in records.items()}
    return stored(obj, allocatedIPs=json.dumps(raw), allocatedIPCount=len(raw))


def terminating(obj: dict[str, Any], *finalizers: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z"
    out["metadata"]["finalizers"] = list(finalizers)
    return out


# --- defaults on objects as the API server sends them -------------------------------------


def test_webhook_defaults_keep_status_and_server_metadata() -> None:
    """apply_defaults defaults what default_object does and keeps uid, resourceVersion and status."""
    raw = models.new_object(
        models.KIND_IPPOOL, "p", spec={"subnet": "10.6.0.0/16", "ips": ["10.6.0.12", "10.6.0.10-10.6.0.11"]}
    )
    sent = stored(raw, allocatedIPCount=0)
    defaulted = validation.apply_defaults(sent)
    embedded = validation.default_object(sent)
    assert defaulted["status"] == {"allocatedIPCount": 0} and "status" not in embedded
    assert defaulted["metadata"]["resourceVersion"] == "7" and "resourceVersion" not in embedded["metadata"]
    assert defaulted["spec"] == embedded["spec"]
    assert defaulted["spec"]["ips"] == ["10.6.0.10-10.6.0.12"] and defaulted["spec"]["ipVersion"] == 4
    assert defaulted["metadata"]["labels"] == embedded["metadata"]["labels"]
    assert defaulted["metadata"]["finalizers"] == [FINALIZER]
    assert sent["spec"]["ips"] == ["10.6.0.12", "10.6.0.10-10.6.0.11"]  # the input is not changed


def test_defaults_leave_an_object_being_deleted_alone() -> None:
    """An object with a deletionTimestamp gets no finalizer back and no other default."""
    going = terminating(stored(models.new_object(models.KIND_IPPOOL, "p", spec={"subnet": "10.6.0.0/16"})))
    assert validation.apply_defaults(going) == going


def test_generate_name_is_accepted_metadata() -> None:
    """metadata.generateName, which kubectl create may send, is not an unknown field."""
    obj = pool()
    obj["metadata"]["generateName"] = "pool-"
    validation.validate_create(obj)


# --- updates of objects being deleted -----------------------------------------------------


def test_a_pool_being_deleted_cannot_change() -> None:
    """While our finalizer holds a terminating pool, spec changes are refused as upstream does."""
    old = terminating(allocated(pool(), {"10.6.0.10": "ns/a"}), FINALIZER)
    new = copy.deepcopy(old)
    new["spec"]["ips"] = ["10.6.0.10-10.6.0.30"]
    with pytest.raises(Conflict) as info:
        validation.validate_update(old, new)
    assert info.value.message == (
        'SpiderIPPool "pool-a" is being deleted: it cannot change until it is gone '
        "(only the removal of the finalizer spiderpool.spidernet.io is allowed)"
    )


def test_dropping_the_finalizer_of_an_object_being_deleted_is_not_checked() -> None:
    """Removing our finalizer completes a deletion; the rules do not stand in its way."""
    old = terminating(allocated(pool(), {"10.6.0.10": "ns/a"}), FINALIZER)
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    new["spec"]["ips"] = []  # even a change that would drop an allocated IP
    validation.validate_update(old, new)


# --- deletion -----------------------------------------------------------------------------


def test_deleting_a_pool_in_use_is_refused_only_when_enabled() -> None:
    """With validate_deletes a pool holding IPs cannot be deleted; by default the finalizer waits instead."""
    in_use = allocated(pool(), {"10.6.0.10": "ns/a", "10.6.0.11": "ns/b"})
    validation.validate_delete(in_use)
    with pytest.raises(Conflict) as info:
        validation.validate_delete(in_use, ValidationSettings(validate_deletes=True))
    assert info.value.message == (
        'SpiderIPPool "pool-a": cannot delete an IPPool with allocated IPs(2); '
        "release them first (deleting their pods frees them)"
    )
    validation.validate_delete(stored(pool(), allocatedIPCount=0), ValidationSettings(validate_deletes=True))


def test_deleting_a_subnet_with_allocated_ips_is_refused_when_enabled() -> None:
    """A subnet's allocatedIPCount (IPs handed to pools) blocks its deletion when enabled."""
    with pytest.raises(
        Conflict, match=r'SpiderSubnet "subnet-a": cannot delete a Subnet with allocated IPs\(5\)'
    ):
        validation.validate_delete(
            stored(subnet(), allocatedIPCount=5), ValidationSettings(validate_deletes=True)
        )
    reserved = models.new_object(models.KIND_RESERVED_IP, "r", spec={"ips": ["10.6.0.10"]})
    validation.validate_delete(reserved, ValidationSettings(validate_deletes=True))


# --- a pool and the SpiderSubnet of its CIDR ------------------------------------------------


def test_peer_kinds_name_pools_and_subnets_for_both() -> None:
    """Pools and subnets are checked against both kinds; other kinds need no peers."""
    assert validation.peer_kinds(models.KIND_IPPOOL) == (models.KIND_IPPOOL, models.KIND_SUBNET)
    assert validation.peer_kinds(models.KIND_SUBNET) == (models.KIND_IPPOOL, models.KIND_SUBNET)
    assert validation.peer_kinds(models.KIND_COORDINATOR) == ()


def test_a_pool_must_lie_inside_the_subnet_of_its_cidr() -> None:
    """A pool's IPs outside the SpiderSubnet with the same spec.subnet are refused, naming them."""
    owner = subnet()
    validation.validate_create(pool(ips=["10.6.0.10-10.6.0.20"]), [owner])
    with pytest.raises(InvalidObject) as info:
        validation.validate_create(pool(ips=["10.6.0.90-10.6.0.120"], excludeIPs=["10.6.0.120"]), [owner])
    assert info.value.message == (
        'SpiderIPPool "pool-a": spec.ips: 10.6.0.101-10.6.0.119 are not inside SpiderSubnet "subnet-a" '
        "of the same subnet (its spec.ips minus spec.excludeIPs); a pool's IPs are spec.ips minus "
        "spec.excludeIPs"
    )
    assert info.value.details == "spec.ips"


def test_without_the_subnet_feature_or_with_another_cidr_a_pool_is_free() -> None:
    """The rule follows enable_spider_subnet, and only the subnet of the same CIDR owns a pool."""
    outside = pool(ips=["10.6.0.200"])
    validation.validate_create(outside, [subnet()], ValidationSettings(enable_spider_subnet=False))
    narrow = pool(subnet="10.6.0.0/24", ips=["10.6.0.200"], gateway=None)
    validation.validate_create(narrow, [subnet()])


def test_a_new_subnet_must_contain_the_pools_of_its_cidr() -> None:
    """A subnet created after pools of its CIDR must contain their IPs (it adopts them)."""
    orphan = pool("orphan", ips=["10.6.0.95-10.6.0.105"])
    with pytest.raises(InvalidObject) as info:
        validation.validate_create(subnet(), [orphan])
    assert info.value.message == (
        'SpiderSubnet "subnet-a": spec.ips: SpiderIPPool "orphan" of this subnet holds '
        "10.6.0.101-10.6.0.105, which spec.ips minus spec.excludeIPs does not contain"
    )
    validation.validate_create(subnet(ips=["10.6.0.10-10.6.0.200"]), [orphan])


def test_a_subnet_update_cannot_drop_ips_of_its_pools() -> None:
    """Shrinking a subnet below what its pools hold is refused, naming the pool."""
    old = stored(subnet())
    member = pool("member", ips=["10.6.0.50-10.6.0.60"])
    shrunk = copy.deepcopy(old)
    shrunk["spec"]["excludeIPs"] = ["10.6.0.55"]
    with pytest.raises(InvalidObject) as info:
        validation.validate_update(old, shrunk, [member, old])
    assert info.value.message == (
        'SpiderSubnet "subnet-a": spec.ips: cannot remove 10.6.0.55: '
        'SpiderIPPool "member" of this subnet holds them'
    )
