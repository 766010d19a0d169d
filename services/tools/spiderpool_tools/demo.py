"""``spiderpool-demo`` (``make demo``): the main job, end to end, on one machine.

What it shows, in order: the controller (SQLite store in a temporary directory) and the
agent start inside a "node" network namespace holding two veth pairs, ``master0`` and
``master1``, the macvlan masters of two subnets (the node has its own address ``.2`` on
each); the shims are installed into a temporary CNI bin directory; the example pools from
``deploy/examples/`` are applied (demo-v4/-v6 for eth0, demo-net1-v4/-v6 for net1); every
pod namespace gets two NICs through our CNI runtime (plugins in order, prevResult passed,
result cached for CHECK and DEL), each from the chain Debian ``macvlan`` with
``"ipam": {"type": "spiderpool"}`` + ``coordinator`` (underlay mode): eth0 on master0 and
net1 on master1 (its IPAM with ``clean_gateway``: the default route stays on eth0). Then a
table of pods, interfaces and addresses and one of their routes and rules (main table and
per-NIC tables); ping between every pair of pods on eth0's subnet and, from each pod's net1
address, on net1's subnet, in both families; pod -> node and node -> pod through the
coordinator's ``veth0`` (when the agent's coordinator sets it up: an agent whose
Coordinator RPCs only pass prevResult through makes no veth0, and the demo says so);
CHECK; ``spiderpoolctl get ippools``; CNI DEL of every pod; the pools empty again.

Every namespace, process and file it makes is removed in ``finally``, also on SIGINT or
SIGTERM (the signal becomes an exception, cleanup runs with further signals deferred).
Any failed step ends the run with a message naming the step and a non-zero exit.
A pod is a list of attachments (network + interface name), so a NIC more per pod is an
entry more in ``NICS``, not more code.
"""

from __future__ import annotations

import argparse
import ipaddress
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
from spiderpool_tools.route_view import read_routing, routing_rows

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = REPO_ROOT / "deploy" / "examples"
POOL_MANIFESTS = ("ippool-demo-v4.yaml", "ippool-demo-v6.yaml")  # eth0's (the netns tests apply them too)
NET1_POOL_MANIFESTS = ("ippool-demo-net1-v4.yaml", "ippool-demo-net1-v6.yaml")
POOL_V4, POOL_V6 = "demo-v4", "demo-v6"
NET1_POOL_V4, NET1_POOL_V6 = "demo-net1-v4", "demo-net1-v6"
REFERENCE_PLUGINS = Path("/usr/lib/cni")
MASTER, WIRE = "master0", "wire0"
NETWORK = "macvlan-demo"
POD_VETH = "veth0"  # the coordinator's pod end of the pod <-> node veth pair (underlay mode)
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
# the node's subnets: one per pod NIC


@dataclass(frozen=True)
class DemoNic:
    """One NIC every pod gets: its network, the node's macvlan master for it, and its pools."""

    ifname: str
    network: str
    master: str
    wire: str  # the master's veth peer, in the node namespace too (the "rest of the subnet")
    pool_v4: str
    pool_v6: str
    manifests: tuple[str, ...]
    node_addresses: tuple[str, ...]  # the node's own, outside the pools' ranges (.10-.60)
    clean_gateway: bool  # no default route from IPAM (eth0 keeps the pod's default route)
    # Debian macvlan's CHECK looks for each address's prefix route in the main table; the
    # coordinator moves a second NIC's routes into that NIC's table (as upstream does), so a
    # chained CHECK of net1 cannot pass: its network says disableCheck (CNI spec) instead.
    disable_check: bool = False

    @property
    def pools(self) -> tuple[str, str]:
        return (self.pool_v4, self.pool_v6)

    @property
    def subnets(self) -> str:
        return ", ".join(str(ipaddress.ip_interface(cidr).network) for cidr in self.node_addresses)


NICS = (
    DemoNic("eth0", NETWORK, MASTER, WIRE, POOL_V4, POOL_V6, POOL_MANIFESTS,
            ("172.30.0.2/24", "fd00:172:30::2/64"), clean_gateway=False),
    DemoNic("net1", "macvlan-demo-net1", "master1", "wire1", NET1_POOL_V4, NET1_POOL_V6, NET1_POOL_MANIFESTS,
            ("172.31.0.2/24", "fd00:172:31::2/64"), clean_gateway=True, disable_check=True),
)  # fmt: skip
ALL_POOLS = tuple(pool for nic in NICS for pool in nic.pools)


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

    def addresses(self, family: int, ifname: str | None = None) -> list[str]:
        """The pod's addresses of one family (4 or 6), of one NIC or all, from its ADD results,
        without prefix."""
        found = []
        for name, result in self.results.items():
            if ifname is not None and name != ifname:
                continue
            for cidr in result_ips(result):
                ip = cidr.split("/", 1)[0]
                if (":" in ip) == (family == 6):
                    found.append(ip)
        return found


