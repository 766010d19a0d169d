#!/usr/bin/env python3
"""Upstream's 1000-pod scenario in the simulated cluster: 100 Deployments x 10 pods from one pool of exactly
1,000 addresses, our IPAM against upstream's protocol, on the same cluster and API server.

The cluster (tests/simcluster, as root): the test API server as a process adding ``--write-latency-ms``
(default 5) to every write, ``--nodes`` nodes (default 10), each a network namespace with its real
``spiderpool-agent`` (pod facts from its informers) and the kubelet stand-in, the control-plane stand-in
(ReplicaSet controller creating the pods, scheduler spreading them over the nodes) and two
``spiderpool-controller`` replicas on the Kubernetes store behind the Service stand-in. The kubelet runs
each pod's IPAM ADD (and DEL) through the agent's CNI gRPC service as the shim would (``--cni agent``: no
namespace, main plugin or shim process per pod; the shim's start-up is what bench/cni_latency.py measures);
``--shims`` runs the kubelet's CNI chain instead (macvlan with the installed ``spiderpool`` shim and the
``coordinator``, a namespace per pod). Pods take their pool from their namespace's
``ipam.spidernet.io/default-ipv4-ippool``.

Runs, one after the other on the same cluster, each with its own pool and namespace:

1. ``spiderpool``: our agents and controllers (group commit of the pool's status by its single writer).
2. ``baseline``: the controllers stopped and every node's agent replaced by bench/cas_cluster_agent.py:
   the same agent with upstream's protocol (per-node pool ticket, direct GET of the pool, lowest free
   address, status update with the resourceVersion read, on 409 upstream's retry policy from
   cas_baseline.py; after the fifth conflict the ADD fails and the kubelet runs it again after
   ``--kubelet-retry-s``, 0.1 s doubling, instead of the kubelet stand-in's 1 s: in the baseline's favour).

Each run holds the kubelets (SIGSTOP) while the Deployments are created and the ReplicaSet controller and
scheduler create and bind every pod (the agents' informers see them meanwhile), then releases them at once:
``seconds`` is from the release until every pod shows an address (``status.podIPs``, as the bench's own
informer on the namespace sees it), so pods/s measures the IPAM part (the kubelets' ADDs through agents,
controller and API server, and the kubelets' status writes), not the pace of the control-plane stand-in;
``--no-hold`` times everything from the Deployments' creation instead (that end-to-end time is printed in
any case). Also per run: p50/p99 of the pods' address times, API writes per pod (the API server's request
counter, until the cluster settles): IPAM writes (SpiderIPPools and SpiderEndpoints), of which pool status
writes, and all writes (pods, their status, ReplicaSets, ...); conflicts are the API server's own 409
answers on pool status writes (the baseline's agents count theirs too); CPU per pod of every process of
the cluster during that window. Then the Deployments are deleted and the run waits until every pod is gone
and the pool holds no record (and, for ours, no SpiderEndpoint is left).

Checked (exit status 1 if not): no address held by two pods, the pool's records are exactly the pods'
addresses with their UIDs, and after deleting everything no record or endpoint is left (leaks).

The last line is one JSON object: ``pods``, ``seconds`` (ours), ``pods_per_s``, ``writes_per_pod`` (ours:
IPAM API writes per pod, allocation phase), ``duplicates`` and ``leaks`` (ours), ``speedup`` (ours
over the baseline in pods/s), ``baseline_duplicates`` and ``baseline_leaks`` (records upstream's
protocol left behind: reported, not failed, since its GC would reclaim them). ``--details FILE``
writes both runs' figures. ``--quick``: 2 nodes,
6 Deployments x 10 pods, one controller replica (the test suite's variant).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests.simcluster: the simulated cluster

from latency_stats import percentile_ms  # noqa: E402
from spiderpool_common.kube.config import api_client  # noqa: E402
from spiderpool_common.kube.informer import Informer  # noqa: E402
from spiderpool_common.kube.rest import KubeRest  # noqa: E402

from tests.simcluster.cluster import SimCluster, SimOptions  # noqa: E402
from tests.simcluster.topology import default_nodes  # noqa: E402

Obj = dict[str, Any]
POOL_API = "spiderpool.spidernet.io/v2beta1"
POOLS = "/apis/spiderpool.spidernet.io/v2beta1/spiderippools"
DEFAULT_V4_POOL = "ipam.spidernet.io/default-ipv4-ippool"
IPAM_RESOURCES = ("spiderippools", "spiderendpoints")
POOL_STATUS = "spiderippools/status"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
IPAM_PROCESSES = ("agent-", "spiderpool-controller")  # the rest is the simulated Kubernetes and the bench
PROGRESS_TIMEOUT_S = 120.0  # a phase fails when nothing moves for this long
SETTLE_QUIET_S = 1.5  # the cluster has settled when no write was counted for this long
SETTLE_MAX_S = 60.0


@dataclass(frozen=True)
class Workload:
    nodes: int
    deployments: int
    replicas: int
    write_latency_ms: float
    controllers: int
    shims: bool
    kubelet_parallel: int
    kubelet_retry_s: float
    hold: bool = True  # kubelets held until every pod is created and bound: the IPAM part measured alone
    keep_workdir: bool = False

    @property
    def pods(self) -> int:
        return self.deployments * self.replicas


@dataclass
class RunResult:
    label: str
    pods: int = 0  # pods that got an address
    alloc_s: float = 0.0  # kubelets released (without hold: Deployments created) -> every pod has an address
    end_to_end_s: float = 0.0  # Deployments created -> every pod has an address
    bound_s: float = 0.0  # with hold: Deployments created -> every pod bound to a node
    release_s: float = 0.0  # Deployments deleted -> every pod gone and the pool empty
    latencies_s: list[float] = field(default_factory=list)  # per pod: seen created -> seen with an address
    scheduling_s: list[float] = field(default_factory=list)  # per pod: seen created -> seen bound to a node
    created_s: float = 0.0  # Deployments created -> the last pod seen created
    writes: dict[str, int] = field(default_factory=dict)  # allocation phase, "verb resource" -> count
    release_writes: dict[str, int] = field(default_factory=dict)
    writers: dict[str, int] = field(default_factory=dict)  # allocation phase, "user verb resource" -> count
    errors_answered: dict[str, int] = field(default_factory=dict)  # allocation phase, the server's own
    agent_tally: dict[str, float] | None = None  # baseline: what its agents counted (allocation)
    duplicates: int = 0
    leaks: int = 0
    cpu_s: float = 0.0  # CPU of every process of the cluster and the bench during the allocation phase
    cpu_by_process: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def pods_per_s(self) -> float:
        return self.pods / self.alloc_s if self.alloc_s > 0 else 0.0

    @property
    def releases_per_s(self) -> float:
        return self.pods / self.release_s if self.release_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return percentile_ms(self.latencies_s, q)

    def per_pod(self, count: float) -> float:
        return count / self.pods if self.pods else float("nan")

    @property
    def ipam_cpu_s(self) -> float:
        """CPU of the IPAM's own processes (the agents and the controller replicas)."""
        return sum(cpu for name, cpu in self.cpu_by_process.items() if name.startswith(IPAM_PROCESSES))

    @property
    def ipam_writes(self) -> int:
        return ipam_writes(self.writes)

    @property
    def pool_status_writes(self) -> int:
        return sum(n for key, n in self.writes.items() if key.split(" ", 1)[1] == POOL_STATUS)

    @property
    def all_writes(self) -> int:
        return writes_of(self.writes)

    @property
    def conflicts(self) -> int:
        return sum(
            n for key, n in self.errors_answered.items() if key.startswith("409 ") and POOL_STATUS in key
        )


