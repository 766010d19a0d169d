#!/usr/bin/env python3
"""Allocation throughput: group commit in one controller vs upstream's compare-and-swap per agent.

The workload: ``--nodes`` simulated nodes (default 10) each run ``--per-node`` concurrent
ADDs (default 1) until ``-n`` pods (default 1,000) hold an address from one pool of exactly
``-n`` addresses; then every pod is released. Pod ``i`` belongs to node ``i % nodes``.

Like for like: both protocols run against the same store, a bench store server
(``store_server.py``) that owns one SQLite file (``SqliteStore``: WAL, ``synchronous=FULL``)
behind ``LatencyStore``, which adds ``--write-latency-ms`` (default 5, the round trip of a
write to a Kubernetes API server) to every write, and ``--read-latency-ms`` (default 0) to
every read, whoever calls. Runs, each from a fresh store:

- ``group commit``: the real controller (``controller_on_remote_store.py``: production
  engine and gRPC server, its store a ``RemoteStore`` to the store server); one gRPC
  channel per node does Allocate and Release, as the nodes' agents would.
- ``baseline``: no controller. One process per node (``cas_agent.py``) runs upstream's
  agent protocol (``cas_baseline.py``): per ADD, the node's per-pool ticket, then read the
  pool, pick the lowest free address, write the status with compare-and-swap, on 409 retry
  with upstream's backoff (5 attempts, 10 ms growing by 1.5, 10% jitter); after the fifth
  conflict the ADD fails (counted, and run again, as the kubelet would).
- ``group commit, no added latency``: the first run with 0 ms added.
- ``raw``: the production command (``spiderpool-controller``) on its own SQLite file,
  nothing of the benchmark between it and the disk.
- ``group commit, reuse delay on``: the first run's controller with
  ``--ip-reuse-delay-seconds 3600``, after an unmeasured round that allocated and released
  the whole pool: every address is cooling down when the measured round starts, so every
  pick takes the delay's slowest path (the oldest-released address when nothing else is
  free) and every status write carries ``releasedIPs``. Compare it with the first run.

Columns: allocations/s and releases/s (wall time of the phase), p50/p99 of one ADD
(Allocate call, or the baseline agent's ADD including its ticket wait and retries), pool
status writes per allocation (allocation phase, 409s included), other store writes per
pod (both phases: the controller's SpiderEndpoints; the baseline models none, though
upstream's agent writes one per ADD too), 409 conflicts per allocation, failed ADDs, CPU
time per allocation (every process of the run during the allocation phase: store server,
controller or agents, the benchmark's own gRPC clients; on a shared machine a steadier
figure than the rates), duplicates and leaks. Writes and conflicts are counted by the store server (the
controller's metrics for ``raw``, which cannot see conflicts).

Checked on every run (exit status 1 and a message if not): no address is handed to two
pods (allocation and release are separate phases, so "at any time" means within the
allocation phase), the store's records after allocation are exactly the addresses handed
out, nothing is left after releasing everything (leaks), no request failed other than the
baseline's exhausted retries; for the baseline, the agents' own conflict and write counts
equal the store's, and status writes equal allocations plus conflicts.

The last line is one JSON object: ``allocs_per_s``, ``baseline_allocs_per_s``, ``speedup``,
``status_writes_per_alloc``, ``p50_ms``, ``p99_ms`` (group commit), ``duplicates`` (all
runs), ``raw_allocs_per_s``, ``baseline_conflicts_per_alloc``, ``baseline_failed`` (failed
ADDs), ``leaks`` (all runs), ``reuse_delay_allocs_per_s`` and ``reuse_delay_ratio`` (its
rate over the first run's). ``--details FILE`` writes every run's figures and counts as
JSON. ``--quick``: 100 addresses, 4 nodes of 2 concurrent ADDs (a few seconds per run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from latency_stats import percentile_ms
from remote_store import RemoteStore
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc, resource_pb2, resource_pb2_grpc
from spiderpool_common.logging import configure_logging
from spiderpool_controller.domain.models import KIND_IPPOOL
from spiderpool_controller.domain.validation import ValidationSettings
from spiderpool_controller.resource_service import ResourceService

BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
POOL = "bench"
START_TIMEOUT_S = 60.0
PHASE_TIMEOUT_S = 1800.0
REUSE_DELAY_S = 3600.0  # longer than any run: every released address stays cooling
WRITE_OPS = ("create", "update", "update_status", "delete")
CONFLICT = "StaleResourceVersion"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
Counts = Counter[tuple[str, str, str]]  # the store server's (operation, kind, outcome) counts


@dataclass(frozen=True)
class Workload:
    allocations: int
    nodes: int
    per_node: int
    write_latency_ms: float
    read_latency_ms: float


@dataclass
class RunResult:
    label: str
    allocations: int = 0  # successful ADDs
    alloc_s: float = 0.0
    release_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    status_writes: int = 0  # pool status writes during the allocation phase, 409s included
    other_writes: int = 0  # store writes to other kinds than pools, both phases (SpiderEndpoints)
    conflicts: int | None = None  # 409s on the pool status during the allocation phase
    failed_adds: int = 0
    failed_dels: int = 0
    duplicates: int = 0
    leaks: int = 0
    agent_conflicts: int | None = None  # baseline: what the agents counted themselves
    agent_writes: int | None = None
    ticket_waits: int | None = None
    attempt_ms: dict[str, float] | None = None  # baseline: mean read, step and write time per attempt
    cpu_s: float = 0.0  # CPU time of every process of the run during the allocation phase
    store_cpu_s: float = 0.0  # of which the bench store server's (0 for raw: it has none)
    errors: list[str] = field(default_factory=list)

    @property
    def allocs_per_s(self) -> float:
        return self.allocations / self.alloc_s if self.alloc_s > 0 else 0.0

    @property
    def releases_per_s(self) -> float:
        return self.allocations / self.release_s if self.release_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return percentile_ms(self.latencies_s, q)

    @property
    def cpu_ms_per_alloc(self) -> float:
        return self.cpu_s * 1000 / self.allocations if self.allocations else float("nan")

    def per_alloc(self, count: int | None) -> float | None:
        if count is None:
            return None
        return count / self.allocations if self.allocations else float("nan")


# -- the workload's objects ------------------------------------------------------------------
def pool_manifest(n: int) -> dict[str, Any]:
    """A pool of exactly ``n`` addresses."""
    first = ipaddress.IPv4Address("10.128.0.10")
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": POOL},
        "spec": {
            "ipVersion": 4,
            "subnet": "10.128.0.0/12",
            "ips": [f"{first}-{first + n - 1}"],
            "default": True,
        },
    }


def pods_of(node: int, w: Workload) -> list[int]:
    return list(range(node, w.allocations, w.nodes))


# -- checks (pure) ---------------------------------------------------------------------------
def duplicates(grants: Iterable[tuple[int, str]]) -> int:
    """Addresses handed to more than one pod (each extra holder counts once)."""
    holders: dict[str, set[int]] = {}
    for pod, address in grants:
        holders.setdefault(address.split("/")[0], set()).add(pod)
    return sum(len(pods) - 1 for pods in holders.values())


def stored_records(pool: dict[str, Any]) -> dict[str, str]:
    """address -> pod UID in a pool object's ``status.allocatedIPs``."""
    text = (pool.get("status") or {}).get("allocatedIPs")
    records: dict[str, Any] = json.loads(text) if text else {}
    return {ip: str(rec.get("podUid", "")) for ip, rec in records.items()}


