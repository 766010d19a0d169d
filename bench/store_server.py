#!/usr/bin/env python3
"""A bench-only store server: the one store both sides of the allocation benchmark write to.

Why it exists: the benchmark compares this project's controller (one writer, group commit
per pool) with upstream's protocol (every node agent does its own read-modify-write with
compare-and-swap on the pool's status). For the comparison to measure the protocols, both
must pay the same cost per store call: the same storage engine (``SqliteStore``: WAL,
``synchronous=FULL``, the Store contract's API-server semantics) and the same modelled
round trip to a Kubernetes API server (``LatencyStore``: a delay per write, and per read
if asked). So neither side gets a store of its own: this process owns the one SQLite file
behind ``LatencyStore`` and serves its operations over a unix socket; the controller (via
``bench/controller_on_remote_store.py``) and every baseline agent process
(``bench/cas_agent.py``) reach it through ``bench/remote_store.RemoteStore``. It plays the
API server, and like one it serves clients concurrently: each request runs as its own
task, so the latency waits of concurrent calls overlap instead of queueing, and the only
serialisation is the store's own (SQLite's single writer, one fsync per group of commits).

Alternatives weighed: an in-process ``LatencyStore`` per side (what the benchmark did
before) cannot serve the baseline's several agent processes, which must contend on one
object through one store to produce upstream's conflicts; HTTP/1.1 or gRPC would add
parsing or code generation for nothing a benchmark needs; the wire format
(``store_wire``) is length-prefixed JSON, multiplexed by request id.

It also counts every call by (operation, kind, outcome): ``stats`` returns the counts, so
status writes and 409 conflicts are measured in one place for both sides.

Usage: ``store_server.py --socket PATH --db PATH [--write-latency-ms 5] [--read-latency-ms 0]``;
prints one JSON line ``{"event": "store_serving", ...}`` when ready, stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import store_wire
from latency_store import LatencyStore
from spiderpool_common.errors import InvalidRequest
from spiderpool_controller.store.contract import Store, WatchEvent
from spiderpool_controller.store.sqlite import SqliteStore

Count = tuple[str, str, str]  # (operation, kind, outcome: "ok" or the error's class name)


class StoreServer:
    """Serves ``store``'s operations on a unix socket; see the module docstring."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.counts: Counter[Count] = Counter()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def start(self, path: Path) -> None:
        self._server = await asyncio.start_unix_server(self._track, path=str(path))

    async def stop(self) -> None:
        """Stop listening and drop every connection; calls in flight are abandoned."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _track(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass  # stop() ends the connection; the task must not end "cancelled" (asyncio logs that)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        calls: set[asyncio.Task[None]] = set()
        watches: dict[int, asyncio.Task[None]] = {}
        try:
            while True:
                try:
                    rid, op, args = await store_wire.read(reader)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    break  # end of stream, or a frame we cannot trust: drop the connection
                if op == "watch":
                    # Opened here, before the next frame is read: a watch "from now" starts
                    # before any write the client sent after it (SqliteStore fixes the start
                    # when watch() is called).
                    task = self._open_watch(rid, args, writer)
                    if task is not None:
                        watches[rid] = task
                elif op == "cancel":
                    stopped = watches.pop(args.get("id"), None)
                    if stopped is not None:
                        stopped.cancel()
                else:
                    call = asyncio.create_task(self._answer(rid, op, args, writer))
                    calls.add(call)
                    call.add_done_callback(calls.discard)
        finally:
            for task in watches.values():
                task.cancel()
            if self._stopping:
                for call in calls:
                    call.cancel()
            # A client that went away: its calls in flight still complete (a write may be
            # committing already); their answers go nowhere.
            await asyncio.gather(*calls, *watches.values(), return_exceptions=True)
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, message: list[Any]) -> None:
        if writer.is_closing():
            return
        writer.write(store_wire.encode(message))
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    async def _answer(self, rid: int, op: str, args: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        kind = str(args.get("kind") or (args.get("obj") or {}).get("kind", ""))
        try:
            result = await self._call(op, args)
            frame = [rid, "ok", result]
            outcome = "ok"
        except Exception as exc:  # every failure goes back to the caller, by class name
            frame = [rid, "error", store_wire.error_payload(exc)]
            outcome = type(exc).__name__
        if op != "stats":
            self.counts[(op, kind, outcome)] += 1
        await self._send(writer, frame)

    async def _call(self, op: str, args: dict[str, Any]) -> Any:
        store = self.store
        if op == "get":
            return await store.get(args["kind"], args["name"], args.get("namespace", ""))
        if op == "list":
            items, version = await store.list(args["kind"], args.get("namespace"), args.get("label_selector"))
            return [items, version]
        if op == "create":
            return await store.create(args["obj"])
        if op == "update":
            return await store.update(args["obj"])
        if op == "update_status":
            return await store.update_status(args["obj"])
        if op == "delete":
            return await store.delete(
                args["kind"], args["name"], args.get("namespace", ""), args.get("resource_version")
            )
        if op == "stats":
            return [[o, k, outcome, n] for (o, k, outcome), n in sorted(self.counts.items())]
        raise InvalidRequest(f"unknown operation {op!r}")

    def _open_watch(
        self, rid: int, args: dict[str, Any], writer: asyncio.StreamWriter
    ) -> asyncio.Task[None] | None:
        try:
            events = self.store.watch(
                args["kind"],
                args.get("namespace"),
                args.get("resource_version", ""),
                args.get("label_selector"),
            )
        except Exception as exc:
            asyncio.create_task(self._send(writer, [rid, "error", store_wire.error_payload(exc)]))  # noqa: RUF006
            return None
        return asyncio.create_task(self._stream(rid, events, writer))

    async def _stream(
        self, rid: int, events: AsyncIterator[WatchEvent], writer: asyncio.StreamWriter
    ) -> None:
        try:
            async for event in events:
                await self._send(writer, [rid, "event", {"type": event.type, "object": event.object}])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._send(writer, [rid, "error", store_wire.error_payload(exc)])
        else:
            await self._send(writer, [rid, "end", None])
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


async def serve(socket_path: Path, db: Path, write_latency_s: float, read_latency_s: float) -> None:
    store = LatencyStore(SqliteStore(db), write_latency_s=write_latency_s, read_latency_s=read_latency_s)
    server = StoreServer(store)
    await server.start(socket_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"event": "store_serving", "socket": str(socket_path), "db": str(db)}), flush=True)
    await stop.wait()
    await server.stop()
    await store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--socket", required=True, type=Path, help="unix socket to serve on")
    p.add_argument("--db", required=True, type=Path, help="the SQLite file")
    p.add_argument("--write-latency-ms", type=float, default=5.0, help="added to every write, default 5")
    p.add_argument("--read-latency-ms", type=float, default=0.0, help="added to every read, default 0")
    args = p.parse_args(argv)
    if args.write_latency_ms < 0 or args.read_latency_ms < 0:
        p.error("latencies must not be negative")
    asyncio.run(serve(args.socket, args.db, args.write_latency_ms / 1000, args.read_latency_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
