#!/usr/bin/env python3
"""Allocation throughput with the reuse delay off and on (the engine in process, on SQLite).

The reuse delay changes only how the next address is picked (``PoolState.pick``: cooling
addresses last, the oldest first when nothing else is free) and adds one JSON field to the
pool's status. This measures whether that costs throughput, on the workload where it works
hardest: churn in a nearly full pool. A pool of ``--pool`` addresses holds ``--held`` pods;
then ``--clients`` concurrent clients each repeat "release one of my pods, allocate a new
one" until ``--churn`` allocations are done. With the delay on (3600 s) every release is
remembered (up to the 1,000-entry bound), the free addresses that are not cooling run out
after ``pool - held`` steps, and from then on every pick takes the fallback path (the
oldest released). Runs alternate off/on ``--rounds`` times (the machine is shared; the
median of each is reported), with no added store latency (the CPU cost alone) and with
``--write-latency-ms`` per store write (an API server round trip). The last line is JSON.

It runs the engine in process rather than through gRPC because the delay lives entirely
in the engine: the gRPC and agent layers do the same work either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
from latency_store import LatencyStore  # bench/ is the script's directory, on sys.path
from spiderpool_controller.domain.models import new_object
from spiderpool_controller.domain.request import AllocationRequest
from spiderpool_controller.ipam_engine import EngineSettings, IpamEngine
from spiderpool_controller.store.sqlite import SqliteStore


@dataclass
class Run:
    label: str
    delay_s: float
    latency_ms: float
    allocs_per_s: float
    cpu_us_per_alloc: float  # this process's CPU time per churn step (release + allocate)
    duplicates: int
    released_entries: int
    status_bytes: int


def pool(size: int) -> dict[str, object]:
    last = 10 + size - 1
    ips = [f"10.200.{10 // 256}.{10 % 256}-10.200.{last // 256}.{last % 256}"]
    return new_object(
        "SpiderIPPool", "bench", spec={"ipVersion": 4, "subnet": "10.200.0.0/16", "ips": ips, "default": True}
    )


def req(i: int) -> AllocationRequest:
    return AllocationRequest(
        container_id=f"cid-{i}",
        ifname="eth0",
        pod_namespace="bench",
        pod_name=f"pod-{i}",
        pod_uid=f"uid-{i}",
        node="node-1",
        network="bench",
    )


async def run_one(args: argparse.Namespace, delay_s: float, latency_ms: float) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-reuse-") as tmp:
        sqlite = SqliteStore(Path(tmp) / "db")
        await sqlite.create(pool(args.pool))
        store = LatencyStore(sqlite, write_latency_s=latency_ms / 1000)
        engine = IpamEngine(store, EngineSettings(ip_reuse_delay_s=delay_s, endpoint_resync_s=0))  # type: ignore[arg-type]
        await engine.start()
        held: dict[int, str] = {}
        next_id = 0
        for batch in range(0, args.held, 100):
            results = await asyncio.gather(
                *(engine.allocate(req(i)) for i in range(batch, min(batch + 100, args.held)))
            )
            for i, r in zip(range(batch, batch + len(results)), results, strict=True):
                held[i] = r.ips[0].address
        next_id = args.held
        owned = [[i for i in range(args.held) if i % args.clients == c] for c in range(args.clients)]
        remaining = args.churn

        async def client(mine: list[int]) -> None:
            nonlocal next_id, remaining
            while remaining > 0:
                remaining -= 1
                old = mine.pop(0)
                await engine.release(f"uid-{old}", "eth0")
                del held[old]
                new = next_id
                next_id += 1
                got = await engine.allocate(req(new))
                held[new] = got.ips[0].address
                mine.append(new)

        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(m) for m in owned))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        await engine.close()
        status = (await sqlite.get("SpiderIPPool", "bench"))["status"]
        released = json.loads(status.get("releasedIPs") or "{}")
        await sqlite.close()
        label = f"delay {'on ' if delay_s else 'off'}, +{latency_ms:g} ms/write"
        return Run(
            label,
            delay_s,
            latency_ms,
            args.churn / elapsed,
            cpu / args.churn * 1e6,
            len(held) - len(set(held.values())),
            len(released),
            len(json.dumps(status)),
        )


async def main_async(args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    for latency_ms in (0.0, args.write_latency_ms):
        for _ in range(args.rounds):
            for delay_s in (0.0, 3600.0):  # alternate, so drift hits both alike
                runs.append(await run_one(args, delay_s, latency_ms))
    return runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=int, default=1200, help="addresses in the pool")
    p.add_argument("--held", type=int, default=1000, help="pods holding an address throughout")
    p.add_argument("--churn", type=int, default=1000, help="allocations measured (each after a release)")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--write-latency-ms", type=float, default=5.0)
    args = p.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    runs = asyncio.run(main_async(args))
    summary: dict[str, float] = {}
    print(
        f"{'run':26} {'allocs/s median':>15} {'min':>7} {'max':>7} {'CPU us/alloc':>12} "
        f"{'releasedIPs':>11} {'status bytes':>12}"
    )
    for latency_ms in (0.0, args.write_latency_ms):
        for delay_s in (0.0, 3600.0):
            mine = [r for r in runs if r.latency_ms == latency_ms and r.delay_s == delay_s]
            rates = [r.allocs_per_s for r in mine]
            median = statistics.median(rates)
            cpu = statistics.median(r.cpu_us_per_alloc for r in mine)
            key = f"{'on' if delay_s else 'off'}_{latency_ms:g}ms"
            summary[key] = round(median, 1)
            summary[f"{key}_cpu_us"] = round(cpu)
            print(
                f"{mine[0].label:26} {median:15.1f} {min(rates):7.1f} {max(rates):7.1f} {cpu:12.0f} "
                f"{mine[-1].released_entries:11d} {mine[-1].status_bytes:12d}"
            )
    duplicates = sum(r.duplicates for r in runs)
    for latency_ms in (0.0, args.write_latency_ms):
        on, off = summary[f"on_{latency_ms:g}ms"], summary[f"off_{latency_ms:g}ms"]
        summary[f"ratio_on_off_{latency_ms:g}ms"] = round(on / off, 3)
        cpu_on, cpu_off = summary[f"on_{latency_ms:g}ms_cpu_us"], summary[f"off_{latency_ms:g}ms_cpu_us"]
        summary[f"cpu_ratio_on_off_{latency_ms:g}ms"] = round(cpu_on / cpu_off, 3)
    summary["duplicates"] = duplicates
    summary["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(summary))
    return 1 if duplicates else 0


if __name__ == "__main__":
    sys.exit(main())