def macvlan_network(stack: NodeStack, nic: DemoNic) -> NetworkConfigList:
    """Debian's macvlan on the NIC's master with addresses from spiderpool, then the coordinator
    (underlay: eth0 gets the veth pair to the node, net1 its own policy table)."""
    ipam: dict[str, Any] = {
        "type": "spiderpool",
        "default_ipv4_ippool": [nic.pool_v4],
        "default_ipv6_ippool": [nic.pool_v6],
        "ipam_unix_socket_path": str(stack.layout.agent_socket),
        "log_file_path": str(stack.layout.log_dir / "spiderpool-shim.log"),
        "del_spool_dir": str(stack.layout.spool_dir),
    }
    if nic.clean_gateway:
        ipam["clean_gateway"] = True
    return load_config({
        "cniVersion": "1.0.0",
        "name": nic.network,
        "disableCheck": nic.disable_check,
        "plugins": [
            {"type": "macvlan", "master": nic.master, "mode": "bridge", "ipam": ipam},
            {
                "type": "coordinator",
                "mode": "underlay",
                "ipam_unix_socket_path": str(stack.layout.agent_socket),
                "del_spool_dir": str(stack.layout.spool_dir),
                "logOptions": {"logFile": str(stack.layout.log_dir / "coordinator-shim.log")},
            },
        ],
    })  # fmt: skip


def _families(cidrs: Sequence[str]) -> tuple[str, str]:
    return (
        ", ".join(c for c in cidrs if ":" not in c) or "-",
        ", ".join(c for c in cidrs if ":" in c) or "-",
    )


def pod_rows(pods: Sequence[DemoPod]) -> list[list[str]]:
    """One row per NIC: the attachments from their CNI results, then the links the chain made
    beside them (the coordinator's veth0), as the pod's namespace shows them."""
    rows = []
    for pod in pods:
        for attachment in pod.attachments:
            result = pod.results.get(attachment.ifname, {})
            macs = [
                i.get("mac", "") for i in result.get("interfaces", []) if i.get("name") == attachment.ifname
            ]
            v4, v6 = _families(result_ips(result))
            rows.append([pod.name, pod.ns.name, attachment.ifname, attachment.network.name,
                         macs[0] if macs else "", v4, v6])  # fmt: skip
        named = {a.ifname for a in pod.attachments} | {"lo"}
        for link in pod.ns.links():
            if link in named:
                continue
            cidrs = [a.cidr for a in pod.ns.addresses(link) if a.scope == "global"]
            source = "(coordinator)" if link == POD_VETH else "(other)"
            rows.append([pod.name, pod.ns.name, link, source, pod.ns.mac(link), *_families(cidrs)])
    return rows


def route_rows(pods: Sequence[DemoPod]) -> list[list[str]]:
    """Per pod, family and routing table: the rules selecting the table and its routes."""
    rows = []
    for pod in pods:
        rows += [[pod.name, *row] for row in routing_rows(read_routing(pod.ns))]
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
    for pool in ALL_POOLS:
        allocated = stack.allocated_ips(pool)
        if allocated:
            raise DemoFailure(f"pool {pool} still holds {sorted(allocated)} after every pod was deleted")


def wait_ping(ns: NetNs, address: str, *, source: str = "", deadline_s: float) -> bool:
    """Ping ``address`` from ``ns`` (from ``source`` when given: the rules pick the NIC's table
    by source address) until a reply comes or the deadline passes; True on a reply."""
    deadline = time.monotonic() + deadline_s
    args = ["ping", "-n", "-q", "-c", "1", "-W", "1", *(["-I", source] if source else []), address]
    while True:
        if ns.run(args, check=False, timeout=15).returncode == 0:
            return True
        if time.monotonic() >= deadline:
            return False


