"""SpiderSubnet arithmetic: replicas per kind, free addresses, resizes, status, adoption, manifests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spiderpool_controller.domain import subnet_pools, validation
from spiderpool_controller.domain.auto_pools import AppRef
from spiderpool_controller.domain.ipset import IPSet
from spiderpool_controller.domain.subnet_pools import ControlledPool, Resize, plan_resize

V4 = 4
APP = AppRef("apps/v1", "Deployment", "default", "web", "0b1c-4e5f-a5bd3e")


def ips(*ranges: str) -> IPSet:
    return IPSet.parse(list(ranges), V4)


def subnet_obj(name: str = "subnet-6", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"ipVersion": 4, "subnet": "10.6.0.0/16", "ips": ["10.6.168.101-10.6.168.200"]}
    base.update(spec)
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderSubnet",
        "metadata": {"name": name, "uid": "subnet-uid-1"},
        "spec": base,
    }


# ---------------------------------------------------------------------------------------
# replicas and templates


@pytest.mark.parametrize(
    ("kind", "obj", "replicas"),
    [
        ("Deployment", {"spec": {"replicas": 3}}, 3),
        ("Deployment", {"spec": {}}, 1),
        ("ReplicaSet", {"spec": {"replicas": 0}}, 0),
        ("StatefulSet", {"spec": {"replicas": 5}}, 5),
        ("DaemonSet", {"spec": {}, "status": {"desiredNumberScheduled": 4}}, 4),
        ("DaemonSet", {"spec": {}}, 0),
        ("Job", {"spec": {}}, 1),
        ("Job", {"spec": {"parallelism": 3}}, 3),
        ("Job", {"spec": {"parallelism": 3, "completions": 5}}, 5),
        ("Job", {"spec": {"completions": 0}}, 1),
        ("Job", {"spec": {"parallelism": 0}}, 1),
        ("CronJob", {"spec": {"jobTemplate": {"spec": {"parallelism": 2}}}}, 2),
        ("CronJob", {"spec": {"jobTemplate": {"spec": {"completions": 4, "parallelism": 2}}}}, 4),
        ("CronJob", {"spec": {}}, 1),
    ],
)
def test_replicas_per_kind(kind: str, obj: dict[str, Any], replicas: int) -> None:
    """Deployment/RS/STS spec.replicas (1 when unset), DaemonSet desiredNumberScheduled, Jobs and
    CronJobs upstream's CalculateJobPodNum (completions, else parallelism, else 1; 0 is 1)."""
    assert subnet_pools.workload_replicas(kind, obj) == replicas


def test_the_pod_template_of_a_cronjob_is_inside_its_job_template() -> None:
    """Annotations and hostNetwork come from spec.template; a CronJob's from its job template's."""
    template = {"metadata": {"annotations": {"a": "b"}}, "spec": {"hostNetwork": True}}
    cron = {"spec": {"jobTemplate": {"spec": {"template": template}}}}
    assert subnet_pools.pod_template_annotations("CronJob", cron) == {"a": "b"}
    assert subnet_pools.host_network("CronJob", cron)
    deploy = {"spec": {"template": template}}
    assert subnet_pools.pod_template_annotations("Deployment", deploy) == {"a": "b"}
    assert subnet_pools.host_network("Deployment", deploy)
    assert subnet_pools.pod_template_annotations("Deployment", {"spec": {}}) == {}
    assert not subnet_pools.host_network("Deployment", {"spec": {}})


def test_a_deployments_replicaset_and_a_cronjobs_job_are_not_top_controllers() -> None:
    """Their owner's pools serve them; a ReplicaSet of another controller, or alone, is top."""

    def owned(api_version: str, kind: str) -> dict[str, Any]:
        ref = {"apiVersion": api_version, "kind": kind, "name": "o", "uid": "u", "controller": True}
        return {"metadata": {"ownerReferences": [ref]}}

    assert not subnet_pools.is_top_controller("ReplicaSet", owned("apps/v1", "Deployment"))
    assert not subnet_pools.is_top_controller("Job", owned("batch/v1", "CronJob"))
    assert subnet_pools.is_top_controller("ReplicaSet", owned("argoproj.io/v1alpha1", "Rollout"))
    assert subnet_pools.is_top_controller("ReplicaSet", {"metadata": {}})
    assert subnet_pools.is_top_controller("Deployment", owned("example.com/v1", "Thing"))


# ---------------------------------------------------------------------------------------
# free addresses and resizes


def test_free_is_the_subnet_minus_excluded_pools_and_reserved() -> None:
    """Subnet ips - excludeIPs - every pool of the CIDR's addresses - reserved IPs."""
    subnet = subnet_obj(ips=["10.6.0.1-10.6.0.20"], excludeIPs=["10.6.0.5"])
    usable = subnet_pools.usable(subnet, V4)
    assert usable == ips("10.6.0.1-10.6.0.4", "10.6.0.6-10.6.0.20")
    free = subnet_pools.subnet_free(usable, [ips("10.6.0.1-10.6.0.3"), ips("10.6.0.10")], ips("10.6.0.20"))
    assert free == ips("10.6.0.4", "10.6.0.6-10.6.0.9", "10.6.0.11-10.6.0.19")


