"""The embedded Store: one SQLite file, Kubernetes API server semantics, crash-safe.

Owns how state is kept when there is no Kubernetes (the default a new user meets). The
decisions it encodes:

- One writer: the store holds an exclusive lock beside its file from open to close
  (``file_lock``), so a second controller on the same file refuses to start; and only a
  missing file becomes a new store, an existing one must carry the project's marker
  (``sqlite_schema``), so a truncated file is refused instead of silently emptied.
- One file in WAL mode with ``synchronous=FULL``: every write is one ``BEGIN IMMEDIATE``
  transaction, and a call returns only after its commit reached the disk, so an answered
  write survives ``kill -9`` of the process and power loss.
- ``resourceVersion`` is one global counter (kept in the file, rendered as a string), the
  way etcd's revision is: every write takes the next value, a list carries the current one,
  and a watch resumes from any retained value.
- Every write also appends an event (ADDED/MODIFIED/DELETED) to an ``events`` table in the
  same transaction, so a watch replays history from a list's resourceVersion and then
  follows live writes; history is bounded (by count and by bytes, since a pool's status can
  be large) and a watch from an older version raises ``Gone``, as a compacted etcd does.
- The semantics are the API server's for custom resources with the status subresource
  (see ``contract.py``): ``create`` ignores ``status``, ``update`` keeps it, ``update_status``
  touches nothing else, CAS on ``resourceVersion`` when one is given, finalizers delay
  deletion, a write that changes nothing writes nothing. The controller must not notice
  whether it runs on this file or on a cluster.

The controller is the only writer and runs one asyncio loop. Writes go to one writer
thread that commits every write queued meanwhile in a single transaction, each write in
its own savepoint (so one write's conflict does not undo another's), and answers each
caller after that commit's fsync: group commit at the file level, so the event loop never
blocks on the disk and a burst of writes costs one fsync. Reads use a second connection on
the loop's thread and see only committed data (WAL snapshots). ``watch`` waits on an
``asyncio.Event`` that every commit sets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import os
import re
import secrets
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spiderpool_common.errors import InvalidRequest

from spiderpool_controller.domain.models import LabelSelector
from spiderpool_controller.domain.selectors import parse_label_selector
from spiderpool_controller.store import sqlite_schema
from spiderpool_controller.store.contract import (
    EventType,
    Gone,
    Obj,
    ObjectAlreadyExists,
    ObjectNotFound,
    StaleResourceVersion,
    StoreUnavailable,
    WatchEvent,
    has_status_subresource,
)
from spiderpool_controller.store.file_lock import StoreLock

DEFAULT_HISTORY_EVENTS = 10_000
DEFAULT_HISTORY_BYTES = 256 * 1024 * 1024
_WATCH_BATCH = 500

# Upstream names: generateName gets 5 characters from this alphabet (no vowels, no
# look-alikes), after truncating the prefix to 58 so the name fits a DNS label.
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_GENERATE_SUFFIX = 5
_GENERATE_PREFIX_MAX = 58
_GENERATE_ATTEMPTS = 8
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME_MAX = 253
_NAMESPACE_MAX = 63

# Metadata only the store sets; ``update`` keeps the stored values whatever it is sent.
_SYSTEM_METADATA = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
)
# Metadata the API server omits when empty.
_OMIT_EMPTY_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")
# Top-level keys outside the "spec" that ``generation`` tracks.
_UNTRACKED_TOP_LEVEL = ("apiVersion", "kind", "metadata", "status")


_Work = Callable[[sqlite3.Connection], tuple[Any, bool]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _encode(obj: Obj) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _json_copy(value: Any) -> Any:
    """A deep copy that accepts only what JSON carries. Strings are shared, not copied:
    a pool's ``status.allocatedIPs`` is one large string, and re-encoding it per write was
    the store's main cost."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"keys must be strings, not {type(key).__name__}")
            out[key] = _json_copy(item)
        return out
    if isinstance(value, list | tuple):
        return [_json_copy(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"out of range float value {value!r}")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _copy_in(obj: Obj) -> Obj:
    """A private deep copy of a caller's object, refusing what JSON cannot carry."""
    if not isinstance(obj, dict):
        raise InvalidRequest(f"an object must be a mapping, got {type(obj).__name__}")
    try:
        copied: Obj = _json_copy(obj)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"object is not representable as JSON: {exc}") from exc
    kind = copied.get("kind")
    if not isinstance(kind, str) or not kind:
        raise InvalidRequest("object has no kind")
    meta = copied.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise InvalidRequest(f"{kind}: metadata must be a mapping")
    namespace = meta.get("namespace") or ""
    if not isinstance(namespace, str) or (
        namespace and (len(namespace) > _NAMESPACE_MAX or not _DNS_LABEL.match(namespace))
    ):
        raise InvalidRequest(f"{kind}: invalid namespace {namespace!r}: must be a DNS label")
    return copied