def record_mismatches(pool: dict[str, Any], grants: Iterable[tuple[int, str]]) -> list[str]:
    """Differences between what was handed out and what the store records."""
    handed = {address.split("/")[0]: f"uid-{pod}" for pod, address in grants}
    stored = stored_records(pool)
    out = [
        f"{ip} handed to {uid} but stored for {stored.get(ip)}"
        for ip, uid in handed.items()
        if stored.get(ip) != uid
    ]
    out += [f"{ip} stored for {uid} but never handed out" for ip, uid in stored.items() if ip not in handed]
    count = (pool.get("status") or {}).get("allocatedIPCount")
    if count != len(stored):
        out.append(f"allocatedIPCount {count} but {len(stored)} records")
    return out


def leaked(pool: dict[str, Any]) -> int:
    status = pool.get("status") or {}
    return max(len(stored_records(pool)), int(status.get("allocatedIPCount") or 0))


def delta(after: Counts, before: Counts) -> Counts:
    out = Counter(after)
    out.subtract(before)
    return out


def status_writes(counts: Counts) -> int:
    return sum(n for (op, kind, _), n in counts.items() if op == "update_status" and kind == KIND_IPPOOL)


def conflicts(counts: Counts) -> int:
    return counts[("update_status", KIND_IPPOOL, CONFLICT)]


