"""The consistency check as a pure function: each kind of finding, the two-reading rule that keeps
a check from reporting pods caught mid-ADD or mid-DEL, and leaks judged by the GC's own policy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from spiderpool_controller.domain import consistency
from spiderpool_controller.domain.consistency import (
    EndpointFacts,
    HeldAddress,
    PodView,
    PoolRanges,
    Snapshot,
    check,
)
from spiderpool_controller.domain.gc_policy import PodFacts, StatefulSetFacts
from spiderpool_controller.domain.ipset import IPSet
from spiderpool_controller.domain.models import AllocationRecord

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POOL = PoolRanges("p4", 4, IPSet.parse(["10.0.0.10-10.0.0.20"], 4), IPSet.parse(["10.0.0.15"], 4))
POOL_B = PoolRanges("p4b", 4, IPSet.parse(["10.0.0.18-10.0.0.30"], 4), IPSet.empty(4))
POOL6 = PoolRanges("p6", 6, IPSet.parse(["fd00::10-fd00::20"], 6), IPSet.empty(6))
NO_RESERVED = {4: IPSet.empty(4), 6: IPSet.empty(6)}


def rec(
    pod: str, nic: str = "eth0", uid: str = "", owner_kind: str = "", owner_name: str = ""
) -> AllocationRecord:
    name = pod.rsplit("/", maxsplit=1)[-1]
    return AllocationRecord(
        pod=pod,
        pod_uid=uid or f"uid-{name}",
        container_id=f"cid-{name}",
        interface=nic,
        node="n1",
        owner_kind=owner_kind,
        owner_name=owner_name,
    )


def held(pool: str, ip: str, record: AllocationRecord, sequence: int = 0) -> HeldAddress:
    return HeldAddress.of(pool, ip, record, sequence)


def endpoint(pod: str, pairs: Iterable[tuple[str, str]], uid: str = "") -> EndpointFacts:
    namespace, name = pod.split("/")
    return EndpointFacts(namespace, name, uid or f"uid-{name}", frozenset(pairs))


def snapshot(
    records: list[HeldAddress],
    endpoints: list[EndpointFacts] | None = None,
    *,
    after: list[HeldAddress] | None = None,
    reserved: dict[int, IPSet] | None = None,
    pods: PodView | None = None,
) -> Snapshot:
    if endpoints is None:  # every pod's endpoint as the records say
        by_pod: dict[str, set[tuple[str, str]]] = {}
        for h in records:
            by_pod.setdefault(h.record.pod, set()).add((h.record.interface, h.ip))
        endpoints = [endpoint(pod, pairs) for pod, pairs in by_pod.items()]
    return Snapshot(
        held=tuple(records),
        held_after=tuple(records if after is None else after),
        pools=(POOL, POOL_B, POOL6),
        reserved=reserved or NO_RESERVED,
        endpoints=tuple(endpoints),
        pods=pods,
    )


def kinds(snap: Snapshot) -> list[tuple[str, str, str]]:
    return [(f.kind, f.pod, f.ip) for f in check(snap).findings]


def test_a_consistent_snapshot_has_no_findings() -> None:
    """Records inside their ranges, one per family per interface, each pod's endpoint matching."""
    records = [
        held("p4", "10.0.0.10", rec("ns/a")),
        held("p6", "fd00::10", rec("ns/a")),
        held("p4", "10.0.0.11", rec("ns/b", "net1")),
    ]
    assert check(snapshot(records)).findings == []


def test_addresses_outside_their_pools_ranges_are_stranded_and_reserved_ones_reported() -> None:
    """Outside spec.ips, inside spec.excludeIPs, and covered by a SpiderReservedIP: three findings,
    each naming its pool, address and pod, with a release as the safe action."""
    records = [
        held("p4", "10.0.0.9", rec("ns/out")),
        held("p4", "10.0.0.15", rec("ns/excluded")),
        held("p4", "10.0.0.12", rec("ns/reserved")),
        held("p4", "10.0.0.13", rec("ns/fine")),
    ]
    snap = snapshot(records, reserved={4: IPSet.parse(["10.0.0.12"], 4), 6: IPSet.empty(6)})
    found = check(snap).findings
    assert [(f.kind, f.ip, f.pod) for f in found] == [
        ("stranded", "10.0.0.15", "ns/excluded"),
        ("stranded", "10.0.0.9", "ns/out"),
        ("reserved", "10.0.0.12", "ns/reserved"),
    ]
    assert "outside spec.ips of IPPool p4" in found[1].detail
    assert "spec.excludeIPs" in found[0].detail
    assert found[1].action.endswith("spiderpoolctl release --pod ns/out --interface eth0)")


