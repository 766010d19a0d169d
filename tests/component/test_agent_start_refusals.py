"""What an agent refuses at start: a CNI socket path another live process serves.

Two agents on one socket path would be the controller's takeover bug again: the second
unlinks and rebinds the path, the first is unreachable though alive, and the second's
exit deletes the path under it. Real agent processes (no controller is needed to start).
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.component.agent_harness import DEADLINE, ServiceProcess
from tests.component.conformance_stack import start_service


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="spa-", dir="/tmp"))  # short: unix socket paths
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def agent_argv(workdir: Path, sock: Path, state: str) -> list[str]:
    return [
        sys.executable, "-m", "spiderpool_agent.main",
        "--controller", f"unix:{workdir / 'controller.sock'}",
        "--socket", str(sock), "--state-dir", str(workdir / state), "--log-format", "console",
    ]  # fmt: skip


def test_a_second_agent_does_not_take_over_a_served_socket(workdir: Path) -> None:
    """The second agent on the same socket exits 1 naming the path and the first agent's pid;
    the first keeps its socket (mode 0600)."""
    sock = workdir / "agent.sock"
    first = ServiceProcess(agent_argv(workdir, sock, "state-a"), sock, workdir / "a.log")
    start_service(first)
    try:
        assert first.proc is not None
        proc = subprocess.run(
            agent_argv(workdir, sock, "state-b"), capture_output=True, timeout=DEADLINE, check=False
        )
        err = proc.stderr.decode()
        assert proc.returncode == 1, err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert str(sock) in err and f"process {first.proc.pid}" in err, err
        assert stat.S_ISSOCK(sock.lstat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    finally:
        first.stop()
