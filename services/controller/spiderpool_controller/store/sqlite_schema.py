"""What makes a file a spiderpool store: its schema, its marker, and how it comes to exist.

Owns the rule that only a missing file is a new store. SQLite opens a zero-byte file as
an empty database, so a store truncated by a full disk, a bad copy or a careless
``> controller.db`` would be taken for a new one and every allocation forgotten: the
addresses of running pods handed out again. So a file that exists must carry the marker,
or the controller refuses to start with one line saying what the file is and what to do:

- The marker is SQLite's ``PRAGMA application_id`` (the header field reserved for telling
  one application's files from another's, which ``file(1)`` also reads) set to
  ``APPLICATION_ID``, and ``PRAGMA user_version`` set to the schema version.
- Creation is atomic: the file is built under a temporary name (schema and marker in one
  committed, fsynced transaction), linked into place (``link`` never replaces an existing
  file) and its directory fsynced. A crash leaves no store file or a complete one, never
  one without its marker that the next start would refuse.
- A store written before the marker existed (schema version 1, application_id 0, our
  three tables) is adopted: it gets the marker once.

The caller holds the store's lock (``file_lock``) throughout, so no other controller
creates or opens the file meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from pathlib import Path

from spiderpool_controller.store.contract import StoreUnavailable

APPLICATION_ID = 0x53504950  # "SPIP": SPIderPool
SCHEMA_VERSION = 1
TABLES = frozenset({"objects", "events", "counters"})
SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    rv INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    old_labels TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_kind ON events (kind, rv);
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (key, value) VALUES ('rv', 0), ('compacted', 0), ('history_bytes', 0);
"""
_STAGING_SUFFIX = ".creating"
_SQLITE_SIDE_FILES = ("", "-journal", "-wal", "-shm")
_WHAT_TO_DO = "restore it from a backup, or move it away to start with an empty store"


def open_uri(path: Path) -> str:
    """An SQLite URI that opens ``path`` read-write and never creates it."""
    absolute = "/" + os.path.abspath(path).lstrip("/")  # "//x" is "/x" on Linux, not a URI authority
    return f"file://{urllib.parse.quote(absolute)}?mode=rw"


def create(path: Path) -> None:
    """Create the store file ``path`` (which must not exist) with schema and marker, atomically."""
    staging = path.with_name(path.name + _STAGING_SUFFIX)
    for suffix in _SQLITE_SIDE_FILES:  # a crash during an earlier creation left these
        Path(f"{staging}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(staging, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(
            f"BEGIN; {SCHEMA} PRAGMA application_id={APPLICATION_ID}; "
            f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
        )
    finally:
        conn.close()
    try:
        os.link(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse (``StoreUnavailable``, one line) a file that is not a spiderpool store; adopt an
    unmarked store of schema version 1. Call before anything writes to the file."""
    try:
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise StoreUnavailable(
            f"the store file {path} is not a spiderpool store: {exc} (corrupt, or another program's file); "
            f"{_WHAT_TO_DO}"
        ) from None
    if application_id == APPLICATION_ID:
        if version != SCHEMA_VERSION:
            raise StoreUnavailable(
                f"the store file {path} has schema version {version}; "
                f"this controller reads version {SCHEMA_VERSION}"
            )
        return
    if application_id == 0 and version == SCHEMA_VERSION and tables >= TABLES:
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")  # written before the marker existed
        return
    size = _size(path)
    if size == 0:
        raise StoreUnavailable(
            f"the store file {path} is empty (0 bytes), so it is not a spiderpool store and taking it "
            f"for a new one would forget every allocation; {_WHAT_TO_DO}"
        )
    what = (
        f"SQLite application_id {application_id:#x}" if application_id else "an SQLite file without a marker"
    )
    raise StoreUnavailable(
        f"the store file {path} is not a spiderpool store ({what}, {size} bytes); {_WHAT_TO_DO}"
    )


def _size(path: Path) -> int:
    with contextlib.suppress(OSError):
        return path.stat().st_size
    return -1
