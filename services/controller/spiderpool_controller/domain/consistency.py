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

import socket
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from spiderpool_controller.domain.gc_policy import GcSettings, PodFacts, StatefulSetFacts, verdict
from spiderpool_controller.domain.ipset import IPSet, int_to_ip, ip_to_int
from spiderpool_controller.domain.models import AllocationRecord
from spiderpool_controller.domain.object_names import endpoint_name
from spiderpool_controller.domain.stranded import stranded_reason

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
    """One record of a pool: the address and who holds it."""

    pool: str
    value: int  # the address as an integer
    version: int
    record: AllocationRecord
    sequence: int = 0  # the engine's take/rebind number (0: loaded at start)

    @property
    def ip(self) -> str:
        return int_to_ip(self.value, self.version)

    @classmethod
    def of(cls, pool: str, ip: str, record: AllocationRecord, sequence: int = 0) -> HeldAddress:
        version = 6 if ":" in ip else 4
        return cls(pool, ip_to_int(ip, version), version, record, sequence)


def held_addresses(
    pools: Iterable[tuple[str, int, Mapping[int, AllocationRecord]]],
    sequences: Mapping[tuple[str, int], int],
) -> tuple[HeldAddress, ...]:
    """The records of ``(pool, IP version, ip -> record)`` copies, with their numbers."""
    return tuple(
        HeldAddress(name, ip, version, rec, sequences.get((name, ip), 0))
        for name, version, records in pools
        for ip, rec in records.items()
    )


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
    """Records present, unchanged, in both readings."""
    after = {(h.pool, h.value): h.record for h in snapshot.held_after}
    return [h for h in snapshot.held if after.get((h.pool, h.value)) == h.record]


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
    report.findings.sort(key=lambda f: (order[f.kind], f.pool, f.pod, f.interface, _ip_key(f.ip)))
    return report


def _ip_key(text: str) -> tuple[int, int]:
    if not text:
        return (0, 0)
    version = 6 if ":" in text else 4
    return (version, ip_to_int(text, version))


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
        reason = stranded_reason(pool.ips, pool.excluded, h.value)
        if reason is not None:
            out.append(_finding(STRANDED, h, f"{h.ip} is {reason} of IPPool {h.pool}", action))
        elif reserved.get(h.version, IPSet.empty(h.version)).contains_int(h.value):
            out.append(_finding(RESERVED, h, f"{h.ip} is reserved by a SpiderReservedIP", action))
    return out


def _duplicates(held: list[HeldAddress]) -> list[Finding]:
    out: list[Finding] = []
    by_ip: defaultdict[tuple[int, int], list[HeldAddress]] = defaultdict(list)
    by_family: defaultdict[tuple[str, str, int], list[HeldAddress]] = defaultdict(list)
    for h in held:
        by_ip[(h.version, h.value)].append(h)
        by_family[(h.record.identity, h.record.interface, h.version)].append(h)
    for holders in by_ip.values():
        if len(holders) < 2:
            continue
        pools = ", ".join(f"{h.pool} ({_holder(h.record)})" for h in holders)
        for h in holders:
            out.append(
                _finding(
                    DUPLICATE_ADDRESS,
                    h,
                    f"{h.ip} is held in {len(holders)} pools: {pools}",
                    "make the pools' ranges disjoint, then release all but one holder",
                )
            )
    for (_, nic, version), holders in by_family.items():
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


Pair = tuple[str, int, int]  # (interface, IP version, address as an integer)
Expected = dict[tuple[str, str], tuple[set[Pair], HeldAddress]]


def _expected_endpoints(held: Iterable[HeldAddress]) -> Expected:
    """Each endpoint the records imply: its (interface, address) pairs and one of its records."""
    out: Expected = {}
    names: dict[tuple[str, str], tuple[str, str]] = {}
    for h in held:
        owner = (h.record.pod, h.record.identity)
        name = names.get(owner)
        if name is None:
            name = names[owner] = endpoint_name(*owner)
        entry = out.get(name)
        if entry is None:
            entry = out[name] = (set(), h)
        entry[0].add((h.record.interface, h.version, h.value))
    return out


def _pairs(endpoint: EndpointFacts) -> set[Pair]:
    """The endpoint's (interface, address) pairs as integers (inet_pton: no per-address objects)."""
    out: set[Pair] = set()
    for nic, text in endpoint.addresses:
        family, version = (socket.AF_INET6, 6) if ":" in text else (socket.AF_INET, 4)
        try:
            out.add((nic, version, int.from_bytes(socket.inet_pton(family, text), "big")))
        except OSError:
            out.add((nic, 0, -1))  # not an address: matches no record
    return out


def _endpoint_findings(snapshot: Snapshot) -> list[Finding]:
    before = _expected_endpoints(snapshot.held)
    after = _expected_endpoints(snapshot.held_after)
    stored = {(e.namespace, e.name): e for e in snapshot.endpoints}
    out: list[Finding] = []
    for key in sorted(set(before) & set(after)):
        if key in stored:
            continue
        pairs, h = after[key]
        out.append(
            Finding(
                kind=ENDPOINT_MISSING,
                detail=f"{_holder(h.record)} holds {_list(pairs)} but SpiderEndpoint "
                f"{key[0]}/{key[1]} does not exist",
                action="none: the controller rewrites endpoints from the records every 30 s "
                "(restart it if this persists)",
                pod=h.record.pod if h.record.pod.strip("/") else "",
                pod_uid=h.record.pod_uid,
                container_id=h.record.container_id,
            )
        )
    for key, endpoint in sorted(stored.items()):
        listed = _pairs(endpoint)
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
        readings = [entry[0] for entry in (before.get(key), after.get(key)) if entry is not None]
        if listed in readings:
            continue
        expected = readings[-1]
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


def _list(pairs: Iterable[Pair]) -> str:
    return ", ".join(
        f"{int_to_ip(value, version) if version else '(invalid)'} on {nic}"
        for nic, version, value in sorted(pairs)
    )


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
