"""The allocation benchmark (bench/alloc_throughput.py) end to end in its --quick size:
real processes (store server, controller, baseline agents), its JSON line and its checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "alloc_throughput.py"
SUMMARY_KEYS = {
    # the keys the benchmark has always printed
    "allocs_per_s",
    "baseline_allocs_per_s",
    "speedup",
    "status_writes_per_alloc",
    "p50_ms",
    "p99_ms",
    "duplicates",
    "raw_allocs_per_s",
    # the rebuilt baseline's
    "baseline_conflicts_per_alloc",
    "baseline_failed",
    "leaks",
    # the reuse delay's run
    "reuse_delay_allocs_per_s",
    "reuse_delay_ratio",
}
UPSTREAM_ATTEMPTS = 5


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    details = tmp_path_factory.mktemp("bench") / "details.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--details", str(details)],
        capture_output=True,
        text=True,
        timeout=280,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        check=False,
    )
    return done, json.loads(details.read_text()) if details.exists() else {}


def runs_by_label(details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["label"]: r for r in details["runs"]}


@pytest.mark.slow
def test_quick_run_passes_its_checks_and_ends_with_the_summary_line(
    quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    """The quick run exits 0, prints the table, and its last line is the JSON summary with every key."""
    done, _ = quick_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "baseline (CAS per agent)" in done.stdout
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(summary) == SUMMARY_KEYS
    for key in SUMMARY_KEYS - {"duplicates", "leaks", "baseline_failed"}:
        assert isinstance(summary[key], float | int) and summary[key] > 0, key
    assert summary["duplicates"] == 0
    assert summary["leaks"] == 0


@pytest.mark.slow
def test_every_run_hands_out_each_address_once_and_leaves_the_pool_empty(
    quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    """All five runs allocate the whole pool with no duplicate, no store mismatch, no failure and no leak."""
    _, details = quick_run
    runs = details["runs"]
    assert len(runs) == 5
    for run in runs:
        assert run["allocations"] == details["workload"]["allocations"], run["label"]
        assert (run["duplicates"], run["leaks"], run["errors"]) == (0, 0, []), run["label"]


@pytest.mark.slow
def test_the_baselines_conflict_count_is_consistent(
    quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    """The agents' and the store's 409 counts agree, every status write commits or conflicts, and each
    failed ADD spent its five attempts on conflicts; the summary reports the same counts."""
    done, details = quick_run
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    base = runs_by_label(details)["baseline (CAS per agent)"]
    assert base["conflicts"] == base["agent_conflicts"]
    assert base["status_writes"] == base["agent_writes"] == base["allocations"] + base["conflicts"]
    assert base["conflicts"] >= UPSTREAM_ATTEMPTS * base["failed_adds"]
    assert base["ticket_waits"] > 0  # two ADDs per node in --quick: the node's ticket queues them
    assert summary["baseline_failed"] == base["failed_adds"]
    assert summary["baseline_conflicts_per_alloc"] == round(base["conflicts"] / base["allocations"], 3)


@pytest.mark.slow
def test_group_commit_writes_less_than_once_per_allocation_and_never_conflicts(
    quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    """The controller, the pool's only writer, batches concurrent allocations and meets no 409."""
    _, details = quick_run
    ours = runs_by_label(details)["group commit"]
    assert ours["conflicts"] == 0
    assert 0 < ours["status_writes"] < ours["allocations"]
