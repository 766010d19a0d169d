"""CNI latency: Debian's macvlan ADD+DEL with host-local IPAM against ours, in one run.

What a pod start and stop costs the node, measured the way a container engine sees it:
our CNI runtime executes Debian's macvlan (inside a "node" namespace, on a veth master)
for a pod namespace, ADD then DEL, timing the round trip. The two IPAMs alternate round by
round (and swap which goes first) so drift of the machine hits both alike. Ours runs for
real: controller on an SQLite file and agent as processes, the shim installed in a CNI
bin directory, every allocation persisted before ADD returns (verified once before the
timed rounds, and the pool is checked empty at the end).

Prints p50/p90/p99 of each (plus ADD and DEL medians) and the ratio ours/host-local;
the last line is one JSON object: {"hostlocal_p50_ms", "spiderpool_p50_ms", "ratio_p50"}.
Needs root (network namespaces). ``--rounds N`` (default 200), ``--quick`` (30 rounds).
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
POOL = "bench-v4"
POOL_MANIFEST = {
    "apiVersion": "spiderpool.spidernet.io/v2beta1",
    "kind": "SpiderIPPool",
    "metadata": {"name": POOL},
    "spec": {"subnet": "10.250.0.0/16", "ips": ["10.250.0.10-10.250.3.250"], "gateway": "10.250.0.1"},
}
HOSTLOCAL_RANGE = {"subnet": "10.251.0.0/16", "rangeStart": "10.251.0.10", "rangeEnd": "10.251.3.250"}
POD_ARGS = (("IgnoreUnknown", "true"), ("K8S_POD_NAMESPACE", "bench"), ("K8S_POD_NAME", "bench-pod"))
WARMUP_ROUNDS = 5
QUICK_ROUNDS = 30


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


def macvlan(name: str, ipam: dict[str, object]) -> NetworkConfigList:
    return load_config({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{"type": "macvlan", "master": MASTER, "mode": "bridge", "ipam": ipam}],
    })  # fmt: skip


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


def run(rounds: int, out: Callable[[str], None]) -> dict[str, float]:
    with ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="spiderpool-bench-"))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        node = NetNs.create("spbench-node")
        cleanup.callback(node.delete)
        node.add_veth(MASTER, WIRE)
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
        configs = {
            "host-local": macvlan("bench-hostlocal", {
                "type": "host-local", "dataDir": str(workdir / "host-local"), "ranges": [[HOSTLOCAL_RANGE]],
            }),
            "spiderpool": macvlan("bench-spiderpool", {
                "type": "spiderpool",
                "default_ipv4_ippool": [POOL],
                "ipam_unix_socket_path": str(stack.layout.agent_socket),
                "log_file_path": str(stack.layout.log_dir / "shim.log"),
            }),
        }  # fmt: skip
        ip = verify_persisted(runtime, configs["spiderpool"], pod, stack)
        out(f"verified: ADD's address {ip} is allocated in the controller's SQLite store, DEL frees it")

        samples = {name: Samples(name) for name in configs}
        for _ in range(WARMUP_ROUNDS):
            for name, config in configs.items():
                round_trip(runtime, config, pod, Samples(name))
        order = list(configs)
        for index in range(rounds):
            for name in order if index % 2 == 0 else reversed(order):
                round_trip(runtime, configs[name], pod, samples[name])
        if stack.allocated_ips(POOL):
            raise SystemExit(f"benchmark invalid: {POOL} holds addresses after every DEL")

    return report(samples["host-local"], samples["spiderpool"], rounds, out)


def report(hostlocal: Samples, ours: Samples, rounds: int, out: Callable[[str], None]) -> dict[str, float]:
    out("")
    out(f"CNI ADD+DEL round trip, Debian macvlan (/usr/lib/cni), {rounds} rounds each, alternating, "
        f"{WARMUP_ROUNDS} warm-up rounds discarded")  # fmt: skip
    out(f"{'IPAM':<12}{'p50':>10}{'p90':>10}{'p99':>10}{'ADD p50':>11}{'DEL p50':>11}")
    for s in (hostlocal, ours):
        cells = [percentile(s.round_trip, q) for q in (50, 90, 99)]
        cells += [statistics.median(s.add), statistics.median(s.delete)]
        out(
            f"{s.name:<12}"
            + "".join(f"{c:>8.1f}ms" if i < 3 else f"{c:>9.1f}ms" for i, c in enumerate(cells))
        )
    hl_p50 = percentile(hostlocal.round_trip, 50)
    ours_p50 = percentile(ours.round_trip, 50)
    ratio = ours_p50 / hl_p50
    for q in (50, 90, 99):
        q_ratio = percentile(ours.round_trip, q) / percentile(hostlocal.round_trip, q)
        out(f"ratio ours/host-local p{q}: {q_ratio:.2f}")
    figures = {
        "hostlocal_p50_ms": round(hl_p50, 2),
        "spiderpool_p50_ms": round(ours_p50, 2),
        "ratio_p50": round(ratio, 3),
    }
    out(json.dumps(figures))
    return figures


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=200, help="timed ADD+DEL round trips per IPAM (default 200)"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds (a smoke run)")
    args = parser.parse_args(argv)
    rounds = QUICK_ROUNDS if args.quick else args.rounds
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    if os.geteuid() != 0:
        print("cni_latency: needs root (network namespaces)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # unwind through the cleanup, like Ctrl-C
    try:
        run(rounds, print)
    except (CniRuntimeError, StackError, NetnsError, OSError) as exc:
        print(f"cni_latency: failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