def other_writes(counts: Counts) -> int:
    return sum(n for (op, kind, _), n in counts.items() if op in WRITE_OPS and kind != KIND_IPPOOL)


# -- processes -------------------------------------------------------------------------------
class Child:
    """A child process speaking JSON lines on stdout; stderr goes to a file."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log

    @classmethod
    async def start(cls, name: str, argv: list[str], log: Path) -> Child:
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=64 * 1024 * 1024,
            )
        return cls(name, proc, log)

    async def line(self, within_s: float) -> dict[str, Any]:
        """The next JSON line it prints (its stderr's tail in the error if it exits instead)."""
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), within_s)
        if not raw:
            await self.proc.wait()
            tail = (await asyncio.to_thread(self.log.read_text, errors="replace"))[-3000:]
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {tail}")
        message: dict[str, Any] = json.loads(raw)
        return message

    def cpu_s(self) -> float:
        """CPU time (user and system) it has used so far."""
        if self.proc.returncode is not None:
            return 0.0
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())

    async def stop(self) -> None:
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()


def script(name: str) -> list[str]:
    return [sys.executable, str(BENCH / name)]


def cpu_now(children: Iterable[Child]) -> float:
    """CPU time used so far by the benchmark process and ``children``."""
    return time.process_time() + sum(c.cpu_s() for c in children)


@dataclass
class StoreServer:
    child: Child
    client: RemoteStore


@contextlib.asynccontextmanager
async def store_server(workdir: Path, w: Workload, write_latency_ms: float) -> AsyncIterator[StoreServer]:
    """A fresh bench store server and the benchmark's own client to it (set-up, counts, checks)."""
    sock = workdir / "store.sock"
    server = await Child.start(
        "store server",
        [
            *script("store_server.py"),
            "--socket",
            str(sock),
            "--db",
            str(workdir / "state.db"),
            "--write-latency-ms",
            str(write_latency_ms),
            "--read-latency-ms",
            str(w.read_latency_ms if write_latency_ms else 0.0),
        ],
        workdir / "store-server.log",
    )
    try:
        await server.line(START_TIMEOUT_S)
        client = await RemoteStore.connect(sock)
        try:
            yield StoreServer(server, client)
        finally:
            await client.close()
    finally:
        await server.stop()


# -- the group-commit side -----------------------------------------------------------------------
def allocate_request(i: int, node: int) -> ipam_pb2.AllocateRequest:
    return ipam_pb2.AllocateRequest(
        pod=ipam_pb2.PodRef(
            namespace="bench", name=f"pod-{i}", uid=f"uid-{i}", container_id=f"cid-{i}", node=f"node-{node}"
        ),
        ifname="eth0",
        network="bench",
    )


def release_request(i: int) -> ipam_pb2.ReleaseRequest:
    return ipam_pb2.ReleaseRequest(
        pod=ipam_pb2.PodRef(namespace="bench", name=f"pod-{i}", uid=f"uid-{i}", container_id=f"cid-{i}"),
        ifname="eth0",
    )


