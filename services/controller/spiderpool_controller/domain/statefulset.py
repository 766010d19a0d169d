"""When a StatefulSet member keeps its addresses (upstream's pkg/ipam/release.go and pkg/gcmanager;
issues #2526, #3778).

A pod ``<sts>-<ordinal>`` is a valid replica while its StatefulSet exists and the ordinal
is below ``.spec.replicas``; its IPs then survive pod deletion and re-creation. Pure logic.
"""

from __future__ import annotations


def statefulset_ordinal(pod_name: str, statefulset: str) -> int | None:
    prefix = f"{statefulset}-"
    if not statefulset or not pod_name.startswith(prefix):
        return None
    suffix = pod_name[len(prefix) :]
    if not suffix.isdigit() or (len(suffix) > 1 and suffix.startswith("0")):
        return None
    return int(suffix)


def statefulset_replica_valid(pod_name: str, statefulset: str, replicas: int, *, exists: bool) -> bool:
    """True while the member should keep its IPs (StatefulSet exists, ordinal < replicas)."""
    if not exists:
        return False
    ordinal = statefulset_ordinal(pod_name, statefulset)
    return ordinal is not None and ordinal < replicas
