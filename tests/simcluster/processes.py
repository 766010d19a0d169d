"""The simulated cluster's long-running processes: start, stop, kill, pause and restart each by its pid.

One `Proc` per program instance (a controller replica, a node's agent, a kubelet, ...), started by a function
that returns a fresh `Popen` (so a restart runs the same command line again, as a Deployment or DaemonSet
re-creates its pod), its output appended to its own log file. Processes get their own session; stopping is
SIGTERM then SIGKILL after a grace period (spiderpool_tools.netns.stop_process); `kill` is SIGKILL at once
(a crash); `pause`/`resume` are SIGSTOP/SIGCONT (a stalled process). Only processes this module started are
ever signalled, always by pid.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from spiderpool_tools.netns import stop_process

Launcher = Callable[[IO[Any]], subprocess.Popen[bytes]]
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """A ``preexec_fn``: the child gets SIGKILL when the harness dies without cleaning up (SIGKILLed, say), so
    no agent, kubelet or controller outlives it. Kept across exec (nsenter, unshare and sh exec in place)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ProcessError(RuntimeError):
    """A process exited or did not become ready; the message carries its log's tail."""


class Proc:
    def __init__(self, name: str, log_path: Path, launch: Launcher, ready: Callable[[Proc], bool]) -> None:
        self.name = name
        self.log_path = log_path
        self._launch = launch
        self._ready = ready
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ProcessError(f"{self.name} was never started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Proc:
        if self.alive():
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.proc = self._launch(log)
        self.starts += 1
        return self

    def is_ready(self) -> bool:
        """True once ready; raises ``ProcessError`` when the process has exited."""
        if not self.alive():
            code = self.proc.returncode if self.proc is not None else None
            raise ProcessError(f"{self.name} exited with {code}:\n{self.log_tail()}")
        return self._ready(self)

    def stop(self, grace_s: float = 5.0) -> None:
        if self.proc is not None:
            self.resume()
            stop_process(self.proc, grace_s=grace_s)

    def kill(self) -> None:
        """SIGKILL now (a crash); waits for the process to be gone."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def pause(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGCONT)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stop_all(procs: Iterable[Proc], grace_s: float = 3.0) -> list[str]:
    """SIGTERM every running process at once, then SIGKILL those still running after ``grace_s`` (a teardown
    that stopped them one by one would wait for each one's shutdown in turn); returns what failed."""
    errors = []
    running = [p for p in procs if p.alive()]
    for proc in running:
        try:
            proc.resume()
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace_s
    for proc in running:
        try:
            proc.stop(grace_s=max(0.1, deadline - time.monotonic()))
        except Exception as exc:
            errors.append(f"{proc.name}: {exc}")
    return errors


def ready_file(path: Path) -> Callable[[Proc], bool]:
    """Ready once the process wrote its own pid into ``path`` (a restarted process writes it anew)."""

    def ready(proc: Proc) -> bool:
        try:
            return path.read_text().strip() == str(proc.pid)
        except OSError:
            return False

    return ready


def wait_ready(procs: list[Proc], deadline_s: float, interval_s: float = 0.05) -> None:
    """Wait until every process is ready; raise ``ProcessError`` naming the laggards at the deadline."""
    deadline = time.monotonic() + deadline_s
    pending = list(procs)
    while pending:
        pending = [p for p in pending if not p.is_ready()]
        if not pending:
            return
        if time.monotonic() >= deadline:
            tails = "\n".join(f"--- {p.name}:\n{p.log_tail()}" for p in pending)
            raise ProcessError(
                f"not ready after {deadline_s:g}s: {', '.join(p.name for p in pending)}\n{tails}"
            )
        time.sleep(interval_s)


_STALE = re.compile(r"^spsim-(\d+)x\d+-")


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sweep_stale(netns_names: Iterable[str], delete_netns: Callable[[str], None], tmp: Path) -> list[str]:
    """Remove what harnesses that died without cleaning up left (their processes died with them): network
    namespaces and /tmp directories named ``spsim-<pid>x<n>-...`` whose harness pid no longer runs."""
    removed = []
    for name in netns_names:
        match = _STALE.match(name)
        if match and _dead(int(match.group(1))):
            delete_netns(name)
            removed.append(f"netns {name}")
    for path in tmp.glob("spsim-*"):
        match = _STALE.match(path.name)
        if match and path.is_dir() and _dead(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed
