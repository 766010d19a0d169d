"""The embedded storm's container runtime keeps CNI's rule "no parallel operations for one
container": a DEL never overtakes its own container's ADD.

The storm used to hand a container whose ADD was still running to another worker's DEL
(every ADD entered the pending DELs when it started). That DEL reached the controller
before the ADD's allocation, freed nothing and succeeded; the ADD then allocated and
succeeded (or failed once the agent was killed before it answered); the runtime took the
DEL for the last word and nothing ever DELed that container again, so only the runtime's
CNI GC collected the address (``gc_released`` 1 or 2 in a minute's storm). Here that
interleaving is played on cue against the real controller, agent and shims: the first
ADD is held just before its shim runs, a worker steps the runtime meanwhile, and when a
DEL of the held container comes, the ADD runs to its end before the DEL's answer is taken.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import pytest

from tests.chaos.embedded_storm import POOL, Counts, Runtime, collect, judge, storm_pools
from tests.component.conformance_stack import Outcome, Stack, running_stack
from tests.waiting import DEADLINE

HELD = "storm-0"  # the runtime's first container


class _First(random.Random):
    """Every draw picks the first branch: a worker DELs a pending container when it has one."""

    def random(self) -> float:
        return 0.0


@dataclass
class _Cued(Stack):
    """The real stack; the runtime's CNI calls for ``HELD`` are interleaved on cue, and every
    pair of operations that ran at once for one container is recorded."""

    add_reached: threading.Event = field(default_factory=threading.Event)
    add_may_run: threading.Event = field(default_factory=threading.Event)
    add_done: threading.Event = field(default_factory=threading.Event)
    running: dict[str, str] = field(default_factory=dict)
    overlaps: list[tuple[str, str, str]] = field(default_factory=list)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def run(self, command: str, config: dict[str, Any] | bytes, container_id: str = "", **kw: Any) -> Outcome:
        with self.guard:
            if container_id in self.running:
                self.overlaps.append((container_id, self.running[container_id], command))
            self.running[container_id] = command
        try:
            if (command, container_id) == ("ADD", HELD):
                self.add_reached.set()
                assert self.add_may_run.wait(DEADLINE)
            outcome = super().run(command, config, container_id, **kw)
            if (command, container_id) == ("DEL", HELD):
                # The DEL overtook its ADD: let the ADD allocate and be answered first.
                self.add_may_run.set()
                assert self.add_done.wait(DEADLINE)
            return outcome
        finally:
            with self.guard:
                if self.running.get(container_id) == command:
                    del self.running[container_id]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("stormrt-", storm_pools()) as running:
        yield running


def test_no_del_overtakes_its_own_add_so_the_gc_frees_nothing(stack: Stack) -> None:
    cued = _Cued(**{f.name: getattr(stack, f.name) for f in fields(Stack)})
    runtime = Runtime(cued)

    def first_add() -> None:
        runtime.add()
        cued.add_done.set()

    adder = threading.Thread(target=first_add)
    adder.start()
    try:
        assert cued.add_reached.wait(DEADLINE)
        runtime.step(_First(), target=10)  # a worker's turn while the first ADD is in flight
    finally:
        cued.add_may_run.set()
        adder.join(DEADLINE)
    assert not adder.is_alive()
    for cid in sorted(runtime.pending_del):  # the storm's settling: failed ADDs and DELs again
        runtime.delete(cid)
    counts = Counts()
    judge(counts, runtime.live, cued.records(POOL))
    collect(runtime)  # the runtime's CNI GC, the live attachments being the valid ones
    assert not runtime.counts.failures, runtime.counts.failures
    found = (runtime.counts.gc_released, counts.leaks, counts.lost, counts.wrong_address, cued.overlaps)
    assert found == (0, 0, 0, 0, []), f"{found}\n{runtime.counts.gc_histories}"
    assert sorted(runtime.live) == [HELD, "storm-1"], runtime.history