def test_one_address_in_two_pools_and_two_addresses_of_one_family_are_duplicates() -> None:
    """The same IP held in overlapping pools is reported for both holders; an interface holding two
    IPv4 addresses is reported for both addresses."""
    records = [
        held("p4", "10.0.0.19", rec("ns/a")),
        held("p4b", "10.0.0.19", rec("ns/b")),
        held("p4", "10.0.0.11", rec("ns/c")),
        held("p4b", "10.0.0.25", rec("ns/c")),
    ]
    found = check(snapshot(records)).findings
    assert [(f.kind, f.pool, f.pod, f.ip) for f in found] == [
        ("duplicate-address", "p4", "ns/a", "10.0.0.19"),
        ("duplicate-address", "p4b", "ns/b", "10.0.0.19"),
        ("duplicate-family", "p4", "ns/c", "10.0.0.11"),
        ("duplicate-family", "p4b", "ns/c", "10.0.0.25"),
    ]
    assert "held in 2 pools: p4 (pod ns/a), p4b (pod ns/b)" in found[0].detail
    assert "holds 2 IPv4 addresses" in found[2].detail


def test_endpoints_missing_listing_other_addresses_or_orphaned_are_reported() -> None:
    """A pod with records and no endpoint, an endpoint listing another address, and an endpoint of a
    pod holding nothing."""
    records = [held("p4", "10.0.0.10", rec("ns/a")), held("p4", "10.0.0.11", rec("ns/b"))]
    endpoints = [endpoint("ns/b", [("eth0", "10.0.0.99")]), endpoint("ns/gone", [("eth0", "10.0.0.12")])]
    found = check(snapshot(records, endpoints)).findings
    assert [(f.kind, f.pod) for f in found] == [
        ("endpoint-missing", "ns/a"),
        ("endpoint-mismatch", "ns/b"),
        ("endpoint-orphan", "ns/gone"),
    ]
    assert (
        "SpiderEndpoint ns/b lists 10.0.0.99 on eth0, the pools' records 10.0.0.11 on eth0" in found[1].detail
    )
    assert found[2].action == "spiderpoolctl delete endpoint gone -n ns"


def test_a_pod_caught_mid_add_or_mid_del_is_not_reported() -> None:
    """A record in only one of the two readings (allocated or released while the endpoints were
    listed) is judged neither stranded nor missing its endpoint; an endpoint that matches either
    reading is consistent."""
    adding = held("p4", "10.0.0.9", rec("ns/adding"))  # outside the range, but only in the second reading
    removing = held("p4", "10.0.0.8", rec("ns/removing"))  # only in the first reading
    steady = held("p4", "10.0.0.10", rec("ns/steady"))
    endpoints = [
        endpoint("ns/steady", [("eth0", "10.0.0.10")]),
        endpoint("ns/adding", [("eth0", "10.0.0.9")]),
    ]
    snap = snapshot([removing, steady], endpoints, after=[steady, adding])
    assert check(snap).findings == []


def test_a_record_that_changed_between_the_readings_is_not_judged() -> None:
    """An address released and re-taken by another pod during the check belongs to neither reading's
    verdict."""
    first = held("p4", "10.0.0.9", rec("ns/a"))
    second = replace(first, record=rec("ns/b"))
    snap = snapshot([first], [], after=[second])
    assert [f.kind for f in check(snap).findings] == []


def view(
    pods: dict[str, PodFacts],
    *,
    mark: int = 10,
    statefulsets: dict[tuple[str, str], StatefulSetFacts] | None = None,
) -> PodView:
    return PodView(pods=pods, node_ready={"n1": True}, statefulsets=statefulsets or {}, now=NOW, mark=mark)


