"""The online consistency check: pool records, SpiderEndpoints and live pods cross-referenced.

Owns what ``spiderpoolctl check`` reports, as one pure function of a ``Snapshot``. The
pools' records are the source of truth (the engine writes them first and answers an ADD
only once they are durable); everything else is judged against them:

- ``stranded``: a held address outside its pool's ``spec.ips`` minus ``spec.excludeIPs``
  (a range change forced past the records); ``reserved``: one a SpiderReservedIP covers now;
- ``duplicate-address``: one address held in two pools; ``duplicate-family``: one interface
  holding two addresses of one family (both would be on the pod; only one is in its answer);
- ``endpoint-missing`` / ``endpoint-mismatch`` / ``endpoint-orphan``: the SpiderEndpoint, a
  view the controller writes off the request path, disagrees with the records;
- ``leaked`` (with live pods, in a cluster): the garbage collector's own judgement
  (``gc_policy.verdict``) says the pod no longer needs the address, skipping records newer
  than the pod data, as GC does (upstream #3778).

A check never stops allocation, so the records move while it runs. The snapshot therefore
holds the records twice, read before (``held``) and after (``held_after``) the endpoints
were listed: a record-only finding is reported only for records present, unchanged, in
both, and an endpoint finding only when the endpoint disagrees with both readings. A pod
caught mid-ADD or mid-DEL is then never reported; what is reported was already wrong before
the check started and still was when it ended.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from spiderpool_controller.domain.gc_policy import GcSettings, PodFacts, StatefulSetFacts, verdict
from spiderpool_controller.domain.ipset import IPSet
from spiderpool_controller.domain.models import AllocationRecord
from spiderpool_controller.domain.object_names import endpoint_name

LEAKED = "leaked"
STRANDED = "stranded"
RESERVED = "reserved"
DUPLICATE_ADDRESS = "duplicate-address"
DUPLICATE_FAMILY = "duplicate-family"
ENDPOINT_MISSING = "endpoint-missing"
ENDPOINT_MISMATCH = "endpoint-mismatch"
ENDPOINT_ORPHAN = "endpoint-orphan"
KINDS = (
    LEAKED,
    STRANDED,
    RESERVED,
    DUPLICATE_ADDRESS,
    DUPLICATE_FAMILY,
    ENDPOINT_MISSING,
    ENDPOINT_MISMATCH,
    ENDPOINT_ORPHAN,
)


@dataclass(frozen=True)
class HeldAddress:
    """One record of a pool: the address (no prefix length) and who holds it."""

    pool: str
    ip: str
    version: int
    record: AllocationRecord
    sequence: int = 0  # the engine's take/rebind number (0: loaded at start)


@dataclass(frozen=True)
class PoolRanges:
    name: str
    version: int
    ips: IPSet  # spec.ips
    excluded: IPSet  # spec.excludeIPs


@dataclass(frozen=True)
class EndpointFacts:
    """A stored SpiderEndpoint: its name and the (interface, address) pairs it lists."""

    namespace: str
    name: str
    uid: str
    addresses: frozenset[tuple[str, str]]  # (interface, ip without prefix)


@dataclass(frozen=True)
class PodView:
    """The live pods as a cluster's pod cache has them, read after ``mark`` was taken."""

    pods: Mapping[str, PodFacts]  # namespace/name -> facts
    node_ready: Mapping[str, bool]
    statefulsets: Mapping[tuple[str, str], StatefulSetFacts]  # (namespace, name)
    now: datetime
    mark: int  # the engine's allocation number read before the pods
    settings: GcSettings = field(default_factory=GcSettings)


@dataclass(frozen=True)
class Snapshot:
    held: tuple[HeldAddress, ...]
    held_after: tuple[HeldAddress, ...]
    pools: tuple[PoolRanges, ...]
    reserved: Mapping[int, IPSet]
    endpoints: tuple[EndpointFacts, ...]
    pods: PodView | None = None


@dataclass(frozen=True)
class Finding:
    kind: str
    detail: str
    action: str = ""
    pod: str = ""
    pod_uid: str = ""
    container_id: str = ""
    interface: str = ""
    pool: str = ""
    ip: str = ""


