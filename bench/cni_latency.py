"""CNI latency: Debian's macvlan ADD+DEL with host-local IPAM against ours, alone and chained.

What a pod start and stop costs the node, measured the way a container engine sees it:
our CNI runtime executes Debian's macvlan (inside a "node" namespace, on a veth master
that carries the node's own address) for a pod namespace, ADD then DEL, timing the round
trip. Four configurations, two pairs:

- ``host-local`` vs ``spiderpool``: macvlan with either IPAM;
- the chain pair (issue 4): ``host-local+tuning`` (macvlan + host-local, then Debian's
  ``tuning`` setting a sysctl) vs ``spiderpool+coord`` (macvlan + spiderpool, then our
  ``coordinator`` in underlay mode with one NIC: veth pair to the node, host routes,
  connmark reply routing, all undone by DEL).

All four alternate round by round (the order reversed every other round) so drift of the
machine hits them alike, after warm-up rounds of each. Ours runs for real: controller on an
SQLite file and agent as processes, the shims installed in a CNI bin directory, every
allocation persisted before ADD returns (verified once before the timed rounds for both of
ours, and the pool is checked empty at the end); whether the agent's coordinator set up
veth0 is checked and printed.

Prints p50/p90/p99 of each (plus ADD and DEL medians) and the ratios ours/baseline per
pair; the last line is one JSON object: {"hostlocal_p50_ms", "spiderpool_p50_ms",
"ratio_p50", "chain_hostlocal_p50_ms", "chain_spiderpool_p50_ms", "chain_ratio_p50",
"coordinator_veth0"}. Needs root (network namespaces). ``--rounds N`` (default 200),
``--quick`` (30 rounds).

``--bundle DIR`` (``make bench-cni`` passes ``dist/pybundle``) adds a fifth configuration,
``spiderpool(bundle)``: the same IPAM with the shims installed from the interpreter bundle
(``spiderpool-install-cni --bundle``, into the bench's directory), i.e. what a node without
Python runs, alternating with the others; the JSON line then also has ``bundle_p50_ms``,
``bundle_ratio_p50`` (against host-local) and ``bundle_vs_system_p50`` (against the shims on
this machine's own interpreter).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from spiderpool_cni.install import InstallError, install_from_bundle
from spiderpool_tools.cni_runtime import (
    CniRuntime,
    CniRuntimeError,
    NetworkConfigList,
    RuntimeConf,
    load_config,
    result_ips,
)
from spiderpool_tools.netns import NetNs, NetnsError
from spiderpool_tools.node_stack import NodeStack, StackError

REFERENCE_PLUGINS = "/usr/lib/cni"
MASTER, WIRE = "master0", "wire0"
NODE_ADDRESS = "10.250.0.2/16"  # the node's own address on the macvlan subnet (outside both ranges)
POOL = "bench-v4"
POOL_MANIFEST = {
    "apiVersion": "spiderpool.spidernet.io/v2beta1",
    "kind": "SpiderIPPool",
    "metadata": {"name": POOL},
    "spec": {"subnet": "10.250.0.0/16", "ips": ["10.250.0.10-10.250.3.250"], "gateway": "10.250.0.1"},
}
# Like for like: a gateway and a default route, as our pool's result carries (upstream's
# cmd/spiderpool/cmd/command_add.go).
HOSTLOCAL_RANGE = {
    "subnet": "10.251.0.0/16",
    "rangeStart": "10.251.0.10",
    "rangeEnd": "10.251.3.250",
    "gateway": "10.251.0.1",
}
HOSTLOCAL_ROUTES = [{"dst": "0.0.0.0/0"}]
POD_ARGS = (("IgnoreUnknown", "true"), ("K8S_POD_NAMESPACE", "bench"), ("K8S_POD_NAME", "bench-pod"))
WARMUP_ROUNDS = 5
QUICK_ROUNDS = 30
HOSTLOCAL, SPIDERPOOL = "host-local", "spiderpool"
CHAIN_HOSTLOCAL, CHAIN_SPIDERPOOL = "host-local+tuning", "spiderpool+coord"
BUNDLE = "spiderpool(bundle)"
# What Debian's tuning does in the baseline chain: the same sysctl the coordinator writes.
TUNING: dict[str, object] = {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "0"}}


@dataclass
class Samples:
    """Round-trip, ADD and DEL durations of one IPAM, in milliseconds."""

    name: str
    round_trip: list[float] = field(default_factory=list)
    add: list[float] = field(default_factory=list)
    delete: list[float] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def macvlan(name: str, ipam: dict[str, object], *chained: dict[str, object]) -> NetworkConfigList:
    """macvlan on the node's master with ``ipam``, then the ``chained`` plugins."""
    return load_config({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{"type": "macvlan", "master": MASTER, "mode": "bridge", "ipam": ipam}, *chained],
    })  # fmt: skip


