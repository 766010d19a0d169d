"""Which pools an allocation request may use, per NIC and family, in the order to try them.

Owns upstream's candidate pool rules (upstream's pkg/ipam/pool_selections.go) as one pure function of
the request and the pools, so the allocation engine only walks the lists it gets back:

1. acquisition, strict priority, the first rule that yields names wins, no merging: the
   pod's SpiderSubnet annotations ``subnets``/``subnet`` (their auto pools, resolved and
   created by the allocation path before selection and passed in as ``AutoPoolChoice``)
   > pod ``ippools`` annotation (every listed NIC at once) > pod ``ippool`` > namespace
   default pools > CNI config default pools > cluster default pools (``spec.default``);
2. wildcard names (``*``, ``?``, ``[...]``) expand against the pools of the family, in name
   order; a plain name that does not exist is an error, not a silent skip;
3. filtering: terminating, disabled, wrong family, nodeName/nodeAffinity,
   namespaceName/namespaceAffinity, podAffinity (an auto pool's against the pod's top
   controller, upstream ``IsMatchAutoPoolAffinity``), multusName; when every pool of a
   family of a NIC is dropped the error says why for each;
4. sorting: pools that carry podAffinity, then nodeName, nodeAffinity, namespaceName,
   namespaceAffinity, multusName come first (lexicographic by presence); ties keep list
   order (a stable sort, where upstream's order among ties is unspecified).

Families: a non-empty ``required_families`` (the cluster's enableIPv4/enableIPv6) is the
exact set every NIC must get; an empty one (the embedded default) takes each family that
has names, so an IPv4-only network needs no IPv6 pool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from spiderpool_common.errors import (
    InvalidAnnotation,
    InvalidRequest,
    NoPoolMatched,
    PoolNotFound,
    SpiderpoolError,
)

from spiderpool_controller.domain import annotations as anno
from spiderpool_controller.domain import auto_pools
from spiderpool_controller.domain.annotations import PoolNames
from spiderpool_controller.domain.auto_pools import AutoPoolChoice
from spiderpool_controller.domain.models import IPPool
from spiderpool_controller.domain.request import MAX_NAME, AllocationRequest

FAMILIES = (4, 6)
_WILDCARD_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class NicCandidates:
    """The pools to try for one NIC, per family, already filtered and sorted."""

    nic: str
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    clean_gateway: bool
    source: str = ""  # the rule that chose these pools, for logs and error messages

    def for_family(self, version: int) -> tuple[str, ...]:
        return self.ipv4 if version == 4 else self.ipv6

    @property
    def families(self) -> tuple[int, ...]:
        """The families this NIC gets an address of."""
        return tuple(v for v in FAMILIES if self.for_family(v))


@dataclass(frozen=True)
class _Item:
    nic: str
    names: PoolNames
    clean_gateway: bool


@dataclass(frozen=True)
class _Rule:
    """What the winning acquisition rule yielded."""

    source: str
    items: tuple[_Item, ...]
    duplicate_error: type[SpiderpoolError]  # how a repeated name in this source is reported


def select_candidates(
    req: AllocationRequest,
    pools: Mapping[str, IPPool],
    required_families: frozenset[int],
    auto: AutoPoolChoice | None = None,
) -> list[NicCandidates]:
    """The candidate pools of every NIC this request allocates, in the order to try them.

    ``auto`` is the subnet rule's outcome (the pod's auto pools for its NIC), given when
    the pod carries a SpiderSubnet annotation.

    Raises ``PoolNotFound`` for a named pool that does not exist, ``NoPoolMatched`` when no
    rule applies, a required family has no names, or filtering leaves a family of a NIC
    empty, and ``InvalidAnnotation`` (``InvalidRequest`` for the CNI config) for malformed
    annotations or a pool listed twice.
    """
    if not required_families <= set(FAMILIES):
        raise ValueError(f"required IP families must be among {FAMILIES}, got {sorted(required_families)}")
    rule = _winning_rule(req, pools) if auto is None else _subnet_rule(req, auto)
    multus_of = multus_resolver(req)
    out: list[NicCandidates] = []
    for item in rule.items:
        chosen: dict[int, tuple[str, ...]] = {}
        for version in FAMILIES:
            names = item.names.for_family(version)
            if required_families and version not in required_families:
                continue
            if not names:
                if required_families:
                    raise NoPoolMatched(
                        f"no IPv{version} pool for {item.nic} from {rule.source} (IPv{version} is required)"
                    )
                continue
            expanded = _expand(names, version, pools, rule, item.nic)
            kept = _filter(expanded, version, pools=pools, req=req, nic=item.nic, multus_of=multus_of)
            chosen[version] = tuple(sorted(kept, key=lambda n: _priority(pools[n])))
        if not chosen:
            raise NoPoolMatched(f"no pool for {item.nic} from {rule.source}")
        out.append(
            NicCandidates(item.nic, chosen.get(4, ()), chosen.get(6, ()), item.clean_gateway, rule.source)
        )
    return out


# ---------------------------------------------------------------------------------------
# acquisition


def _subnet_rule(req: AllocationRequest, auto: AutoPoolChoice) -> _Rule:
    source = f"pod annotation {auto.source} (SpiderSubnet auto pools)"
    names = PoolNames(auto.ipv4, auto.ipv6)
    return _Rule(source, (_Item(auto.nic, names, req.clean_gateway),), InvalidAnnotation)


def _winning_rule(req: AllocationRequest, pools: Mapping[str, IPPool]) -> _Rule:
    by_ippools = anno.parse_ippools(req.pod_annotations)
    if by_ippools is not None and any(not item.pools.is_empty() for item in by_ippools):
        nics = [item.nic for item in by_ippools]
        if req.ifname not in nics:
            raise InvalidAnnotation(
                f"annotation {anno.POD_IPPOOLS}: lists interfaces {', '.join(nics)} "
                f"but not {req.ifname}, the interface being added"
            )
        items = tuple(
            _Item(
                item.nic,
                item.pools,
                item.clean_gateway
                if item.clean_gateway is not None
                else (req.clean_gateway if item.nic == req.ifname else False),
            )
            for item in by_ippools
        )
        return _Rule(f"pod annotation {anno.POD_IPPOOLS}", items, InvalidAnnotation)

    def single(source: str, names: PoolNames, dup: type[SpiderpoolError]) -> _Rule:
        return _Rule(source, (_Item(req.ifname, names, req.clean_gateway),), dup)

    by_ippool = anno.parse_ippool(req.pod_annotations)
    if by_ippool is not None and not by_ippool.is_empty():
        return single(f"pod annotation {anno.POD_IPPOOL}", by_ippool, InvalidAnnotation)
    by_namespace = anno.parse_namespace_default_pools(req.namespace_annotations)
    if not by_namespace.is_empty():
        return single(
            f"namespace {req.pod_namespace or '(none)'} annotations default-ipv4-ippool/default-ipv6-ippool",
            by_namespace,
            InvalidAnnotation,
        )
    by_config = PoolNames(req.default_ipv4_pools, req.default_ipv6_pools)
    if not by_config.is_empty():
        return single("CNI config default_ipv4_ippool/default_ipv6_ippool", by_config, InvalidRequest)
    defaults = sorted(name for name, pool in pools.items() if pool.spec.default)
    by_cluster = PoolNames(
        tuple(n for n in defaults if pools[n].version == 4),
        tuple(n for n in defaults if pools[n].version == 6),
    )
    if not by_cluster.is_empty():
        return single("cluster default pools", by_cluster, InvalidRequest)
    raise NoPoolMatched(
        f"no pool selection rules of any type are specified for {req.ifname}: no pod or namespace "
        "pool annotation, no CNI config default pools and no pool with spec.default"
    )


def _expand(
    names: Sequence[str], version: int, pools: Mapping[str, IPPool], rule: _Rule, nic: str
) -> list[str]:
    """Resolve wildcards against the family's pools (in name order); plain names must exist."""
    seen: set[str] = set()
    for name in names:
        if len(name) > MAX_NAME:  # a wildcard name is compiled to a regular expression: bound it first
            raise rule.duplicate_error(
                f"{rule.source}: an IPv{version} pool name for {nic} is {len(name)} characters long; "
                f"at most {MAX_NAME} (a pool name): {name[:64]}..."
            )
        if name in seen:
            raise rule.duplicate_error(f"{rule.source}: IPv{version} pool {name} is listed twice for {nic}")
        seen.add(name)
    out: list[str] = []
    for name in names:
        if _WILDCARD_CHARS.intersection(name):
            family = (p for p, pool in pools.items() if pool.version == version)
            pattern = name.replace("[^", "[!")  # Go's filepath.Match negates with '^', fnmatch with '!'
            matches = sorted(p for p in family if fnmatchcase(p, pattern))
        elif name in pools:
            matches = [name]
        else:
            raise PoolNotFound(f"IPPool {name} (IPv{version} for {nic}, from {rule.source}) does not exist")
        out.extend(m for m in matches if m not in out)
    if not out:
        raise NoPoolMatched(
            f"no IPv{version} IPPool matches [{' '.join(names)}] for {nic} (from {rule.source})"
        )
    return out


