"""A write gate checked at the last moment, inside the HTTP client: the leader's fence, closed tight.

Owns the check that no byte of a fenced request leaves this process once its gate has
closed. ``FencedStore`` checks ``may_write()`` before it hands a write to the client, but the
client still has work to do before anything is sent: it builds the request, takes a
connection from its pool (maybe a new one, with a TLS handshake), serialises the headers.
A process frozen in that gap (SIGSTOP, a paused VM, a long stall) and resumed after another
replica took the Lease would send a write the fence had already let through, and the API
server would accept it whenever the object's resourceVersion had not moved yet: the cluster
chaos storm saw exactly that, an old leader's pool status write accepted 0.1 s after it
resumed.

How: ``install(api_client)`` adds an aiohttp trace to the client's session whose hooks run
when the request line and headers are about to be buffered and when each body chunk is about
to be written (aiohttp calls both before the bytes go to the socket, in the same coroutine as
the write for the body). While a gate is set in the current context (``gated(may_write)``,
which ``FencedStore`` wraps around each write; asyncio copies the context into the tasks the
client spawns), each hook calls it and raises ``FenceClosed`` when it says no, so the request
fails before it is sent. Requests made outside ``gated`` (reads, watches, the Lease itself)
are not checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from spiderpool_common.errors import Unavailable

_GATE: ContextVar[Callable[[], bool] | None] = ContextVar("spiderpool_write_gate", default=None)
_MARK = "_spiderpool_write_fence"


class FenceClosed(Unavailable):
    """The gate closed between the fence's check and the request leaving: nothing was sent."""

    reason = "NOT_LEADER"


@contextlib.contextmanager
def gated(may_write: Callable[[], bool]) -> Iterator[None]:
    """Requests made inside (in this task and the tasks it starts) are sent only while ``may_write()``."""
    token = _GATE.set(may_write)
    try:
        yield
    finally:
        _GATE.reset(token)


def check() -> None:
    """Raise ``FenceClosed`` when a gate is set and closed (what the hooks do)."""
    gate = _GATE.get()
    if gate is not None and not gate():
        raise FenceClosed(
            "the write fence closed before the request was sent: this replica is not the leader"
        )


async def _hook(_session: Any, _ctx: Any, _params: Any) -> None:
    check()


def install(api_client: Any) -> None:
    """Add the last-moment check to a ``kubernetes_asyncio`` ApiClient's session (idempotent)."""
    import aiohttp  # noqa: PLC0415 (the client's own dependency, loaded with it)

    session = api_client.rest_client.pool_manager
    if any(getattr(trace, _MARK, False) for trace in session.trace_configs):
        return
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_hook)
    trace.on_request_chunk_sent.append(_hook)
    setattr(trace, _MARK, True)
    trace.freeze()
    session.trace_configs.append(trace)
