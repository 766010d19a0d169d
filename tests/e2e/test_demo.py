"""`spiderpool-demo` end to end: the main job succeeds, fails loudly, and always cleans up.

The demo runs as a subprocess exactly as `make demo` runs it (real controller, agent,
shims, Debian's macvlan, namespaces). After it exits no namespace it made may remain, no
process may still reference its work directory, and the work directory must be gone.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from spiderpool_tools.demo import EXAMPLES
from spiderpool_tools.netns import list_netns

pytestmark = pytest.mark.netns

DEMO = Path(sys.executable).parent / "spiderpool-demo"


def demo_namespaces() -> set[str]:
    return {name for name in list_netns() if name.startswith("spdemo-")}


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry}: {cmdline}")
    return found


def workdir_of(output: str) -> str:
    match = re.search(r"work directory: (\S+)", output)
    assert match, output
    return match.group(1)


def assert_nothing_left(output: str, netns_before: set[str]) -> None:
    workdir = workdir_of(output)
    assert demo_namespaces() - netns_before == set()
    assert processes_mentioning(workdir) == []
    assert not Path(workdir).exists()


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEMO), "--no-install", *args], capture_output=True, text=True, timeout=240, check=False
    )


def test_demo_gives_pods_addresses_they_ping_and_releases_them() -> None:
    """The demo exits 0 after showing three dual-stack pods, pings, both pools and the pools empty again."""
    before = demo_namespaces()
    proc = run_demo("--pods", "3")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    rows = re.findall(r"^(pod-\d)\s+spdemo-pod-\S+\s+eth0\s+macvlan-demo\s+\S+\s+(172\.30\.0\.\d+)/24\s+"
                      r"(fd00:172:30::[0-9a-f]+)/64$", out, re.MULTILINE)  # fmt: skip
    assert sorted(r[0] for r in rows) == ["pod-1", "pod-2", "pod-3"]
    assert len({r[1] for r in rows}) == 3
    assert len({r[2] for r in rows}) == 3
    for _pod, v4, v6 in rows:
        assert 10 <= int(v4.rsplit(".", 1)[1]) <= 60
        assert f"{v4} ok" in out
        assert f"{v6} ok" in out
    assert re.search(r"^\s+demo-v4\s+4\s+172\.30\.0\.0/24\s+3\s", out, re.MULTILINE)
    assert re.search(r"^\s+demo-v6\s+6\s+fd00:172:30::/64\s+3\s", out, re.MULTILINE)
    assert re.search(r"^\s+demo-v4\s+4\s+172\.30\.0\.0/24\s+0\s", out, re.MULTILINE)
    assert "UNREACHABLE" not in out
    assert "Demo finished" in out
    assert_nothing_left(out, before)


def test_demo_fails_with_a_message_when_a_step_fails_and_still_cleans_up(tmp_path: Path) -> None:
    """With an IPv4 pool of two addresses the third pod's ADD fails: exit 1, the step named, nothing left."""
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES, examples)
    manifest = examples / "ippool-demo-v4.yaml"
    manifest.write_text(manifest.read_text().replace("172.30.0.10-172.30.0.60", "172.30.0.10-172.30.0.11"))
    before = demo_namespaces()
    proc = run_demo("--pods", "3", "--examples", str(examples))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"\[ ?\d+\] CNI ADD.*\n(.*\n)*\s+FAILED: .*code 100", proc.stdout), proc.stdout
    assert "Demo FAILED" in proc.stdout
    assert "Demo finished" not in proc.stdout
    assert_nothing_left(proc.stdout, before)


def read_until(proc: subprocess.Popen[bytes], marker: str, deadline_s: float) -> str:
    """Read the demo's stdout (raw, unbuffered) until a line starts with ``marker``; return all read."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        seen += chunk
        if any(line.startswith(marker) for line in seen.decode(errors="replace").splitlines()):
            return seen.decode(errors="replace")
    raise AssertionError(
        f"no line starting with {marker!r} came; output so far:\n{seen.decode(errors='replace')}"
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_in_the_middle_cleans_up_everything(signum: signal.Signals) -> None:
    """A signal once the pods have addresses stops the demo with 128+signal, after a full cleanup."""
    before = demo_namespaces()
    proc = subprocess.Popen(
        [str(DEMO), "--no-install", "--pods", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        seen = read_until(proc, "POD ", deadline_s=120)
        assert len(demo_namespaces() - before) == 4  # the node and three pods exist right now
        proc.send_signal(signum)
        rest = proc.communicate(timeout=120)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = seen + rest
    assert proc.returncode == 128 + signum, out
    assert f"Interrupted by {signum.name}" in out
    assert "Demo finished" not in out
    assert_nothing_left(out, before)


def test_reader_going_away_does_not_stop_the_cleanup() -> None:
    """When the reader of the demo's output goes away (``| head``), the demo still removes
    every namespace, process and file it made."""
    proc = subprocess.Popen(
        [str(DEMO), "--no-install", "--pods", "2"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        read_until(proc, "[ 7]", deadline_s=120)  # controller and agent are running now
        assert proc.stdout is not None
        proc.stdout.close()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    tag = f"-{proc.pid}-"
    assert [n for n in list_netns() if n.startswith("spdemo-") and tag in n] == []
    assert processes_mentioning(f"spiderpool-demo{tag}") == []
    assert list(Path(tempfile.gettempdir()).glob(f"spiderpool-demo{tag}*")) == []
