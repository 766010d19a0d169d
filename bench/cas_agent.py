#!/usr/bin/env python3
"""One simulated node of the allocation benchmark's baseline: an agent process running
upstream's protocol (``cas_baseline.CasAgent``) against the bench store server.

The benchmark starts one per node. Each owns the pods ``i`` with ``i % nodes == node``
(pod ``bench/pod-i``, UID ``uid-i``) and runs ``--workers`` concurrent ADDs, as a kubelet
starting several pods on one node; the agent's per-pool ticket serialises them. An ADD that
exhausts its retries is counted and run again later by the same worker, as the kubelet
re-runs a failed sandbox (without the kubelet's backoff of seconds: that favours the
baseline). Phases are driven over stdin/stdout so every agent allocates, and then
releases, at the same time:

- it prints ``{"event": "ready"}`` once connected (reserved IPs listed once: upstream reads
  them from its informer cache);
- each ``allocate`` line on stdin runs the allocation phase, ``release`` the release phase
  (of what it allocated); each prints one JSON line: start and end (``time.monotonic``,
  one clock for all processes on Linux), per-ADD latencies, grants ``[pod, address]``, the
  tally (reads, writes, conflicts, failures, ticket waits) and errors;
- end of stdin ends the process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from cas_baseline import CasAgent, RetriesExhausted
from remote_store import RemoteStore
from spiderpool_controller.domain.models import KIND_RESERVED_IP, AllocationRecord
from spiderpool_controller.domain.pool_state import reserved_sets


def pod_record(i: int, node: str) -> AllocationRecord:
    """The record of pod ``i``: the same fields the controller writes for the group-commit side."""
    return AllocationRecord(
        pod=f"bench/pod-{i}",
        pod_uid=f"uid-{i}",
        container_id=f"cid-{i}",
        interface="eth0",
        node=node,
        network="bench",
    )


async def allocate_phase(
    agent: CasAgent, pool: str, pods: list[int], node: str, workers: int
) -> dict[str, Any]:
    queue = deque(pods)
    latencies: list[float] = []
    grants: list[list[Any]] = []
    errors: list[str] = []

    async def worker() -> None:
        while queue:
            i = queue.popleft()
            started = time.perf_counter()
            try:
                address = await agent.allocate(pool, pod_record(i, node))
            except RetriesExhausted:
                queue.append(i)  # the kubelet runs the ADD again
                continue
            except Exception as exc:  # exhausted pool or store failure: a finding, not a retry
                errors.append(f"pod-{i}: {type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - started)
            grants.append([i, address])

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    finished = time.monotonic()
    return {
        "phase": "allocate",
        "started": started,
        "finished": finished,
        "latencies": latencies,
        "grants": grants,
        "tally": agent.alloc.as_dict(),
        "errors": errors,
    }


async def release_phase(agent: CasAgent, pool: str, grants: list[list[Any]], workers: int) -> dict[str, Any]:
    queue = deque((int(i), str(address).split("/")[0]) for i, address in grants)
    errors: list[str] = []

    async def worker() -> None:
        while queue:
            i, ip = queue.popleft()
            try:
                released = await agent.release(pool, ip, f"uid-{i}")
            except RetriesExhausted:
                queue.append((i, ip))  # the release is retried (upstream: the next DEL or GC)
                continue
            except Exception as exc:
                errors.append(f"pod-{i}: {type(exc).__name__}: {exc}")
                continue
            if not released:
                errors.append(f"pod-{i}: {ip} was not held by uid-{i}")

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    finished = time.monotonic()
    return {
        "phase": "release",
        "started": started,
        "finished": finished,
        "tally": agent.rel.as_dict(),
        "errors": errors,
    }


async def run(args: argparse.Namespace) -> None:
    store = await RemoteStore.connect(args.store_socket)
    reserved, _ = await store.list(KIND_RESERVED_IP)
    agent = CasAgent(store, reserved=reserved_sets(reserved))
    node = f"node-{args.node_index}"
    pods = list(range(args.node_index, args.allocations, args.nodes))
    grants: list[list[Any]] = []
    loop = asyncio.get_running_loop()
    print(json.dumps({"event": "ready", "node": node, "pods": len(pods)}), flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if not line:
            break
        if line == "allocate":
            result = await allocate_phase(agent, args.pool, pods, node, args.workers)
            grants = result["grants"]
        elif line == "release":
            result = await release_phase(agent, args.pool, grants, args.workers)
        else:
            result = {"phase": line, "errors": [f"unknown command {line!r}"]}
        print(json.dumps(result), flush=True)
    await store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--store-socket", required=True, type=Path)
    p.add_argument("--pool", default="bench")
    p.add_argument("--node-index", required=True, type=int)
    p.add_argument("--nodes", required=True, type=int)
    p.add_argument("--allocations", required=True, type=int)
    p.add_argument("--workers", type=int, default=1, help="concurrent ADDs on this node (default 1)")
    args = p.parse_args(argv)
    if not 0 <= args.node_index < args.nodes or args.workers < 1 or args.allocations < 0:
        p.error("need 0 <= node-index < nodes, workers >= 1, allocations >= 0")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
