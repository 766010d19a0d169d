"""Auto pools' names, labels and podAffinity, as upstream writes them, and who a pool serves."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spiderpool_common.errors import InvalidObject, InvalidRequest
from spiderpool_controller.domain import auto_pools, validation
from spiderpool_controller.domain.auto_pools import AppRef, app_ref
from spiderpool_controller.domain.models import LabelSelector

DEPLOY = AppRef("apps/v1", "Deployment", "default", "test-app-1", "6f1e2d3c-aaaa-bbbb-cccc-a5bd3e9f0011")
SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def test_the_name_is_auto_version_app_interface_and_five_uid_characters() -> None:
    """Upstream's docs example: Deployment test-app-1 on eth0 -> auto4-test-app-1-eth0-a5bd3."""
    assert auto_pools.auto_pool_name("test-app-1", 4, "eth0", DEPLOY.uid) == "auto4-test-app-1-eth0-a5bd3"
    assert auto_pools.auto_pool_name("test-app-2", 6, "net1", "x-44037") == "auto6-test-app-2-net1-44037"


def test_the_uid_part_is_at_most_five_characters_of_the_last_segment() -> None:
    """Upstream's unit cases: a-b-c-d -> d, a-b-c-defghi -> defgh; all lower-cased."""
    assert auto_pools.auto_pool_name("test-name", 4, "test-nic", "a-b-c-d") == "auto4-test-name-test-nic-d"
    assert (
        auto_pools.auto_pool_name("test-name", 4, "test-nic", "a-b-c-DEFGHI")
        == "auto4-test-name-test-nic-defgh"
    )


def test_names_and_interfaces_are_lower_cased() -> None:
    """An upper-case interface name (Linux allows it) is lower-cased as upstream does."""
    assert auto_pools.auto_pool_name("web", 4, "ETH0", "u-12345") == "auto4-web-eth0-12345"


@given(
    name=st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", fullmatch=True),
    nic=st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True),
    version=st.sampled_from([4, 6]),
)
def test_a_long_workload_name_is_cut_to_a_valid_name_of_at_most_253_characters(
    name: str, nic: str, version: int
) -> None:
    """Whatever the workload's name, the pool name is a valid subdomain within 253 characters
    (upstream's arithmetic allowed 254) that starts with the cut workload name."""
    if ".-" in name or "-." in name or ".." in name:
        return  # not a valid workload name either
    out = auto_pools.auto_pool_name(name, version, nic, "u-abcde")
    assert len(out) <= 253
    assert SUBDOMAIN.fullmatch(out), out
    assert out.endswith(f"-{nic}-abcde")
    kept = out.removeprefix(f"auto{version}-").removesuffix(f"-{nic}-abcde")
    assert name.startswith(kept)
    if len(name) + len(nic) + 13 <= 253:
        assert kept == name


def test_a_cut_never_leaves_a_dash_or_dot_before_the_interface() -> None:
    """Cutting "a...a-b" right after the dash drops the dash too."""
    name = "a" * 238 + "-" + "b" * 14
    out = auto_pools.auto_pool_name(name, 4, "eth0", "u-12345")
    assert len(out) <= 253
    assert "--eth0" not in out
    assert SUBDOMAIN.fullmatch(out)


def test_a_workload_without_uid_or_an_interface_unfit_for_a_name_is_refused() -> None:
    """The name needs the UID; an interface with '_' cannot be part of a DNS name."""
    with pytest.raises(InvalidRequest, match="no UID"):
        auto_pools.auto_pool_name("web", 4, "eth0", "")
    with pytest.raises(InvalidRequest, match="RFC 1123"):
        auto_pools.auto_pool_name("web", 4, "e_th0", "u-12345")


def test_the_labels_are_upstreams() -> None:
    """owner-spider-subnet, owner-application-{gv,kind,namespace,name,uid}, interface, ip-version,
    ippool-reclaim and ippool-cidr, with upstream's values."""
    labels = auto_pools.auto_pool_labels(
        DEPLOY, subnet_name="subnet-6", cidr_label="10-6-0-0-16", nic="eth0", version=4, reclaim=False
    )
    assert labels == {
        "ipam.spidernet.io/owner-spider-subnet": "subnet-6",
        "ipam.spidernet.io/owner-application-gv": "apps_v1",
        "ipam.spidernet.io/owner-application-kind": "Deployment",
        "ipam.spidernet.io/owner-application-namespace": "default",
        "ipam.spidernet.io/owner-application-name": "test-app-1",
        "ipam.spidernet.io/owner-application-uid": DEPLOY.uid,
        "ipam.spidernet.io/interface": "eth0",
        "ipam.spidernet.io/ip-version": "IPv4",
        "ipam.spidernet.io/ippool-reclaim": "false",
        "ipam.spidernet.io/ippool-cidr": "10-6-0-0-16",
    }


def test_a_workload_name_too_long_for_a_label_is_refused_with_the_reason() -> None:
    """A 64-character Deployment name cannot be the owner-application-name label value."""
    app = AppRef("apps/v1", "Deployment", "ns", "w" * 64, "u-1")
    with pytest.raises(InvalidRequest, match="owner-application-name"):
        auto_pools.auto_pool_labels(app, subnet_name="s", cidr_label="c", nic="eth0", version=4, reclaim=True)


