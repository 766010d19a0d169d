"""The SQLite store file has one writer and an identity: its lock, its marker, its creation.

Real files in a temporary directory: a second store on a locked file is refused naming the
holder; only a missing file becomes a new store, created whole under a temporary name; a
file that exists must carry the marker (a zero-byte, foreign or corrupt file is refused
and left unchanged); a store written before the marker existed is adopted.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from spiderpool_controller.store.contract import StoreUnavailable
from spiderpool_controller.store.file_lock import StoreLocked
from spiderpool_controller.store.sqlite import SqliteStore
from spiderpool_controller.store.sqlite_schema import APPLICATION_ID, SCHEMA, SCHEMA_VERSION

KIND = "SpiderIPPool"


def header_marker(path: Path) -> tuple[int, int]:
    """(application_id, user_version) read from the file's own header, bypassing the store."""
    with sqlite3.connect(path) as conn:
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        return application_id, conn.execute("PRAGMA user_version").fetchone()[0]


async def test_a_second_store_on_a_locked_file_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """While one store has the file open, opening it again raises StoreLocked with the holder's pid;
    after close it opens, with the data."""
    path = tmp_path / "state.db"
    first = SqliteStore(path)
    await first.create({"kind": KIND, "metadata": {"name": "p1"}})
    with pytest.raises(StoreLocked, match=rf"process {os.getpid()} holds its lock {path}\.lock"):
        SqliteStore(path)
    await first.close()
    second = SqliteStore(path)
    assert (await second.get(KIND, "p1"))["metadata"]["name"] == "p1"
    await second.close()


async def test_a_new_store_file_carries_the_marker_and_no_staging_file_remains(tmp_path: Path) -> None:
    """A missing file is created with the application id and schema version in its header."""
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await store.close()
    assert header_marker(path) == (APPLICATION_ID, SCHEMA_VERSION)
    assert sorted(p.name for p in tmp_path.iterdir() if "creating" in p.name) == []


async def test_a_leftover_of_an_interrupted_creation_does_not_stop_the_next_one(tmp_path: Path) -> None:
    """A half-built staging file from a crash during creation is discarded, never taken for the store."""
    path = tmp_path / "state.db"
    (tmp_path / "state.db.creating").write_bytes(b"half written")
    store = SqliteStore(path)
    await store.create({"kind": KIND, "metadata": {"name": "p1"}})
    await store.close()
    assert header_marker(path) == (APPLICATION_ID, SCHEMA_VERSION)
    assert not (tmp_path / "state.db.creating").exists()


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
        (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200), "not a spiderpool store"),
        (lambda p: sqlite3.connect(p).execute("CREATE TABLE t (x)").connection.close(), "without a marker"),
        (
            lambda p: sqlite3.connect(p).execute("PRAGMA application_id=1234").connection.close(),
            "application_id 0x4d2",
        ),
    ],
    ids=["zero-bytes", "corrupt-header", "unmarked-sqlite", "other-application"],
)
async def test_an_existing_file_without_the_marker_is_refused_and_left_unchanged(
    tmp_path: Path, make: object, fragment: str
) -> None:
    """Only a missing file becomes a new store: any other file without the marker is refused in one line."""
    path = tmp_path / "state.db"
    make(path)  # type: ignore[operator]
    before = path.read_bytes()
    with pytest.raises(StoreUnavailable) as refused:
        SqliteStore(path)
    message = str(refused.value)
    assert str(path) in message and fragment in message and "\n" not in message, message
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists()
    # the refusal gave the lock up: once the file is moved away, a new store starts there
    path.unlink()
    await SqliteStore(path).close()


async def test_a_store_written_before_the_marker_existed_is_adopted(tmp_path: Path) -> None:
    """A schema-1 store without an application id keeps its objects and gets the marker."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as old:
        old.executescript(SCHEMA)
        body = '{"kind": "SpiderIPPool", "metadata": {"name": "p1", "resourceVersion": "1"}}'
        old.execute("INSERT INTO objects VALUES (?, '', 'p1', ?)", (KIND, body))
        old.execute("UPDATE counters SET value = 1 WHERE key = 'rv'")
        old.execute("PRAGMA user_version=1")
    store = SqliteStore(path)
    assert (await store.get(KIND, "p1"))["metadata"]["name"] == "p1"
    await store.close()
    assert header_marker(path) == (APPLICATION_ID, SCHEMA_VERSION)


def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    """A marked store of a schema this code does not know is refused, not rewritten."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreUnavailable, match=f"schema version {SCHEMA_VERSION + 1}"):
        SqliteStore(path)
