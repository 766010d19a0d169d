"""Network namespaces as disposable test and demo fixtures.

Owns everything the demo, the benchmark and the netns tests do to the kernel's network
namespaces through iproute2: named namespaces (``ip netns add``), veth pairs, addresses,
sysctls, running a command or a long-lived process inside a namespace, and ping checks.
Two rules hold throughout, because several runs share one machine and an interrupted run
must not leave debris behind:

- names are unique per process (prefix + pid + counter), so parallel runs never collide;
- every teardown is idempotent (deleting what is already gone succeeds), and the
  context managers tear down in ``finally``.

Nothing here touches a link of the machine's root namespace: links are created inside
namespaces this module made (a veth pair is created in its first namespace and its peer
moved, never left in the root namespace).
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
_counter = itertools.count()


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class NetnsError(RuntimeError):
    """An iproute2 command failed; the message carries the command and its stderr."""


def unique_name(prefix: str) -> str:
    """A namespace name no other process (and no earlier call here) uses: prefix-pid-counter."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


def list_netns() -> set[str]:
    """Names of the named network namespaces on the machine (``ip netns list``)."""
    try:
        return {entry for entry in os.listdir(NETNS_DIR) if not entry.startswith(".")}
    except FileNotFoundError:
        return set()


def _run(args: Sequence[str], *, timeout: float = 30.0, input_text: str | None = None) -> str:
    proc = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, input=input_text, check=False
    )
    if proc.returncode != 0:
        raise NetnsError(
            f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout


@dataclass(frozen=True)
class Address:
    ifname: str
    family: int  # 4 or 6
    cidr: str  # "ip/prefixlen"
    scope: str

    @property
    def ip(self) -> str:
        return self.cidr.split("/", 1)[0]


class NetNs:
    """One named network namespace under /run/netns."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"NetNs({self.name!r})"

    @property
    def path(self) -> str:
        return os.path.join(NETNS_DIR, self.name)

    @classmethod
    def create(cls, prefix: str = "spns") -> NetNs:
        """Create a fresh namespace with a unique name and loopback up."""
        ns = cls(unique_name(prefix))
        _run(["ip", "netns", "add", ns.name])
        try:
            ns.ip("link", "set", "lo", "up")
        except NetnsError:
            ns.delete()
            raise
        return ns

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def delete(self) -> None:
        """Remove the namespace; succeeds when it is already gone."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self.exists():
            return
        try:
            _run(["ip", "netns", "delete", self.name])
        except NetnsError:
            if self.exists():
                raise

    # -- running things inside -------------------------------------------------------

    def ip(self, *args: str) -> str:
        """``ip -n NAME ARGS`` (no exec into the namespace needed)."""
        return _run(["ip", "-n", self.name, *args])

    def run(
        self, args: Sequence[str], *, check: bool = True, timeout: float = 30.0, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace (``ip netns exec``) and capture its output."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
        )
        if check and proc.returncode != 0:
            raise NetnsError(
                f"in {self.name}: {' '.join(args)}: exit {proc.returncode}: "
                f"{proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc

    def popen(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process inside the namespace; ``ip netns exec`` execs it, so
        the Popen's pid is the process itself. It gets its own process group."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *args],
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )

    def _open_fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        return self._fd

    def enter_fn(self) -> Callable[[], None]:
        """A ``preexec_fn`` moving a forked child into this namespace (``entered`` is cheaper)."""
        fd = self._open_fd()

        def enter() -> None:
            _setns(fd)

        return enter

    @contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread is inside this namespace for the block (setns(2) there and back).

        A child spawned in the block starts in the namespace. Cheaper than ``ip netns
        exec`` or a ``preexec_fn`` (which forbids vfork): that matters when timing CNI
        plugins. Other threads are unaffected."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(self._open_fd())
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)

    def pids(self) -> list[int]:
        """Processes whose network namespace is this one."""
        out = _run(["ip", "netns", "pids", self.name]) if self.exists() else ""
        return [int(p) for p in out.split()]

    # -- links and addresses ---------------------------------------------------------

    def sysctl(self, key: str, value: str | int) -> None:
        """Write a sysctl under /proc/sys/net of this namespace."""
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def disable_dad(self) -> None:
        """New IPv6 addresses skip duplicate address detection (usable at once)."""
        for scope in ("all", "default"):
            self.sysctl(f"net.ipv6.conf.{scope}.accept_dad", 0)

    def add_veth(self, name: str, peer: str, peer_ns: NetNs | None = None) -> None:
        """Create a veth pair here; the peer end moves to ``peer_ns`` when given. Both come up."""
        if peer_ns is None:
            self.ip("link", "add", name, "type", "veth", "peer", "name", peer)
        else:
            self.ip("link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_ns.name)
        self.set_up(name)
        (peer_ns or self).set_up(peer)

    def set_up(self, dev: str) -> None:
        self.ip("link", "set", dev, "up")

    def add_address(self, dev: str, cidr: str, *, nodad: bool = False) -> None:
        args = ["addr", "add", cidr, "dev", dev]
        if nodad and ":" in cidr:
            args.append("nodad")
        self.ip(*args)

    def links(self) -> list[str]:
        return [entry["ifname"] for entry in json.loads(self.ip("-j", "link", "show") or "[]")]

    def addresses(self, dev: str | None = None) -> list[Address]:
        """Global and link-local addresses (optionally of one device), from ``ip -j addr``."""
        out = self.ip("-j", "addr", "show", *(["dev", dev] if dev else []))
        found = []
        for link in json.loads(out or "[]"):
            for info in link.get("addr_info", []):
                family = 6 if info.get("family") == "inet6" else 4
                found.append(
                    Address(link["ifname"], family, f"{info['local']}/{info['prefixlen']}", info["scope"])
                )
        return found

    def mac(self, dev: str) -> str:
        return str(json.loads(self.ip("-j", "link", "show", dev))[0]["address"])

    def ping(self, address: str, *, count: int = 1, wait_s: float = 1.0) -> bool:
        """One ping round from inside the namespace; True when a reply came back."""
        proc = self.run(
            ["ping", "-n", "-q", "-c", str(count), "-W", f"{wait_s:g}", address],
            check=False,
            timeout=wait_s * count + 10,
        )
        return proc.returncode == 0

    def wait_ping(self, address: str, *, deadline_s: float = 10.0) -> None:
        """Ping until a reply arrives; raise ``NetnsError`` when the deadline passes first."""
        deadline = time.monotonic() + deadline_s
        while True:
            if self.ping(address):
                return
            if time.monotonic() >= deadline:
                raise NetnsError(f"{address} does not answer ping from {self.name} within {deadline_s:g}s")


@contextmanager
def temporary_netns(prefix: str = "spns") -> Iterator[NetNs]:
    """A fresh namespace for the duration of the block, deleted afterwards whatever happens."""
    ns = NetNs.create(prefix)
    try:
        yield ns
    finally:
        ns.delete()


KILL_WAIT_S = 30.0


def stop_process(proc: subprocess.Popen[Any], *, grace_s: float = 5.0) -> int | None:
    """SIGTERM the process (its whole session), wait, SIGKILL when it ignores it; idempotent."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        # Not grace_s: a caller sharing one deadline among many processes may pass 0.1 s, and a
        # SIGKILLed process on a loaded machine takes longer than that to be reaped.
        return proc.wait(timeout=KILL_WAIT_S)


def wait_for(
    condition: Callable[[], bool], *, deadline_s: float, what: str, interval_s: float = 0.02
) -> None:
    """Poll ``condition`` until it holds; raise ``TimeoutError`` naming ``what`` at the deadline."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {deadline_s:g}s waiting for {what}")
        time.sleep(interval_s)
