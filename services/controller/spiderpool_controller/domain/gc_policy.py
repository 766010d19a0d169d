"""Whether an allocation's pod still needs its address: the garbage collector's judgement.

Owns upstream's GC rules (spidernet-io/spiderpool pkg/gcmanager, docs/concepts/ipam-des.md)
as one pure function of an allocation record and what the API says about its pod:

- the pod is gone, or a pod of that name now has another UID (re-created): release, unless
  the record belongs to a StatefulSet member whose replica is still valid (the re-created
  pod's ADD re-binds it: upstream #2526);
- the pod finished (``Succeeded``/``Failed``, e.g. a Job's pod): release;
- the pod is terminating past its deadline (``deletionTimestamp``, which already includes
  the grace period) plus an additional delay: release, switchable separately for pods on
  Ready and on NotReady nodes (a lost node never runs the CNI DEL);
- a running pod with no ``status.podIPs``: release only when switched on (default off);
- otherwise keep.

The caller guarantees what this function cannot see: that the record is not newer than
the pod data it judges from (upstream #3778), and that a "gone" or "re-created" verdict
was confirmed by a direct read of the pod. Judging never looks at the pod name alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from spiderpool_controller.domain.models import AllocationRecord
from spiderpool_controller.domain.statefulset import statefulset_replica_valid

FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class GcSettings:
    enabled: bool = True  # upstream SPIDERPOOL_GC_IP_ENABLED
    terminating_on_ready_node: bool = True  # ..._STATELESS_TERMINATING_POD_ON_READY_NODE_ENABLED
    terminating_on_not_ready_node: bool = True  # ..._ON_NOT_READY_NODE_ENABLED
    running_with_empty_pod_ips: bool = False  # ..._ENABLE_STATELESS_RUNNING_POD_ON_EMPTY_POD_STATUS_IPS
    additional_grace_s: float = 0.0  # SPIDERPOOL_GC_ADDITIONAL_GRACE_DELAY


@dataclass(frozen=True)
class PodFacts:
    """What GC needs to know about the pod a record names (None when there is no such pod)."""

    uid: str
    phase: str = "Running"
    deletion_timestamp: datetime | None = None
    node: str = ""
    pod_ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatefulSetFacts:
    exists: bool
    replicas: int = 0


def statefulset_keeps(record: AllocationRecord, sts: StatefulSetFacts | None) -> bool:
    """A StatefulSet member keeps its address while its replica is valid."""
    if record.owner_kind != "StatefulSet" or sts is None:
        return False
    pod_name = record.pod.split("/", 1)[1] if "/" in record.pod else ""
    return statefulset_replica_valid(pod_name, record.owner_name, sts.replicas, exists=sts.exists)


def verdict(
    record: AllocationRecord,
    pod: PodFacts | None,
    *,
    now: datetime,
    node_ready: bool,
    sts: StatefulSetFacts | None,
    settings: GcSettings,
) -> str | None:
    """Why the record's address should be released, or None to keep it."""
    if not settings.enabled or not record.pod:
        return None  # without a pod reference (embedded attachments) the API cannot judge
    if pod is None or (record.pod_uid and pod.uid != record.pod_uid):
        if statefulset_keeps(record, sts):
            return None
        return "pod deleted" if pod is None else f"pod re-created with UID {pod.uid}"
    if pod.phase in FINISHED_PHASES:
        return f"pod {pod.phase.lower()}"
    if pod.deletion_timestamp is not None:
        if statefulset_keeps(record, sts):
            return None
        if not (settings.terminating_on_ready_node if node_ready else settings.terminating_on_not_ready_node):
            return None
        deadline = pod.deletion_timestamp + timedelta(seconds=settings.additional_grace_s)
        if now >= deadline:
            where = "a Ready" if node_ready else "a NotReady"
            return f"pod terminating past its grace period on {where} node"
        return None
    if settings.running_with_empty_pod_ips and pod.phase == "Running" and not pod.pod_ips:
        if statefulset_keeps(record, sts):
            return None
        return "running pod without status.podIPs"
    return None


def next_check(pod: PodFacts, settings: GcSettings) -> datetime | None:
    """When a terminating pod's record should be judged again (its deadline), else None."""
    if pod.deletion_timestamp is None:
        return None
    return pod.deletion_timestamp + timedelta(seconds=settings.additional_grace_s)
