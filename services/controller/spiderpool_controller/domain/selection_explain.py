"""Pool selection as a dry run: every candidate with the filter that kept or excluded it.

Owns what ``spiderpoolctl explain`` shows about selection. It runs ``pool_selection``'s own
rules (the winning acquisition rule, wildcard expansion, ``rejection``, the priority sort),
never a copy of them, but where ``select_candidates`` stops at the first family without a
pool, this goes on and records, per NIC and family, every expanded candidate in priority
order with its verdict: the reason ``rejection`` gives for an excluded pool, what matched
for a kept one. The kept pools of a family are exactly ``select_candidates``' list, in the
same order (a property test holds the two together).

Errors that stop an ADD before any pool is looked at (no rule applies, a malformed
annotation, a pool listed twice) are raised as ``select_candidates`` raises them; errors of
one family (a named pool that does not exist, no pool left after filtering, a required
family without names) are recorded on that family so the rest can still be shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from spiderpool_common.errors import NoPoolMatched, SpiderpoolError

from spiderpool_controller.domain.models import IPPool
from spiderpool_controller.domain.pool_selection import (
    FAMILIES,
    _expand,
    _priority,
    _Rule,
    _winning_rule,
    multus_resolver,
    rejection,
)
from spiderpool_controller.domain.request import AllocationRequest


@dataclass(frozen=True)
class PoolVerdict:
    pool: str
    kept: bool
    reason: str


@dataclass(frozen=True)
class FamilyPlan:
    version: int
    candidates: tuple[PoolVerdict, ...]
    error: str = ""
    error_reason: str = ""

    @property
    def kept(self) -> tuple[str, ...]:
        return tuple(c.pool for c in self.candidates if c.kept)


@dataclass(frozen=True)
class NicPlan:
    nic: str
    clean_gateway: bool
    families: tuple[FamilyPlan, ...]


@dataclass(frozen=True)
class SelectionPlan:
    source: str
    nics: tuple[NicPlan, ...]

    @property
    def errors(self) -> list[str]:
        return [f.error for n in self.nics for f in n.families if f.error]


def kept_reason(pool: IPPool, req: AllocationRequest, nic: str, multus_of: Callable[[str], str]) -> str:
    """What a pool that passed every filter matched (its affinities), in one phrase."""
    spec = pool.spec
    matched: list[str] = []
    if spec.node_name:
        matched.append(f"nodeName lists {req.node}")
    elif spec.node_affinity is not None:
        matched.append(f"nodeAffinity matches node {req.node or '(none)'}")
    if spec.namespace_name:
        matched.append(f"namespaceName lists {req.pod_namespace}")
    elif spec.namespace_affinity is not None:
        matched.append(f"namespaceAffinity matches namespace {req.pod_namespace or '(none)'}")
    if spec.pod_affinity is not None:
        matched.append("podAffinity matches the pod's labels")
    if spec.multus_name:
        matched.append(f"multusName lists {multus_of(nic)}")
    if not matched:
        return "no affinity: serves any pod"
    return "; ".join(matched)


def explain(
    req: AllocationRequest, pools: Mapping[str, IPPool], required_families: frozenset[int]
) -> SelectionPlan:
    """The candidates of every NIC and family this request would try, with verdicts."""
    if not required_families <= set(FAMILIES):
        raise ValueError(f"required IP families must be among {FAMILIES}, got {sorted(required_families)}")
    rule = _winning_rule(req, pools)
    multus_of = multus_resolver(req)
    nics: list[NicPlan] = []
    for item in rule.items:
        families: list[FamilyPlan] = []
        for version in FAMILIES:
            if required_families and version not in required_families:
                continue
            names = item.names.for_family(version)
            if not names:
                if required_families:
                    why = f"no IPv{version} pool for {item.nic} from {rule.source} (IPv{version} is required)"
                    families.append(FamilyPlan(version, (), why, NoPoolMatched.reason))
                continue
            families.append(_family(names, version, pools, rule, item.nic, req=req, multus_of=multus_of))
        if not families:
            why = f"no pool for {item.nic} from {rule.source}"
            families.append(FamilyPlan(0, (), why, NoPoolMatched.reason))
        nics.append(NicPlan(item.nic, item.clean_gateway, tuple(families)))
    return SelectionPlan(rule.source, tuple(nics))


def _family(
    names: tuple[str, ...],
    version: int,
    pools: Mapping[str, IPPool],
    rule: _Rule,
    nic: str,
    *,
    req: AllocationRequest,
    multus_of: Callable[[str], str],
) -> FamilyPlan:
    try:
        expanded = _expand(names, version, pools, rule, nic)
    except SpiderpoolError as exc:
        return FamilyPlan(version, (), exc.message, exc.reason)
    ordered = sorted(expanded, key=lambda n: _priority(pools[n]))
    verdicts: list[PoolVerdict] = []
    for name in ordered:
        why = rejection(pools[name], version, req, nic, multus_of)
        if why is None:
            verdicts.append(PoolVerdict(name, True, kept_reason(pools[name], req, nic, multus_of)))
        else:
            verdicts.append(PoolVerdict(name, False, why))
    if any(v.kept for v in verdicts):
        return FamilyPlan(version, tuple(verdicts))
    reasons = "; ".join(v.reason for v in verdicts)
    error = f"all IPv{version} IPPools [{' '.join(expanded)}] of {nic} filtered out: {reasons}"
    return FamilyPlan(version, tuple(verdicts), error, NoPoolMatched.reason)
