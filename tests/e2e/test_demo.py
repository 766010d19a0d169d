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


def namespaces_of(demo_pid: int) -> set[str]:
    """The namespaces one demo run made (``spdemo-<role>-<pid>-<n>``). Other engineers' demos
    make theirs on this machine at the same time, so a machine-wide count would mislead."""
    return {name for name in demo_namespaces() if f"-{demo_pid}-" in name}


def assert_nothing_left(output: str) -> None:
    workdir = workdir_of(output)
    pid = re.search(r"spiderpool-demo-(\d+)-", workdir)
    assert pid, workdir
    assert namespaces_of(int(pid.group(1))) == set()
    assert processes_mentioning(workdir) == []
    assert not Path(workdir).exists()


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEMO), "--no-install", *args], capture_output=True, text=True, timeout=240, check=False
    )


def table(output: str, header: str) -> list[list[str]]:
    """The rows of the demo's table whose header line starts with ``header``, cells split on the
    column gaps (two or more spaces)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def test_demo_gives_pods_two_nics_they_ping_over_and_releases_them() -> None:
    """The demo exits 0 after showing three pods with a dual-stack eth0 and net1 from their own pools,
    the coordinator's veth0, their routes and rules (net1's in table 102, selected by its source
    address), pings on both subnets and between pods and the node, the pools full and then empty."""
    proc = run_demo("--pods", "3")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    nics = {(row[0], row[2]): row for row in table(out, "POD    NETNS")}
    pods = ["pod-1", "pod-2", "pod-3"]
    for ifname, network, v4_net, v6_net in (
        ("eth0", "macvlan-demo", "172.30.0.", "fd00:172:30::"),
        ("net1", "macvlan-demo-net1", "172.31.0.", "fd00:172:31::"),
    ):
        rows = [nics[(pod, ifname)] for pod in pods]
        assert {row[3] for row in rows} == {network}
        v4s = [row[5].removesuffix("/24") for row in rows]
        v6s = [row[6].removesuffix("/64") for row in rows]
        assert len(set(v4s)) == len(set(v6s)) == 3
        for v4, v6 in zip(v4s, v6s, strict=True):
            assert v4.startswith(v4_net) and 10 <= int(v4.rsplit(".", 1)[1]) <= 60
            assert v6.startswith(v6_net)
            assert re.search(rf"-> pod-\d \({ifname}\): {re.escape(v4)} ok, {re.escape(v6)} ok", out)
    for pool, subnet in (("demo-v4", r"172\.30\.0\.0/24"), ("demo-net1-v4", r"172\.31\.0\.0/24"),
                         ("demo-net1-v6", "fd00:172:31::/64")):  # fmt: skip
        assert re.search(rf"^\s+{pool}\s+\d\s+{subnet}\s+3\s", out, re.MULTILINE)
        assert re.search(rf"^\s+{pool}\s+\d\s+{subnet}\s+0\s", out, re.MULTILINE)
    routes = {(row[0], row[1], row[2]): row for row in table(out, "POD    IP  TABLE")}
    for pod in pods:
        net1_v4 = nics[(pod, "net1")][5].removesuffix("/24")
        net1_v6 = nics[(pod, "net1")][6].removesuffix("/64")
        main4, main6 = routes[(pod, "4", "main")][4], routes[(pod, "6", "main")][4]
        assert "default via 172.30.0.1 eth0" in main4
        assert "default via fd00:172:30::1 eth0" in main6
        assert "via 172.31.0.1" not in main4  # net1's IPAM had clean_gateway
        assert nics[(pod, "veth0")][3] == "(coordinator)"
        assert "172.30.0.2 veth0" in main4 and "fd00:172:30::2 veth0" in main6
        assert "net1" not in main6  # moved to net1's own table
        assert routes[(pod, "4", "102")][3] == f"1000: from {net1_v4}"
        assert "172.31.0.0/24 net1" in routes[(pod, "4", "102")][4]
        assert routes[(pod, "6", "102")][3] == f"1000: from {net1_v6}"
        assert "fd00:172:31::/64 net1" in routes[(pod, "6", "102")][4]
        assert routes[(pod, "4", "100")][3] == "999: fwmark 0x1"
        assert re.search(rf"{pod} -> node: 172\.30\.0\.2 ok, fd00:172:30::2 ok, 172\.31\.0\.2 ok", out)
        assert re.search(rf"node -> {pod}: .*{re.escape(net1_v4)} ok.*{re.escape(net1_v6)} ok", out)
    assert "every SpiderEndpoint records eth0 and net1" in out
    assert "UNREACHABLE" not in out
    assert "Demo finished" in out
    assert_nothing_left(out)


def test_demo_fails_with_a_message_when_a_step_fails_and_still_cleans_up(tmp_path: Path) -> None:
    """With an IPv4 pool of two addresses the third pod's ADD fails: exit 1, the step named, nothing left."""
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES, examples)
    manifest = examples / "ippool-demo-v4.yaml"
    manifest.write_text(manifest.read_text().replace("172.30.0.10-172.30.0.60", "172.30.0.10-172.30.0.11"))
    proc = run_demo("--pods", "3", "--examples", str(examples))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"\[ ?\d+\] CNI ADD.*\n(.*\n)*\s+FAILED: .*code 100", proc.stdout), proc.stdout
    assert "Demo FAILED" in proc.stdout
    assert "Demo finished" not in proc.stdout
    assert_nothing_left(proc.stdout)


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
    with subprocess.Popen(  # the with block closes the pipe, whatever happens
        [str(DEMO), "--no-install", "--pods", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as proc:
        try:
            seen = read_until(proc, "POD ", deadline_s=120)
            assert len(namespaces_of(proc.pid)) == 4  # the node and three pods exist right now
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
    assert_nothing_left(out)


def test_reader_going_away_does_not_stop_the_cleanup() -> None:
    """When the reader of the demo's output goes away (``| head``), the demo still removes
    every namespace, process and file it made."""
    with subprocess.Popen(  # the with block closes the pipe, whatever happens
        [str(DEMO), "--no-install", "--pods", "2"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as proc:
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
