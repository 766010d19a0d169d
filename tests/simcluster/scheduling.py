"""The scheduler stand-in's decision: which node a pod may run on, round robin among the feasible ones.

Owns the pure placement rules the simulated cluster needs (kube-scheduler's filters that matter to an IPAM
with node-affine pools), so the wiring in `control_plane.py` only watches and binds:

- a node is a candidate when it is Ready (a lost node marked NotReady gets nothing new) and not
  `spec.unschedulable`;
- `spec.nodeSelector`: every key equals the node's label;
- `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`: the terms
  are ORed, each term's `matchExpressions` (on labels) and `matchFields` (only `metadata.name`, as upstream)
  ANDed; operators In, NotIn, Exists, DoesNotExist, Gt, Lt. An empty term list matches nothing, as upstream;
- `spec.nodeName` already set: not this scheduler's pod.

Among the feasible nodes the choice is round robin over the node names in sorted order, continuing from the
last pick, so a burst of pods spreads evenly over the nodes (what the benchmark needs; no scoring).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NodeInfo:
    name: str
    labels: Mapping[str, str]
    ready: bool = True
    unschedulable: bool = False


def node_info(node: Mapping[str, Any]) -> NodeInfo:
    meta = node.get("metadata") or {}
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return NodeInfo(
        name=str(meta.get("name", "")),
        labels=dict(meta.get("labels") or {}),
        ready=ready,
        unschedulable=bool((node.get("spec") or {}).get("unschedulable")),
    )


def _expression_matches(expr: Mapping[str, Any], values: Mapping[str, str]) -> bool:
    key, op = str(expr.get("key", "")), str(expr.get("operator", ""))
    wanted = [str(v) for v in expr.get("values") or []]
    present = key in values
    if op == "In":
        return present and values[key] in wanted
    if op == "NotIn":
        return not present or values[key] not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(wanted) == 1:
        try:
            have, limit = int(values[key]), int(wanted[0])
        except ValueError:
            return False
        return have > limit if op == "Gt" else have < limit
    return False


def _term_matches(term: Mapping[str, Any], node: NodeInfo) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term selects no node
    by_name = {"metadata.name": node.name}
    return all(_expression_matches(e, node.labels) for e in exprs) and all(
        _expression_matches(f, by_name) for f in fields
    )


def feasible(pod: Mapping[str, Any], node: NodeInfo) -> bool:
    """True when ``pod`` may be placed on ``node``."""
    if not node.ready or node.unschedulable:
        return False
    spec = pod.get("spec") or {}
    selector = spec.get("nodeSelector") or {}
    if any(node.labels.get(k) != v for k, v in selector.items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or None
    if required is None:
        return True
    return any(_term_matches(term, node) for term in required.get("nodeSelectorTerms") or [])


class RoundRobin:
    """Picks among feasible nodes: the fewest pods of the same workload first (kube-scheduler's default
    spreading of a ReplicaSet's or StatefulSet's pods), then name order continuing after the previous pick."""

    def __init__(self) -> None:
        self._last = ""

    def pick(
        self, pod: Mapping[str, Any], nodes: Sequence[NodeInfo], peers: Mapping[str, int] | None = None
    ) -> str | None:
        """``peers``: how many pods of the pod's workload each node runs already."""
        names = sorted(n.name for n in nodes if feasible(pod, n))
        if not names:
            return None
        fewest = min((peers or {}).get(n, 0) for n in names)
        names = [n for n in names if (peers or {}).get(n, 0) == fewest]
        after = [n for n in names if n > self._last]
        self._last = after[0] if after else names[0]
        return self._last
