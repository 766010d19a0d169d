"""Stranded addresses: allocations a pool's current ranges no longer contain.

Owns one rule in two places. On UPDATE of a SpiderIPPool, a change of ``spec.ips`` or
``spec.excludeIPs`` that would leave allocated addresses outside the pool is refused, and
the refusal lists every such address with its pod (upstream refuses too, but names only the
first one, so an operator fixes them one apply at a time). An operator who means it sets
the pool annotation ``ipam.spidernet.io/ippool-force-range-change: "true"``; the change then
goes through, the pods keep their addresses (nothing is released behind their back) and
``spiderpoolctl check`` reports them as stranded until they are gone.

Why an annotation rather than a ``spiderpoolctl apply --force`` flag: the cluster mode's
admission webhook judges the object alone (kubectl has no such flag for it to see), the
same manifest then behaves the same through kubectl, Helm and ``spiderpoolctl``, and the
decision is recorded on the object for the next reader. It stays in force while it is set:
remove it once the change is done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spiderpool_controller.domain.ipset import IPSet, ip_to_int
from spiderpool_controller.domain.models import AllocationRecord, IPPool

FORCE_ANNOTATION = "ipam.spidernet.io/ippool-force-range-change"
LISTED = 20  # addresses named in one message; the rest are counted


@dataclass(frozen=True)
class Stranded:
    """One allocated address its pool no longer contains."""

    pool: str
    ip: str
    record: AllocationRecord
    reason: str  # "excluded by spec.excludeIPs" or "outside spec.ips"

    @property
    def holder(self) -> str:
        """The pod, else (outside Kubernetes) the container, never a blank "Pod /"."""
        if self.record.pod.strip("/"):
            return f"Pod {self.record.pod}"
        if self.record.container_id:
            return f"container {self.record.container_id}"
        return f"allocation {self.record.identity or '(unknown owner)'}"


def forced(meta: Mapping[str, Any]) -> bool:
    """Whether an object's metadata carries the force annotation set to ``"true"``."""
    annotations = meta.get("annotations") or {}
    return isinstance(annotations, dict) and str(annotations.get(FORCE_ANNOTATION, "")).lower() == "true"


OUTSIDE = "outside spec.ips"
EXCLUDED = "excluded by spec.excludeIPs"


def stranded_reason(ips: IPSet, excluded: IPSet, value: int) -> str | None:
    """Why an address (as an integer) is stranded in a pool with these ranges, or None when
    the pool contains it (the rule the webhook refuses by and ``spiderpoolctl check`` reports)."""
    if not ips.contains_int(value):
        return OUTSIDE
    if excluded.contains_int(value):
        return EXCLUDED
    return None


def stranded(pool: IPPool, allocated: Mapping[str, AllocationRecord]) -> list[Stranded]:
    """The addresses of ``allocated`` outside ``pool``'s ``spec.ips`` minus ``spec.excludeIPs``,
    in address order."""
    version = pool.version
    ips = IPSet.parse(pool.spec.ips, version)
    excluded = IPSet.parse(pool.spec.exclude_ips, version)
    found: list[tuple[int, Stranded]] = []
    for text, record in allocated.items():
        try:
            value = ip_to_int(text, version)
        except ValueError:  # a record key not of the pool's family lies outside it too
            value = -1
        reason = OUTSIDE if value < 0 else stranded_reason(ips, excluded, value)
        if reason is not None:
            found.append((value, Stranded(pool.name, text, record, reason)))
    return [s for _, s in sorted(found, key=lambda pair: pair[0])]


def stranded_in(obj: dict[str, Any]) -> list[Stranded]:
    """A stored pool's own stranded addresses (its records against its current spec)."""
    pool = IPPool.from_dict(obj)
    return stranded(pool, pool.allocated)


def describe(found: list[Stranded]) -> str:
    """``10.0.0.15 (Pod default/web-0, outside spec.ips), ...``, at most ``LISTED`` named."""
    named = ", ".join(f"{s.ip} ({s.holder}, {s.reason})" for s in found[:LISTED])
    more = len(found) - LISTED
    return named + (f" and {more} more" if more > 0 else "")
