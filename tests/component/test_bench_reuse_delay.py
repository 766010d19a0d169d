"""The reuse-delay benchmark runs, reports both settings, and its churn never hands out an address twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "reuse_delay_throughput.py"


def test_the_quick_benchmark_reports_off_and_on_with_bounded_memory_and_no_duplicates() -> None:
    """A small run prints a table and one JSON line with rates for both settings and no duplicates;
    the delay-on pool remembers exactly the free addresses (pool minus held)."""
    argv = [sys.executable, str(BENCH), "--pool", "40", "--held", "30", "--churn", "30", "--clients", "3"]
    proc = subprocess.run(
        [*argv, "--rounds", "1", "--write-latency-ms", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["duplicates"] == 0
    for key in ("off_0ms", "on_0ms", "off_1ms", "on_1ms"):
        assert summary[key] > 0
    rows = {line.split(",")[0]: line.split() for line in lines[1:5]}
    assert rows["delay on "][-2] == "10"  # releasedIPs: 40 addresses - 30 held, all cooling
    assert rows["delay off"][-2] == "0"
