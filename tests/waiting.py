"""Waiting for a condition, with a deadline: the one helper tests use instead of sleeping.

A test that needs something to happen (a service answers its health check, the store
settles, a journal drains) polls the condition until it holds or the deadline passes,
then fails naming what it waited for and the last thing it saw. The deadline is generous
(the machine has 2 shared cores); the poll interval only bounds the reaction time.
Exceptions from the condition propagate: a condition raises to give up early (the
awaited process died). Both return the condition's first truthy value.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

DEADLINE = 15.0
INTERVAL = 0.01


def wait_for(
    condition: Callable[[], T | None], what: str, *, deadline: float = DEADLINE, interval: float = INTERVAL
) -> T:
    """Call ``condition`` until it returns a truthy value; TimeoutError after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= end:
            raise TimeoutError(f"timed out after {deadline:g}s waiting for {what} (last: {value!r})")
        time.sleep(interval)


@overload
async def wait_for_async(
    condition: Callable[[], Awaitable[T | None]], what: str, *, deadline: float = ..., interval: float = ...
) -> T: ...
@overload
async def wait_for_async(
    condition: Callable[[], T | None], what: str, *, deadline: float = ..., interval: float = ...
) -> T: ...
async def wait_for_async(
    condition: Callable[[], Any], what: str, *, deadline: float = DEADLINE, interval: float = INTERVAL
) -> Any:
    """``wait_for`` inside an event loop: ``condition`` may be sync or async; the loop keeps running."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= end:
            raise TimeoutError(f"timed out after {deadline:g}s waiting for {what} (last: {value!r})")
        await asyncio.sleep(interval)
