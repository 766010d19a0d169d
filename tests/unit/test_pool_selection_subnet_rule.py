"""The SpiderSubnet rule of pool selection: the auto pools passed in win, matched to the workload."""

from __future__ import annotations

import json
from typing import Any

import pytest
from spiderpool_common.errors import NoPoolMatched
from spiderpool_controller.domain import auto_pools
from spiderpool_controller.domain.annotations import POD_IPPOOL
from spiderpool_controller.domain.auto_pools import AppRef, AutoPoolChoice
from spiderpool_controller.domain.models import IPPool, IPPoolSpec, LabelSelector, ObjectMeta
from spiderpool_controller.domain.pool_selection import select_candidates
from spiderpool_controller.domain.request import AllocationRequest

APP = AppRef("apps/v1", "Deployment", "app", "web", "uid-web-12345")
ANY = frozenset[int]()


def auto_pool(name: str, app: AppRef = APP, version: int = 4) -> IPPool:
    labels = auto_pools.auto_pool_labels(
        app, subnet_name="s", cidr_label="c", nic="eth0", version=version, reclaim=True
    )
    affinity = LabelSelector.from_dict(auto_pools.auto_pool_affinity(app))
    subnet = "10.6.0.0/16" if version == 4 else "fd00::/64"
    return IPPool(ObjectMeta(name=name, labels=labels), IPPoolSpec(subnet, version, pod_affinity=affinity))


def plain(name: str, **spec: Any) -> IPPool:
    return IPPool(ObjectMeta(name=name), IPPoolSpec("10.9.0.0/16", 4, **spec))


def request(**fields: Any) -> AllocationRequest:
    base: dict[str, Any] = {
        "container_id": "c1",
        "ifname": "eth0",
        "pod_namespace": "app",
        "pod_name": "web-1",
        "pod_uid": "uid-pod",
        "owner_api_version": "apps/v1",
        "owner_kind": "Deployment",
        "owner_name": "web",
        "owner_uid": APP.uid,
        "pod_annotations": {POD_IPPOOL: json.dumps({"ipv4": ["other"]})},
        "default_ipv4_pools": ("other",),
    }
    base.update(fields)
    return AllocationRequest(**base)


def test_the_subnet_rule_beats_every_other_rule() -> None:
    """With auto pools passed in, the pod's ippool annotation and the CNI defaults are not used."""
    pools = {"auto4-web-eth0-12345": auto_pool("auto4-web-eth0-12345"), "other": plain("other")}
    choice = AutoPoolChoice("eth0", ("auto4-web-eth0-12345",), (), "ipam.spidernet.io/subnet")
    (nic,) = select_candidates(request(), pools, ANY, choice)
    assert (nic.nic, nic.ipv4, nic.ipv6) == ("eth0", ("auto4-web-eth0-12345",), ())
    assert "ipam.spidernet.io/subnet" in nic.source
    (without,) = select_candidates(request(), pools, ANY)
    assert without.ipv4 == ("other",)


def test_an_auto_pool_matches_the_pods_controller_not_its_labels() -> None:
    """The pod carries none of the app-* labels, yet its Deployment's pool serves it; the pod of
    another Deployment is refused, naming its controller."""
    pools = {"auto4-web-eth0-12345": auto_pool("auto4-web-eth0-12345")}
    choice = AutoPoolChoice("eth0", ("auto4-web-eth0-12345",), (), "ipam.spidernet.io/subnet")
    assert select_candidates(request(pod_labels={}), pools, ANY, choice)[0].ipv4 == ("auto4-web-eth0-12345",)
    with pytest.raises(NoPoolMatched, match="Deployment app/api does not own auto-created IPPool"):
        select_candidates(request(owner_name="api"), pools, ANY, choice)


def test_an_auto_pool_named_by_another_rule_is_still_matched_to_the_controller() -> None:
    """Naming a Deployment's auto pool in a pod's ippool annotation does not bypass its owner."""
    pools = {"auto4-web-eth0-12345": auto_pool("auto4-web-eth0-12345")}
    anno = {POD_IPPOOL: json.dumps({"ipv4": ["auto4-web-eth0-12345"]})}
    stranger = request(owner_kind="StatefulSet", owner_name="db", pod_annotations=anno)
    with pytest.raises(NoPoolMatched, match="StatefulSet app/db"):
        select_candidates(stranger, pools, ANY)
    assert select_candidates(request(pod_annotations=anno), pools, ANY)[0].ipv4 == ("auto4-web-eth0-12345",)


def test_a_required_family_the_subnet_annotation_does_not_name_is_an_error() -> None:
    """Dual stack required, only an IPv4 subnet named: the IPv6 side says it is missing."""
    pools = {"auto4-web-eth0-12345": auto_pool("auto4-web-eth0-12345")}
    choice = AutoPoolChoice("eth0", ("auto4-web-eth0-12345",), (), "ipam.spidernet.io/subnet")
    with pytest.raises(
        NoPoolMatched, match=r"no IPv6 pool for eth0 from pod annotation ipam.spidernet.io/subnet"
    ):
        select_candidates(request(), pools, frozenset({4, 6}), choice)


def test_a_dual_stack_workload_gets_both_auto_pools() -> None:
    pools = {"a4": auto_pool("a4"), "a6": auto_pool("a6", version=6)}
    choice = AutoPoolChoice("eth0", ("a4",), ("a6",), "ipam.spidernet.io/subnets")
    (nic,) = select_candidates(request(), pools, frozenset({4, 6}), choice)
    assert (nic.ipv4, nic.ipv6) == (("a4",), ("a6",))