@contextlib.asynccontextmanager
async def node_stubs(target: str, w: Workload) -> AsyncIterator[list[ipam_pb2_grpc.IpamServiceStub]]:
    """One channel per node, as each node's agent has one to the controller."""
    channels = [grpc.aio.insecure_channel(target) for _ in range(w.nodes)]
    try:
        for c in channels:
            await asyncio.wait_for(c.channel_ready(), START_TIMEOUT_S)
        yield [ipam_pb2_grpc.IpamServiceStub(c) for c in channels]
    finally:
        for c in channels:
            await c.close()


async def grpc_allocate(
    stubs: list[ipam_pb2_grpc.IpamServiceStub], w: Workload, result: RunResult
) -> list[tuple[int, str]]:
    """Every node's pods get an address, ``per_node`` ADDs at a time per node; returns the grants."""
    grants: list[tuple[int, str]] = []
    queues = [deque(pods_of(k, w)) for k in range(w.nodes)]

    async def node_worker(k: int) -> None:
        while queues[k]:
            i = queues[k].popleft()
            started = time.perf_counter()
            try:
                response = await stubs[k].Allocate(allocate_request(i, k), timeout=120)
            except grpc.aio.AioRpcError as exc:
                result.failed_adds += 1
                result.errors.append(f"Allocate pod-{i}: {exc.code().name}: {exc.details()}")
                continue
            result.latencies_s.append(time.perf_counter() - started)
            grants.extend((i, ip.address) for ip in response.ips)

    started = time.monotonic()
    await asyncio.gather(*(node_worker(k) for k in range(w.nodes) for _ in range(w.per_node)))
    result.alloc_s = time.monotonic() - started
    result.allocations = len(result.latencies_s)
    return grants


async def grpc_release(
    stubs: list[ipam_pb2_grpc.IpamServiceStub], w: Workload, grants: list[tuple[int, str]], result: RunResult
) -> None:
    """Every pod that got an address releases it, through its node's channel."""
    owned: list[deque[int]] = [deque() for _ in range(w.nodes)]
    for pod, _ in grants:
        owned[pod % w.nodes].append(pod)

    async def node_worker(k: int) -> None:
        while owned[k]:
            i = owned[k].popleft()
            try:
                await stubs[k].Release(release_request(i), timeout=120)
            except grpc.aio.AioRpcError as exc:
                result.failed_dels += 1
                result.errors.append(f"Release pod-{i}: {exc.code().name}: {exc.details()}")

    started = time.monotonic()
    await asyncio.gather(*(node_worker(k) for k in range(w.nodes) for _ in range(w.per_node)))
    result.release_s = time.monotonic() - started


