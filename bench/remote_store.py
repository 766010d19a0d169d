"""The Store contract over the bench store server's socket (``bench/store_server.py``).

One connection per process, multiplexed: every call sends a frame with a fresh id and
waits for the answer with that id, so concurrent callers (the controller's pool writers and
endpoint writer, or a baseline agent's concurrent ADDs) share it without waiting for each
other. Errors come back as the classes the store raised (``StaleResourceVersion`` for a
409, ``ObjectNotFound`` ...); a lost connection fails every pending call and watch with
``StoreUnavailable``. The contract suite (``tests/component/test_bench_remote_store.py``)
runs against this class to show the benchmark's store behaves like the controller's own.

Use ``await RemoteStore.connect(path)``: ``watch`` sends its request at once (not at the
first iteration), so a watch "from now" starts before the caller's next write, as the
contract says, and that needs an open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import store_wire
from spiderpool_controller.store.contract import Obj, StoreUnavailable, WatchEvent

Count = tuple[str, str, str]  # (operation, kind, outcome)


class RemoteStore:
    """A Store whose calls go to a bench store server; see the module docstring."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._streams: dict[int, asyncio.Queue[tuple[str, Any]]] = {}
        self._lost: str | None = None
        self._receiver = asyncio.create_task(self._receive(), name="remote-store-receiver")

    @classmethod
    async def connect(cls, path: str | Path) -> RemoteStore:
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError as exc:
            raise StoreUnavailable(f"cannot reach the bench store server at {path}: {exc}") from exc
        return cls(reader, writer)

    # -- transport --------------------------------------------------------------------------
    async def _receive(self) -> None:
        reason = "connection closed"
        try:
            while True:
                rid, status, payload = await store_wire.read(self._reader)
                future = self._pending.pop(rid, None)
                if future is not None:
                    if not future.done():
                        if status == "ok":
                            future.set_result(payload)
                        else:
                            future.set_exception(store_wire.error_from(payload))
                    continue
                stream = self._streams.get(rid)
                if stream is not None:
                    stream.put_nowait((status, payload))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            reason = f"connection to the bench store server lost: {exc!r}"
        finally:
            self._lost = reason
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(StoreUnavailable(reason))
            self._pending.clear()
            for stream in self._streams.values():
                stream.put_nowait(("lost", reason))

    def _send(self, op: str, args: dict[str, Any]) -> int:
        if self._lost is not None:
            raise StoreUnavailable(self._lost)
        rid = next(self._ids)
        self._writer.write(store_wire.encode([rid, op, args]))  # encode first: bad input sends nothing
        return rid

    async def _call(self, op: str, args: dict[str, Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        rid = self._send(op, args)
        self._pending[rid] = future
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()  # a lost connection fails the future instead
        try:
            return await future
        finally:
            self._pending.pop(rid, None)

    # -- the Store contract -----------------------------------------------------------------
    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        result: Obj = await self._call("get", {"kind": kind, "name": name, "namespace": namespace})
        return result

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        items, version = await self._call(
            "list", {"kind": kind, "namespace": namespace, "label_selector": label_selector}
        )
        return items, str(version)

    async def create(self, obj: Obj) -> Obj:
        result: Obj = await self._call("create", {"obj": obj})
        return result

    async def update(self, obj: Obj) -> Obj:
        result: Obj = await self._call("update", {"obj": obj})
        return result

    async def update_status(self, obj: Obj) -> Obj:
        result: Obj = await self._call("update_status", {"obj": obj})
        return result

    async def delete(
        self, kind: str, name: str, namespace: str = "", resource_version: str | None = None
    ) -> Obj | None:
        result: Obj | None = await self._call(
            "delete",
            {"kind": kind, "name": name, "namespace": namespace, "resource_version": resource_version},
        )
        return result

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        args = {
            "kind": kind,
            "namespace": namespace,
            "resource_version": resource_version,
            "label_selector": label_selector,
        }
        rid = self._send("watch", args)
        stream: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._streams[rid] = stream
        return self._follow(rid, stream)

    async def _follow(self, rid: int, stream: asyncio.Queue[tuple[str, Any]]) -> AsyncIterator[WatchEvent]:
        try:
            while True:
                status, payload = await stream.get()
                if status == "event":
                    yield WatchEvent(payload["type"], payload["object"])
                elif status == "end":
                    return
                elif status == "lost":
                    raise StoreUnavailable(str(payload))
                else:
                    raise store_wire.error_from(payload)
        finally:
            self._streams.pop(rid, None)
            if self._lost is None and not self._writer.is_closing():
                with contextlib.suppress(StoreUnavailable, ConnectionError):
                    self._send("cancel", {"id": rid})

    async def close(self) -> None:
        """Close the connection (the server and its store go on)."""
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        self._receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._receiver

    # -- bench extras -----------------------------------------------------------------------
    async def stats(self) -> Counter[Count]:
        """The server's call counts so far, by (operation, kind, outcome)."""
        rows = await self._call("stats", {})
        return Counter({(str(op), str(kind), str(outcome)): int(n) for op, kind, outcome, n in rows})
