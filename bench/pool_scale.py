"""Allocation cost against pool size, controller memory, and restart time with many allocations.

What it shows (issue: "Reliability, scale and security", section 3): an allocation costs the
same in a /24, a /16, a /8 and an IPv6 /64 pool, because free addresses are interval
arithmetic on integers and never a materialised list (upstream #3541 spent minutes in a
/10); memory grows with the allocations held, not with the size of the pools; and a
controller restarted on a store holding 10,000 live allocations serves again within 2 s
(Kube-OVN #1418 needed 29 s for 10,000 pods after its fix).

How: the controller's engine in this process on the embedded store (a SQLite file,
``synchronous=FULL``), 100,000 allocations in total by default: a fifth to pools of each size,
250 records per pool whatever its size (what a /24 holds, so only the address space differs
between those rows), and a fifth to /16 pools filled to upstream's cap of 5,000 records, where
the pool's status (every record in it, written by each group commit) sets the cost;
``--concurrency`` requests in flight as agents would send them. Per-allocation time is wall time divided by
allocations for each size (group commit included). Memory is this process's RSS after each
phase. The restart is the real ``spiderpool-controller`` command started on a store file
with ``--restart-allocations`` live allocations, timed from exec to its health service
answering SERVING. The last line is one JSON object:
``{"per_alloc_us_24", "per_alloc_us_16", "per_alloc_us_8", "per_alloc_us_v6_64",
"ratio_8_24", "rss_mb", "restart_s", "per_alloc_us_16_at_cap"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spiderpool_common.logging import configure_logging
from spiderpool_controller.domain.models import new_object
from spiderpool_controller.domain.request import AllocationRequest
from spiderpool_controller.ipam_engine import EngineSettings, IpamEngine
from spiderpool_controller.store.sqlite import SqliteStore


@dataclass(frozen=True)
class Size:
    label: str
    key: str
    version: int
    pools: int
    per_pool: int
    first: int = 0  # index of the first pool (two phases of one size use different pools)

    def pool(self, n: int) -> dict[str, Any]:
        i = n + self.first
        if self.label == "/24":
            subnet, ips = (
                f"10.{i // 256}.{i % 256}.0/24",
                [f"10.{i // 256}.{i % 256}.1-10.{i // 256}.{i % 256}.254"],
            )
        elif self.label == "/16":
            subnet, ips = f"172.{16 + i}.0.0/16", [f"172.{16 + i}.0.1-172.{16 + i}.255.254"]
        elif self.label == "/8":
            subnet, ips = f"{20 + i}.0.0.0/8", [f"{20 + i}.0.0.1-{20 + i}.255.255.254"]
        else:
            subnet, ips = f"fd00:{i:x}::/64", [f"fd00:{i:x}::1-fd00:{i:x}::ffff:ffff:ffff:fffe"]
        spec = {"ipVersion": self.version, "subnet": subnet, "ips": ips}
        return new_object("SpiderIPPool", f"scale{self.label.replace('/', '-')}-{i}", spec=spec)

    @property
    def row(self) -> str:
        return f"{self.label}{' (full)' if self.first else ''}"


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def allocate_all(engine: IpamEngine, size: Size, offset: int, concurrency: int) -> tuple[int, float]:
    names = [size.pool(i)["metadata"]["name"] for i in range(size.pools)]
    total = size.pools * size.per_pool
    sem = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        pool = names[n % size.pools]
        req = AllocationRequest(
            container_id=f"c{offset + n}",
            ifname="eth0",
            pod_uid=f"u{offset + n}",
            pod_namespace="bench",
            pod_name=f"p{offset + n}",
            node="n1",
            network="scale",
            default_ipv4_pools=(pool,) if size.version == 4 else (),
            default_ipv6_pools=(pool,) if size.version == 6 else (),
        )
        async with sem:
            await engine.allocate(req)

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(total)))
    return total, time.perf_counter() - started


def restart_seconds(db: Path, workdir: Path) -> float:
    sock = workdir / "restart.sock"
    argv = [
        sys.executable, "-m", "spiderpool_controller.main", "--store", f"sqlite:///{db}",
        "--listen", f"unix:{sock}", "--log-level", "warning",
    ]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        options = [("grpc.initial_reconnect_backoff_ms", 20), ("grpc.max_reconnect_backoff_ms", 50)]
        with grpc.insecure_channel(f"unix:{sock}", options=options) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5, wait_for_ready=True)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return time.perf_counter() - started
                except grpc.RpcError:
                    if proc.poll() is not None:
                        raise RuntimeError("the controller exited before serving") from None
                    if time.perf_counter() - started > 120:
                        raise
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    # Every size gets the same pools' worth of records (250 each: what a /24 holds), so only the
    # address space differs between the rows; a last phase fills /16 pools to upstream's cap of
    # 5,000 records, where a pool's status (every record in it) is what each write costs.
    per_size = args.allocations // 5
    pools = max(1, per_size // 250)
    sizes = [
        Size("/24", "per_alloc_us_24", 4, pools, 250),
        Size("/16", "per_alloc_us_16", 4, pools, 250),
        Size("/8", "per_alloc_us_8", 4, pools, 250),
        Size("/64", "per_alloc_us_v6_64", 6, pools, 250),
        Size("/16", "per_alloc_us_16_at_cap", 4, max(1, per_size // 5000), min(5000, per_size), first=pools),
    ]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pool-scale-") as tmp:
        workdir = Path(tmp)
        db = workdir / "state.db"
        store = SqliteStore(db)
        for size in sizes:
            for i in range(size.pools):
                await store.create(size.pool(i))
        engine = IpamEngine(store, EngineSettings(max_allocated_ips=5000, endpoint_resync_s=0))
        await engine.start()
        baseline_rss = rss_mb()
        planned = sum(s.pools * s.per_pool for s in sizes)
        print(f"pool_scale: {planned} allocations, concurrency {args.concurrency}")
        print(f"{'pools':>8} {'size':>10} {'allocations':>12} {'seconds':>8} {'us/alloc':>9} {'rss MB':>7}")
        offset = 0
        for size in sizes:
            total, seconds = await allocate_all(engine, size, offset, args.concurrency)
            offset += total
            out[size.key] = round(seconds / total * 1e6, 1)
            row = f"{size.pools:>8} {size.row:>10} {total:>12} {seconds:>8.2f} {out[size.key]:>9.1f}"
            print(f"{row} {rss_mb():>7.1f}")
        await engine.flush_endpoints()
        out["rss_mb"] = round(rss_mb(), 1)
        print(
            f"RSS {baseline_rss:.1f} MB with the pools loaded, {out['rss_mb']:.1f} MB, {offset} allocations"
        )
        await engine.close()
        await store.close()
        # Restart on a store with --restart-allocations live allocations.
        restart_db = workdir / "restart.db"
        store = SqliteStore(restart_db)
        restart_size = Size(
            "/16", "", 4, max(1, args.restart_allocations // 5000), min(5000, args.restart_allocations)
        )
        for i in range(restart_size.pools):
            await store.create(restart_size.pool(i))
        engine = IpamEngine(store, EngineSettings(endpoint_resync_s=0))
        await engine.start()
        live, _ = await allocate_all(engine, restart_size, 0, args.concurrency)
        await engine.flush_endpoints()
        await engine.close()
        await store.close()
        out["restart_s"] = round(restart_seconds(restart_db, workdir), 2)
        print(
            f"restart: the controller served again {out['restart_s']} s after exec, with {live} allocations"
        )
    out["ratio_8_24"] = round(out["per_alloc_us_8"] / out["per_alloc_us_24"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--allocations", type=int, default=100_000, help="total, a fifth per phase")
    parser.add_argument("--concurrency", type=int, default=64, help="allocations in flight")
    parser.add_argument("--restart-allocations", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="4,000 allocations, 2,000 at restart")
    args = parser.parse_args()
    if args.quick:
        args.allocations, args.restart_allocations = 4_000, 2_000
    configure_logging("warning", "console")
    result = asyncio.run(main_async(args))
    keys = ("per_alloc_us_24", "per_alloc_us_16", "per_alloc_us_8", "per_alloc_us_v6_64")
    extra = ("ratio_8_24", "rss_mb", "restart_s", "per_alloc_us_16_at_cap")
    print(json.dumps({k: result[k] for k in (*keys, *extra)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