# -- the workload's objects (pure) -------------------------------------------------------------------
def pool_manifest(name: str, size: int, second_octet: int) -> Obj:
    """A pool of exactly ``size`` addresses in 10.<second_octet>.0.0/16."""
    first = ipaddress.IPv4Address(f"10.{second_octet}.0.10")
    return {
        "apiVersion": POOL_API,
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {
            "ipVersion": 4,
            "subnet": f"10.{second_octet}.0.0/16",
            "ips": [f"{first}-{first + size - 1}"],
            "gateway": f"10.{second_octet}.0.1",
        },
    }


def namespace_manifest(name: str, pool: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "annotations": {DEFAULT_V4_POOL: json.dumps([pool])}},
    }


def deployment_manifest(namespace: str, index: int, replicas: int) -> Obj:
    name = f"app-{index:03d}"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }


# -- checks and counts (pure) --------------------------------------------------------------------------
def pod_addresses(pods: Iterable[Obj]) -> dict[str, list[str]]:
    """Pod UID -> its ``status.podIPs``."""
    out = {}
    for pod in pods:
        ips = [str(e.get("ip", "")) for e in (pod.get("status") or {}).get("podIPs") or [] if e.get("ip")]
        if ips:
            out[str(pod["metadata"]["uid"])] = ips
    return out