def ping_pairs(console: Console, pods: Sequence[DemoPod], nic: DemoNic, deadline_s: float) -> None:
    """Every pod pings every other pod's addresses on ``nic`` from its own address on that NIC;
    one line per pair."""
    failures = []
    for src in pods:
        for dst in pods:
            if src is dst:
                continue
            cells = []
            for family in (4, 6):
                source = next(iter(src.addresses(family, nic.ifname)), "")
                for ip in dst.addresses(family, nic.ifname):
                    if wait_ping(src.ns, ip, source=source, deadline_s=deadline_s):
                        cells.append(f"{ip} ok")
                    else:
                        cells.append(f"{ip} UNREACHABLE")
                        failures.append(f"{src.name} -> {dst.name} {ip} (from {source})")
            console.detail(f"{src.name} -> {dst.name} ({nic.ifname}): " + ", ".join(cells))
    if failures:
        raise DemoFailure("no ping reply for " + "; ".join(failures))


def coordinator_veths(pods: Sequence[DemoPod]) -> bool:
    """True when every pod has the coordinator's veth0, False when none has (an agent whose
    coordinator passes prevResult through); a mix is a failure."""
    have = {pod.name: POD_VETH in pod.ns.links() for pod in pods}
    if all(have.values()):
        return True
    if any(have.values()):
        raise DemoFailure(f"{POD_VETH} exists in some pods only: {have}")
    return False


def ping_node(console: Console, node: NetNs, pods: Sequence[DemoPod], deadline_s: float) -> None:
    """Each pod pings the node's addresses (the routes via veth0) and the node pings every
    address of each pod (its host routes via the pod's veth)."""
    node_ips = [cidr.split("/", 1)[0] for nic in NICS for cidr in nic.node_addresses]
    failures = []
    for pod in pods:
        via = pod.ns.run(["ip", "route", "get", node_ips[0]]).stdout.split()
        if POD_VETH not in via:
            failures.append(f"{pod.name}: route to {node_ips[0]} is not via {POD_VETH}: {' '.join(via)}")
        cells = []
        for ip in node_ips:
            ok = wait_ping(pod.ns, ip, deadline_s=deadline_s)
            cells.append(f"{ip} {'ok' if ok else 'UNREACHABLE'}")
            if not ok:
                failures.append(f"{pod.name} -> node {ip}")
        console.detail(f"{pod.name} -> node: " + ", ".join(cells))
        cells = []
        for ip in pod.addresses(4) + pod.addresses(6):
            ok = wait_ping(node, ip, deadline_s=deadline_s)
            cells.append(f"{ip} {'ok' if ok else 'UNREACHABLE'}")
            if not ok:
                failures.append(f"node -> {pod.name} {ip}")
        console.detail(f"node -> {pod.name}: " + ", ".join(cells))
    if failures:
        raise DemoFailure("; ".join(failures))


def check_node_clean(node: NetNs) -> None:
    """After every DEL the node holds no pod veth and no rule of the coordinator's."""
    veths = [link for link in node.links() if link.startswith("veth")]
    rules = read_routing(node).rules
    if veths or rules:
        raise DemoFailure(
            f"the node still holds {veths} and rules {[f'{r.compact()} lookup {r.table}' for r in rules]}"
        )


