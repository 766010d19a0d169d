"""The record of accepted writes: who wrote what, when, and which resourceVersion it made.

Owns the API server's audit trail of successful writes (create, update, patch, delete), as a real
API server's audit log at the RequestResponse stage would keep it, for tests that must prove who
wrote (the split-brain check of the chaos storm: no write from a paused controller replica once
it resumes). An entry holds the time the request arrived (``received``) and was answered
(``at``), both ``time.time()`` on this machine, the verb, resource (``pods``,
``spiderippools/status``), namespace, name, the user, the User-Agent (a controller replica names
itself there), the HTTP status and the resulting resourceVersion. Bounded: the oldest entries go
first. Thread-safe.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class WriteEntry:
    received: float
    at: float
    verb: str
    resource: str
    namespace: str
    name: str
    user: str
    user_agent: str
    code: int
    resource_version: str


class WriteLog:
    def __init__(self, capacity: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[WriteEntry] = deque(maxlen=capacity)

    def record(self, entry: WriteEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, since: float = 0.0, user_agent: str = "") -> list[dict[str, Any]]:
        """Entries received at or after ``since`` whose User-Agent contains ``user_agent``, oldest first."""
        with self._lock:
            return [
                asdict(e)
                for e in self._entries
                if e.received >= since and (not user_agent or user_agent in e.user_agent)
            ]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