def duplicates(addresses: Mapping[str, list[str]]) -> int:
    """Addresses held by more than one pod (each extra holder counts once)."""
    holders: dict[str, int] = {}
    for ips in addresses.values():
        for ip in ips:
            holders[ip] = holders.get(ip, 0) + 1
    return sum(n - 1 for n in holders.values() if n > 1)


def pool_records(pool: Obj) -> dict[str, str]:
    """Address -> pod UID in a pool's ``status.allocatedIPs`` (a JSON string, as upstream stores it)."""
    raw = (pool.get("status") or {}).get("allocatedIPs") or {}
    records: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return {ip: str((rec or {}).get("podUid", "")) for ip, rec in records.items()}


def record_mismatches(pool: Obj, addresses: Mapping[str, list[str]]) -> list[str]:
    """Differences between the pods' addresses and the pool's records."""
    held = {ip: uid for uid, ips in addresses.items() for ip in ips}
    stored = pool_records(pool)
    out = [
        f"{ip} held by pod {uid} but recorded for {stored.get(ip)!r}"
        for ip, uid in held.items()
        if stored.get(ip) != uid
    ]
    out += [f"{ip} recorded for {uid} but no pod holds it" for ip, uid in stored.items() if ip not in held]
    count = (pool.get("status") or {}).get("allocatedIPCount")
    if count != len(stored):
        out.append(f"allocatedIPCount {count} but {len(stored)} records")
    return out


def leaked(pool: Obj) -> int:
    return max(len(pool_records(pool)), int((pool.get("status") or {}).get("allocatedIPCount") or 0))


def writes_of(counts: Mapping[str, int], resources: tuple[str, ...] | None = None) -> int:
    """Writes in an API server count (``"verb resource" -> n``), of ``resources`` (and their subresources)."""
    total = 0
    for key, n in counts.items():
        verb, _, resource = key.partition(" ")
        if verb in WRITE_VERBS and (resources is None or resource.split("/")[0] in resources):
            total += n
    return total


def ipam_writes(counts: Mapping[str, int]) -> int:
    return writes_of(counts, IPAM_RESOURCES)


# -- one run -------------------------------------------------------------------------------------------
class PodWatch:
    """The bench's informer on the run's namespace: when each pod was first seen and first had an address."""

    def __init__(self, rest: KubeRest, namespace: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seen: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.addressed: dict[str, float] = {}
        self.informer = Informer(rest, f"/api/v1/namespaces/{namespace}/pods", handler=self._on_event)
        self.changed = asyncio.Event()

    def _on_event(self, kind: str, pod: Obj) -> None:
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        now = self.clock()
        self.seen.setdefault(uid, now)
        if (pod.get("spec") or {}).get("nodeName"):
            self.bound.setdefault(uid, now)
        if kind != "DELETED" and (pod.get("status") or {}).get("podIPs"):
            self.addressed.setdefault(uid, now)
        self.changed.set()

    def pods(self) -> list[Obj]:
        return self.informer.items()

    async def until(self, done: Callable[[], bool], what: str) -> None:
        """Wait until ``done()``; fail when nothing changes for PROGRESS_TIMEOUT_S."""
        while not done():
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), PROGRESS_TIMEOUT_S)
            except TimeoutError:
                raise RuntimeError(f"no progress for {PROGRESS_TIMEOUT_S:g}s waiting for {what}") from None


