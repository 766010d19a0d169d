"""Objects, the global resourceVersion counter, the bounded event history and the live watchers.

One `Store` holds every object as a JSON dict keyed by (group/resource, namespace, name). Each write takes the
next value of one global counter as its `resourceVersion` (like etcd's revision) and appends an event to a
bounded history; watchers registered from an older revision replay the history, and a revision older than what
the history still holds is "too old" (410 Expired), which `compact()` can force. The store knows nothing about
HTTP, schemas or admission: those are `rest.py`'s. Everything runs on the server's event loop, so no locking
is needed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

Obj = dict[str, Any]
ObjKey = tuple[str, str, str]  # (group/plural, namespace, name)
_T = TypeVar("_T")


def clone(value: _T) -> _T:
    """A deep copy of a JSON value (dicts, lists, scalars): what `copy.deepcopy` does for these, at a
    fraction of its cost (no memo, no dispatch on arbitrary types)."""
    return cast(_T, _clone(value))


def _clone(value: Any) -> Any:
    if type(value) is dict:
        return {k: _clone(v) for k, v in value.items()}
    if type(value) is list:
        return [_clone(v) for v in value]
    return value


def meta(obj: Obj) -> dict[str, Any]:
    """The object's `metadata` dict (created if absent)."""
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = obj["metadata"] = {}
    return m


@dataclass(frozen=True)
class Event:
    """One change: `type` ADDED/MODIFIED/DELETED, the object after it and (for MODIFIED/DELETED) before it.

    `obj` is the stored object itself (shared, never mutated: every write stores a new dict), so readers
    copy before they change it.
    """

    rv: int
    type: str
    key: str
    obj: Obj
    old: Obj | None = None
    # The JSON line each event type of it was sent as (watchers of one resource share it: the real
    # server also encodes an event once per format, not once per watcher).
    encoded: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)


@dataclass(eq=False)
class Watcher:
    """A live subscription: events of one group/resource that pass `accepts` are queued for the stream."""

    key: str
    accepts: Callable[[Event], bool] | None = None  # None: every event of the resource
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)

    def close(self) -> None:
        self.queue.put_nowait(None)