def build_configs(stack: NodeStack, workdir: Path) -> dict[str, NetworkConfigList]:
    """The four configurations, keyed by the names the report prints."""
    ours: dict[str, object] = {
        "type": "spiderpool",
        "default_ipv4_ippool": [POOL],
        "ipam_unix_socket_path": str(stack.layout.agent_socket),
        "log_file_path": str(stack.layout.log_dir / "shim.log"),
    }
    coordinator: dict[str, object] = {
        "type": "coordinator",
        "mode": "underlay",
        "ipam_unix_socket_path": str(stack.layout.agent_socket),
        "logOptions": {"logFile": str(stack.layout.log_dir / "coordinator-shim.log")},
    }

    def host_local(data_dir: str) -> dict[str, object]:
        return {
            "type": "host-local",
            "dataDir": str(workdir / data_dir),
            "ranges": [[HOSTLOCAL_RANGE]],
            "routes": HOSTLOCAL_ROUTES,
        }

    return {
        HOSTLOCAL: macvlan("bench-hostlocal", host_local("host-local")),
        SPIDERPOOL: macvlan("bench-spiderpool", ours),
        CHAIN_HOSTLOCAL: macvlan("bench-hostlocal-tuning", host_local("host-local-chain"), TUNING),
        CHAIN_SPIDERPOOL: macvlan("bench-spiderpool-coordinator", ours, coordinator),
    }


def round_trip(
    runtime: CniRuntime, config: NetworkConfigList, pod: NetNs, samples: Samples
) -> dict[str, object]:
    """One timed ADD then DEL of a fresh container in ``pod``; returns the ADD result."""
    rt = RuntimeConf(uuid.uuid4().hex, "eth0", pod.path, POD_ARGS)
    started = time.perf_counter()
    result = runtime.add(config, rt)
    added = time.perf_counter()
    runtime.delete(config, rt)
    done = time.perf_counter()
    samples.add.append((added - started) * 1000)
    samples.delete.append((done - added) * 1000)
    samples.round_trip.append((done - started) * 1000)
    return result


def verify_persisted(runtime: CniRuntime, config: NetworkConfigList, pod: NetNs, stack: NodeStack) -> str:
    """ADD once and prove the controller's store holds the address before DEL releases it."""
    rt = RuntimeConf("bench-verify", "eth0", pod.path, POD_ARGS)
    result = runtime.add(config, rt)
    ip = result_ips(result)[0].split("/", 1)[0]
    try:
        if ip not in stack.allocated_ips(POOL):
            raise SystemExit(f"benchmark invalid: {ip} was returned by ADD but is not allocated in {POOL}")
    finally:
        runtime.delete(config, rt)
    if stack.allocated_ips(POOL):
        raise SystemExit(f"benchmark invalid: {POOL} still holds addresses after DEL")
    return ip


def verify_coordinator(runtime: CniRuntime, config: NetworkConfigList, pod: NetNs, node: NetNs) -> bool:
    """ADD the chain once: True when the coordinator made veth0 (and its host end); after DEL
    neither the pod nor the node may keep a link of it."""
    rt = RuntimeConf("bench-coordinator", "eth0", pod.path, POD_ARGS)
    runtime.add(config, rt)
    try:
        veth0 = "veth0" in pod.links()
        if veth0 and not any(link.startswith("veth") for link in node.links()):
            raise SystemExit("benchmark invalid: veth0 in the pod but no host end in the node")
    finally:
        runtime.delete(config, rt)
    left = [link for link in pod.links() if link != "lo"]
    left += [link for link in node.links() if link.startswith("veth")]
    if left:
        raise SystemExit(f"benchmark invalid: {left} left behind after the chain's DEL")
    return veth0