def run_demo(opts: Options, console: Console, cleanup: ExitStack) -> None:
    """All the steps; everything made is registered on ``cleanup`` the moment it exists."""
    with console.step("Checking prerequisites"):
        ensure_prerequisites(console, install=opts.install_packages)
        manifests = [opts.examples / name for nic in NICS for name in nic.manifests]
        for manifest in manifests:
            if not manifest.is_file():
                raise DemoFailure(f"example manifest {manifest} is missing")

    with console.step("Creating a temporary work directory"):
        workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
        if not opts.keep_workdir:
            cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        console.detail(f"work directory: {workdir}")

    masters = ", ".join(f"{nic.master} <-> {nic.wire}" for nic in NICS)
    with console.step(f"Creating the node namespace with veth masters {masters}"):
        node = NetNs.create(NETNS_PREFIX + "node")
        cleanup.callback(node.delete)
        node.disable_dad()
        for nic in NICS:
            node.add_veth(nic.master, nic.wire)
            for cidr in nic.node_addresses:
                node.add_address(nic.master, cidr, nodad=True)
            console.detail(f"{nic.master} (for {nic.ifname}): {', '.join(nic.node_addresses)}")
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
    networks = {nic.ifname: macvlan_network(stack, nic) for nic in NICS}
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
            attachments = [Attachment(networks[nic.ifname], nic.ifname) for nic in NICS]
            pods.append(DemoPod(f"pod-{index}", ns, attachments))
        console.detail(", ".join(f"{p.name}={p.ns.name}" for p in pods))
    cleanup.callback(delete_owed)  # LIFO: DELs run before the pods' namespaces go and the stack stops

    nics = " and ".join(nic.ifname for nic in NICS)
    with console.step(f"CNI ADD of {nics} for every pod: macvlan + spiderpool IPAM + coordinator (underlay)"):
        for pod in pods:
            for attachment in pod.attachments:
                pod.added.append(attachment)
                started = time.monotonic()
                result = runtime.add(attachment.network, pod.runtime_conf(attachment))
                pod.results[attachment.ifname] = result
                console.detail(f"{pod.name} {attachment.ifname}: {', '.join(result_ips(result))} "
                               f"({(time.monotonic() - started) * 1000:.0f} ms)")  # fmt: skip
        for pod in pods:
            for nic in NICS:
                if not pod.addresses(4, nic.ifname) or not pod.addresses(6, nic.ifname):
                    raise DemoFailure(f"{pod.name} {nic.ifname} did not get both an IPv4 and an IPv6 address")
            on_link = {(a.ifname, a.ip) for a in pod.ns.addresses() if a.scope == "global"}
            wanted = {(n.ifname, ip) for n in NICS for f in (4, 6) for ip in pod.addresses(f, n.ifname)}
            missing = wanted - on_link
            if missing:
                raise DemoFailure(
                    f"{pod.name}: {sorted(missing)} in the CNI results but not on those interfaces"
                )

    console.say()
    console.say(render_table(["POD", "NETNS", "IFACE", "NETWORK", "MAC", "IPv4", "IPv6"], pod_rows(pods)))
    console.say()
    console.say(render_table(["POD", "IP", "TABLE", "SELECTED BY (PRIORITY: RULE)", "ROUTES"],
                             route_rows(pods)))  # fmt: skip
    console.say()

    for nic in NICS:
        with console.step(f"Ping between every pair of pods on {nic.ifname} ({nic.subnets}), IPv4 and IPv6, "
                          f"from the pod's {nic.ifname} address"):  # fmt: skip
            ping_pairs(console, pods, nic, opts.ping_deadline_s)

    with console.step(f"Pod <-> node through the coordinator's {POD_VETH}"):
        if coordinator_veths(pods):
            ping_node(console, node, pods, opts.ping_deadline_s)
        else:
            console.detail(f"no {POD_VETH} in the pods: this agent's coordinator passes prevResult "
                           "through (not wired to the coordinator library); skipped")  # fmt: skip

    with console.step("CNI CHECK of every pod (cached result as prevResult)"):
        for pod in pods:
            for attachment in pod.attachments:
                runtime.check(attachment.network, pod.runtime_conf(attachment))
        for nic in NICS:
            if nic.disable_check:
                console.detail(
                    f"{nic.ifname}: skipped, its network says disableCheck (macvlan's CHECK wants "
                    f"{nic.ifname}'s prefix routes in main; the coordinator moved them to its table)"
                )
            else:
                console.detail(
                    f"{nic.ifname}: {len(pods)} attachments consistent (macvlan, spiderpool, coordinator)"
                )

    with console.step("The pools with the pods' allocations"):
        console.detail("$ spiderpoolctl get ippools")
        console.detail(stack.ctl("get", "ippools"))
        console.detail("$ spiderpoolctl get endpoints -A")
        console.detail(stack.ctl("get", "endpoints", "-A"))
        allocated = {pool: len(stack.allocated_ips(pool)) for pool in ALL_POOLS}
        expected = dict.fromkeys(ALL_POOLS, len(pods))
        if allocated != expected:
            raise DemoFailure(f"expected {len(pods)} allocations per pool, the store holds {allocated}")
        for pod in pods:
            endpoint = stack.get_object("SpiderEndpoint", pod.name, POD_NAMESPACE)
            recorded = sorted(ip.get("interface", "") for ip in (endpoint.get("status") or {})
                              .get("current", {}).get("ips", []))  # fmt: skip
            if recorded != sorted(nic.ifname for nic in NICS):
                raise DemoFailure(f"SpiderEndpoint {POD_NAMESPACE}/{pod.name} records interfaces {recorded}")
        console.detail(f"every SpiderEndpoint records {' and '.join(nic.ifname for nic in NICS)}")

    with console.step("CNI DEL of every pod (reverse plugin order, cached result as prevResult)"):
        for pod in pods:
            for attachment in reversed(pod.attachments):
                runtime.delete(attachment.network, pod.runtime_conf(attachment))
                pod.added.remove(attachment)
            leftover = [link for link in pod.ns.links() if link != "lo"]
            if leftover:
                raise DemoFailure(f"{pod.name} still has links {leftover} after DEL")
        check_node_clean(node)
        console.detail(f"{len(pods)} pods deleted; no pod veth and no coordinator rule left on the node")

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
