#!/usr/bin/env python3
"""Allocation throughput through the controller's gRPC IpamService: group commit vs baseline.

M concurrent clients (one channel each, like M node agents) allocate N addresses from one
pool of exactly N addresses, then release them all. The same workload runs, in the same
invocation, against three controller processes:

- ``group commit``: this project's design (per-pool batching of status writes);
- ``baseline``: group commit off, one compare-and-swap status write per request with retry
  on conflict, the way upstream's agents write;
  both with ``--write-latency-ms`` added to every store write (default 5 ms, modelling the
  round trip to a Kubernetes API server, which is what group commit exists for);
- ``raw``: group commit on, no added latency (the cost of Python, gRPC and SQLite).

Store writes are read from the controller's Prometheus endpoint before and after the
allocation phase. The last line is one JSON object with the headline figures.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc, resource_pb2, resource_pb2_grpc

BIN = Path(sys.executable).parent


@dataclass
class RunResult:
    label: str
    allocs_per_s: float
    releases_per_s: float
    p50_ms: float
    p99_ms: float
    status_writes_per_alloc: float
    store_writes_per_alloc: float
    duplicates: int
    failures: int


def pool_manifest(n: int) -> dict[str, Any]:
    """A pool of exactly ``n`` addresses."""
    first = ipaddress.IPv4Address("10.128.0.10")
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": "bench"},
        "spec": {
            "ipVersion": 4,
            "subnet": "10.128.0.0/12",
            "ips": [f"{first}-{first + n - 1}"],
            "default": True,
        },
    }


class Controller:
    def __init__(self, workdir: Path, *, group_commit: bool, latency_ms: float) -> None:
        self.socket = workdir / "controller.sock"
        self.log = (workdir / "controller.log").open("w+")
        cmd = [
            str(BIN / "spiderpool-controller"),
            "--store",
            f"sqlite:///{workdir}/state.db",
            "--listen",
            f"unix:{self.socket}",
            "--metrics-listen",
            "127.0.0.1:0",
            "--group-commit",
            str(group_commit).lower(),
            "--write-latency-ms",
            str(latency_ms),
            "--log-level",
            "info",
            "--log-format",
            "json",
        ]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.metrics_port = 0

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"controller exited: {self.log.read()[-2000:]}")
            self.log.seek(0)
            for line in self.log.read().splitlines():
                if '"controller_serving"' in line:
                    self.metrics_port = int(json.loads(line)["metrics_port"])
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError("controller did not start in time")

    def metrics(self) -> dict[str, float]:
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10)
            .read()
            .decode()
        )
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def status_writes(m: dict[str, float]) -> float:
    return m.get("spiderpool_pool_status_writes_total", 0.0)


def store_writes(m: dict[str, float]) -> float:
    total = 0.0
    for key, value in m.items():
        if key.startswith("spiderpool_store_operations_total{") and any(
            f'op="{op}"' in key for op in ("create", "update", "update_status", "delete")
        ):
            total += value
    return total


async def run_one(label: str, *, n: int, clients: int, group_commit: bool, latency_ms: float) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="bench-alloc-") as tmp:
        ctl = Controller(Path(tmp), group_commit=group_commit, latency_ms=latency_ms)
        try:
            await ctl.wait_ready()
            target = f"unix:{ctl.socket}"
            async with grpc.aio.insecure_channel(target) as admin:
                await resource_pb2_grpc.ResourceServiceStub(admin).Apply(
                    resource_pb2.ApplyRequest(object_json=json.dumps(pool_manifest(n))), timeout=30
                )
            channels = [grpc.aio.insecure_channel(target) for _ in range(clients)]
            stubs = [ipam_pb2_grpc.IpamServiceStub(c) for c in channels]
            for c in channels:
                await c.channel_ready()
            before = ctl.metrics()
            latencies: list[float] = []
            addresses: list[str] = []
            failures = 0
            counter = iter(range(n))

            async def allocate_worker(stub: ipam_pb2_grpc.IpamServiceStub) -> None:
                nonlocal failures
                for i in counter:
                    req = ipam_pb2.AllocateRequest(
                        pod=ipam_pb2.PodRef(
                            namespace="bench",
                            name=f"pod-{i}",
                            uid=f"uid-{i}",
                            container_id=f"cid-{i}",
                            node=f"node-{i % clients}",
                        ),
                        ifname="eth0",
                        network="bench",
                    )
                    t0 = time.perf_counter()
                    try:
                        resp = await stub.Allocate(req, timeout=60)
                    except grpc.aio.AioRpcError:
                        failures += 1
                        continue
                    latencies.append(time.perf_counter() - t0)
                    addresses.extend(ip.address for ip in resp.ips)

            t0 = time.perf_counter()
            await asyncio.gather(*(allocate_worker(s) for s in stubs))
            alloc_s = time.perf_counter() - t0
            after = ctl.metrics()
            done = len(latencies)

            release_counter = iter(range(n))

            async def release_worker(stub: ipam_pb2_grpc.IpamServiceStub) -> None:
                for i in release_counter:
                    await stub.Release(
                        ipam_pb2.ReleaseRequest(
                            pod=ipam_pb2.PodRef(namespace="bench", name=f"pod-{i}", uid=f"uid-{i}"),
                            ifname="eth0",
                        ),
                        timeout=60,
                    )

            t1 = time.perf_counter()
            await asyncio.gather(*(release_worker(s) for s in stubs))
            release_s = time.perf_counter() - t1
            for c in channels:
                await c.close()
            latencies.sort()
            return RunResult(
                label=label,
                allocs_per_s=done / alloc_s,
                releases_per_s=n / release_s,
                p50_ms=statistics.median(latencies) * 1000 if latencies else float("nan"),
                p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
                if latencies
                else 0,
                status_writes_per_alloc=(status_writes(after) - status_writes(before)) / max(done, 1),
                store_writes_per_alloc=(store_writes(after) - store_writes(before)) / max(done, 1),
                duplicates=len(addresses) - len(set(addresses)),
                failures=failures,
            )
        finally:
            ctl.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--allocations", type=int, default=1000, help="addresses (pool size), default 1000")
    p.add_argument("-m", "--clients", type=int, default=10, help="concurrent clients, default 10")
    p.add_argument(
        "--write-latency-ms", type=float, default=5.0, help="added to every store write, default 5"
    )
    args = p.parse_args()
    n, m = args.allocations, args.clients
    print(f"alloc_throughput: {m} clients, pool of {n} addresses, {args.write_latency_ms} ms per store write")
    runs = []
    for label, gc, lat in (
        ("group commit", True, args.write_latency_ms),
        ("baseline (CAS per request)", False, args.write_latency_ms),
        ("raw, group commit, no added latency", True, 0.0),
    ):
        print(f"  running {label} ...", flush=True)
        runs.append(asyncio.run(run_one(label, n=n, clients=m, group_commit=gc, latency_ms=lat)))
    print(
        f"{'run':<38}{'allocs/s':>10}{'release/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'status w/alloc':>16}{'store w/alloc':>15}{'dups':>6}{'fail':>6}"
    )
    for r in runs:
        print(
            f"{r.label:<38}{r.allocs_per_s:>10.1f}{r.releases_per_s:>11.1f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{r.status_writes_per_alloc:>16.3f}{r.store_writes_per_alloc:>15.3f}{r.duplicates:>6}{r.failures:>6}"
        )
    ours, base, raw = runs
    summary = {
        "allocs_per_s": round(ours.allocs_per_s, 1),
        "baseline_allocs_per_s": round(base.allocs_per_s, 1),
        "speedup": round(ours.allocs_per_s / base.allocs_per_s, 2) if base.allocs_per_s else None,
        "status_writes_per_alloc": round(ours.status_writes_per_alloc, 3),
        "p50_ms": round(ours.p50_ms, 2),
        "p99_ms": round(ours.p99_ms, 2),
        "duplicates": ours.duplicates + base.duplicates + raw.duplicates,
        "raw_allocs_per_s": round(raw.allocs_per_s, 1),
    }
    print(json.dumps(summary))
    return 0 if summary["duplicates"] == 0 and not any(r.failures for r in runs) else 1


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.exit(main())