@dataclass
class Report:
    findings: list[Finding]
    skipped_newer: int = 0


def _holder(record: AllocationRecord) -> str:
    if record.pod.strip("/"):
        return f"pod {record.pod}"
    if record.container_id:
        return f"container {record.container_id}"
    return f"allocation {record.identity or '(unknown)'}"


def _finding(kind: str, held: HeldAddress, detail: str, action: str = "") -> Finding:
    rec = held.record
    return Finding(
        kind=kind,
        detail=detail,
        action=action,
        pod=rec.pod if rec.pod.strip("/") else "",
        pod_uid=rec.pod_uid,
        container_id=rec.container_id,
        interface=rec.interface,
        pool=held.pool,
        ip=held.ip,
    )


def _release_action(record: AllocationRecord) -> str:
    if record.pod.strip("/"):
        return f"spiderpoolctl release --pod {record.pod} --interface {record.interface}"
    return f"a CNI DEL of container {record.container_id} interface {record.interface}"


def stable(snapshot: Snapshot) -> list[HeldAddress]:
    """Records present, unchanged, in both readings, in pool and address order."""
    after = {(h.pool, h.ip): h.record for h in snapshot.held_after}
    return [h for h in snapshot.held if after.get((h.pool, h.ip)) == h.record]


def check(snapshot: Snapshot) -> Report:
    """Every inconsistency the snapshot shows, in a stable order (kind, pool, address)."""
    held = stable(snapshot)
    findings: list[Finding] = []
    findings += _range_findings(held, snapshot.pools, snapshot.reserved)
    findings += _duplicates(held)
    findings += _endpoint_findings(snapshot)
    report = Report(findings)
    if snapshot.pods is not None:
        report.findings += _leaks(held, snapshot.pods, report)
    order = {kind: i for i, kind in enumerate(KINDS)}
    report.findings.sort(key=lambda f: (order[f.kind], f.pool, f.pod, f.interface, f.ip))
    return report


def _range_findings(
    held: Iterable[HeldAddress], pools: Iterable[PoolRanges], reserved: Mapping[int, IPSet]
) -> list[Finding]:
    ranges = {p.name: p for p in pools}
    out: list[Finding] = []
    for h in held:
        pool = ranges.get(h.pool)
        if pool is None:
            continue
        action = f"nothing urgent: it stays with its pod until released ({_release_action(h.record)})"
        if h.ip not in pool.ips:
            out.append(_finding(STRANDED, h, f"{h.ip} is outside spec.ips of IPPool {h.pool}", action))
        elif h.ip in pool.excluded:
            out.append(_finding(STRANDED, h, f"{h.ip} is in spec.excludeIPs of IPPool {h.pool}", action))
        elif h.ip in reserved.get(h.version, IPSet.empty(h.version)):
            out.append(_finding(RESERVED, h, f"{h.ip} is reserved by a SpiderReservedIP", action))
    return out


def _duplicates(held: list[HeldAddress]) -> list[Finding]:
    out: list[Finding] = []
    by_ip: defaultdict[str, list[HeldAddress]] = defaultdict(list)
    by_family: defaultdict[tuple[str, str, int], list[HeldAddress]] = defaultdict(list)
    for h in held:
        by_ip[h.ip].append(h)
        by_family[(h.record.identity, h.record.interface, h.version)].append(h)
    for ip, holders in sorted(by_ip.items()):
        if len(holders) < 2:
            continue
        pools = ", ".join(f"{h.pool} ({_holder(h.record)})" for h in holders)
        for h in holders:
            out.append(
                _finding(
                    DUPLICATE_ADDRESS,
                    h,
                    f"{ip} is held in {len(holders)} pools: {pools}",
                    "make the pools' ranges disjoint, then release all but one holder",
                )
            )
    for (_, nic, version), holders in sorted(by_family.items()):
        if len(holders) < 2:
            continue
        addresses = ", ".join(f"{h.ip} ({h.pool})" for h in holders)
        for h in holders:
            out.append(
                _finding(
                    DUPLICATE_FAMILY,
                    h,
                    f"{_holder(h.record)} interface {nic} holds {len(holders)} IPv{version} addresses: "
                    f"{addresses}",
                    _release_action(h.record) + " (its next ADD allocates one address afresh)",
                )
            )
    return out


