"""The store file's exclusive lock: one writer per SQLite store, for the writer's whole life.

Owns the single-writer rule where it can be enforced: two controllers on one file would
each decide allocations from their own memory and hand the same address to two pods.

Decision: ``fcntl.flock(LOCK_EX | LOCK_NB)`` on a lock file beside the database
(``<db>.lock``), taken before the database is opened or created and held until the store
is closed. The kernel drops it when the holder dies, ``kill -9`` included, so there is
never a stale lock to clean up by hand. The holder writes its pid into the file, so a
refused controller can name it. Rejected alternatives:

- SQLite's ``PRAGMA locking_mode=EXCLUSIVE``: the store has two connections (the writer
  thread's and the event loop's reader) that would lock each other out; SQLite takes the
  lock at the first read or write, not at start, so a second controller would start and
  then fail request by request with "database is locked"; it cannot say who holds it; and
  it shuts out read-only inspection with the ``sqlite3`` shell, which flock leaves alone.
- POSIX ``fcntl`` record locks: they belong to the process, not to the open file, so a
  second open in the same process would succeed, and closing any descriptor of the file
  drops them (SQLite's own locks on the database work that way, which is also why the
  lock is a separate file and not the database itself).

The lock file is never deleted: unlinking it while another process waits to lock it
would let two processes each hold "the" lock, on two different inodes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from spiderpool_controller.store.contract import StoreUnavailable

LOCK_SUFFIX = ".lock"


class StoreLocked(StoreUnavailable):
    """Another process (named by pid, when known) holds the store's lock."""


def lock_path(db: Path) -> Path:
    """The lock file of the database ``db``: ``<db>.lock`` in the same directory."""
    return db.with_name(db.name + LOCK_SUFFIX)


class StoreLock:
    """An exclusive flock on ``<db>.lock``; ``release`` (or process exit) gives it up."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.path = lock_path(db)
        self._fd = -1

    def acquire(self) -> StoreLock:
        """Take the lock now or raise ``StoreLocked`` (never waits)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreUnavailable(f"cannot open the store's lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreUnavailable(f"cannot lock {self.path}: {exc.strerror}") from None
            by = f"process {holder}" if holder else "another process"
            raise StoreLocked(
                f"the store {self.db} is in use: {by} holds its lock {self.path}; "
                "only one controller may use a store at a time"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is only for messages; the lock is what counts
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up; safe to call more than once."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read_pid(fd: int) -> int:
    """The pid the holder wrote (0 if unreadable: it may be writing it right now)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return 0
    return int(text) if text.isdigit() else 0
