"""The cluster mode under faults: a bounded storm in the simulated cluster with agents and the leader
SIGKILLed, the leader paused past its lease, API connections and watches dropped, 409 storms and 500s
(``python -m tests.chaos.cluster_storm --seconds 120`` is the long mode, ``make bench-chaos``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.cluster_storm import FAULTS, ClusterCounts, run_cluster_storm, storm_cluster
from tests.simcluster.cluster import SimCluster

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimCluster]:
    with storm_cluster() as sim:
        yield sim


def test_a_cluster_storm_with_kills_pauses_and_api_faults_leaves_every_invariant_intact(
    cluster: SimCluster,
) -> None:
    """Pods created and deleted while agents and the leader are killed, the leader is paused past its lease
    and resumed, connections and watches dropped, 409s and 500s injected; after a restart of everything,
    the settled cluster has no duplicate, no leak or loss, every successful DEL honoured, endpoints exactly
    the live pods', journals and spools empty, and no write accepted from the resumed old leader."""
    counts: ClusterCounts = run_cluster_storm(cluster, seconds=25, workers=4, target=16, settle_s=75)
    print(counts.summary())
    assert counts.kills >= 2 and counts.pauses >= 1 and counts.drops >= 2, counts.summary()
    assert counts.conflicts_armed >= 1 and counts.errors_armed >= 1, counts.summary()
    assert counts.pauses_taken_over == counts.pauses, counts.summary()  # paused past the lease, truly
    assert counts.leader_transitions >= 2, counts.summary()
    assert counts.pod_creates >= 30 and counts.pod_deletes >= 15 and counts.adds >= 20, counts.summary()
    assert counts.live >= 5, counts.summary()
    assert not counts.failures, counts.failures
    assert counts.split_brain_writes == 0, counts.split_brain
    assert counts.settled, counts.summary()
    assert (counts.duplicates, counts.duplicates_seen, counts.leaks, counts.lost, counts.wrong_address) == (
        0, 0, 0, 0, 0,
    ), counts.summary()  # fmt: skip
    assert (counts.dels_dishonoured, counts.endpoint_leaks, counts.endpoint_missing) == (0, 0, 0), (
        counts.summary()
    )
    assert (counts.journal_left, counts.spool_left) == (0, 0), counts.summary()
    assert len(FAULTS) == 7
