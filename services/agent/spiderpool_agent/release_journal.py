"""The durable release journal: DELs the controller could not take yet.

CNI DEL must succeed even when the controller is unreachable (a failing DEL makes the
runtime retry forever and blocks pod teardown), yet a release that is only answered and
never done leaks the address. So the agent writes the release here, fsyncs, and only then
answers success; a replay loop retries with exponential backoff until the controller
confirms, and the confirmed entries are compacted away.

Format: one JSON object per line in ``<state dir>/release-journal.jsonl``:
``{"op": "release", "seq": N, "intent": {...}}`` appends an entry and
``{"op": "done", "seq": N}`` confirms it. Appends are fsynced before returning, so an
agent killed with SIGKILL loses nothing it answered for; a torn last line (the kill landed
mid-write, before the answer) is ignored on load. Loading and compaction rewrite the file
atomically (temporary file, fsync, rename, directory fsync).

Ordering rule: an ADD for a key that has a pending release replays that release first
(``settle``), so a late replay can never free the address of a newer attachment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

JOURNAL_FILE = "release-journal.jsonl"
_COMPACT_AFTER_DONE = 256  # rewrite the file once this many confirmations pile up


@dataclass(frozen=True)
class ReleaseIntent:
    """Everything needed to replay one release against the controller.

    The container ID is the sandbox the DEL (or the failed ADD) was for: the controller
    frees nothing when another sandbox of the pod holds the addresses by the time the
    replay arrives. The owner fields carry what the DEL knew about a StatefulSet."""

    container_id: str
    ifname: str
    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""
    node: str = ""
    network: str = ""
    owner_kind: str = ""
    owner_name: str = ""
    owner_replicas: int = 0
    owner_exists: bool = False

    @property
    def key(self) -> tuple[str, str]:
        """The allocation key the controller uses: (pod UID or container ID, interface)."""
        return (self.pod_uid or self.container_id, self.ifname)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReleaseIntent:
        """Read an entry; fields written by older agents default, wrong types are refused."""
        values: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            if name not in data:
                continue
            value = data[name]
            expected = {"int": int, "bool": bool}.get(str(f.type), str)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise TypeError(f"journal field {name}: {value!r} is not {expected.__name__}")
            values[name] = value
        return cls(**values)


ReleaseFn = Callable[[ReleaseIntent], Awaitable[None]]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The journal names every pod's sandbox on the node: root only, like the agent's socket.
DIR_MODE, FILE_MODE = 0o700, 0o600


def _open(path: Path, flags: int) -> int:
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # a file left by an older version may be wider
    return fd


def _append_line(path: Path, line: bytes) -> None:
    created = not path.exists()
    with os.fdopen(_open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    if created:
        _fsync_dir(path.parent)


def _rewrite(path: Path, lines: list[bytes]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with os.fdopen(_open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as fh:
        fh.writelines(lines)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), sort_keys=True) + "\n").encode()


def read_journal(path: Path) -> dict[int, ReleaseIntent]:
    """The pending entries of a journal file (seq -> intent); a torn last line is skipped."""
    if not path.exists():
        return {}
    raw = path.read_bytes().split(b"\n")
    pending: dict[int, ReleaseIntent] = {}
    for index, line in enumerate(raw):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            seq = int(obj["seq"])
            if obj["op"] == "release":
                pending[seq] = ReleaseIntent.from_dict(obj["intent"])
            elif obj["op"] == "done":
                pending.pop(seq, None)
        except (ValueError, KeyError, TypeError):
            last = index == len(raw) - 1
            log.warning("journal_line_skipped", path=str(path), line=index + 1, torn_tail=last)
    return pending


class ReleaseJournal:
    """Pending releases, persisted before DEL answers and replayed until confirmed."""

    def __init__(
        self,
        state_dir: Path,
        release: ReleaseFn,
        *,
        initial_backoff: float = 0.2,
        max_backoff: float = 30.0,
    ) -> None:
        self.path = state_dir / JOURNAL_FILE
        self._release = release
        self._initial = initial_backoff
        self._max = max_backoff
        self._pending: dict[int, ReleaseIntent] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._io = asyncio.Lock()
        self._seq = 0
        self._done_since_compaction = 0
        self._wake = asyncio.Event()
        self._nudge = asyncio.Event()

    async def load(self) -> None:
        """Read the pending entries left by a previous run and compact the file."""
        self.path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(self.path.parent, DIR_MODE)
        async with self._io:
            self._pending = await asyncio.to_thread(read_journal, self.path)
            self._seq = max(self._pending, default=0)
            await asyncio.to_thread(_rewrite, self.path, self._lines())
        if self._pending:
            log.info("journal_loaded", pending=len(self._pending), path=str(self.path))
            self._wake.set()

    def _lines(self) -> list[bytes]:
        return [
            _encode({"op": "release", "seq": seq, "intent": asdict(intent)})
            for seq, intent in sorted(self._pending.items())
        ]

    def pending(self) -> list[ReleaseIntent]:
        return [self._pending[seq] for seq in sorted(self._pending)]

    def has_pending(self, key: tuple[str, str]) -> bool:
        return any(intent.key == key for intent in self._pending.values())

    async def record(self, intent: ReleaseIntent) -> None:
        """Persist ``intent`` (fsync) unless an identical release is already pending."""
        async with self._io:
            if intent in self._pending.values():
                return
            self._seq += 1
            seq = self._seq
            line = _encode({"op": "release", "seq": seq, "intent": asdict(intent)})
            await asyncio.to_thread(_append_line, self.path, line)
            self._pending[seq] = intent
        log.info("release_journaled", container_id=intent.container_id, ifname=intent.ifname, seq=seq)
        self._wake.set()

    async def _confirm(self, seq: int) -> None:
        async with self._io:
            if seq not in self._pending:
                return
            del self._pending[seq]
            self._locks.pop(seq, None)
            self._done_since_compaction += 1
            if not self._pending or self._done_since_compaction >= _COMPACT_AFTER_DONE:
                await asyncio.to_thread(_rewrite, self.path, self._lines())
                self._done_since_compaction = 0
            else:
                await asyncio.to_thread(_append_line, self.path, _encode({"op": "done", "seq": seq}))

    async def _replay_entry(self, seq: int) -> None:
        lock = self._locks.setdefault(seq, asyncio.Lock())
        async with lock:
            intent = self._pending.get(seq)
            if intent is None:
                return  # another task confirmed it while we waited
            await self._release(intent)
            await self._confirm(seq)
            log.info("journal_release_replayed", container_id=intent.container_id, ifname=intent.ifname)

    async def settle(self, key: tuple[str, str]) -> None:
        """Replay now every pending release for ``key``; raise if the controller refuses."""
        for seq in sorted(s for s, intent in self._pending.items() if intent.key == key):
            await self._replay_entry(seq)

    async def replay_pending(self) -> bool:
        """Try every pending entry once; True when none is left."""
        for seq in sorted(self._pending):
            try:
                await self._replay_entry(seq)
            except Exception as exc:  # every failure is retried with backoff
                log.info("journal_replay_failed", seq=seq, error=str(exc), pending=len(self._pending))
                return False
        return not self._pending

    def nudge(self) -> None:
        """The controller just answered: retry pending entries now instead of after backoff."""
        if self._pending:
            self._nudge.set()
            self._wake.set()

    async def run(self) -> None:
        """Replay loop: exponential backoff between attempts while entries are pending."""
        backoff = self._initial
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                backoff = self._initial
            if not self._nudge.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._nudge.wait(), timeout=backoff)
            self._nudge.clear()
            done = await self.replay_pending()
            backoff = self._initial if done else min(backoff * 2, self._max)