def writers(entries: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Accepted writes counted by who made them: "user verb resource" -> count, most first."""
    counts: dict[str, int] = {}
    for e in entries:
        key = f"{e.get('user', '')} {e.get('verb', '')} {e.get('resource', '')}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: kv[1], reverse=True))


async def settled_counts(sim: SimCluster) -> dict[str, int]:
    """The API server's counts once no write has been counted for SETTLE_QUIET_S (controllers' endpoint
    writes and workload status writes follow the pods)."""
    deadline = time.monotonic() + SETTLE_MAX_S
    last = await asyncio.to_thread(sim.admin.counts)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now = await asyncio.to_thread(sim.admin.counts)
        if writes_of(now) != writes_of(last):
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= SETTLE_QUIET_S:
            break
    return last


async def wait_pool_empty(rest: KubeRest, pool: str, namespace: str, endpoints: bool, within_s: float) -> Obj:
    """Poll until the pool holds no record (and no SpiderEndpoint is left in ``namespace``); returns
    the pool."""
    deadline = time.monotonic() + within_s
    while True:
        obj = await rest.get(f"{POOLS}/{pool}")
        left = 0
        if endpoints:
            listed = await rest.get(
                f"/apis/spiderpool.spidernet.io/v2beta1/namespaces/{namespace}/spiderendpoints"
            )
            left = len(listed.get("items") or [])
        if (leaked(obj) == 0 and left == 0) or time.monotonic() >= deadline:
            obj["_endpoints_left"] = left
            return obj
        await asyncio.sleep(0.1)


def cluster_cpu_s(sim: SimCluster) -> dict[str, float]:
    """CPU time (user + system) used so far by each process of the cluster, by its name (its children
    included: node processes run under nsenter), and by the benchmark itself ("bench")."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {"bench": time.process_time()}
    for proc in sim.processes():
        if proc.proc is None or not proc.alive():
            continue
        total = 0.0
        for pid in [proc.pid, *_children(proc.pid)]:
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
        out[proc.name] = total
    return out


def cpu_delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 3) for name in after}


