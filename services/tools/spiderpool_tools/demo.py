"""``spiderpool-demo`` (``make demo``): the main job, end to end, on one machine.

What it shows, in order: the controller (SQLite store in a temporary directory) and the
agent start inside a "node" network namespace whose veth end is the macvlan master; the
shims are installed into a temporary CNI bin directory; the example IPv4 and IPv6
SpiderIPPools from ``deploy/examples/`` are applied; pod namespaces get their NICs from
Debian's ``macvlan`` with ``"ipam": {"type": "spiderpool"}`` through our CNI runtime
(plugins in order, prevResult passed, result cached for CHECK and DEL); a table of pods,
interfaces and addresses; ping between every pair of pods in both families; CHECK;
``spiderpoolctl get ippools``; CNI DEL of every pod; the pools empty again.

Every namespace, process and file it makes is removed in ``finally``, also on SIGINT or
SIGTERM (the signal becomes an exception, cleanup runs with further signals deferred).
Any failed step ends the run with a message naming the step and a non-zero exit.
A pod is a list of attachments (network + interface name), so more NICs per pod (the
coordinator's second NIC) are more entries, not more code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from spiderpool_tools.cni_runtime import (
    CniRuntime,
    CniRuntimeError,
    NetworkConfigList,
    RuntimeConf,
    load_config,
    result_ips,
)
from spiderpool_tools.netns import NetNs, NetnsError, list_netns
from spiderpool_tools.node_stack import NodeStack, StackError

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = REPO_ROOT / "deploy" / "examples"
POOL_MANIFESTS = ("ippool-demo-v4.yaml", "ippool-demo-v6.yaml")
POOL_V4, POOL_V6 = "demo-v4", "demo-v6"
REFERENCE_PLUGINS = Path("/usr/lib/cni")
MASTER, WIRE = "master0", "wire0"
NETWORK = "macvlan-demo"
NETNS_PREFIX = "spdemo-"
WORKDIR_PREFIX = "spiderpool-demo-"  # + pid: a run's leftovers are identifiable
POD_NAMESPACE = "demo"
# Debian packages the demo needs, and one file each installs.
DEB_NEEDS = {
    "containernetworking-plugins": "/usr/lib/cni/macvlan",
    "iproute2": "/usr/sbin/ip",
    "iputils-ping": "/usr/bin/ping",
    "procps": "/usr/sbin/sysctl",
}


class DemoFailure(Exception):
    """A step failed; the message says what was expected and what happened."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; like KeyboardInterrupt, it unwinds through every finally."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# ---------------------------------------------------------------------------------------
# console output


class Console:
    """Numbered steps with timings, indented detail lines; plain text, works in CI logs."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout
        self.count = 0
        self.closed = False

    def say(self, text: str = "") -> None:
        """Print a line; a reader that went away (broken pipe) must not stop the cleanup."""
        if self.closed:
            return
        try:
            print(text, file=self.out, flush=True)
        except (OSError, ValueError):
            self.closed = True

    def detail(self, text: str) -> None:
        for line in text.rstrip("\n").splitlines() or [""]:
            self.say(f"      {line}")

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.count += 1
        self.say(f"[{self.count:>2}] {title}")
        started = time.monotonic()
        try:
            yield
        except Exception as exc:
            self.say(f"      FAILED: {exc}")
            raise
        self.say(f"      ok ({(time.monotonic() - started) * 1000:.0f} ms)")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A fixed-width text table, one line per row."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in (headers, *rows)]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# pods and their attachments


@dataclass(frozen=True)
class Attachment:
    """One NIC of a pod: the network (conflist) it comes from and its interface name."""

    network: NetworkConfigList
    ifname: str


@dataclass
class DemoPod:
    name: str
    ns: NetNs
    attachments: list[Attachment]
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    container_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # ifname -> cached ADD result
    added: list[Attachment] = field(default_factory=list)  # ADD attempted, DEL still owed

    def runtime_conf(self, attachment: Attachment) -> RuntimeConf:
        args = (
            ("IgnoreUnknown", "true"),
            ("K8S_POD_NAMESPACE", POD_NAMESPACE),
            ("K8S_POD_NAME", self.name),
            ("K8S_POD_INFRA_CONTAINER_ID", self.container_id),
            ("K8S_POD_UID", self.uid),
        )
        return RuntimeConf(self.container_id, attachment.ifname, self.ns.path, args)

    def addresses(self, family: int) -> list[str]:
        """The pod's addresses of one family (4 or 6), from its ADD results, without prefix."""
        found = []
        for result in self.results.values():
            for cidr in result_ips(result):
                ip = cidr.split("/", 1)[0]
                if (":" in ip) == (family == 6):
                    found.append(ip)
        return found