def _expected_endpoints(held: Iterable[HeldAddress]) -> dict[tuple[str, str], set[tuple[str, str]]]:
    out: defaultdict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for h in held:
        out[endpoint_name(h.record.pod, h.record.identity)].add((h.record.interface, h.ip))
    return out


def _endpoint_findings(snapshot: Snapshot) -> list[Finding]:
    before = _expected_endpoints(snapshot.held)
    after = _expected_endpoints(snapshot.held_after)
    stored = {(e.namespace, e.name): e for e in snapshot.endpoints}
    out: list[Finding] = []
    first_holder: dict[tuple[str, str], HeldAddress] = {}
    for h in snapshot.held_after:
        first_holder.setdefault(endpoint_name(h.record.pod, h.record.identity), h)
    for key in sorted(set(before) & set(after)):
        if key in stored:
            continue
        h = first_holder[key]
        out.append(
            Finding(
                kind=ENDPOINT_MISSING,
                detail=f"{_holder(h.record)} holds {_list(after[key])} but SpiderEndpoint "
                f"{key[0]}/{key[1]} does not exist",
                action="none: the controller rewrites endpoints from the records every 30 s "
                "(restart it if this persists)",
                pod=h.record.pod if h.record.pod.strip("/") else "",
                pod_uid=h.record.pod_uid,
                container_id=h.record.container_id,
            )
        )
    for key, endpoint in sorted(stored.items()):
        listed = set(endpoint.addresses)
        if key not in before and key not in after:
            out.append(
                Finding(
                    kind=ENDPOINT_ORPHAN,
                    detail=f"SpiderEndpoint {key[0]}/{key[1]} lists {_list(listed) or 'nothing'} "
                    "but the pod holds no address",
                    action=f"spiderpoolctl delete endpoint {key[1]} -n {key[0]}",
                    pod=f"{key[0]}/{key[1]}",
                    pod_uid=endpoint.uid,
                )
            )
            continue
        if listed in (before.get(key), after.get(key)):
            continue
        expected = after.get(key) or before.get(key) or set()
        out.append(
            Finding(
                kind=ENDPOINT_MISMATCH,
                detail=f"SpiderEndpoint {key[0]}/{key[1]} lists {_list(listed) or 'nothing'}, "
                f"the pools' records {_list(expected) or 'nothing'}",
                action="none: the controller rewrites endpoints from the records every 30 s "
                "(restart it if this persists)",
                pod=f"{key[0]}/{key[1]}",
                pod_uid=endpoint.uid,
            )
        )
    return out


def _list(pairs: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{ip} on {nic}" for nic, ip in sorted(pairs))


def _leaks(held: Iterable[HeldAddress], view: PodView, report: Report) -> list[Finding]:
    out: list[Finding] = []
    for h in held:
        rec = h.record
        if h.sequence > view.mark:
            report.skipped_newer += 1
            continue
        pod = view.pods.get(rec.pod)
        sts = None
        if rec.owner_kind == "StatefulSet" and "/" in rec.pod:
            sts = view.statefulsets.get((rec.pod.split("/", 1)[0], rec.owner_name), StatefulSetFacts(False))
        node = pod.node if pod is not None and pod.node else rec.node
        why = verdict(
            rec,
            pod,
            now=view.now,
            node_ready=view.node_ready.get(node, False),
            sts=sts,
            settings=view.settings,
        )
        if why is None:
            continue
        out.append(
            _finding(
                LEAKED,
                h,
                f"{h.ip} of {_holder(rec)} ({rec.pod_uid or 'no UID'}): {why}",
                "spiderpoolctl gc (the garbage collector releases it after reading the pod afresh), "
                f"or {_release_action(rec)}",
            )
        )
    return out