def test_the_pod_affinity_holds_the_five_app_labels() -> None:
    """Upstream's docs example: group apps, version v1, kind, namespace, name."""
    assert auto_pools.auto_pool_affinity(DEPLOY) == {
        "matchLabels": {
            "ipam.spidernet.io/app-api-group": "apps",
            "ipam.spidernet.io/app-api-version": "v1",
            "ipam.spidernet.io/app-kind": "Deployment",
            "ipam.spidernet.io/app-name": "test-app-1",
            "ipam.spidernet.io/app-namespace": "default",
        }
    }
    core = AppRef("v1", "Thing", "ns", "t", "u")
    assert core.group == ""
    assert core.version == "v1"


def test_an_auto_pools_affinity_matches_its_workload_only() -> None:
    """The five labels must all equal the pod's top controller's: another name, kind, group or
    namespace does not match."""
    selector = LabelSelector.from_dict(auto_pools.auto_pool_affinity(DEPLOY))
    assert selector is not None
    assert auto_pools.affinity_matches_app(selector, DEPLOY)
    for other in (
        AppRef("apps/v1", "Deployment", "default", "test-app-2"),
        AppRef("apps/v1", "StatefulSet", "default", "test-app-1"),
        AppRef("apps/v1", "Deployment", "other", "test-app-1"),
        AppRef("apps.kruise.io/v1alpha1", "Deployment", "default", "test-app-1"),
    ):
        assert not auto_pools.affinity_matches_app(selector, other)


def test_builtin_kinds_get_their_api_version_and_others_are_third_party() -> None:
    """A builtin kind named without apiVersion gets apps/v1 or batch/v1; a CloneSet is third party."""
    assert app_ref("", "Deployment", "ns", "d").api_version == "apps/v1"
    assert app_ref("", "CronJob", "ns", "c").builtin
    assert not app_ref("apps.kruise.io/v1alpha1", "CloneSet", "ns", "c").builtin
    assert not app_ref("example.com/v1", "Deployment", "ns", "d").builtin


def test_the_gv_label_round_trips() -> None:
    """apps/v1 <-> apps_v1, v1 <-> v1; a value of three parts is not a GV."""
    for api_version in ("apps/v1", "v1", "apps.kruise.io/v1alpha1"):
        assert auto_pools.api_version_of_gv_label(auto_pools.gv_label(api_version)) == api_version
    assert auto_pools.api_version_of_gv_label("a_b_c") is None
    assert DEPLOY.key == "apps_v1_Deployment_default_test-app-1"


def test_the_owner_is_read_back_from_the_labels() -> None:
    """owner_of_pool inverts auto_pool_labels; a manual pool has no owner."""
    labels = auto_pools.auto_pool_labels(
        DEPLOY, subnet_name="s", cidr_label="c", nic="eth0", version=6, reclaim=True
    )
    assert auto_pools.owner_of_pool(labels) == DEPLOY
    assert auto_pools.owner_of_pool({"team": "a"}) is None
    assert auto_pools.is_auto_pool(labels)


def test_a_pool_serves_its_workloads_nic_and_family_and_a_kept_one_serves_a_new_workload() -> None:
    """Same kind/namespace/name/interface/family serves; a reclaimable pool of an earlier UID does
    not (it is being deleted), one kept with ippool-reclaim false does (upstream reuse)."""
    labels = auto_pools.auto_pool_labels(
        DEPLOY, subnet_name="s", cidr_label="c", nic="eth0", version=4, reclaim=True
    )
    assert auto_pools.serves(labels, DEPLOY, "eth0", 4)
    assert not auto_pools.serves(labels, DEPLOY, "net1", 4)
    assert not auto_pools.serves(labels, DEPLOY, "eth0", 6)
    successor = AppRef(DEPLOY.api_version, DEPLOY.kind, DEPLOY.namespace, DEPLOY.name, "new-uid")
    assert not auto_pools.serves(labels, successor, "eth0", 4)
    kept = {**labels, auto_pools.LABEL_RECLAIM: "false"}
    assert auto_pools.serves(kept, successor, "eth0", 4)


def test_affinity_shape_of_an_auto_pool() -> None:
    """Only the five app labels, no expressions (upstream's webhook rule for auto pools)."""
    assert auto_pools.affinity_problem(auto_pools.auto_pool_affinity(DEPLOY)) == ""
    assert "no matchExpressions" in auto_pools.affinity_problem(
        {"matchLabels": {}, "matchExpressions": [{"key": "a", "operator": "Exists"}]}
    )
    assert "not ['app']" in auto_pools.affinity_problem({"matchLabels": {"app": "x"}})
    assert auto_pools.affinity_problem(None) == ""  # upstream checks a podAffinity that is set


def test_the_webhook_rules_refuse_an_auto_pool_with_extra_affinity() -> None:
    """validate_create (the webhook's and apply's rules) refuses an auto pool whose podAffinity has
    another label or an expression, and takes the same selector on a manual pool."""
    labels = auto_pools.auto_pool_labels(
        DEPLOY, subnet_name="s", cidr_label="10-6-0-0-16", nic="eth0", version=4, reclaim=True
    )
    affinity = auto_pools.auto_pool_affinity(DEPLOY)
    affinity["matchLabels"]["app"] = "web"

    def pool(with_labels: dict[str, str]) -> dict[str, object]:
        return {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderIPPool",
            "metadata": {"name": "p", "labels": with_labels},
            "spec": {"ipVersion": 4, "subnet": "10.6.0.0/16", "ips": ["10.6.0.1"], "podAffinity": affinity},
        }

    with pytest.raises(InvalidObject, match=r"spec.podAffinity: .*only the ipam.spidernet.io/app-\* labels"):
        validation.validate_create(pool(labels))
    validation.validate_create(pool({"team": "a"}))