def test_leaks_are_the_garbage_collectors_verdicts() -> None:
    """With live pods: a deleted pod's, a re-created pod's and a finished pod's addresses are leaks
    (with the GC's reason); a running pod's, and a valid StatefulSet member's, are not."""
    records = [
        held("p4", "10.0.0.10", rec("ns/running")),
        held("p4", "10.0.0.11", rec("ns/deleted")),
        held("p4", "10.0.0.12", rec("ns/recreated")),
        held("p4", "10.0.0.13", rec("ns/done")),
        held("p4", "10.0.0.14", rec("ns/db-0", owner_kind="StatefulSet", owner_name="db")),
    ]
    pods = {
        "ns/running": PodFacts(uid="uid-running", node="n1", pod_ips=("10.0.0.10",)),
        "ns/recreated": PodFacts(uid="uid-new", node="n1"),
        "ns/done": PodFacts(uid="uid-done", phase="Succeeded", node="n1"),
    }
    snap = snapshot(records, pods=view(pods, statefulsets={("ns", "db"): StatefulSetFacts(True, 1)}))
    leaks = [f for f in check(snap).findings if f.kind == consistency.LEAKED]
    assert [(f.pod, f.detail.split(": ", 1)[1]) for f in leaks] == [
        ("ns/deleted", "pod deleted"),
        ("ns/done", "pod succeeded"),
        ("ns/recreated", "pod re-created with UID uid-new"),
    ]
    assert leaks[0].action.startswith("spiderpoolctl gc")


def test_a_terminating_pod_leaks_only_past_its_deadline() -> None:
    """A pod terminating since a minute ago leaks; one whose deadline is ahead does not yet."""
    records = [held("p4", "10.0.0.10", rec("ns/late")), held("p4", "10.0.0.11", rec("ns/early"))]
    pods = {
        "ns/late": PodFacts(uid="uid-late", node="n1", deletion_timestamp=NOW - timedelta(minutes=1)),
        "ns/early": PodFacts(uid="uid-early", node="n1", deletion_timestamp=NOW + timedelta(minutes=1)),
    }
    assert kinds(snapshot(records, pods=view(pods))) == [("leaked", "ns/late", "10.0.0.10")]


def test_records_newer_than_the_pod_data_are_skipped_and_counted() -> None:
    """A record taken after the pods were read (its number above the mark) is not judged, even when
    its pod is missing from the cache."""
    records = [held("p4", "10.0.0.10", rec("ns/new"), sequence=11), held("p4", "10.0.0.11", rec("ns/old"), 3)]
    report = check(snapshot(records, pods=view({}, mark=10)))
    assert [(f.kind, f.pod) for f in report.findings] == [("leaked", "ns/old")]
    assert report.skipped_newer == 1


def test_held_addresses_are_read_from_the_engines_record_copies() -> None:
    """Each (pool, version, ip -> record) copy becomes one value per record with its number."""
    a, b = rec("ns/a"), rec("ns/b")
    values = consistency.held_addresses(
        [("p4", 4, {167772170: a}), ("p6", 6, {0xFD00 << 112 | 0x10: b})], {("p6", 0xFD00 << 112 | 0x10): 7}
    )
    assert [(h.pool, h.ip, h.record, h.sequence) for h in values] == [
        ("p4", "10.0.0.10", a, 0),
        ("p6", "fd00::10", b, 7),
    ]


def test_without_pods_no_address_is_called_leaked() -> None:
    """The embedded mode has no pod API: nothing is judged against pods."""
    records = [held("p4", "10.0.0.10", rec("ns/anything"))]
    assert check(snapshot(records, pods=None)).findings == []


def test_an_attachment_without_a_pod_is_named_by_its_container() -> None:
    """Outside Kubernetes a record has no pod: findings name the container and a CNI DEL."""
    bare = AllocationRecord(pod="", pod_uid="", container_id="c1", interface="eth0")
    found = check(snapshot([held("p4", "10.0.0.9", bare)], [])).findings
    assert [(f.kind, f.pod, f.container_id) for f in found] == [
        ("stranded", "", "c1"),
        ("endpoint-missing", "", "c1"),
    ]
    assert "a CNI DEL of container c1 interface eth0" in found[0].action
    assert "container c1 holds" in found[1].detail
