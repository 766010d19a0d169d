"""Pool selection as a dry run: every candidate with its verdict, the kept ones exactly what
selection returns, family errors recorded instead of raised."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spiderpool_common.errors import (
    InvalidAnnotation,
    InvalidRequest,
    NoPoolMatched,
    PoolNotFound,
    SpiderpoolError,
)
from spiderpool_controller.domain.annotations import POD_IPPOOLS
from spiderpool_controller.domain.models import IPPool, LabelSelector
from spiderpool_controller.domain.pool_selection import select_candidates
from spiderpool_controller.domain.request import AllocationRequest
from spiderpool_controller.domain.selection_explain import explain

from tests.unit.test_pool_selection import ANY, BOTH, pool, pools_of, request, scenarios


def test_every_candidate_is_listed_in_priority_order_with_its_verdict() -> None:
    """Excluded pools stay in the list with the filter's reason; kept ones say what they matched;
    the order is selection's (affinity-carrying pools first)."""
    pools = pools_of(
        pool("plain"),
        pool("by-node", node_name=["node1"]),
        pool("other-node", node_name=["node2"]),
        pool("by-labels", pod_affinity=LabelSelector({"app": "web"})),
        pool("off", disable=True),
    )
    req = request(
        default_ipv4_pools=("plain", "by-node", "other-node", "by-labels", "off"), pod_labels={"app": "web"}
    )
    plan = explain(req, pools, ANY)
    assert plan.source == "CNI config default_ipv4_ippool/default_ipv6_ippool"
    (nic,) = plan.nics
    (family,) = nic.families
    assert [(c.pool, c.kept) for c in family.candidates] == [
        ("by-labels", True),
        ("by-node", True),
        ("other-node", False),
        ("plain", True),
        ("off", False),
    ]
    reasons = {c.pool: c.reason for c in family.candidates}
    assert reasons["other-node"] == "node node1 is not in nodeName of IPPool other-node"
    assert reasons["off"] == "disabled IPPool off"
    assert reasons["by-node"] == "nodeName lists node1"
    assert reasons["by-labels"] == "podAffinity matches the pod's labels"
    assert reasons["plain"] == "no affinity: serves any pod"
    assert family.kept == tuple(select_candidates(req, pools, ANY)[0].ipv4)
    assert family.error == ""


def test_a_family_whose_pools_are_all_filtered_out_carries_selections_error() -> None:
    """The IPv6 family is shown with its excluded pool and the error selection would raise, while
    the IPv4 family is still explained."""
    pools = pools_of(pool("v4"), pool("v6", 6, node_name=["node2"]))
    req = request(default_ipv4_pools=("v4",), default_ipv6_pools=("v6",))
    plan = explain(req, pools, ANY)
    v4, v6 = plan.nics[0].families
    assert (v4.kept, v4.error) == (("v4",), "")
    assert v6.kept == ()
    with pytest.raises(NoPoolMatched) as raised:
        select_candidates(req, pools, ANY)
    assert v6.error == raised.value.message
    assert v6.error_reason == "NO_POOL_MATCHED"
    assert plan.errors == [v6.error]


def test_a_missing_pool_is_an_error_of_its_family() -> None:
    """A named pool that does not exist fails its family with selection's PoolNotFound message."""
    plan = explain(request(default_ipv4_pools=("ghost",)), pools_of(pool("v4")), ANY)
    (family,) = plan.nics[0].families
    assert family.error_reason == "POOL_NOT_FOUND"
    assert "IPPool ghost (IPv4 for eth0" in family.error


def test_a_required_family_without_names_is_reported() -> None:
    """With both families required and only IPv4 named, the IPv6 family says it is required."""
    plan = explain(request(default_ipv4_pools=("v4",)), pools_of(pool("v4")), BOTH)
    assert [f.version for f in plan.nics[0].families] == [4, 6]
    assert plan.nics[0].families[1].error == (
        "no IPv6 pool for eth0 from CNI config default_ipv4_ippool/default_ipv6_ippool (IPv6 is required)"
    )


def test_the_ippools_annotation_explains_every_nic() -> None:
    """The multi-NIC annotation yields one explanation per listed interface."""
    anno = {
        POD_IPPOOLS: json.dumps([{"interface": "eth0", "ipv4": ["a"]}, {"interface": "net1", "ipv4": ["b"]}])
    }
    plan = explain(request(pod_annotations=anno), pools_of(pool("a"), pool("b")), ANY)
    assert plan.source == f"pod annotation {POD_IPPOOLS}"
    assert [(n.nic, n.families[0].kept) for n in plan.nics] == [("eth0", ("a",)), ("net1", ("b",))]


def test_errors_before_any_pool_are_raised_as_selection_raises_them() -> None:
    """No rule at all, or a malformed annotation: the dry run fails as the ADD would."""
    with pytest.raises(NoPoolMatched):
        explain(request(), pools_of(pool("v4")), ANY)
    with pytest.raises(InvalidAnnotation):
        explain(request(pod_annotations={POD_IPPOOLS: "not json"}), pools_of(pool("v4")), ANY)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.sampled_from([ANY, frozenset({4}), BOTH]))
def test_the_dry_run_keeps_exactly_what_selection_returns(
    scenario: tuple[dict[str, IPPool], AllocationRequest], required: frozenset[int]
) -> None:
    """Selection succeeds exactly when the dry run shows no error, and then every family's kept pools
    are selection's list in its order; selection's whole-request errors are the dry run's too."""
    pools, req = scenario
    try:
        selected = select_candidates(req, pools, required)
    except (NoPoolMatched, PoolNotFound, InvalidAnnotation, InvalidRequest) as exc:
        try:
            plan = explain(req, pools, required)
        except SpiderpoolError as again:
            assert (type(again), again.message) == (type(exc), exc.message)
            return
        assert plan.errors, "selection failed but the dry run shows no error"
        assert any(f.error_reason == exc.reason for n in plan.nics for f in n.families if f.error)
        return
    plan = explain(req, pools, required)
    assert plan.errors == []
    assert [n.nic for n in plan.nics] == [c.nic for c in selected]
    for nic, cand in zip(plan.nics, selected, strict=True):
        assert {f.version: f.kept for f in nic.families} == {v: cand.for_family(v) for v in cand.families}
        for family in nic.families:
            assert len({c.pool for c in family.candidates}) == len(family.candidates)