def macvlan_network(
    stack: NodeStack, *, v4_pools: Sequence[str], v6_pools: Sequence[str]
) -> NetworkConfigList:
    """Debian's macvlan on the node's veth master, addresses from spiderpool."""
    return load_config({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [{
            "type": "macvlan",
            "master": MASTER,
            "mode": "bridge",
            "ipam": {
                "type": "spiderpool",
                "default_ipv4_ippool": list(v4_pools),
                "default_ipv6_ippool": list(v6_pools),
                "ipam_unix_socket_path": str(stack.layout.agent_socket),
                "log_file_path": str(stack.layout.log_dir / "spiderpool-shim.log"),
            },
        }],
    })  # fmt: skip


def pod_rows(pods: Sequence[DemoPod]) -> list[list[str]]:
    rows = []
    for pod in pods:
        for attachment in pod.attachments:
            result = pod.results.get(attachment.ifname, {})
            ips = result_ips(result)
            macs = [
                i.get("mac", "") for i in result.get("interfaces", []) if i.get("name") == attachment.ifname
            ]
            mac = macs[0] if macs else ""
            rows.append([
                pod.name,
                pod.ns.name,
                attachment.ifname,
                attachment.network.name,
                mac,
                ", ".join(ip for ip in ips if ":" not in ip) or "-",
                ", ".join(ip for ip in ips if ":" in ip) or "-",
            ])  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------
# the demo


@dataclass
class Options:
    pods: int = 3
    examples: Path = EXAMPLES
    keep_workdir: bool = False
    install_packages: bool = True
    ping_deadline_s: float = 10.0


