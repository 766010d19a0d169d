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
import copy
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
ObjKey = tuple[str, str, str]  # (group/plural, namespace, name)


def meta(obj: Obj) -> dict[str, Any]:
    """The object's `metadata` dict (created if absent)."""
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = obj["metadata"] = {}
    return m


@dataclass(frozen=True)
class Event:
    """One change: `type` ADDED/MODIFIED/DELETED, the object after it and (for MODIFIED/DELETED) before it."""

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
        self._objects: dict[ObjKey, Obj] = {}
        self._rv = first_rv
        self._history: deque[Event] = deque()
        self._history_size = history_size
        self._compacted = first_rv  # events at or below this revision are gone from the history
        self._watchers: set[Watcher] = set()
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
        obj = self._objects.get((key, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(self, key: str, namespace: str | None = None) -> list[Obj]:
        """Objects of one group/resource (in one namespace, or all), sorted by namespace and name."""
        keys = sorted(k for k in self._objects if k[0] == key and (namespace is None or k[1] == namespace))
        return [copy.deepcopy(self._objects[k]) for k in keys]

    def keys(self) -> Iterator[ObjKey]:
        return iter(list(self._objects))

    def all_objects(self) -> Iterator[tuple[ObjKey, Obj]]:
        """Every stored object (not copied: read-only use)."""
        return iter(list(self._objects.items()))

    def count(self, key: str) -> int:
        return sum(1 for k in self._objects if k[0] == key)

    # writes: each takes the next revision and records one event

    def _next(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _emit(self, ev: Event) -> None:
        self._history.append(ev)
        self._trim()
        for w in list(self._watchers):
            if w.key == ev.key:
                w.queue.put_nowait(ev)
        for listener in list(self.listeners):
            listener(ev)

    def put(self, key: str, obj: Obj, old: Obj | None) -> Obj:
        """Create (`old` None) or replace an object; returns the stored copy with its new resourceVersion."""
        m = meta(obj)
        m["resourceVersion"] = self._next()
        k = (key, m.get("namespace", ""), m["name"])
        self._objects[k] = copy.deepcopy(obj)
        self._emit(Event(self._rv, "ADDED" if old is None else "MODIFIED", key, copy.deepcopy(obj), old))
        return copy.deepcopy(obj)

    def remove(self, key: str, obj: Obj) -> Obj:
        """Delete an object; the DELETED event carries its last state with a fresh resourceVersion."""
        m = meta(obj)
        k = (key, m.get("namespace", ""), m["name"])
        old = self._objects.pop(k)
        gone = copy.deepcopy(old)
        meta(gone)["resourceVersion"] = self._next()
        self._emit(Event(self._rv, "DELETED", key, copy.deepcopy(gone), old))
        return gone

    # watch

    def watch(self, key: str, since: int | None) -> tuple[Watcher, list[Event]]:
        """Subscribe to one group/resource; with `since`, also the recorded events after that revision.

        Raises `TooOld` when events after `since` may already have been forgotten.
        """
        backlog: list[Event] = []
        if since is not None:
            if since < self._compacted:
                raise TooOld(since, self._compacted)
            backlog = [ev for ev in self._history if ev.rv > since and ev.key == key]
        w = Watcher(key)
        if self._closed:
            w.close()  # the server is stopping: a client reconnecting now gets a stream that ends
        else:
            self._watchers.add(w)
        return w, backlog

    def unwatch(self, w: Watcher) -> None:
        self._watchers.discard(w)

    def close_watchers(self, *, for_good: bool = False) -> int:
        """End every open watch stream (a dropped connection from the client's point of view).

        for_good: also end every watch opened from now on (the server is stopping; informers
        reconnect at once, and an open stream would hold the server's shutdown).
        """
        self._closed = self._closed or for_good
        n = len(self._watchers)
        for w in list(self._watchers):
            w.close()
        self._watchers.clear()
        return n

    def accept_watches(self) -> None:
        """Serve watches again (the server started after a stop)."""
        self._closed = False

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)
