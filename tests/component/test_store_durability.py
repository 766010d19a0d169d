"""An answered write to the SQLite store survives kill -9 of the process at any point.

A child process (``store_crash_writer.py``) writes in a loop and reports each write only
after the store returned it; the parent SIGKILLs it at a random moment (between writes,
just as a write begins, inside a ~200 KB status commit), reopens the file and checks that
every acknowledged write is there, the file is intact and the resourceVersions are
consistent. Rounds share one file, so each round also proves the previous survivors stay.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from spiderpool_controller.store.sqlite import SqliteStore

WRITER = Path(__file__).with_name("store_crash_writer.py")
KIND = "SpiderIPPool"
WATCHDOG_S = 30.0


@dataclass(frozen=True)
class Ack:
    seq: int
    op: str
    name: str
    rv: int
    value: int


@dataclass(frozen=True)
class Round:
    round_id: str
    size: str  # "small" or "large" status writes
    kill_on: str  # kill right after this line kind: "begin" (a write in flight) or "acked"
    kill_at: int  # ...with this sequence number
    jitter_s: float  # then wait this long, to land the kill at varying points of a commit


@dataclass
class Outcome:
    acks: list[Ack]
    last_begun: int


def run_until_killed(db: Path, spec: Round) -> Outcome:
    """Run the writer, SIGKILL it at the round's point, and return every ack it printed."""
    lines: list[str] = []
    with subprocess.Popen(  # the with block closes both pipes, whatever happens
        [sys.executable, str(WRITER), str(db), spec.round_id, spec.size],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        watchdog = threading.Timer(WATCHDOG_S, proc.kill)  # a hung child fails the test instead of hanging it
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                word, seq = line.split()[:2]
                if word == spec.kill_on and int(seq) >= spec.kill_at:
                    if spec.jitter_s:
                        time.sleep(
                            spec.jitter_s
                        )  # the kill's position inside the write, not a wait for anything
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            lines.extend(proc.stdout.read().splitlines(keepends=True))  # acks printed before the kill landed
            proc.wait()
        finally:
            watchdog.cancel()
            stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == -signal.SIGKILL, f"writer ended on its own ({proc.returncode}): {stderr}"
    acks = []
    last_begun = -1
    for line in lines:
        if not line.endswith("\n"):
            continue  # a half-printed line is not an acknowledgement
        parts = line.split()
        if parts[0] == "begin":
            last_begun = int(parts[1])
        elif parts[0] == "acked":
            acks.append(Ack(int(parts[1]), parts[2], parts[3], int(parts[4]), int(parts[5])))
    return Outcome(acks, last_begun)


def check_file(db: Path) -> tuple[int, int]:
    """Integrity and the event log's shape: versions contiguous from the compaction point."""
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counters = dict(raw.execute("SELECT key, value FROM counters").fetchall())
        event_rvs = [rv for (rv,) in raw.execute("SELECT rv FROM events ORDER BY rv")]
    assert event_rvs == list(range(counters["compacted"] + 1, counters["rv"] + 1))
    return counters["rv"], counters["compacted"]


async def verify_round(db: Path, spec: Round, outcome: Outcome) -> None:
    acked_names = set()
    store = SqliteStore(db)
    try:
        items, list_rv = await store.list(KIND)
        by_name = {o["metadata"]["name"]: o for o in items}
        item_rvs = [int(o["metadata"]["resourceVersion"]) for o in items]
        assert len(set(item_rvs)) == len(item_rvs), "two objects share a resourceVersion"
        assert max(item_rvs, default=0) <= int(list_rv)
        for ack in outcome.acks:
            assert ack.rv <= int(list_rv), f"{spec}: acked version {ack.rv} is beyond the file's {list_rv}"
            assert ack.name in by_name, f"{spec}: acknowledged {ack} is missing after kill -9"
            obj = by_name[ack.name]
            if ack.op == "create" and ack.seq > 0:
                acked_names.add(ack.name)
                assert obj["spec"] == {"n": ack.value}
                assert int(obj["metadata"]["resourceVersion"]) == ack.rv
        counter = by_name.get(f"r{spec.round_id}-counter")
        status_acks = [a for a in outcome.acks if a.op == "status"]
        if status_acks:
            assert counter is not None
            n = counter["status"]["n"]
            # The acknowledged value, or the one write in flight when the kill landed.
            assert status_acks[-1].value <= n <= outcome.last_begun, (spec, n, status_acks[-1])
            assert int(counter["metadata"]["resourceVersion"]) >= status_acks[-1].rv
            assert len(counter["status"]["blob"]) == (200_000 if spec.size == "large" else 0)
        created_here = {name for name in by_name if name.startswith(f"r{spec.round_id}-o")}
        assert acked_names <= created_here
        assert len(created_here - acked_names) <= 1, "only the in-flight create may land unacknowledged"
    finally:
        await store.close()


async def test_acknowledged_writes_survive_kill_9_at_random_points(tmp_path: Path) -> None:
    """Across rounds of SIGKILL at varied points, no acknowledged write is lost and the file stays intact."""
    seed = int(os.environ.get("STORE_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    db = tmp_path / "state.db"
    rounds = [
        Round("0", "small", "begin", 0, 0.0),  # a fresh file, killed as its first write starts
        Round("1", "small", "acked", rng.randint(5, 40), 0.0),
        Round("2", "small", "begin", rng.randint(5, 40), rng.uniform(0, 0.002)),
        Round("3", "large", "begin", rng.randint(2, 12), 0.0),
        Round("4", "large", "begin", rng.randint(2, 12), rng.uniform(0, 0.004)),
        Round("5", "large", "acked", rng.randint(2, 12), rng.uniform(0, 0.004)),
        Round("6", "small", "begin", rng.randint(40, 120), rng.uniform(0, 0.001)),
    ]
    previous_rv = 0
    done: list[tuple[Round, Outcome]] = []
    for spec in rounds:
        outcome = run_until_killed(db, spec)
        done.append((spec, outcome))
        rv, _ = check_file(db)
        assert rv >= previous_rv, f"seed {seed}: resourceVersion went back from {previous_rv} to {rv}"
        for earlier_spec, earlier in done:  # this round's acks, and every earlier round's too
            await verify_round(db, earlier_spec, earlier)
        store = SqliteStore(db)
        after = await store.create({"kind": KIND, "metadata": {"name": f"r{spec.round_id}-after"}})
        await store.close()
        assert int(after["metadata"]["resourceVersion"]) == rv + 1, f"seed {seed}: versions not continued"
        previous_rv, _ = check_file(db)
    total_acks = sum(len(outcome.acks) for _, outcome in done)
    assert total_acks > 50, f"seed {seed}: the writers acknowledged too little to prove anything"
