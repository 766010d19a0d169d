"""What the agent tells the controller about a pod besides its identity: the selection inputs.

Owns the seam between where pod facts come from and the IPAM verbs that send them. Pool
selection needs the pod's labels and annotations, its namespace's, the node's labels, the
pod's top owner (StatefulSet members keep their addresses) and the Multus network the
interface came from (a pool's ``multusName``). Without Kubernetes (the embedded mode) the
runtime passes the pod's facts in the network configuration's ``args.cni`` (parsed by
``cni_call``) and the node's labels are a setting of the agent (``--node-labels``); in a
cluster an API-backed source (``kube_pod_context``) fills the same fields, so the controller
never knows which mode it serves. The coordinator reads the pod's annotations through the
same source, and a source that is not ready yet (its caches still loading) says so, which
the agent's STATUS reports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from spiderpool_agent.cni_call import Invocation, OwnerRef
from spiderpool_agent.pod_annotations import check_pod_annotations


@dataclass(frozen=True)
class PodContext:
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    namespace_annotations: Mapping[str, str] = field(default_factory=dict)
    node_labels: Mapping[str, str] = field(default_factory=dict)
    owner: OwnerRef | None = None
    multus_name: str = ""


class PodContextSource(Protocol):
    async def for_add(self, inv: Invocation) -> PodContext:
        """Everything selection needs for an ADD; raises ``CniError`` for bad metadata."""
        ...

    async def owner_for_release(self, inv: Invocation) -> OwnerRef | None:
        """The pod's owner for a DEL (StatefulSet retention); never raises."""
        ...

    async def pod_annotations(self, inv: Invocation) -> Mapping[str, str]:
        """The pod's annotations for a coordinator ADD or CHECK; raises ``CniError`` like ``for_add``."""
        ...

    def unready_reason(self) -> str:
        """Why an ADD cannot be served from this source now, or "" when it can."""
        ...


class CniArgsContext:
    """The embedded mode's source: ``args.cni`` from the runtime, node labels from settings."""

    def __init__(self, node_labels: Mapping[str, str] | None = None) -> None:
        self._node_labels = dict(node_labels or {})

    async def for_add(self, inv: Invocation) -> PodContext:
        pod = inv.config.pod
        check_pod_annotations(pod.annotations)
        return PodContext(
            labels=pod.labels,
            annotations=pod.annotations,
            namespace_labels=pod.namespace_labels,
            namespace_annotations=pod.namespace_annotations,
            node_labels=self._node_labels,
            owner=pod.owner,
            multus_name=pod.multus_name,
        )

    async def owner_for_release(self, inv: Invocation) -> OwnerRef | None:
        return inv.config.pod.owner

    async def pod_annotations(self, inv: Invocation) -> Mapping[str, str]:
        return inv.config.pod.annotations

    def unready_reason(self) -> str:
        return ""


_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_problem(key: str, value: str) -> str:
    """Why ``key=value`` is not a valid Kubernetes label, or "" (apimachinery's rules)."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _PREFIX.match(prefix)):
        return f"label key {key!r}: the prefix must be a DNS subdomain"
    if not name or len(name) > 63 or not _NAME.match(name):
        return (
            f"label key {key!r}: the name must be 1-63 alphanumerics, '-', '_' or '.', "
            "alphanumeric at both ends"
        )
    if value and (len(value) > 63 or not _NAME.match(value)):
        return f"label {key}={value!r}: the value must be empty or 1-63 alphanumerics, '-', '_' or '.'"
    return ""


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` (the ``--node-labels`` form) into a dict; raises ValueError naming the bad item."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not KEY=VALUE")
        problem = label_problem(key.strip(), value.strip())
        if problem:
            raise ValueError(problem)
        out[key.strip()] = value.strip()
    return out