def test_lowest_and_highest_take_across_ranges() -> None:
    """n lowest / highest members over several intervals; fewer when the set is smaller."""
    some = ips("10.0.0.1-10.0.0.2", "10.0.0.5", "10.0.0.8-10.0.0.9")
    assert subnet_pools.lowest(some, 3) == ips("10.0.0.1-10.0.0.2", "10.0.0.5")
    assert subnet_pools.highest(some, 3) == ips("10.0.0.5", "10.0.0.8-10.0.0.9")
    assert subnet_pools.lowest(some, 10) == some
    assert subnet_pools.highest(some, 0) == IPSet.empty(V4)


def test_growing_takes_the_lowest_free_addresses() -> None:
    """Upstream takes freeIPs[:n]: the pool of 3 growing to 5 gets the two lowest free ones."""
    plan = plan_resize(ips("10.6.0.1-10.6.0.3"), ips("10.6.0.1"), ips("10.6.0.7", "10.6.0.9-10.6.0.20"), 5)
    assert plan == Resize(ips("10.6.0.7", "10.6.0.9"), IPSet.empty(V4), 0)
    assert plan.apply(ips("10.6.0.1-10.6.0.3")) == ips("10.6.0.1-10.6.0.3", "10.6.0.7", "10.6.0.9")


def test_a_subnet_short_of_addresses_gives_what_it_has_and_reports_the_shortfall() -> None:
    """Growing by 5 with 2 free: the 2 are added, 3 short."""
    plan = plan_resize(IPSet.empty(V4), IPSet.empty(V4), ips("10.6.0.1-10.6.0.2"), 5)
    assert (plan.add, plan.short) == (ips("10.6.0.1-10.6.0.2"), 3)


def test_shrinking_removes_the_highest_unallocated_addresses_only() -> None:
    """6 addresses, 2 allocated (one of them the highest), down to 3: the three highest free go."""
    current = ips("10.6.0.1-10.6.0.6")
    plan = plan_resize(current, ips("10.6.0.2", "10.6.0.6"), IPSet.empty(V4), 3)
    assert plan == Resize(IPSet.empty(V4), ips("10.6.0.3-10.6.0.5"), 0)
    assert plan.apply(current) == ips("10.6.0.1-10.6.0.2", "10.6.0.6")


def test_a_shrink_blocked_by_allocations_goes_as_far_as_it_can() -> None:
    """5 addresses, 4 allocated, down to 2: one removable now, 2 more when pods release."""
    plan = plan_resize(ips("10.6.0.1-10.6.0.5"), ips("10.6.0.1-10.6.0.4"), IPSet.empty(V4), 2)
    assert (plan.remove, plan.short) == (ips("10.6.0.5"), 2)


def test_the_right_size_changes_nothing() -> None:
    plan = plan_resize(ips("10.6.0.1-10.6.0.3"), IPSet.empty(V4), ips("10.6.0.9"), 3)
    assert not plan.changes
    assert plan.short == 0


addr = st.integers(min_value=0, max_value=63)


@given(
    pool=st.sets(addr, max_size=30),
    allocated_share=st.sets(addr),
    other=st.sets(addr),
    desired=st.integers(min_value=0, max_value=70),
)
def test_a_resize_never_drops_an_allocation_nor_takes_a_held_address(
    pool: set[int], allocated_share: set[int], other: set[int], desired: int
) -> None:
    """Property: the new pool keeps every allocated address, takes only free ones, and is the
    desired size unless the subnet or the allocations stop it (then by exactly the shortfall)."""
    base = 0x0A060000
    current = IPSet.from_ints(V4, (base + a for a in pool))
    allocated = IPSet.from_ints(V4, (base + a for a in pool & allocated_share))
    subnet = IPSet.from_intervals(V4, [(base, base + 63)])
    held_elsewhere = IPSet.from_ints(V4, (base + a for a in other - pool))
    free = subnet_pools.subnet_free(subnet, [current, held_elsewhere], IPSet.empty(V4))
    plan = plan_resize(current, allocated, free, desired)
    after = plan.apply(current)
    assert allocated.issubset(after)
    assert plan.add.issubset(free)
    assert not plan.remove.overlaps(allocated)
    assert not after.overlaps(held_elsewhere)
    if desired >= current.count():
        assert after.count() == desired - plan.short
    else:
        assert after.count() == desired + plan.short
        assert after.count() >= allocated.count()


# ---------------------------------------------------------------------------------------
# manifests, adoption, status