# ---------------------------------------------------------------------------------------
# filtering and sorting


def multus_resolver(req: AllocationRequest) -> Callable[[str], str]:
    """The NAD a NIC came from: the request's own for its NIC, else the pod's Multus annotations."""
    cache: dict[str, str] = {}

    def resolve(nic: str) -> str:
        if nic not in cache:
            if nic == req.ifname and req.multus_name:
                cache[nic] = req.multus_name
            else:
                cache[nic] = anno.multus_network_for_nic(req.pod_annotations, req.pod_namespace, nic)
        return cache[nic]

    return resolve


def rejection(
    pool: IPPool, version: int, req: AllocationRequest, nic: str, multus_of: Callable[[str], str]
) -> str | None:
    """Why ``pool`` may not serve family ``version`` of ``nic`` for this request, or ``None``."""
    spec, name = pool.spec, pool.name
    if pool.terminating:
        return f"terminating IPPool {name}"
    if spec.disable:
        return f"disabled IPPool {name}"
    if pool.version != version:
        return f"expect an IPv{version} IPPool, but IPPool {name} is IPv{pool.version}"
    if spec.node_name:
        if req.node not in spec.node_name:
            return f"node {req.node or '(none)'} is not in nodeName of IPPool {name}"
    elif spec.node_affinity is not None and not spec.node_affinity.matches(req.node_labels):
        return f"node {req.node or '(none)'} does not match nodeAffinity of IPPool {name}"
    if spec.namespace_name:
        if req.pod_namespace not in spec.namespace_name:
            return f"namespace {req.pod_namespace or '(none)'} is not in namespaceName of IPPool {name}"
    elif spec.namespace_affinity is not None and not spec.namespace_affinity.matches(req.namespace_labels):
        return f"namespace {req.pod_namespace or '(none)'} does not match namespaceAffinity of IPPool {name}"
    if spec.pod_affinity is not None and auto_pools.is_auto_pool(pool.meta.labels):
        app = auto_pools.app_ref(req.owner_api_version, req.owner_kind, req.pod_namespace, req.owner_name)
        if not auto_pools.affinity_matches_app(spec.pod_affinity, app):
            return f"the pod's controller {app.describe()} does not own auto-created IPPool {name}"
    elif spec.pod_affinity is not None and not spec.pod_affinity.matches(req.pod_labels):
        who = f"pod {req.pod_key}" if req.pod_name else f"container {req.container_id}"
        return f"{who} does not match podAffinity of IPPool {name}"
    if spec.multus_name:
        network = multus_of(nic)
        if not anno.multus_name_matches(spec.multus_name, network):
            return f"network {network or '(unknown)'} of {nic} is not in multusName of IPPool {name}"
    return None


def _filter(
    names: list[str],
    version: int,
    *,
    pools: Mapping[str, IPPool],
    req: AllocationRequest,
    nic: str,
    multus_of: Callable[[str], str],
) -> list[str]:
    kept: list[str] = []
    reasons: list[str] = []
    for name in names:
        why = rejection(pools[name], version, req, nic, multus_of)
        if why is None:
            kept.append(name)
        else:
            reasons.append(why)
    if not kept:
        raise NoPoolMatched(
            f"all IPv{version} IPPools [{' '.join(names)}] of {nic} filtered out: {'; '.join(reasons)}"
        )
    return kept


def _priority(pool: IPPool) -> tuple[bool, bool, bool, bool, bool, bool]:
    """Sort key: a pool with the earlier affinity property set sorts first (False < True)."""
    spec = pool.spec
    return (
        spec.pod_affinity is None,
        not spec.node_name,
        spec.node_affinity is None,
        not spec.namespace_name,
        spec.namespace_affinity is None,
        not spec.multus_name,
    )
