"""The garbage collector's judgement of one allocation record (upstream's GC rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spiderpool_controller.domain.gc_policy import GcSettings, PodFacts, StatefulSetFacts, next_check, verdict
from spiderpool_controller.domain.models import AllocationRecord

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEFAULTS = GcSettings()


def rec(pod: str = "ns/web-1", uid: str = "u1", **kw: str) -> AllocationRecord:
    return AllocationRecord(pod=pod, pod_uid=uid, container_id="c1", interface="eth0", **kw)  # type: ignore[arg-type]


def judge(
    record: AllocationRecord,
    pod: PodFacts | None,
    *,
    ready: bool = True,
    sts: StatefulSetFacts | None = None,
    settings: GcSettings = DEFAULTS,
) -> str | None:
    return verdict(record, pod, now=NOW, node_ready=ready, sts=sts, settings=settings)


def test_a_running_pod_keeps_its_address() -> None:
    """The pod exists with the record's UID and runs: keep."""
    assert judge(rec(), PodFacts("u1", pod_ips=("10.0.0.1",))) is None


def test_a_deleted_pod_releases() -> None:
    """No pod of that name: release."""
    assert judge(rec(), None) == "pod deleted"


def test_a_pod_re_created_under_the_same_name_releases_the_old_uids_address() -> None:
    """A pod of that name with another UID is another pod: the record's address goes."""
    assert judge(rec(), PodFacts("u2")) == "pod re-created with UID u2"


def test_a_valid_statefulset_member_keeps_its_address_when_deleted_or_re_created() -> None:
    """db-0 of a StatefulSet with 2 replicas keeps its address, gone or re-created."""
    record = rec("ns/db-0", owner_kind="StatefulSet", owner_name="db")
    sts = StatefulSetFacts(exists=True, replicas=2)
    assert judge(record, None, sts=sts) is None
    assert judge(record, PodFacts("u2"), sts=sts) is None


def test_a_statefulset_member_scaled_away_or_whose_set_is_gone_releases() -> None:
    """db-2 beyond 2 replicas, or any member of a deleted StatefulSet, releases."""
    assert judge(
        rec("ns/db-2", owner_kind="StatefulSet", owner_name="db"), None, sts=StatefulSetFacts(True, 2)
    )
    assert judge(rec("ns/db-0", owner_kind="StatefulSet", owner_name="db"), None, sts=StatefulSetFacts(False))
    assert judge(rec("ns/db-0", owner_kind="StatefulSet", owner_name="db"), None, sts=None)


def test_finished_pods_release() -> None:
    """A Job's pod that Succeeded or Failed no longer needs its address."""
    assert judge(rec(), PodFacts("u1", phase="Succeeded")) == "pod succeeded"
    assert judge(rec(), PodFacts("u1", phase="Failed")) == "pod failed"


def test_a_terminating_pod_releases_only_after_its_deadline_and_delay() -> None:
    """deletionTimestamp (grace included) plus the additional delay must have passed."""
    later = PodFacts("u1", deletion_timestamp=NOW + timedelta(seconds=1))
    past = PodFacts("u1", deletion_timestamp=NOW - timedelta(seconds=5))
    assert judge(rec(), later) is None
    assert judge(rec(), past) == "pod terminating past its grace period on a Ready node"
    delayed = GcSettings(additional_grace_s=10)
    assert judge(rec(), past, settings=delayed) is None
    assert next_check(past, delayed) == NOW + timedelta(seconds=5)


def test_terminating_pods_per_node_state_can_be_switched_off() -> None:
    """On a NotReady node (lost: no CNI DEL ever comes) and on a Ready one, separately."""
    past = PodFacts("u1", deletion_timestamp=NOW - timedelta(seconds=5))
    assert judge(rec(), past, ready=False) == "pod terminating past its grace period on a NotReady node"
    assert judge(rec(), past, ready=False, settings=GcSettings(terminating_on_not_ready_node=False)) is None
    assert judge(rec(), past, settings=GcSettings(terminating_on_ready_node=False)) is None


def test_a_running_pod_without_ips_releases_only_when_switched_on() -> None:
    """Off by default, as upstream."""
    bare = PodFacts("u1", pod_ips=())
    assert judge(rec(), bare) is None
    assert judge(rec(), bare, settings=GcSettings(running_with_empty_pod_ips=True)) == (
        "running pod without status.podIPs"
    )


def test_nothing_is_judged_with_gc_off_or_without_a_pod_reference() -> None:
    """GC disabled keeps everything; embedded-mode records (no pod) are not the API's to judge."""
    assert judge(rec(), None, settings=GcSettings(enabled=False)) is None
    assert judge(rec(pod="", uid=""), None) is None
