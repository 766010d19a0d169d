"""The embedded mode under faults: a bounded storm with SIGKILLs of the agent and the controller
(``python -m tests.chaos.embedded_storm --seconds 120`` is the long mode)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.embedded_storm import Counts, run_storm, storm_pools
from tests.component.conformance_stack import Stack, running_stack


@pytest.fixture
def stack() -> Iterator[Stack]:
    with running_stack("storm-", storm_pools()) as running:
        yield running


def test_a_storm_with_kills_leaves_no_duplicate_no_leak_and_nothing_pending(stack: Stack) -> None:
    """ADDs and DELs through the shims while the agent and the controller are SIGKILLed: afterwards
    every live attachment holds the address it was given, nothing else is allocated, and the
    journal and the spool are empty."""
    counts: Counts = run_storm(stack, seconds=15, workers=4, target=30, min_kills=3)
    print(counts)
    assert counts.kills >= 3
    assert counts.live >= 5
    assert counts.adds >= 20 and counts.dels >= 10
    assert not counts.failures, counts.failures
    assert (counts.duplicates, counts.leaks, counts.lost, counts.wrong_address) == (0, 0, 0, 0), counts
    assert counts.gc_released == 0, counts  # nothing leaked that only the runtime's GC could collect
    assert (counts.journal_left, counts.spool_left) == (0, 0), counts