def _validate_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{kind}: metadata.name is required")
    if len(name) > _NAME_MAX or not _DNS_SUBDOMAIN.match(name):
        raise InvalidRequest(
            f"{kind}: invalid name {name!r}: must be a lowercase DNS subdomain "
            "(alphanumerics, '-' and '.', at most 253 characters)"
        )
    return name


def _normalize_metadata(meta: dict[str, Any]) -> None:
    for key in _OMIT_EMPTY_METADATA:
        if key in meta and not meta[key]:
            del meta[key]
    if meta.get("namespace") == "":
        del meta["namespace"]


def _spec_of(obj: Obj) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in _UNTRACKED_TOP_LEVEL}


def _without_rv(obj: Obj) -> Obj:
    meta = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return {**obj, "metadata": meta}


def _labels(obj: Obj) -> dict[str, str]:
    labels = obj.get("metadata", {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def _selector(text: str | None) -> LabelSelector | None:
    if not text:
        return None
    try:
        return parse_label_selector(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc


def _parse_rv(text: str) -> int:
    if not text.isdigit():
        raise InvalidRequest(f"invalid resourceVersion {text!r}: expected a decimal number")
    return int(text)


def _describe(kind: str, namespace: str, name: str) -> str:
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _use_wal(conn: sqlite3.Connection, path: Path) -> None:
    """Switch the file to WAL (a persistent property of the file) and this connection to full fsync."""
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise StoreUnavailable(f"{path}: SQLite refused WAL mode (journal_mode={mode})")
    conn.execute("PRAGMA synchronous=FULL")


class SqliteStore:
    """The Store contract on one SQLite file; see the module docstring."""

    def __init__(
        self,
        path: str | Path,
        *,
        history_events: int = DEFAULT_HISTORY_EVENTS,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        busy_timeout_s: float = 1.0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if history_events < 1 or history_bytes < 1:
            raise ValueError("history_events and history_bytes must be positive")
        self.path = Path(path)
        self._history_events = history_events
        self._history_bytes = history_bytes
        self._clock = clock
        self._changed = asyncio.Event()
        self._closed = False
        self._queue: list[tuple[_Work, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._lock = StoreLock(self.path).acquire()  # before the file is created or opened
        try:
            self._conn, self._rconn = self._open(busy_timeout_s)
        except BaseException:
            self._lock.release()
            raise
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")

    def _open(self, busy_timeout_s: float) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        """Create the file if (and only if) it is missing, check its marker, switch it to WAL
        with full fsync; return the writer's and the reader's connections."""
        opened: list[sqlite3.Connection] = []

        def connect() -> sqlite3.Connection:
            uri = sqlite_schema.open_uri(self.path)
            conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
            )
            opened.append(conn)
            return conn

        try:
            if not os.path.lexists(self.path):
                sqlite_schema.create(self.path)
            writer = connect()
            sqlite_schema.check(writer, self.path)
            _use_wal(writer, self.path)
            return writer, connect()
        except BaseException as exc:
            for conn in opened:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"cannot open the store file {self.path}: {exc}") from None
            if isinstance(exc, OSError):
                raise StoreUnavailable(f"cannot create the store file {self.path}: {exc}") from None
            raise

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def _transaction(
        self, begin: str, conn: sqlite3.Connection | None = None
    ) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StoreUnavailable(f"the store {self.path} is closed")
        conn = conn or self._rconn
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store {self.path}: {exc}") from exc
        try:
            yield conn
        except BaseException as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"store {self.path}: {exc}") from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise StoreUnavailable(f"store {self.path}: commit failed: {exc}") from exc

    def _reading(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._transaction("BEGIN")

    async def _write(self, work: _Work) -> Any:
        """Queue ``work`` for the writer thread; return its result once committed."""
        if self._closed:
            raise StoreUnavailable(f"the store {self.path} is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((work, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name="sqlite-group-commit")
        return await fut

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                outcomes = await loop.run_in_executor(self._writer, self._commit, [w for w, _ in batch])
            except BaseException as exc:  # the executor itself failed (shut down)
                outcomes = [(False, StoreUnavailable(f"store {self.path}: {exc}"), False)] * len(batch)
            changed = False
            for (_, fut), (ok, value, did_change) in zip(batch, outcomes, strict=True):
                changed = changed or did_change
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            if changed:
                self._notify()

    def _commit(self, works: list[_Work]) -> list[tuple[bool, Any, bool]]:
        """Writer thread: run every work in its own savepoint, then one COMMIT (one fsync)."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return [(False, StoreUnavailable(f"store {self.path}: {exc}"), False)] * len(works)
        outcomes: list[tuple[bool, Any, bool]] = []
        for work in works:
            try:
                conn.execute("SAVEPOINT write")
                value, changed = work(conn)
                conn.execute("RELEASE write")
                outcomes.append((True, value, changed))
            except BaseException as exc:
                try:
                    conn.execute("ROLLBACK TO write")
                    conn.execute("RELEASE write")
                except sqlite3.Error:
                    pass
                if isinstance(exc, sqlite3.Error):
                    exc = StoreUnavailable(f"store {self.path}: {exc}")
                outcomes.append((False, exc, False))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            failure = StoreUnavailable(f"store {self.path}: commit failed: {exc}")
            return [(False, failure, False)] * len(works)
        return outcomes

    def _notify(self) -> None:
        """Wake every watcher: the current event fires, later waiters get a fresh one."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @staticmethod
    def _counter(conn: sqlite3.Connection, key: str) -> int:
        value: int = conn.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()[0]
        return value

    @staticmethod
    def _load(conn: sqlite3.Connection, kind: str, namespace: str, name: str) -> Obj | None:
        row = conn.execute(
            "SELECT body FROM objects WHERE kind = ? AND namespace = ? AND name = ?", (kind, namespace, name)
        ).fetchone()
        if row is None:
            return None
        obj: Obj = json.loads(row[0])
        return obj

    def _record(
        self,
        conn: sqlite3.Connection,
        event: EventType,
        obj: Obj,
        old_labels: dict[str, str],
    ) -> Obj:
        """Give ``obj`` the next resourceVersion, store (or drop) it and append its event."""
        rv = self._counter(conn, "rv") + 1
        conn.execute("UPDATE counters SET value = ? WHERE key = 'rv'", (rv,))
        meta = obj["metadata"]
        meta["resourceVersion"] = str(rv)
        kind, namespace, name = obj["kind"], meta.get("namespace", ""), meta["name"]
        body = _encode(obj)
        if event == "DELETED":
            conn.execute(
                "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?", (kind, namespace, name)
            )
        else:
            conn.execute(
                "INSERT OR REPLACE INTO objects (kind, namespace, name, body) VALUES (?, ?, ?, ?)",
                (kind, namespace, name, body),
            )
        conn.execute(
            "INSERT INTO events (rv, kind, namespace, type, body, old_labels, size)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rv, kind, namespace, event, body, _encode(old_labels), len(body)),
        )
        self._trim_history(conn, rv, len(body))
        return obj

    def _trim_history(self, conn: sqlite3.Connection, rv: int, size: int) -> None:
        """Drop the oldest events beyond the count and byte budgets (the newest always stays)."""
        compacted = self._counter(conn, "compacted")
        retained = self._counter(conn, "history_bytes") + size
        cutoff = compacted
        if rv - cutoff > self._history_events:
            cutoff = rv - self._history_events
            retained -= conn.execute(
                "SELECT COALESCE(SUM(size), 0) FROM events WHERE rv > ? AND rv <= ?", (compacted, cutoff)
            ).fetchone()[0]
        if retained > self._history_bytes:
            oldest = conn.execute(
                "SELECT rv, size FROM events WHERE rv > ? AND rv < ? ORDER BY rv", (cutoff, rv)
            )
            for old_rv, old_size in oldest:
                if retained <= self._history_bytes:
                    break
                cutoff, retained = old_rv, retained - old_size
            oldest.close()
        if cutoff > compacted:
            conn.execute("DELETE FROM events WHERE rv <= ?", (cutoff,))
            conn.execute("UPDATE counters SET value = ? WHERE key = 'compacted'", (cutoff,))
        conn.execute("UPDATE counters SET value = ? WHERE key = 'history_bytes'", (retained,))

    @staticmethod
    def _check_preconditions(old: Obj, resource_version: Any, uid: Any) -> None:
        meta = old["metadata"]
        where = _describe(old["kind"], meta.get("namespace", ""), meta["name"])
        if uid and uid != meta.get("uid"):
            raise StaleResourceVersion(
                f"{where}: precondition failed: uid {uid} in the request, {meta.get('uid')} stored"
            )
        if resource_version and str(resource_version) != meta["resourceVersion"]:
            raise StaleResourceVersion(
                f"{where}: the object has been modified (resourceVersion {resource_version} in the request, "
                f"{meta['resourceVersion']} stored); apply your changes to the latest version and try again"
            )

    # -- reads ----------------------------------------------------------------------------

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        with self._reading() as conn:
            obj = self._load(conn, kind, namespace, name)
        if obj is None:
            raise ObjectNotFound(f"{_describe(kind, namespace, name)} not found")
        return obj

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        selector = _selector(label_selector)
        with self._reading() as conn:
            if namespace is None:
                rows = conn.execute(
                    "SELECT body FROM objects WHERE kind = ? ORDER BY namespace, name", (kind,)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT body FROM objects WHERE kind = ? AND namespace = ? ORDER BY name",
                    (kind, namespace),
                ).fetchall()
            rv = self._counter(conn, "rv")
        items = [json.loads(body) for (body,) in rows]
        if selector is not None:
            items = [obj for obj in items if selector.matches(_labels(obj))]
        return items, str(rv)

    # -- writes ---------------------------------------------------------------------------

    async def create(self, obj: Obj) -> Obj:
        new = _copy_in(obj)
        kind, meta = new["kind"], new["metadata"]
        namespace = meta.get("namespace") or ""
        if meta.get("resourceVersion"):
            raise InvalidRequest(f"{kind}: resourceVersion must not be set on objects to be created")
        generate = meta.get("generateName") or ""
        if not meta.get("name") and not generate:
            raise InvalidRequest(f"{kind}: metadata.name or metadata.generateName is required")
        if has_status_subresource(kind):
            new.pop("status", None)  # the status subresource: create ignores it, as the API server does
        for key in _SYSTEM_METADATA:
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _rfc3339(self._clock())
        meta["generation"] = 1
        _normalize_metadata(meta)
        if meta.get("name"):
            _validate_name(kind, meta["name"])

        def work(conn: sqlite3.Connection) -> tuple[Obj, bool]:
            if meta.get("name"):
                name = meta["name"]
                if self._load(conn, kind, namespace, name) is not None:
                    raise ObjectAlreadyExists(f"{_describe(kind, namespace, name)} already exists")
            else:
                meta["name"] = self._generate_name(conn, kind, namespace, str(generate))
            return self._record(conn, "ADDED", new, {}), True

        created: Obj = await self._write(work)
        return created

    def _generate_name(self, conn: sqlite3.Connection, kind: str, namespace: str, prefix: str) -> str:
        prefix = prefix[:_GENERATE_PREFIX_MAX]
        for _ in range(_GENERATE_ATTEMPTS):
            suffix = "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(_GENERATE_SUFFIX))
            name = _validate_name(kind, prefix + suffix)
            if self._load(conn, kind, namespace, name) is None:
                return name
        raise ObjectAlreadyExists(f"{kind}: no free name for generateName {prefix!r}; try again")

    def _load_for_write(self, conn: sqlite3.Connection, new: Obj) -> Obj:
        kind, meta = new["kind"], new["metadata"]
        namespace, name = meta.get("namespace") or "", _validate_name(kind, meta.get("name"))
        old = self._load(conn, kind, namespace, name)
        if old is None:
            raise ObjectNotFound(f"{_describe(kind, namespace, name)} not found")
        self._check_preconditions(old, meta.get("resourceVersion"), meta.get("uid"))
        return old

    async def update(self, obj: Obj) -> Obj:
        new = _copy_in(obj)
        stored: Obj = await self._write(lambda conn: self._update(conn, new))
        return stored

    def _update(self, conn: sqlite3.Connection, new: Obj) -> tuple[Obj, bool]:
        old = self._load_for_write(conn, new)
        old_meta, meta = old["metadata"], new["metadata"]
        new.pop("status", None)  # the status subresource: update never changes status
        if "status" in old:
            new["status"] = old["status"]
        for key in _SYSTEM_METADATA:
            meta.pop(key, None)
            if key in old_meta:
                meta[key] = old_meta[key]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        _normalize_metadata(meta)
        deleting = "deletionTimestamp" in old_meta
        added = set(meta.get("finalizers", ())) - set(old_meta.get("finalizers", ()))
        if deleting and added:
            raise InvalidRequest(
                f"{_describe(old['kind'], old_meta.get('namespace', ''), old_meta['name'])}: "
                f"no new finalizers can be added while the object is being deleted: {sorted(added)}"
            )
        if _spec_of(new) != _spec_of(old):
            meta["generation"] = int(old_meta.get("generation", 0)) + 1
        if _without_rv(new) == _without_rv(old):
            return old, False  # a write that changes nothing writes nothing (no version, no event)
        if deleting and not meta.get("finalizers"):
            return self._record(conn, "DELETED", new, _labels(old)), True
        return self._record(conn, "MODIFIED", new, _labels(old)), True

    async def update_status(self, obj: Obj) -> Obj:
        new = _copy_in(obj)

        def work(conn: sqlite3.Connection) -> tuple[Obj, bool]:
            old = self._load_for_write(conn, new)
            updated = dict(old)
            updated.pop("status", None)
            if "status" in new:
                updated["status"] = new["status"]
            if updated == old:
                return old, False
            updated["metadata"] = dict(old["metadata"])
            return self._record(conn, "MODIFIED", updated, _labels(old)), True

        stored: Obj = await self._write(work)
        return stored

    async def delete(
        self, kind: str, name: str, namespace: str = "", resource_version: str | None = None
    ) -> Obj | None:
        def work(conn: sqlite3.Connection) -> tuple[Obj, bool]:
            old = self._load(conn, kind, namespace, name)
            if old is None:
                raise ObjectNotFound(f"{_describe(kind, namespace, name)} not found")
            self._check_preconditions(old, resource_version, None)
            meta = old["metadata"]
            labels = _labels(old)
            if meta.get("finalizers"):
                if "deletionTimestamp" in meta:
                    return old, False  # already terminating: nothing changes
                meta["deletionTimestamp"] = _rfc3339(self._clock())
                meta["deletionGracePeriodSeconds"] = 0
                meta["generation"] = int(meta.get("generation", 0)) + 1
                return self._record(conn, "MODIFIED", old, labels), True
            return self._record(conn, "DELETED", old, labels), True

        stored: Obj | None = await self._write(work)
        return stored

    # -- watch ----------------------------------------------------------------------------

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Stream changes after ``resource_version`` ("" = from the moment of this call)."""
        selector = _selector(label_selector)
        if resource_version:
            start = _parse_rv(resource_version)
        else:
            with self._reading() as conn:
                start = self._counter(conn, "rv")
        return self._follow(kind, namespace, start, selector)

    async def _follow(
        self, kind: str, namespace: str | None, position: int, selector: LabelSelector | None
    ) -> AsyncIterator[WatchEvent]:
        while not self._closed:
            changed = self._changed  # taken before reading, so no commit can slip between
            with self._reading() as conn:
                compacted = self._counter(conn, "compacted")
                current = self._counter(conn, "rv")
                if position < compacted:
                    raise Gone(
                        f"too old resource version: {position} (history starts after {compacted}); "
                        "list again and watch from the list's resourceVersion"
                    )
                query = "SELECT rv, type, body, old_labels FROM events WHERE kind = ? AND rv > ?"
                params: tuple[Any, ...] = (kind, position)
                if namespace is not None:
                    query += " AND namespace = ?"
                    params += (namespace,)
                rows = conn.execute(f"{query} ORDER BY rv LIMIT {_WATCH_BATCH}", params).fetchall()
            # Below a full batch, events of other kinds or namespaces up to ``current`` are
            # skipped for good, so compacting them later does not force a restart.
            caught_up = current if len(rows) < _WATCH_BATCH else rows[-1][0]
            for rv, event_type, body, old_labels in rows:
                position = rv
                event = self._filtered(event_type, json.loads(body), json.loads(old_labels), selector)
                if event is not None:
                    yield event
            position = max(position, caught_up)
            if not rows:
                await changed.wait()

    @staticmethod
    def _filtered(
        event_type: EventType, obj: Obj, old_labels: dict[str, str], selector: LabelSelector | None
    ) -> WatchEvent | None:
        """The event as a selector sees it: objects entering it are ADDED, leaving it DELETED."""
        if selector is None:
            return WatchEvent(event_type, obj)
        now = selector.matches(_labels(obj))
        if event_type != "MODIFIED":
            return WatchEvent(event_type, obj) if now else None
        before = selector.matches(old_labels)
        if now and before:
            return WatchEvent("MODIFIED", obj)
        if now:
            return WatchEvent("ADDED", obj)
        if before:
            return WatchEvent("DELETED", obj)
        return None

    # -- lifecycle ------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the file; running watches end (their iteration stops)."""
        if self._closed:
            return
        if self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)  # answer what is queued before closing
        self._closed = True
        self._notify()
        self._writer.shutdown(wait=True)
        self._conn.close()
        self._rconn.close()
        self._lock.release()

    def integrity_check(self) -> str:
        """SQLite's own verdict on the file ("ok" when intact), for tests and diagnostics."""
        with self._reading() as conn:
            verdict: str = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return verdict
