"""The suite's own rules hold: strict markers, warnings as errors, no skipping.

Each case runs pytest in a child process on a small test file written here, with this
repository's configuration (pyproject.toml) and root conftest, and reads the verdicts.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SAMPLE = """
import socket

import pytest


def test_leaks_a_socket():
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # never closed: a ResourceWarning


def test_skips_at_run_time():
    pytest.skip("not on this machine")


@pytest.mark.flakey
def test_uses_an_unregistered_marker():
    pass


def test_passes():
    pass
"""


def run_pytest(tmp_path: Path, source: str) -> tuple[int, str]:
    """Run pytest on ``source`` with the repository's config and root conftest; return code and summary."""
    test_file = tmp_path / "test_sample.py"
    test_file.write_text(textwrap.dedent(source))
    argv = [sys.executable, "-m", "pytest", str(test_file), "-c", str(REPO / "pyproject.toml")]
    argv += ["-p", "tests.conftest", "-p", "no:cacheprovider", "-rA", "-q"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_a_leak_a_skip_and_an_unknown_marker_each_fail(tmp_path: Path) -> None:
    """A run-time skip fails, an unclosed socket is reported, an unregistered marker fails collection."""
    code, out = run_pytest(tmp_path, SAMPLE)
    assert code != 0
    assert "'flakey' not found in `markers` configuration option" in out
    without_marker = SAMPLE.replace("@pytest.mark.flakey\n", "")
    code, out = run_pytest(tmp_path, without_marker)
    assert code == 1, out
    # A socket left to garbage collection is reported (pyproject.toml: a warning while the test
    # API server's leak is open; a failure again once that exception is removed).
    assert "Exception ignored in: <socket.socket" in out
    assert re.search(r"^FAILED \S*::test_skips_at_run_time - no test may skip", out, re.MULTILINE), out
    assert "it said: Skipped: not on this machine" in out
    assert "1 failed, 3 passed" in out


def test_a_skip_marker_refuses_the_whole_run(tmp_path: Path) -> None:
    """A test marked skip, skipif or xfail stops the run before anything executes."""
    code, out = run_pytest(tmp_path, "import pytest\n\n@pytest.mark.xfail\ndef test_x():\n    assert False\n")
    assert code == 4, out  # pytest's usage error
    assert "no test may skip or be xfail" in out and "test_x" in out