def ensure_prerequisites(console: Console, *, install: bool) -> None:
    """Root, and the Debian packages (installed with apt-get when missing and allowed)."""
    if os.geteuid() != 0:
        raise DemoFailure("the demo creates network namespaces: run it as root")
    missing = [pkg for pkg, probe in DEB_NEEDS.items() if not Path(probe).exists()]
    if missing and install:
        console.detail(f"installing Debian packages: {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=900)
            if proc.returncode != 0:
                raise DemoFailure(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
        missing = [pkg for pkg, probe in DEB_NEEDS.items() if not Path(probe).exists()]
    if missing:
        raise DemoFailure(f"missing Debian packages: {' '.join(missing)} (make setup installs them)")
    console.detail("root, iproute2, ping, sysctl and Debian's CNI plugins (/usr/lib/cni) are present")


def check_pools_empty(stack: NodeStack) -> None:
    for pool in (POOL_V4, POOL_V6):
        allocated = stack.allocated_ips(pool)
        if allocated:
            raise DemoFailure(f"pool {pool} still holds {sorted(allocated)} after every pod was deleted")


def ping_all(console: Console, pods: Sequence[DemoPod], deadline_s: float) -> None:
    """Every pod pings every other pod's every address; one line per pair."""
    failures = []
    for src in pods:
        for dst in pods:
            if src is dst:
                continue
            cells = []
            for family in (4, 6):
                for ip in dst.addresses(family):
                    try:
                        src.ns.wait_ping(ip, deadline_s=deadline_s)
                        cells.append(f"{ip} ok")
                    except NetnsError:
                        cells.append(f"{ip} UNREACHABLE")
                        failures.append(f"{src.name} -> {dst.name} {ip}")
            console.detail(f"{src.name} -> {dst.name}: " + ", ".join(cells))
    if failures:
        raise DemoFailure("no ping reply for " + "; ".join(failures))


def run_demo(opts: Options, console: Console, cleanup: ExitStack) -> None:
    """All the steps; everything made is registered on ``cleanup`` the moment it exists."""
    with console.step("Checking prerequisites"):
        ensure_prerequisites(console, install=opts.install_packages)
        manifests = [opts.examples / name for name in POOL_MANIFESTS]
        for manifest in manifests:
            if not manifest.is_file():
                raise DemoFailure(f"example manifest {manifest} is missing")

    with console.step("Creating a temporary work directory"):
        workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
        if not opts.keep_workdir:
            cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        console.detail(f"work directory: {workdir}")

    with console.step(f"Creating the node namespace with veth master {MASTER} <-> {WIRE}"):
        node = NetNs.create(NETNS_PREFIX + "node")
        cleanup.callback(node.delete)
        node.add_veth(MASTER, WIRE)
        console.detail(f"node namespace: {node.name}")

    stack = NodeStack(node, workdir, node_name="demo-node")
    cleanup.callback(stack.close)
    with console.step("Starting spiderpool-controller (embedded SQLite store) in the node namespace"):
        controller = stack.start_controller()
        console.detail(
            f"pid {controller.pid}, store {stack.layout.store}, listening on {stack.layout.controller_target}"
        )
    with console.step("Starting spiderpool-agent in the node namespace"):
        agent = stack.start_agent()
        console.detail(f"pid {agent.pid}, CNI service on unix:{stack.layout.agent_socket}")
    with console.step("Installing the CNI shims into a temporary bin directory"):
        bin_dir = stack.install_shims()
        console.detail(f"{bin_dir}: {', '.join(sorted(p.name for p in bin_dir.iterdir()))}")

    with console.step("Applying the example pools (deploy/examples)"):
        for manifest in manifests:
            console.detail(stack.ctl("apply", "-f", str(manifest)).strip() or f"applied {manifest.name}")
        console.detail("$ spiderpoolctl get ippools")
        console.detail(stack.ctl("get", "ippools"))

    runtime = CniRuntime([str(stack.layout.bin_dir), str(REFERENCE_PLUGINS)], stack.layout.cache_dir,
                         exec_context=node.entered)  # fmt: skip
    network = macvlan_network(stack, v4_pools=[POOL_V4], v6_pools=[POOL_V6])
    pods: list[DemoPod] = []

    def delete_owed() -> None:
        for pod in pods:
            for attachment in reversed(pod.added):
                try:
                    runtime.delete(attachment.network, pod.runtime_conf(attachment))
                except CniRuntimeError as exc:
                    console.detail(f"cleanup: DEL {pod.name}/{attachment.ifname} failed: {exc}")
            pod.added.clear()

    with console.step(f"Creating {opts.pods} pod namespaces (IPv6 DAD off)"):
        for index in range(1, opts.pods + 1):
            ns = NetNs.create(NETNS_PREFIX + "pod")
            cleanup.callback(ns.delete)
            ns.disable_dad()
            pods.append(DemoPod(f"pod-{index}", ns, [Attachment(network, "eth0")]))
        console.detail(", ".join(f"{p.name}={p.ns.name}" for p in pods))
    cleanup.callback(delete_owed)  # LIFO: DELs run before the pods' namespaces go and the stack stops

    with console.step("CNI ADD: macvlan + spiderpool IPAM for every pod, through our CNI runtime"):
        for pod in pods:
            for attachment in pod.attachments:
                pod.added.append(attachment)
                started = time.monotonic()
                result = runtime.add(attachment.network, pod.runtime_conf(attachment))
                pod.results[attachment.ifname] = result
                console.detail(f"{pod.name} {attachment.ifname}: {', '.join(result_ips(result))} "
                               f"({(time.monotonic() - started) * 1000:.0f} ms)")  # fmt: skip
        for pod in pods:
            if not pod.addresses(4) or not pod.addresses(6):
                raise DemoFailure(f"{pod.name} did not get both an IPv4 and an IPv6 address")
            on_link = {a.ip for a in pod.ns.addresses() if a.scope == "global"}
            missing = set(pod.addresses(4) + pod.addresses(6)) - on_link
            if missing:
                raise DemoFailure(
                    f"{pod.name}: {sorted(missing)} in the CNI result but not on its interfaces"
                )

    console.say()
    console.say(render_table(["POD", "NETNS", "IFACE", "NETWORK", "MAC", "IPv4", "IPv6"], pod_rows(pods)))
    console.say()

    with console.step("Ping between every pair of pods over the macvlan network (IPv4 and IPv6)"):
        ping_all(console, pods, opts.ping_deadline_s)

    with console.step("CNI CHECK of every pod (cached result as prevResult)"):
        for pod in pods:
            for attachment in pod.attachments:
                runtime.check(attachment.network, pod.runtime_conf(attachment))
        console.detail(f"{sum(len(p.attachments) for p in pods)} attachments consistent")

    with console.step("The pools with the pods' allocations"):
        console.detail("$ spiderpoolctl get ippools")
        console.detail(stack.ctl("get", "ippools"))
        console.detail("$ spiderpoolctl get endpoints -A")
        console.detail(stack.ctl("get", "endpoints", "-A"))
        allocated = {pool: len(stack.allocated_ips(pool)) for pool in (POOL_V4, POOL_V6)}
        expected = sum(len(p.attachments) for p in pods)
        if allocated != {POOL_V4: expected, POOL_V6: expected}:
            raise DemoFailure(f"expected {expected} allocations per pool, the store holds {allocated}")

    with console.step("CNI DEL of every pod (reverse plugin order, cached result as prevResult)"):
        for pod in pods:
            for attachment in reversed(pod.attachments):
                runtime.delete(attachment.network, pod.runtime_conf(attachment))
                pod.added.remove(attachment)
            leftover = [link for link in pod.ns.links() if link != "lo"]
            if leftover:
                raise DemoFailure(f"{pod.name} still has links {leftover} after DEL")
        console.detail(f"{len(pods)} pods deleted")

    with console.step("The pools are empty again"):
        console.detail("$ spiderpoolctl get ippools")
        console.detail(stack.ctl("get", "ippools"))
        check_pools_empty(stack)


def _install_signal_handlers(handler: Callable[[int, FrameType | None], None]) -> dict[int, Any]:
    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    return previous


def run(opts: Options, console: Console) -> int:
    """The demo with its cleanup guarantees; returns the exit code."""
    netns_before = list_netns()

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signum)

    deferred: list[int] = []

    def defer(signum: int, _frame: FrameType | None) -> None:
        deferred.append(signum)
        console.say(f"      ({signal.Signals(signum).name} received: finishing the cleanup first)")

    previous = _install_signal_handlers(interrupt)
    code = 0
    cleanup = ExitStack()
    try:
        try:
            run_demo(opts, console, cleanup)
        finally:
            _install_signal_handlers(defer)
            console.say("[--] Cleaning up: pods' attachments, processes, namespaces, work directory")
            cleanup.close()
            # Safety net for a signal landing between `ip netns add` and its cleanup
            # registration: our names carry our pid, so these are ours alone.
            mine = {
                n
                for n in list_netns() - netns_before
                if n.startswith(NETNS_PREFIX) and f"-{os.getpid()}-" in n
            }
            for name in sorted(mine):
                NetNs(name).delete()
            leaked = sorted(mine & list_netns())
            if leaked:
                console.say(f"      WARNING: namespaces left behind: {leaked}")
                code = 1
            else:
                console.say("      ok")
    except Interrupted as exc:
        console.say(f"Interrupted by {exc}: cleaned up.")
        return 128 + exc.signum
    except (DemoFailure, StackError, CniRuntimeError, NetnsError, OSError, subprocess.SubprocessError,
            TimeoutError) as exc:  # fmt: skip
        console.say(f"Demo FAILED: {exc}")
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if deferred:
        return 128 + deferred[0]
    if code == 0:
        console.say("Demo finished: every step succeeded and everything it made is gone.")
    return code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spiderpool-demo", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    p.add_argument("--pods", type=int, default=3, help="number of pod namespaces (default 3)")
    p.add_argument(
        "--examples", type=Path, default=EXAMPLES, help="directory holding the example pool manifests"
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep the temporary directory (logs, store)")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing Debian packages")
    p.add_argument("--ping-deadline", type=float, default=10.0, help="seconds to wait for each ping reply")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.pods < 2:
        print("spiderpool-demo: --pods must be at least 2 (pods ping each other)", file=sys.stderr)
        return 2
    opts = Options(
        pods=args.pods,
        examples=args.examples,
        keep_workdir=args.keep_workdir,
        install_packages=not args.no_install,
        ping_deadline_s=args.ping_deadline,
    )
    console = Console()
    code = run(opts, console)
    if console.closed:  # nobody reads stdout any more: spare the interpreter's final flush error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return code


if __name__ == "__main__":
    sys.exit(main())