def test_a_new_auto_pool_is_upstreams_shape_and_passes_validation() -> None:
    """Name, labels, ip-number annotation, finalizer, the subnet as controller, gateway and routes
    inherited, podAffinity of the app; the pool validates like a user's manifest."""
    subnet = subnet_obj(gateway="10.6.0.1", routes=[{"dst": "10.7.0.0/16", "gw": "10.6.0.1"}])
    pool = subnet_pools.auto_pool_manifest(
        subnet, APP, nic="eth0", reclaim=True, ip_number="+1", ips=ips("10.6.168.101-10.6.168.103")
    )
    meta = pool["metadata"]
    assert meta["name"] == "auto4-web-eth0-a5bd3"
    assert meta["labels"]["ipam.spidernet.io/owner-spider-subnet"] == "subnet-6"
    assert meta["labels"]["ipam.spidernet.io/ippool-cidr"] == "10-6-0-0-16"
    assert meta["annotations"] == {"ipam.spidernet.io/ippool-ip-number": "+1"}
    assert meta["finalizers"] == ["spiderpool.spidernet.io"]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderSubnet",
            "name": "subnet-6",
            "uid": "subnet-uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    spec = pool["spec"]
    assert spec["ips"] == ["10.6.168.101-10.6.168.103"]
    assert spec["gateway"] == "10.6.0.1"
    assert spec["routes"] == [{"dst": "10.7.0.0/16", "gw": "10.6.0.1"}]
    assert spec["podAffinity"]["matchLabels"]["ipam.spidernet.io/app-kind"] == "Deployment"
    validation.validate_create(validation.default_object(pool))


def test_the_subnet_adopts_an_orphan_pool_of_its_cidr() -> None:
    """Controller reference, owner label, the subnet's gateway and routes when the pool has none."""
    subnet = subnet_obj(gateway="10.6.0.1", routes=[{"dst": "10.7.0.0/16", "gw": "10.6.0.1"}])
    orphan = {"metadata": {"name": "manual", "labels": {"team": "a"}}, "spec": {"subnet": "10.6.0.0/16"}}
    adopted = subnet_pools.adoption(orphan, subnet)
    assert adopted is not None
    assert adopted["metadata"]["labels"] == {"team": "a", "ipam.spidernet.io/owner-spider-subnet": "subnet-6"}
    assert subnet_pools.controlled_by(adopted, subnet)
    assert adopted["spec"]["gateway"] == "10.6.0.1"
    assert adopted["spec"]["routes"] == [{"dst": "10.7.0.0/16", "gw": "10.6.0.1"}]
    assert subnet_pools.adoption(adopted, subnet) is None  # nothing left to change


def test_adoption_keeps_the_pools_own_gateway_and_an_explicitly_empty_route_list() -> None:
    """A pool's gateway wins; routes: [] stays empty (upstream inherits only when unset)."""
    subnet = subnet_obj(gateway="10.6.0.1", routes=[{"dst": "10.7.0.0/16", "gw": "10.6.0.1"}])
    pool = {
        "metadata": {"name": "p"},
        "spec": {"subnet": "10.6.0.0/16", "gateway": "10.6.0.254", "routes": []},
    }
    adopted = subnet_pools.adoption(pool, subnet)
    assert adopted is not None
    assert (adopted["spec"]["gateway"], adopted["spec"]["routes"]) == ("10.6.0.254", [])


def test_a_pool_another_controller_owns_is_not_adopted() -> None:
    """A controller reference to something else stays; nothing changes."""
    ref = {"apiVersion": "x/v1", "kind": "Other", "name": "o", "uid": "other", "controller": True}
    pool = {"metadata": {"name": "p", "ownerReferences": [ref]}, "spec": {"subnet": "10.6.0.0/16"}}
    assert subnet_pools.adoption(pool, subnet_obj()) is None


def test_the_subnet_status_lists_its_pools_and_counts_them() -> None:
    """controlledIPPools with the application of auto pools; allocatedIPCount the pools' addresses;
    totalIPCount the subnet's ips - excludeIPs."""
    subnet = subnet_obj(ips=["10.6.0.1-10.6.0.100"], excludeIPs=["10.6.0.100"])
    status = subnet_pools.subnet_status(
        subnet,
        [
            ControlledPool("manual", ips("10.6.0.50-10.6.0.59")),
            ControlledPool("auto4-web-eth0-a5bd3", ips("10.6.0.1-10.6.0.3"), APP.key),
        ],
    )
    assert status["totalIPCount"] == 99
    assert status["allocatedIPCount"] == 13
    assert json.loads(status["controlledIPPools"]) == {
        "auto4-web-eth0-a5bd3": {
            "ips": ["10.6.0.1-10.6.0.3"],
            "application": "apps_v1_Deployment_default_web",
        },
        "manual": {"ips": ["10.6.0.50-10.6.0.59"]},
    }


def test_a_subnet_without_pools_has_no_controlled_pools_field() -> None:
    status = subnet_pools.subnet_status(subnet_obj(ips=["10.6.0.1-10.6.0.4"]), [])
    assert status == {"totalIPCount": 4, "allocatedIPCount": 0}