def _children(pid: int) -> list[int]:
    """Descendants of ``pid`` (node processes run under nsenter)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    out += [int(child), *_children(int(child))]
    return out


async def run_phase(
    sim: SimCluster, w: Workload, label: str, namespace: str, pool: str, endpoints: bool
) -> RunResult:
    result = RunResult(label)
    client = await api_client(str(sim.paths.kubeconfig))
    rest = KubeRest(client, timeout_s=60)
    watch = PodWatch(rest, namespace)
    informer = asyncio.create_task(watch.informer.run(), name="bench pods")
    try:
        await watch.informer.synced.wait()
        await asyncio.to_thread(sim.admin.reset_counts)
        kubelets = [sim.kubelet(node) for node in sim.nodes]
        base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        if w.hold:
            for kubelet in kubelets:
                kubelet.pause()
        try:
            created = time.monotonic()
            created_wall = time.time()
            await asyncio.gather(
                *(
                    rest.create(base, deployment_manifest(namespace, i, w.replicas))
                    for i in range(w.deployments)
                )
            )
            if w.hold:
                await watch.until(lambda: len(watch.bound) >= w.pods, f"{w.pods} pods created and bound")
                result.bound_s = max(watch.bound.values()) - created
            cpu = await asyncio.to_thread(cluster_cpu_s, sim)
        finally:
            for kubelet in kubelets:
                kubelet.resume()
        released = time.monotonic()
        await watch.until(lambda: len(watch.addressed) >= w.pods, f"{w.pods} pods with an address")
        last = max(watch.addressed.values())
        result.alloc_s = last - (released if w.hold else created)
        result.end_to_end_s = last - created
        result.cpu_by_process = cpu_delta(await asyncio.to_thread(cluster_cpu_s, sim), cpu)
        result.cpu_s = sum(result.cpu_by_process.values())
        result.pods = len(watch.addressed)
        result.latencies_s = [
            t - (released if w.hold else watch.seen[uid]) for uid, t in watch.addressed.items()
        ]
        result.scheduling_s = [
            watch.bound[uid] - watch.seen[uid] for uid in watch.addressed if uid in watch.bound
        ]
        result.created_s = max(watch.seen.values()) - created
        result.writes = await settled_counts(sim)
        result.writers = writers(await asyncio.to_thread(sim.admin.writes, created_wall))
        result.errors_answered = await asyncio.to_thread(sim.admin.errors)
        addresses = pod_addresses(watch.pods())
        result.duplicates = duplicates(addresses)
        result.errors += record_mismatches(await rest.get(f"{POOLS}/{pool}"), addresses)
        if len(addresses) != w.pods:
            result.errors.append(f"{len(addresses)} pods have an address, {w.pods} expected")
        # release: every Deployment deleted, the garbage collector takes the ReplicaSets and pods
        await asyncio.to_thread(sim.admin.reset_counts)
        started = time.monotonic()
        await asyncio.gather(*(rest.delete(f"{base}/app-{i:03d}") for i in range(w.deployments)))
        await watch.until(lambda: not watch.pods(), "every pod to be deleted")
        emptied = await wait_pool_empty(rest, pool, namespace, endpoints, PROGRESS_TIMEOUT_S)
        result.release_s = time.monotonic() - started
        result.leaks = leaked(emptied) + int(emptied["_endpoints_left"])
        if result.leaks:
            result.errors.append(
                f"after deleting everything: {leaked(emptied)} records left in {pool}, "
                f"{emptied['_endpoints_left']} SpiderEndpoints in {namespace}"
            )
        result.release_writes = await settled_counts(sim)
    finally:
        informer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await informer
        await client.close()
    return result


# -- the cluster -----------------------------------------------------------------------------------------
def sim_options(w: Workload) -> SimOptions:
    kubelet = ["--retry-initial-seconds", str(w.kubelet_retry_s)]
    if not w.shims:
        kubelet += ["--cni", "agent"]
    return SimOptions(
        nodes=default_nodes(w.nodes),
        controllers=w.controllers,
        kubelet_parallel=w.kubelet_parallel,
        kubelet_args=tuple(kubelet),
        ready_timeout_s=300.0,
        keep_workdir=w.keep_workdir,
    )


def baseline_agent(
    tally_dir: Path, kubeconfig: Path
) -> Callable[[str, Sequence[str], dict[str, str]], tuple[list[str], dict[str, str]]]:
    """The baseline agent's command for a node: the agent's own flags (as the chart gives them), its program
    cas_cluster_agent.py, and ``kubeconfig``'s identity: upstream's agents write the pools themselves, which
    this project's chart does not let its agents do."""

    def command(node: str, argv: Sequence[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        flags = [a for a in argv[1:] if not a.startswith("--kubeconfig")]
        return [
            sys.executable,
            str(BENCH / "cas_cluster_agent.py"),
            *flags,
            f"--kubeconfig={kubeconfig}",
            "--tally-file",
            str(tally_dir / f"{node}.json"),
        ], env

    return command


def read_tallies(tally_dir: Path) -> dict[str, float]:
    total: dict[str, float] = {}
    for path in sorted(tally_dir.glob("*.json")):
        for key, value in json.loads(path.read_text())["alloc"].items():
            total[key] = total.get(key, 0.0) + value
    return total


def run_all(w: Workload) -> tuple[list[RunResult], float]:
    runs: list[RunResult] = []
    print(f"  starting the simulated cluster ({w.nodes} nodes) ...", flush=True)
    with SimCluster(sim_options(w)) as sim:
        startup = sim.startup_s
        if w.keep_workdir:
            print(f"  the cluster's directory (kept): {sim.paths.root}", flush=True)
        print(f"  cluster up in {startup:.1f}s", flush=True)
        for index, (pool, ns) in enumerate((("bench-ours", "bench-ours"), ("bench-cas", "bench-cas"))):
            sim.api.create(POOLS, pool_manifest(pool, w.pods, 128 + index))
            sim.api.create("/api/v1/namespaces", namespace_manifest(ns, pool))
        sim.admin.write_delay(w.write_latency_ms / 1000)
        print("  running spiderpool ...", flush=True)
        runs.append(
            asyncio.run(run_phase(sim, w, "spiderpool (group commit)", "bench-ours", "bench-ours", True))
        )
        print("  replacing the agents by the baseline's, controllers stopped ...", flush=True)
        tally_dir = sim.paths.root / "tallies"
        tally_dir.mkdir()
        for index in range(len(sim.controllers)):
            sim.controller(index).stop()
        sim.replace_agents(baseline_agent(tally_dir, sim.paths.kubeconfig))
        print("  running the baseline ...", flush=True)
        base = asyncio.run(run_phase(sim, w, "baseline (CAS per agent)", "bench-cas", "bench-cas", False))
        for node in sim.nodes:
            sim.agent(node).stop()  # its tally file is final once it has stopped
        base.agent_tally = read_tallies(tally_dir)
        runs.append(base)
    return runs, startup


# -- report ------------------------------------------------------------------------------------------------
def table(runs: list[RunResult]) -> str:
    header = (
        f"{'run':<28}{'pods':>6}{'seconds':>9}{'pods/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'ipam w':>8}"
        f"{'pool w':>8}{'all w':>7}{'409s':>6}{'rel s':>7}{'cpu ms':>8}{'dups':>6}{'leaks':>6}"
    )
    units = f"{'':<67}{'/pod':>8}{'/pod':>8}{'/pod':>7}{'':>13}{'/pod':>8}"
    lines = [header, units]
    for r in runs:
        lines.append(
            f"{r.label:<28}{r.pods:>6}{r.alloc_s:>9.2f}{r.pods_per_s:>8.1f}{r.percentile_ms(0.5):>8.0f}"
            f"{r.percentile_ms(0.99):>8.0f}{r.per_pod(r.ipam_writes):>8.2f}{r.per_pod(r.pool_status_writes):>8.2f}"
            f"{r.per_pod(r.all_writes):>7.2f}{r.conflicts:>6}{r.release_s:>7.2f}"
            f"{r.per_pod(r.cpu_s * 1000):>8.1f}{r.duplicates:>6}{r.leaks:>6}"
        )
    return "\n".join(lines)


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def summary(ours: RunResult, base: RunResult) -> dict[str, Any]:
    return {
        "pods": ours.pods,
        "seconds": round(ours.alloc_s, 2),
        "pods_per_s": round(ours.pods_per_s, 1),
        "writes_per_pod": round(ours.per_pod(ours.ipam_writes), 3) if ours.pods else None,
        "duplicates": ours.duplicates,
        "leaks": ours.leaks,
        "speedup": round(ours.pods_per_s / base.pods_per_s, 2) if base.pods_per_s else None,
        # The baseline's own: a duplicate would mean its compare-and-swap is broken (the run fails);
        # records it leaves are upstream's protocol's (DELs that ran out of retries), which its GC
        # would reclaim later: reported, not failed.
        "baseline_duplicates": base.duplicates,
        "baseline_leaks": base.leaks,
        # CPU per pod while allocating: the IPAM's processes and everything (the simulated cluster's
        # API server, kubelets and control plane share the same cores)
        "ipam_cpu_ms_per_pod": round(ours.per_pod(ours.ipam_cpu_s * 1000), 1) if ours.pods else None,
        "cluster_cpu_ms_per_pod": round(ours.per_pod(ours.cpu_s * 1000), 1) if ours.pods else None,
    }


def details(w: Workload, runs: list[RunResult], startup_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"workload": asdict(w), "cluster_startup_s": startup_s, "runs": []}
    for r in runs:
        row = asdict(r)
        row.pop("latencies_s")
        row.pop("scheduling_s")
        row.update(
            pods_per_s=r.pods_per_s,
            releases_per_s=r.releases_per_s,
            p50_ms=r.percentile_ms(0.5),
            p99_ms=r.percentile_ms(0.99),
            ipam_writes=r.ipam_writes,
            pool_status_writes=r.pool_status_writes,
            all_writes=r.all_writes,
            conflicts=r.conflicts,
        )
        out["runs"].append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(description=doc.splitlines()[0], epilog="The module docstring has details.")
    p.add_argument("--nodes", type=int, help="nodes (agents), default 10 (quick 2)")
    p.add_argument("--deployments", type=int, help="Deployments, default 100 (quick 6)")
    p.add_argument("--replicas", type=int, default=10, help="pods per Deployment, default 10")
    p.add_argument("--write-latency-ms", type=float, default=5.0, help="added to every API write, default 5")
    p.add_argument("--controllers", type=int, help="controller replicas, default 2 (quick 1)")
    p.add_argument(
        "--shims", action="store_true", help="the kubelets run the CNI chain with the installed shims"
    )
    p.add_argument(
        "--kubelet-parallel", type=int, default=8, help="sandboxes a kubelet makes at once, default 8"
    )
    p.add_argument(
        "--kubelet-retry-s", type=float, default=0.1, help="first retry of a failed sandbox, default 0.1"
    )
    p.add_argument("--quick", action="store_true", help="2 nodes, 60 pods: the test suite's variant")
    p.add_argument(
        "--no-hold",
        action="store_true",
        help="do not hold the kubelets while the pods are created and bound: time everything from the "
        "Deployments' creation (the control-plane stand-in's pace included)",
    )
    p.add_argument(
        "--keep-workdir", action="store_true", help="keep the cluster's directory (logs) and say where"
    )
    p.add_argument("--details", type=Path, help="write both runs' figures and counts to this JSON file")
    args = p.parse_args(argv)
    w = Workload(
        nodes=args.nodes or (2 if args.quick else 10),
        deployments=args.deployments or (6 if args.quick else 100),
        replicas=args.replicas,
        write_latency_ms=args.write_latency_ms,
        controllers=args.controllers or (1 if args.quick else 2),
        shims=args.shims,
        kubelet_parallel=args.kubelet_parallel,
        kubelet_retry_s=args.kubelet_retry_s,
        hold=not args.no_hold,
        keep_workdir=args.keep_workdir,
    )
    if (
        min(w.nodes, w.deployments, w.replicas, w.controllers, w.kubelet_parallel) < 1
        or w.write_latency_ms < 0
    ):
        p.error("counts must be positive and the latency not negative")
    if os.geteuid() != 0:
        p.error("the simulated cluster needs root (network and mount namespaces)")
    print(
        f"cluster_alloc: {w.nodes} nodes, {w.deployments} Deployments x {w.replicas} pods from one pool of "
        f"{w.pods} addresses, {w.write_latency_ms:g} ms per API write, "
        f"IPAM {'through the installed shims' if w.shims else 'through the agents CNI gRPC service'}"
    )
    load_before = os.getloadavg()[0]
    runs, startup = run_all(w)
    load_after = os.getloadavg()[0]
    ours, base = runs
    print(table(runs))
    tally = base.agent_tally or {}
    if tally:
        print(
            f"baseline agents: {tally.get('attempts', 0):.0f} pool reads, "
            f"{tally.get('writes', 0):.0f} status writes, {tally.get('conflicts', 0):.0f} conflicts, "
            f"{tally.get('failed', 0):.0f} failed ADDs (retries exhausted, run again by the kubelet), "
            f"{tally.get('ticket_waits', 0):.0f} ADDs queued for their node's ticket"
        )
    for r in runs:
        top = sorted(((n, k) for k, n in r.writes.items() if k.split(" ", 1)[0] in WRITE_VERBS), reverse=True)
        print(f"{r.label}: API writes while allocating: " + ", ".join(f"{k} {n}" for n, k in top[:8]))
    print(
        f"machine: {os.cpu_count()} CPUs, 1-minute load average {load_before:.1f} before, "
        f"{load_after:.1f} after; cluster start-up {startup:.1f}s"
    )
    cores = os.cpu_count() or 1
    for r in runs:
        if not r.pods:
            continue
        ipam_ms, all_ms = r.per_pod(r.ipam_cpu_s * 1000), r.per_pod(r.cpu_s * 1000)
        print(
            f"{r.label}: CPU per pod while allocating: {all_ms:.1f} ms in all, of which the IPAM's processes "
            f"(agents, controllers) {ipam_ms:.1f} ms and the simulated Kubernetes (API server, kubelets, "
            f"control plane) and the bench {all_ms - ipam_ms:.1f} ms; on {cores} cores that is at most "
            f"{cores * 1000 / all_ms:.0f} pods/s for the whole simulation, "
            f"{cores * 1000 / ipam_ms:.0f} pods/s for the IPAM's processes alone (a bound derived from CPU, "
            "not a measured rate)"
        )
    for r in runs:
        busiest = sorted(r.cpu_by_process.items(), key=lambda kv: kv[1], reverse=True)
        print(
            f"{r.label}: CPU seconds while allocating: "
            + ", ".join(f"{name} {cpu:.2f}" for name, cpu in busiest[:8])
        )
        held = f"every pod created and bound in {r.bound_s:.2f}s, kubelets held; " if w.hold else ""
        print(
            f"{r.label}: {held}the last pod created after {r.created_s:.2f}s, created to bound p50 "
            f"{median_ms(r.scheduling_s):.0f} ms; Deployments created to every pod addressed "
            f"{r.end_to_end_s:.2f}s"
        )
    failures = [f"{r.label}: {e}" for r in runs for e in r.errors if r is ours or "left in" not in e]
    for line in [f"{r.label}: {e}" for r in runs for e in r.errors][:20]:
        print(f"{'ERROR' if any(line.endswith(f) for f in failures) else 'NOTE'} {line}")
    if args.details:
        out = details(w, runs, startup)
        out["load_average"] = {"before": load_before, "after": load_after}
        args.details.write_text(json.dumps(out, indent=1))
    result = summary(ours, base)
    print(json.dumps(result))
    clean = result["duplicates"] == result["leaks"] == result["baseline_duplicates"] == 0
    return 0 if not failures and clean else 1


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.exit(main())
