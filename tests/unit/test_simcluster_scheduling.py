"""The scheduler stand-in: feasibility by readiness, nodeSelector and required node affinity; round robin."""

from __future__ import annotations

from typing import Any

import pytest

from tests.simcluster.scheduling import NodeInfo, RoundRobin, feasible, node_info

NODES = [
    NodeInfo("node1", {"rack": "a", "gpu": "2"}),
    NodeInfo("node2", {"rack": "b"}),
    NodeInfo("node3", {"rack": "b", "gpu": "8"}),
]


def pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": spec}


def affinity(*terms: dict[str, Any]) -> dict[str, Any]:
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
            }
        }
    }


def names(spec: dict[str, Any]) -> list[str]:
    return [n.name for n in NODES if feasible(pod(spec), n)]


def test_node_selector_needs_every_label() -> None:
    """nodeSelector keeps the nodes whose labels match every key."""
    assert names({"nodeSelector": {"rack": "b"}}) == ["node2", "node3"]
    assert names({"nodeSelector": {"rack": "b", "gpu": "8"}}) == ["node3"]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ({"key": "rack", "operator": "In", "values": ["a"]}, ["node1"]),
        ({"key": "rack", "operator": "NotIn", "values": ["a"]}, ["node2", "node3"]),
        ({"key": "gpu", "operator": "Exists"}, ["node1", "node3"]),
        ({"key": "gpu", "operator": "DoesNotExist"}, ["node2"]),
        ({"key": "gpu", "operator": "Gt", "values": ["4"]}, ["node3"]),
        ({"key": "gpu", "operator": "Lt", "values": ["4"]}, ["node1"]),
    ],
)
def test_required_node_affinity_operators(expr: dict[str, Any], expected: list[str]) -> None:
    """Each matchExpressions operator selects as kube-scheduler's does."""
    assert names(affinity({"matchExpressions": [expr]})) == expected


def test_terms_are_ored_and_match_fields_select_by_name() -> None:
    """Terms OR together; matchFields on metadata.name picks nodes by name; an empty term selects nothing."""
    by_name = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node2"]}]}
    rack_a = {"matchExpressions": [{"key": "rack", "operator": "In", "values": ["a"]}]}
    assert names(affinity(by_name, rack_a)) == ["node1", "node2"]
    assert names(affinity({})) == []


def test_not_ready_and_unschedulable_nodes_get_nothing() -> None:
    """A lost (NotReady) or cordoned node is never picked."""
    nodes = [
        NodeInfo("node1", {}, ready=False),
        NodeInfo("node2", {}, unschedulable=True),
        NodeInfo("node3", {}),
    ]
    assert RoundRobin().pick(pod({}), nodes) == "node3"
    assert RoundRobin().pick(pod({}), nodes[:2]) is None


def test_round_robin_spreads_pods_in_name_order() -> None:
    """Consecutive picks cycle through the feasible nodes."""
    rr = RoundRobin()
    assert [rr.pick(pod({}), NODES) for _ in range(4)] == ["node1", "node2", "node3", "node1"]
    assert rr.pick(pod({"nodeSelector": {"rack": "b"}}), NODES) == "node2"


def test_node_info_reads_labels_readiness_and_cordon() -> None:
    """A Node object's Ready condition, labels and spec.unschedulable."""
    node = {
        "metadata": {"name": "n", "labels": {"a": "b"}},
        "spec": {"unschedulable": True},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert node_info(node) == NodeInfo("n", {"a": "b"}, ready=True, unschedulable=True)
    assert not node_info({"metadata": {"name": "m"}}).ready


def test_pods_of_one_workload_go_to_the_nodes_running_fewest_of_them() -> None:
    """The node with the fewest pods of the same workload wins; ties fall back to round robin."""
    rr = RoundRobin()
    assert rr.pick(pod({}), NODES, {"node1": 2, "node2": 1, "node3": 1}) == "node2"
    assert rr.pick(pod({}), NODES, {"node1": 2, "node2": 1, "node3": 1}) == "node3"
    assert rr.pick(pod({"nodeSelector": {"rack": "a"}}), NODES, {"node1": 5}) == "node1"
