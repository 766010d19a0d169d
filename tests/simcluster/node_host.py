"""A node's own filesystem view: what lets every node use the production paths although they share one disk.

Decision. Real nodes each have their own `/var/run/spidernet/spiderpool.sock`, `/var/lib/spiderpool/agent`
(journal, DEL spool), `/var/log/spidernet` and `/var/lib/cni`. A NetworkAttachmentDefinition is one object
for the whole cluster, so its CNI configuration cannot name a per-node socket: users' NADs (and upstream's
SpiderMultusConfig) name none and rely on the default. To run those configurations unchanged, each node gets
a private mount namespace in which the node's directory is bind-mounted over `/run` and `/var` (so
`/var/run`, a symlink to `/run`, follows): the agent and the CNI plugins then use their defaults, exactly
what the Helm chart renders, and nodes never see each other's files. Nothing is created on the machine's own
`/run` or `/var`.

How. A holder process per node (`unshare --mount --propagation unchanged`, then `nsenter --net` into the
node's network namespace, then a small shell script that ends in `sleep`) owns that mount namespace; every
node process (agent, kubelet stand-in, and the CNI plugins the kubelet runs) joins it and the node's network
namespace with `nsenter --target HOLDER --mount --net`. The script first makes private, in its own copy,
exactly the mounts it changes (the ones holding `/`, `/run`, `/var` and the node directory, and `/sys`
recursively), so nothing it mounts propagates to the machine, while `/run/netns` keeps its shared
propagation with the machine's: a pod namespace the kubelet creates with `ip netns add` inside the node is
visible to the tests and to cleanup in the root namespace, and removing one from the root removes it
everywhere. `/sys` is remounted so that it shows the node's links, as `ip netns exec` does. The node's
`hosts` file is bind-mounted over `/etc/hosts`: the cluster DNS's stand-in (the controller Service's name
resolves to its stand-in inside the node). The holder
outlives the node's processes (a restarted agent or kubelet finds its state), and is stopped last.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from spiderpool_tools.netns import NetNs, stop_process

from .processes import die_with_parent

HOLDER_SCRIPT = r"""
set -eu
root="$1"
for path in / /run /var "$root" /etc/hosts; do
    mount --make-private "$(findmnt -n -o TARGET -T "$path" | tail -n 1)"
done
mount --bind "$root/hosts" /etc/hosts
mount --make-rprivate /sys
mount --bind /run/netns "$root/hold"
mount --bind "$root/run" /run
mkdir -p /run/netns
mount --move "$root/hold" /run/netns
mount --bind "$root/var" /var
umount -l /sys
mount -t sysfs sysfs /sys
echo ready
exec sleep 2147483647
"""


class NodeHostError(RuntimeError):
    """The node's mount namespace could not be set up; the message carries the script's output."""


class NodeHost:
    """The holder of one node's mount namespace, and how to start processes inside the node."""

    def __init__(self, netns: NetNs, root: Path, workdir: Path, hosts: str = "") -> None:
        self.netns = netns
        self.hosts = hosts  # lines added to the node's /etc/hosts ("IP NAME")
        self.root = root  # the node's directory: run/, var/, and whatever else the harness keeps there
        self.workdir = workdir  # where node processes start (the repository, for `python -m tests...`)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def run_dir(self) -> Path:
        """What the node sees as /run (and /var/run)."""
        return self.root / "run"

    @property
    def var_dir(self) -> Path:
        """What the node sees as /var."""
        return self.root / "var"

    def outside(self, node_path: str) -> Path:
        """Where a path of the node's view (under /run, /var/run or /var) is, seen from the root."""
        path = Path(node_path)
        for prefix, real in (("/var/run", self.run_dir), ("/run", self.run_dir), ("/var", self.var_dir)):
            if path == Path(prefix) or path.is_relative_to(prefix):
                return real / path.relative_to(prefix)
        return path

    def start(self, timeout_s: float = 20.0) -> None:
        for sub in ("hold", "run/netns", "var/lib", "var/log", "var/tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n" + self.hosts)
        if not (self.var_dir / "run").is_symlink():
            (self.var_dir / "run").symlink_to("/run")
        args = [
            "unshare", "--mount", "--propagation", "unchanged", "--",
            "nsenter", f"--net={self.netns.path}", "--",
            "sh", "-c", HOLDER_SCRIPT, "node-host", str(self.root),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl before exec)
        )
        assert self.proc.stdout is not None
        line = _readline(self.proc.stdout, timeout_s)
        if line.strip() != b"ready":
            self.stop()
            rest = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
            raise NodeHostError(
                f"node host for {self.netns.name} failed: {line.decode(errors='replace')}{rest}"
            )
        self.proc.stdout.close()

    @property
    def pid(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            raise NodeHostError(f"the node host of {self.netns.name} is not running")
        return self.proc.pid

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` wrapped to run inside the node (its network and mount namespaces, cwd the workdir)."""
        return ["nsenter", f"--target={self.pid}", "--mount", "--net", f"--wd={self.workdir}", "--", *args]

    def popen(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process inside the node, in its own session (nsenter execs it: same pid)."""
        return subprocess.Popen(
            self.command(args),
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl before exec)
        )

    def run(self, args: Sequence[str], *, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(args), capture_output=True, text=True, timeout=timeout, check=False
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace_s=2.0)


def _readline(stream: IO[bytes], timeout_s: float) -> bytes:
    """One line from a pipe, or b"" when nothing arrives in time (the holder hung)."""
    import select  # noqa: PLC0415

    fd = stream.fileno()
    buf = b""
    while not buf.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            return buf
        chunk = os.read(fd, 1)
        if not chunk:
            return buf
        buf += chunk
    return buf
