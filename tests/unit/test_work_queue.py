"""The reconcilers' keyed work queue: one entry per key, no key to two workers, changes during a sync
never lost, failures back after a doubling capped delay."""

from __future__ import annotations

import asyncio

from spiderpool_controller.work_queue import KeyedQueue


async def test_a_key_added_many_times_waits_once() -> None:
    """Ten adds of one key before the worker gets to it: one entry."""
    queue: KeyedQueue[str] = KeyedQueue()
    for _ in range(10):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert [await queue.get(), await queue.get()] == ["a", "b"]
    assert len(queue) == 0


async def test_a_key_added_while_being_processed_comes_back_after_done() -> None:
    """Not handed out twice at once, but re-queued once the worker is done with it."""
    queue: KeyedQueue[str] = KeyedQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0  # still being worked on
    queue.done(key)
    assert len(queue) == 1 and await queue.get() == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_failures_come_back_after_a_doubling_capped_delay_and_success_resets_it() -> None:
    """Delays 0.1, 0.2, 0.4 then the cap 0.5; a success starts again at 0.1; the key does come back."""
    queue: KeyedQueue[str] = KeyedQueue(base_delay_s=0.1, max_delay_s=0.5)
    delays = []
    for _ in range(4):
        queue.add("a")
        key = await queue.get()
        delays.append(queue.done(key, failed=True))
        queue.forget("never-seen")  # harmless
    assert delays == [0.1, 0.2, 0.4, 0.5]
    queue.add("a")
    queue.done(await queue.get())
    queue.add("a")
    assert queue.done(await queue.get(), failed=True) == 0.1
    async with asyncio.timeout(5):
        assert await queue.get() == "a"  # re-added by the timer


async def test_a_key_changed_during_a_failed_sync_comes_back_at_once() -> None:
    """A change that arrived meanwhile is worked on without waiting for the failure's delay."""
    queue: KeyedQueue[str] = KeyedQueue(base_delay_s=60)
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    queue.done(key, failed=True)
    assert len(queue) == 1