def run(rounds: int, out: Callable[[str], None], bundle: str | None = None) -> dict[str, float | bool]:
    with ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="spiderpool-bench-"))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        node = NetNs.create("spbench-node")
        cleanup.callback(node.delete)
        node.add_veth(MASTER, WIRE)
        node.add_address(MASTER, NODE_ADDRESS)
        pod = NetNs.create("spbench-pod")
        cleanup.callback(pod.delete)

        stack = NodeStack(node, workdir, node_name="bench-node", log_level="warning")
        cleanup.callback(stack.close)
        stack.start()
        manifest = workdir / "pool.json"
        manifest.write_text(json.dumps(POOL_MANIFEST))
        stack.ctl("apply", "-f", str(manifest))

        runtime = CniRuntime([str(stack.layout.bin_dir), REFERENCE_PLUGINS], workdir / "cni-cache",
                             exec_context=node.entered)  # fmt: skip
        configs = build_configs(stack, workdir)
        runtimes = dict.fromkeys(configs, runtime)
        if bundle is not None:
            done = install_from_bundle(
                bundle, "/", str(workdir / "bundle-bin"), str(workdir / "bundle-python")
            )
            out(f"bundle {done.bundle.id}: shims in {workdir / 'bundle-bin'} on {done.bundle.interpreter}")
            bundle_path = [str(workdir / "bundle-bin"), REFERENCE_PLUGINS]
            cache = workdir / "cni-cache-bundle"
            runtimes[BUNDLE] = CniRuntime(bundle_path, cache, exec_context=node.entered)
            configs[BUNDLE] = configs[SPIDERPOOL]
        for name in (SPIDERPOOL, CHAIN_SPIDERPOOL, *([BUNDLE] if bundle else [])):
            ip = verify_persisted(runtimes[name], configs[name], pod, stack)
            out(f"verified ({name}): ADD's address {ip} is allocated in the controller's SQLite store, "
                "DEL frees it")  # fmt: skip
        veth0 = verify_coordinator(runtime, configs[CHAIN_SPIDERPOOL], pod, node)
        if veth0:
            out("coordinator: ADD sets up veth0 and its host end, DEL removes both")
        else:
            out("coordinator: no veth0 after ADD (the agent's coordinator passes prevResult through)")

        samples = {name: Samples(name) for name in configs}
        for _ in range(WARMUP_ROUNDS):
            for name, config in configs.items():
                round_trip(runtimes[name], config, pod, Samples(name))
        order = list(configs)
        for index in range(rounds):
            for name in order if index % 2 == 0 else reversed(order):
                round_trip(runtimes[name], configs[name], pod, samples[name])
        if stack.allocated_ips(POOL):
            raise SystemExit(f"benchmark invalid: {POOL} holds addresses after every DEL")

    figures: dict[str, float | bool] = dict(report(samples, rounds, out))
    figures["coordinator_veth0"] = veth0
    if bundle is not None:
        bundled = percentile(samples[BUNDLE].round_trip, 50)
        system = percentile(samples[SPIDERPOOL].round_trip, 50)
        figures["bundle_p50_ms"] = round(bundled, 2)
        figures["bundle_ratio_p50"] = round(bundled / percentile(samples[HOSTLOCAL].round_trip, 50), 3)
        figures["bundle_vs_system_p50"] = round(bundled / system, 3)
        out(f"ratio {BUNDLE}/{SPIDERPOOL} p50: {bundled / system:.2f}")
    out(json.dumps(figures))
    return figures


PAIRS = (("", HOSTLOCAL, SPIDERPOOL), ("chain_", CHAIN_HOSTLOCAL, CHAIN_SPIDERPOOL))


def report(samples: dict[str, Samples], rounds: int, out: Callable[[str], None]) -> dict[str, float]:
    """The table and the ratios; returns the figures of the JSON line."""
    out("")
    out(f"CNI ADD+DEL round trip, Debian macvlan (/usr/lib/cni), {rounds} rounds each, alternating, "
        f"{WARMUP_ROUNDS} warm-up rounds of each discarded")  # fmt: skip
    out(f"{'CHAIN':<20}{'p50':>10}{'p90':>10}{'p99':>10}{'ADD p50':>11}{'DEL p50':>11}")
    for s in samples.values():
        cells = [percentile(s.round_trip, q) for q in (50, 90, 99)]
        cells += [statistics.median(s.add), statistics.median(s.delete)]
        out(
            f"{s.name:<20}"
            + "".join(f"{c:>8.1f}ms" if i < 3 else f"{c:>9.1f}ms" for i, c in enumerate(cells))
        )
    figures: dict[str, float] = {}
    for prefix, baseline_name, ours_name in PAIRS:
        baseline, ours = samples[baseline_name], samples[ours_name]
        for q in (50, 90, 99):
            q_ratio = percentile(ours.round_trip, q) / percentile(baseline.round_trip, q)
            out(f"ratio {ours_name}/{baseline_name} p{q}: {q_ratio:.2f}")
        base_p50 = percentile(baseline.round_trip, 50)
        ours_p50 = percentile(ours.round_trip, 50)
        figures[f"{prefix}hostlocal_p50_ms"] = round(base_p50, 2)
        figures[f"{prefix}spiderpool_p50_ms"] = round(ours_p50, 2)
        figures[f"{prefix}ratio_p50"] = round(ours_p50 / base_p50, 3)
    return figures


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=200, help="timed ADD+DEL round trips per IPAM (default 200)"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds (a smoke run)")
    parser.add_argument("--bundle", help="also time the shims installed from this interpreter bundle")
    args = parser.parse_args(argv)
    rounds = QUICK_ROUNDS if args.quick else args.rounds
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    if os.geteuid() != 0:
        print("cni_latency: needs root (network namespaces)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # unwind through the cleanup, like Ctrl-C
    try:
        run(rounds, print, args.bundle)
    except (CniRuntimeError, StackError, NetnsError, InstallError, OSError) as exc:
        print(f"cni_latency: failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
