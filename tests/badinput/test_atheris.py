"""The coverage-guided fuzz targets (``atheris_targets.py``) find nothing in a bounded run.

Each target runs in its own process (libFuzzer owns the process and exits when done), from
its seed corpus, for a fixed number of inputs with a fixed seed, so the run takes seconds
and repeats. A failure is libFuzzer's report: the exception, and the input it saved in the
temporary directory (reproduce with ``python -m tests.badinput.atheris_targets TARGET FILE``).
Longer runs: ``-runs=`` larger, or ``-max_total_time=SECONDS``, by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.badinput.atheris_targets import TARGETS, write_seeds

ROOT = Path(__file__).resolve().parents[2]
RUNS = {"shim": 20000, "agent": 4000, "review": 20000}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_fuzz_target_survives_a_bounded_run(target: str, tmp_path: Path) -> None:
    """libFuzzer mutates the seeds for a fixed number of runs and no input breaks the contract."""
    corpus = tmp_path / "corpus"
    write_seeds(target, corpus)
    argv = [
        sys.executable, "-m", "tests.badinput.atheris_targets", target,
        f"-runs={RUNS[target]}", "-seed=1", "-max_len=4096", f"-artifact_prefix={tmp_path}/", str(corpus),
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    report = "\n".join(
        line for line in proc.stderr.splitlines() if not line.startswith("INFO: Instrumenting")
    )
    assert proc.returncode == 0, report[-4000:]
    assert f"Done {RUNS[target]} runs" in proc.stderr, report[-2000:]
    assert not list(tmp_path.glob("crash-*")), report[-4000:]