class TooOld(Exception):
    """A watch asked for a revision the history no longer holds."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class Store:
    """Objects with a global revision counter, a bounded event history and watchers."""

    def __init__(self, history_size: int = 10_000, first_rv: int = 1000) -> None:
        # per group/resource, (namespace, name) -> object: a list reads one resource, not every object
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._rv = first_rv
        self._history: deque[Event] = deque()
        self._history_size = history_size
        self._compacted = first_rv  # events at or below this revision are gone from the history
        self._watchers: dict[str, set[Watcher]] = {}  # per group/resource
        self._closed = False
        #: called after every recorded event (the API layer keeps indexes and runs garbage collection from
        # here)
        self.listeners: list[Callable[[Event], None]] = []

    @property
    def revision(self) -> int:
        return self._rv

    @property
    def compacted(self) -> int:
        return self._compacted

    def set_history_size(self, size: int) -> None:
        self._history_size = max(1, size)
        self._trim()

    def compact(self) -> None:
        """Forget the whole history: every watch from an earlier revision now gets 410."""
        self._history.clear()
        self._compacted = self._rv

    def _trim(self) -> None:
        while len(self._history) > self._history_size:
            dropped = self._history.popleft()
            self._compacted = dropped.rv

    # reads

    def get(self, key: str, namespace: str, name: str) -> Obj | None:
        obj = self.peek(key, namespace, name)
        return clone(obj) if obj is not None else None

    def peek(self, key: str, namespace: str, name: str) -> Obj | None:
        """Like `get`, not copied: read-only use."""
        return self._objects.get(key, {}).get((namespace, name))

    def objects(self, key: str, namespace: str | None = None) -> list[Obj]:
        """Objects of one group/resource (in one namespace, or all), sorted by namespace and name."""
        return [clone(o) for o in self.view(key, namespace)]

    def view(self, key: str, namespace: str | None = None) -> list[Obj]:
        """Like `objects`, not copied: read-only use (authorization, admission configurations)."""
        of_key = self._objects.get(key, {})
        names = sorted(k for k in of_key if namespace is None or k[0] == namespace)
        return [of_key[k] for k in names]

    def keys(self) -> Iterator[ObjKey]:
        return (k for k, _ in self.all_objects())

    def all_objects(self) -> Iterator[tuple[ObjKey, Obj]]:
        """Every stored object (not copied: read-only use)."""
        return iter(
            [
                ((key, ns, name), obj)
                for key, of_key in self._objects.items()
                for (ns, name), obj in of_key.items()
            ]
        )

    def count(self, key: str) -> int:
        return len(self._objects.get(key, {}))

    # writes: each takes the next revision and records one event

    def _next(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _emit(self, ev: Event) -> None:
        self._history.append(ev)
        self._trim()
        for w in list(self._watchers.get(ev.key, ())):
            if w.accepts is None or w.accepts(ev):  # filtered here: a stream is not woken for nothing
                w.queue.put_nowait(ev)
        for listener in list(self.listeners):
            listener(ev)

    def put(self, key: str, obj: Obj, old: Obj | None) -> Obj:
        """Create (`old` None) or replace an object; returns a copy of the stored object with its new
        resourceVersion."""
        stored = clone(obj)
        m = meta(stored)
        m["resourceVersion"] = self._next()
        meta(obj)["resourceVersion"] = m["resourceVersion"]
        self._objects.setdefault(key, {})[(m.get("namespace", ""), m["name"])] = stored
        self._emit(Event(self._rv, "ADDED" if old is None else "MODIFIED", key, stored, old))
        return clone(stored)

    def remove(self, key: str, obj: Obj) -> Obj:
        """Delete an object; the DELETED event carries its last state with a fresh resourceVersion."""
        m = meta(obj)
        of_key = self._objects.get(key, {})
        old = of_key.pop((m.get("namespace", ""), m["name"]))
        if not of_key:
            self._objects.pop(key, None)
        gone = dict(old)  # top level copied: only the resourceVersion differs from the stored object
        gone["metadata"] = {**old.get("metadata", {}), "resourceVersion": self._next()}
        self._emit(Event(self._rv, "DELETED", key, gone, old))
        return clone(gone)

    # watch

    def watch(
        self, key: str, since: int | None, accepts: Callable[[Event], bool] | None = None
    ) -> tuple[Watcher, list[Event]]:
        """Subscribe to one group/resource; with `since`, also the recorded events after that revision.

        Raises `TooOld` when events after `since` may already have been forgotten.
        """
        backlog: list[Event] = []
        if since is not None:
            if since < self._compacted:
                raise TooOld(since, self._compacted)
            backlog = [ev for ev in self._history if ev.rv > since and ev.key == key]
        w = Watcher(key, accepts)
        if self._closed:
            w.close()  # the server is stopping: a client reconnecting now gets a stream that ends
        else:
            self._watchers.setdefault(key, set()).add(w)
        return w, backlog

    def unwatch(self, w: Watcher) -> None:
        of_key = self._watchers.get(w.key)
        if of_key is not None:
            of_key.discard(w)
            if not of_key:
                del self._watchers[w.key]

    def close_watchers(self, *, for_good: bool = False) -> int:
        """End every open watch stream (a dropped connection from the client's point of view).

        for_good: also end every watch opened from now on (the server is stopping; informers
        reconnect at once, and an open stream would hold the server's shutdown).
        """
        self._closed = self._closed or for_good
        watchers = [w for of_key in self._watchers.values() for w in of_key]
        for w in watchers:
            w.close()
        self._watchers.clear()
        return len(watchers)

    def accept_watches(self) -> None:
        """Serve watches again (the server started after a stop)."""
        self._closed = False

    @property
    def watcher_count(self) -> int:
        return sum(len(of_key) for of_key in self._watchers.values())
