"""The bench store server's wire format: length-prefixed JSON frames over a unix socket.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON, one JSON array:

- request ``[id, op, args]`` (``op``: get, list, create, update, update_status, delete,
  watch, cancel, stats; ``args`` an object);
- answer ``[id, "ok", result]`` or ``[id, "error", [type, message]]``;
- a watch streams ``[id, "event", {"type", "object"}]`` frames and ends with
  ``[id, "end", null]`` or an error frame; ``cancel`` (``{"id": watch id}``) stops it.

Ids are the client's, unique per connection, so one connection carries any number of
concurrent calls (each answered when its own store call completes, in any order). Errors
travel by class name and come back as the same class (the Store contract's errors and the
shared error tree), so a 409 is ``StaleResourceVersion`` on both sides of the socket.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from spiderpool_common import errors as common_errors
from spiderpool_controller.store.contract import (
    Gone,
    ObjectAlreadyExists,
    ObjectNotFound,
    StaleResourceVersion,
    StoreUnavailable,
)

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024

_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        ObjectNotFound,
        ObjectAlreadyExists,
        StaleResourceVersion,
        Gone,
        StoreUnavailable,
        common_errors.InvalidRequest,
        common_errors.InvalidObject,
        common_errors.NotFound,
        common_errors.AlreadyExists,
        common_errors.Conflict,
        common_errors.Unavailable,
        TypeError,
        ValueError,
    )
}


def encode(message: list[Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(body) > MAX_FRAME:
        raise ValueError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


async def read(reader: asyncio.StreamReader) -> list[Any]:
    """The next frame; ``asyncio.IncompleteReadError`` at end of stream."""
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    message = json.loads(await reader.readexactly(size))
    if not isinstance(message, list) or len(message) != 3:
        raise ValueError("a frame must be a JSON array of three items")
    return message


def error_payload(exc: BaseException) -> list[str]:
    return [type(exc).__name__, str(exc)]


def error_from(payload: list[str]) -> Exception:
    """The exception an error frame names (unknown names: ``StoreUnavailable``)."""
    name, message = payload
    cls = _ERRORS.get(name)
    if cls is None:
        return StoreUnavailable(f"store server: {name}: {message}")
    return cls(message)