async def apply_pool(target: str, n: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        await resource_pb2_grpc.ResourceServiceStub(channel).Apply(
            resource_pb2.ApplyRequest(object_json=json.dumps(pool_manifest(n))), timeout=60
        )


async def get_pool(target: str) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(target) as channel:
        response = await resource_pb2_grpc.ResourceServiceStub(channel).Get(
            resource_pb2.GetRequest(kind=KIND_IPPOOL, name=POOL), timeout=60
        )
    pool: dict[str, Any] = json.loads(response.object_json)
    return pool


async def group_commit_run(
    label: str, w: Workload, workdir: Path, write_latency_ms: float, reuse_delay_s: float = 0.0
) -> RunResult:
    """The real controller, its store the bench store server; with a reuse delay, after an
    unmeasured round that leaves every address cooling down."""
    result = RunResult(label)
    async with store_server(workdir, w, write_latency_ms) as server:
        store = server.client
        sock = workdir / "controller.sock"
        controller = await Child.start(
            "controller",
            [
                *script("controller_on_remote_store.py"),
                "--store-socket",
                str(workdir / "store.sock"),
                "--listen",
                str(sock),
                "--unused-db",
                str(workdir / "unused.db"),
                "--log",
                str(workdir / "controller.log"),
                "--ip-reuse-delay-seconds",
                str(reuse_delay_s),
            ],
            workdir / "controller.err",
        )
        try:
            await controller.line(START_TIMEOUT_S)
            target = f"unix:{sock}"
            await apply_pool(target, w.allocations)
            async with node_stubs(target, w) as stubs:
                if reuse_delay_s > 0:
                    priming = RunResult("priming")
                    await grpc_release(stubs, w, await grpc_allocate(stubs, w, priming), priming)
                    result.errors += [f"priming: {e}" for e in priming.errors]
                before = await store.stats()
                cpu, store_cpu = cpu_now([server.child, controller]), server.child.cpu_s()
                grants = await grpc_allocate(stubs, w, result)
                result.cpu_s = cpu_now([server.child, controller]) - cpu
                result.store_cpu_s = server.child.cpu_s() - store_cpu
                allocated = await store.stats()
                result.duplicates = duplicates(grants)
                result.errors += record_mismatches(await store.get(KIND_IPPOOL, POOL), grants)
                await grpc_release(stubs, w, grants, result)
            result.leaks = leaked(await store.get(KIND_IPPOOL, POOL))
        finally:
            await controller.stop()  # its endpoint writer flushes on the way out
        counts = delta(allocated, before)
        result.status_writes = status_writes(counts)
        result.conflicts = conflicts(counts)
        result.other_writes = other_writes(delta(await store.stats(), before))
    return result


class Metrics:
    """The production controller's Prometheus endpoint (the ``raw`` run has no store server)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def read(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def metric_status_writes(m: dict[str, float]) -> int:
    return int(m.get("spiderpool_pool_status_writes_total", 0.0))


def metric_other_writes(m: dict[str, float]) -> int:
    return int(
        sum(
            v
            for k, v in m.items()
            if k.startswith("spiderpool_store_operations_total{")
            and any(f'op="{o}"' in k for o in WRITE_OPS)
            and f'kind="{KIND_IPPOOL}"' not in k
        )
    )


async def settled(metrics: Metrics) -> dict[str, float]:
    """The metrics once the endpoint writer (writing 0.1 s after a change) has gone quiet."""
    last = await asyncio.to_thread(metrics.read)
    for _ in range(50):
        await asyncio.sleep(0.3)
        now = await asyncio.to_thread(metrics.read)
        if metric_other_writes(now) == metric_other_writes(last):
            return now
        last = now
    return last


async def serving_event(log: Path, child: Child) -> dict[str, Any]:
    """The production controller's ``controller_serving`` log line (it logs to stderr)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(log.read_text, errors="replace")
        if child.proc.returncode is not None:
            raise RuntimeError(f"controller exited: {text[-3000:]}")
        for line in text.splitlines():
            if '"controller_serving"' in line:
                event: dict[str, Any] = json.loads(line)
                return event
        await asyncio.sleep(0.05)
    raise RuntimeError("controller did not start in time")


async def raw_run(label: str, w: Workload, workdir: Path) -> RunResult:
    """The production command on its own SQLite file: nothing of the benchmark in between."""
    result = RunResult(label)
    sock, log = workdir / "controller.sock", workdir / "controller.log"
    controller = await Child.start(
        "controller",
        [
            str(BIN / "spiderpool-controller"),
            "--store",
            f"sqlite:///{workdir / 'state.db'}",
            "--listen",
            f"unix:{sock}",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-level",
            "info",
            "--log-format",
            "json",
        ],
        log,
    )
    try:
        metrics = Metrics(int((await serving_event(log, controller))["metrics_port"]))
        target = f"unix:{sock}"
        await apply_pool(target, w.allocations)
        async with node_stubs(target, w) as stubs:
            before = await asyncio.to_thread(metrics.read)
            cpu = cpu_now([controller])
            grants = await grpc_allocate(stubs, w, result)
            result.cpu_s = cpu_now([controller]) - cpu
            allocated = await asyncio.to_thread(metrics.read)
            result.duplicates = duplicates(grants)
            result.errors += record_mismatches(await get_pool(target), grants)
            await grpc_release(stubs, w, grants, result)
        result.leaks = leaked(await get_pool(target))
        result.status_writes = metric_status_writes(allocated) - metric_status_writes(before)
        result.other_writes = metric_other_writes(await settled(metrics)) - metric_other_writes(before)
    finally:
        await controller.stop()
    return result


# -- the baseline --------------------------------------------------------------------------------
async def phase(agents: list[Child], command: str) -> list[dict[str, Any]]:
    """Start ``command`` on every agent at once and collect their reports."""
    for agent in agents:
        agent.send(command)
    for agent in agents:
        assert agent.proc.stdin is not None
        await agent.proc.stdin.drain()
    return list(await asyncio.gather(*(agent.line(PHASE_TIMEOUT_S) for agent in agents)))


def agent_argv(w: Workload, workdir: Path, k: int) -> list[str]:
    return [
        *script("cas_agent.py"),
        "--store-socket",
        str(workdir / "store.sock"),
        "--pool",
        POOL,
        "--node-index",
        str(k),
        "--nodes",
        str(w.nodes),
        "--allocations",
        str(w.allocations),
        "--workers",
        str(w.per_node),
    ]


async def baseline_run(label: str, w: Workload, workdir: Path) -> RunResult:
    """One process per node running upstream's compare-and-swap protocol on the bench store server."""
    result = RunResult(label)
    async with store_server(workdir, w, w.write_latency_ms) as server:
        store = server.client
        resources = ResourceService(store, ValidationSettings(enable_ipv4=True, enable_ipv6=True))
        await resources.apply(pool_manifest(w.allocations))  # validated and defaulted as the controller does
        agents = [
            await Child.start(f"agent node-{k}", agent_argv(w, workdir, k), workdir / f"agent-{k}.log")
            for k in range(w.nodes)
        ]
        try:
            for agent in agents:
                await agent.line(START_TIMEOUT_S)
            before = await store.stats()
            cpu, store_cpu = cpu_now([server.child, *agents]), server.child.cpu_s()
            allocs = await phase(agents, "allocate")
            result.cpu_s = cpu_now([server.child, *agents]) - cpu
            result.store_cpu_s = server.child.cpu_s() - store_cpu
            allocated = await store.stats()
            grants = [(int(i), str(address)) for r in allocs for i, address in r["grants"]]
            result.duplicates = duplicates(grants)
            result.errors += record_mismatches(await store.get(KIND_IPPOOL, POOL), grants)
            releases = await phase(agents, "release")
            result.leaks = leaked(await store.get(KIND_IPPOOL, POOL))
            finished = await store.stats()
        finally:
            for agent in agents:
                await agent.stop()
    result.allocations = len(grants)
    result.alloc_s = max(r["finished"] for r in allocs) - min(r["started"] for r in allocs)
    result.release_s = max(r["finished"] for r in releases) - min(r["started"] for r in releases)
    result.latencies_s = [s for r in allocs for s in r["latencies"]]
    result.failed_adds = sum(r["tally"]["failed"] for r in allocs)
    result.failed_dels = sum(r["tally"]["failed"] for r in releases)
    result.agent_conflicts = sum(r["tally"]["conflicts"] for r in allocs)
    result.agent_writes = sum(r["tally"]["writes"] for r in allocs)
    result.ticket_waits = sum(r["tally"]["ticket_waits"] for r in allocs)
    attempts = sum(r["tally"]["attempts"] for r in allocs)
    result.attempt_ms = {
        part: sum(r["tally"][f"{part}_s"] for r in allocs) * 1000 / attempts if attempts else 0.0
        for part in ("read", "step", "write")
    }
    result.errors += [e for r in allocs + releases for e in r["errors"]]
    counts = delta(allocated, before)
    result.status_writes = status_writes(counts)
    result.conflicts = conflicts(counts)
    result.other_writes = other_writes(delta(finished, before))
    result.errors += baseline_inconsistencies(result)
    return result


def baseline_inconsistencies(r: RunResult) -> list[str]:
    """The baseline's counts must agree: agents vs store, and every write commits or conflicts."""
    out = []
    if r.agent_conflicts != r.conflicts:
        out.append(f"agents counted {r.agent_conflicts} conflicts, the store {r.conflicts}")
    if r.agent_writes != r.status_writes:
        out.append(f"agents sent {r.agent_writes} status writes, the store saw {r.status_writes}")
    if r.status_writes != r.allocations + (r.conflicts or 0):
        out.append(
            f"{r.status_writes} status writes for {r.allocations} allocations and {r.conflicts} conflicts"
        )
    return out


# -- report --------------------------------------------------------------------------------------
def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(runs: list[RunResult]) -> str:
    header = (
        f"{'run':<40}{'allocs/s':>9}{'rel/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'status w':>10}{'other w':>9}"
        f"{'409s':>7}{'failed':>8}{'cpu ms':>8}{'dups':>6}{'leaks':>7}"
    )
    units = f"{'':<72}{'/alloc':>10}{'/pod':>9}{'/alloc':>7}{'ADDs':>8}{'/alloc':>8}"
    lines = [header, units]
    for r in runs:
        lines.append(
            f"{r.label:<40}{r.allocs_per_s:>9.1f}{r.releases_per_s:>8.1f}{r.percentile_ms(0.5):>8.1f}"
            f"{r.percentile_ms(0.99):>8.1f}{fmt(r.per_alloc(r.status_writes), 3):>10}"
            f"{fmt(r.per_alloc(r.other_writes), 2):>9}{fmt(r.per_alloc(r.conflicts), 2):>7}"
            f"{r.failed_adds:>8}{r.cpu_ms_per_alloc:>8.1f}{r.duplicates:>6}{r.leaks:>7}"
        )
    return "\n".join(lines)


def summary(
    ours: RunResult, base: RunResult, raw: RunResult, runs: list[RunResult], delayed: RunResult
) -> dict[str, Any]:
    def ratio(count: int | None, of: int, digits: int) -> float | None:
        return round((count or 0) / of, digits) if of else None

    return {
        "allocs_per_s": round(ours.allocs_per_s, 1),
        "baseline_allocs_per_s": round(base.allocs_per_s, 1),
        "speedup": round(ours.allocs_per_s / base.allocs_per_s, 2) if base.allocs_per_s else None,
        "status_writes_per_alloc": ratio(ours.status_writes, ours.allocations, 3),
        "p50_ms": round(ours.percentile_ms(0.5), 2),
        "p99_ms": round(ours.percentile_ms(0.99), 2),
        "duplicates": sum(r.duplicates for r in runs),
        "raw_allocs_per_s": round(raw.allocs_per_s, 1),
        "baseline_conflicts_per_alloc": ratio(base.conflicts, base.allocations, 3),
        "baseline_failed": base.failed_adds,
        "leaks": sum(r.leaks for r in runs),
        "reuse_delay_allocs_per_s": round(delayed.allocs_per_s, 1),
        "reuse_delay_ratio": round(delayed.allocs_per_s / ours.allocs_per_s, 3)
        if ours.allocs_per_s
        else None,
    }


def details(w: Workload, runs: list[RunResult]) -> dict[str, Any]:
    out: dict[str, Any] = {"workload": asdict(w), "runs": []}
    for r in runs:
        row = asdict(r)
        row.pop("latencies_s")
        row.update(
            allocs_per_s=r.allocs_per_s,
            releases_per_s=r.releases_per_s,
            p50_ms=r.percentile_ms(0.5),
            p99_ms=r.percentile_ms(0.99),
            cpu_ms_per_alloc=r.cpu_ms_per_alloc,
        )
        out["runs"].append(row)
    return out


async def run_all(w: Workload) -> list[RunResult]:
    """The five runs, in order: group commit, baseline, group commit without latency, raw,
    group commit with the reuse delay on."""

    def gc(latency_ms: float, reuse_delay_s: float = 0.0) -> Callable[[str, Path], Awaitable[RunResult]]:
        return lambda label, d: group_commit_run(label, w, d, latency_ms, reuse_delay_s)

    plan: list[tuple[str, Callable[[str, Path], Awaitable[RunResult]]]] = [
        ("group commit", gc(w.write_latency_ms)),
        ("baseline (CAS per agent)", lambda label, d: baseline_run(label, w, d)),
        ("group commit, no added latency", gc(0.0)),
        ("raw (production command, own SQLite)", lambda label, d: raw_run(label, w, d)),
        ("group commit, reuse delay on", gc(w.write_latency_ms, REUSE_DELAY_S)),
    ]
    runs: list[RunResult] = []
    for label, run in plan:
        print(f"  running {label} ...", flush=True)
        workdir = Path(tempfile.mkdtemp(prefix="bench-alloc-", dir="/tmp"))  # short: unix socket paths
        try:
            runs.append(await run(label, workdir))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(description=doc.splitlines()[0], epilog="The module docstring has details.")
    p.add_argument("-n", "--allocations", type=int, help="addresses (pool size), default 1000 (quick 100)")
    p.add_argument("-m", "--nodes", "--clients", type=int, help="simulated nodes, default 10 (quick 4)")
    p.add_argument("--per-node", type=int, help="concurrent ADDs per node, default 1 (quick 2)")
    p.add_argument("--write-latency-ms", type=float, default=5.0, help="added to each store write, default 5")
    p.add_argument("--read-latency-ms", type=float, default=0.0, help="added to each store read, default 0")
    p.add_argument("--quick", action="store_true", help="a small run of a few seconds")
    p.add_argument("--details", type=Path, help="write every run's figures and counts to this JSON file")
    args = p.parse_args(argv)
    quick = args.quick
    w = Workload(
        allocations=args.allocations or (100 if quick else 1000),
        nodes=args.nodes or (4 if quick else 10),
        per_node=args.per_node or (2 if quick else 1),
        write_latency_ms=args.write_latency_ms,
        read_latency_ms=args.read_latency_ms,
    )
    if w.allocations < 1 or w.nodes < 1 or w.per_node < 1 or w.write_latency_ms < 0 or w.read_latency_ms < 0:
        p.error("sizes must be positive and latencies not negative")
    print(
        f"alloc_throughput: {w.nodes} nodes x {w.per_node} concurrent ADDs, "
        f"pool of {w.allocations} addresses, "
        f"{w.write_latency_ms} ms per store write, {w.read_latency_ms} ms per read"
    )
    configure_logging("warning", "console")  # the ResourceService the baseline's set-up uses logs
    load_before = os.getloadavg()[0]
    runs = asyncio.run(run_all(w))
    load_after = os.getloadavg()[0]
    print(table(runs))
    base = runs[1]
    print(
        f"baseline: {base.failed_adds} failed ADDs (retries exhausted, run again), "
        f"{base.failed_dels} failed DELs, {base.ticket_waits} ADDs queued for their node's ticket"
    )
    if base.attempt_ms:
        parts = ", ".join(f"{part} {ms:.1f} ms" for part, ms in base.attempt_ms.items())
        print(f"baseline: one attempt (read, pick and encode, write) takes on average {parts}")
    for r in [*runs[:3], runs[4]]:
        store_ms = r.store_cpu_s * 1000 / r.allocations if r.allocations else float("nan")
        print(
            f"{r.label}: CPU per allocation {r.cpu_ms_per_alloc:.1f} ms, "
            f"of which the store server {store_ms:.1f} ms"
        )
    print(
        f"machine: {os.cpu_count()} CPUs, 1-minute load average {load_before:.1f} before the runs, "
        f"{load_after:.1f} after (rates fall as other work takes the CPUs; the ratios, writes and "
        "conflicts per allocation move less)"
    )
    failures = [f"{r.label}: {e}" for r in runs for e in r.errors]
    for line in failures[:20]:
        print(f"ERROR {line}")
    if args.details:
        out = details(w, runs)
        out["load_average"] = {"before": load_before, "after": load_after}
        args.details.write_text(json.dumps(out, indent=1))
    result = summary(runs[0], base, runs[3], runs, runs[4])
    print(json.dumps(result))
    ok = not failures and result["duplicates"] == 0 and result["leaks"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.exit(main())
