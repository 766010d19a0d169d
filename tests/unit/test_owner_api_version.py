"""The owner's apiVersion travels from args.cni (or the owner chain) to the controller's request."""

from __future__ import annotations

import pytest
from spiderpool.controller.v1 import ipam_pb2
from spiderpool_agent.cni_call import OwnerRef, parse_owner
from spiderpool_agent.ipam_handlers import _owner
from spiderpool_cni import codes
from spiderpool_common.errors import CniError
from spiderpool_controller.grpcapi.ipam_servicer import to_domain


def test_args_cni_owner_takes_an_api_version() -> None:
    """args.cni.owner.apiVersion is read; without it the owner has none (the controller fills a
    builtin kind's)."""
    owner = {"kind": "CloneSet", "name": "c", "uid": "u", "apiVersion": "apps.kruise.io/v1alpha1"}
    assert parse_owner({"owner": owner}, "owner", "args.cni.") == OwnerRef(
        "CloneSet", "c", "u", 0, True, "apps.kruise.io/v1alpha1"
    )
    parsed = parse_owner({"owner": {"kind": "Deployment"}}, "owner", "args.cni.")
    assert parsed is not None
    assert parsed.api_version == ""


def test_a_non_string_api_version_is_code_7_naming_the_key() -> None:
    with pytest.raises(CniError) as err:
        parse_owner({"owner": {"kind": "CloneSet", "apiVersion": 1}}, "owner", "args.cni.")
    assert err.value.cni_code == codes.INVALID_CONFIG
    assert "args.cni.owner.apiVersion" in str(err.value)


def test_the_api_version_reaches_the_engines_request() -> None:
    """Agent OwnerRef -> proto Owner.api_version -> AllocationRequest.owner_api_version."""
    proto_owner = _owner(OwnerRef("CloneSet", "c", "u", 3, True, "apps.kruise.io/v1alpha1"))
    assert proto_owner is not None
    request = ipam_pb2.AllocateRequest(
        pod=ipam_pb2.PodRef(container_id="c1", uid="p"), ifname="eth0", owner=proto_owner
    )
    domain = to_domain(request)
    assert (domain.owner_api_version, domain.owner_kind, domain.owner_replicas) == (
        "apps.kruise.io/v1alpha1",
        "CloneSet",
        3,
    )
