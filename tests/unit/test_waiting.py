"""The shared wait-on-condition helper: first truthy value, a named timeout, early give-up."""

from __future__ import annotations

import pytest

from tests.waiting import wait_for, wait_for_async


def test_wait_for_returns_the_first_truthy_value() -> None:
    """The condition is polled until it holds, and what it returned then is the result."""
    answers = iter([None, 0, "", "ready", "later"])
    assert wait_for(lambda: next(answers), "an answer", interval=0) == "ready"


def test_wait_for_times_out_naming_what_it_waited_for_and_the_last_value() -> None:
    """A condition that never holds fails with a TimeoutError saying what and the last value seen."""
    with pytest.raises(TimeoutError, match=r"waiting for the pool to settle \(last: 0\)"):
        wait_for(lambda: 0, "the pool to settle", deadline=0)


def test_an_exception_from_the_condition_ends_the_wait() -> None:
    """A condition gives up early by raising; the exception reaches the caller unchanged."""

    def dead() -> bool:
        raise ChildProcessError("service exited")

    with pytest.raises(ChildProcessError, match="service exited"):
        wait_for(dead, "a dead service")


async def test_wait_for_async_awaits_async_conditions() -> None:
    """An async condition is awaited each round; the first truthy result is returned."""
    answers = iter([False, False, 42])

    async def probe() -> int | bool:
        return next(answers)

    assert await wait_for_async(probe, "a probe", interval=0) == 42


async def test_wait_for_async_times_out_with_the_same_message() -> None:
    """The async variant fails the same way when the deadline passes."""
    with pytest.raises(TimeoutError, match=r"waiting for the journal to drain \(last: \[\]\)"):
        await wait_for_async(list, "the journal to drain", deadline=0)
