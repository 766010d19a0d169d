"""A pod storm in the simulated cluster: throughput, API writes, duplicates, leaks, and leader failover.

The simulated cluster (tests/simcluster: the test API server, two ``spiderpool-controller --store kubernetes://``
replicas with leader election, one agent and one kubelet stand-in per node running Debian's macvlan with our
shims) gets Deployments totalling ``--pods`` pods from one pool, created at once with kubectl. Measured:

- the storm: seconds from the apply until every pod runs with an address, pods per second, and the IPAM's API
  writes per pod (creates, updates and patches of SpiderIPPools and SpiderEndpoints, their status included;
  the kubelet stand-in's pod writes and the Lease renewals are not IPAM work);
- duplicates (an address on two pods) and leaks (records or SpiderEndpoints left once every pod is deleted);
- failover: a second wave is started, the leading controller is SIGKILLed once allocation is under way, and
  the time from the kill to the standby's first allocation after it took the Lease is the failover time (the
  Lease's duration bounds it: upstream's 15 s by default, ``--lease-duration`` to change).

Root only (network namespaces). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.simcluster.cluster import SimCluster, SimOptions  # noqa: E402

Obj = dict[str, Any]
POOL = "storm-v4"
SUBNET, FIRST, LAST, GATEWAY = "10.100.0.0/16", "10.100.0.10", "10.100.7.250", "10.100.0.1"
ENDPOINTS = "/apis/spiderpool.spidernet.io/v2beta1"
IPAM_RESOURCES = ("spiderippools", "spiderendpoints")


def deployments(namespace: str, count: int, replicas: int, prefix: str) -> list[Obj]:
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"{prefix}-{i}", "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": f"{prefix}-{i}"}},
                "template": {
                    "metadata": {
                        "labels": {"app": f"{prefix}-{i}"},
                        "annotations": {"ipam.spidernet.io/ippool": json.dumps({"ipv4": [POOL]})},
                    },
                    "spec": {"containers": [{"name": "c", "image": "pause"}]},
                },
            },
        }
        for i in range(count)
    ]


def ipam_writes(counts: dict[str, int]) -> int:
    """Writes (create/update/patch/delete) on the IPAM's resources, subresources included."""
    total = 0
    for key, n in counts.items():
        verb, _, resource = key.partition(" ")
        if verb in ("create", "update", "patch", "delete") and resource.split("/")[0] in IPAM_RESOURCES:
            total += n
    return total


def running_ips(sim: SimCluster, namespace: str) -> dict[str, str]:
    """Pod name -> IPv4 address of every running pod of the namespace."""
    out = {}
    for pod in sim.api.pods(namespace):
        status = pod.get("status") or {}
        ips = [e["ip"] for e in status.get("podIPs") or [] if ":" not in e["ip"]]
        if status.get("phase") == "Running" and ips:
            out[pod["metadata"]["name"]] = ips[0]
    return out


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # the fields after "(comm)", from the state on


def cpu_and_rss(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and RSS in MB of a process and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, ValueError):
                continue
    ticks, pages = 0, 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = _stat(current)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
        pages += int(fields[21])
        todo.extend(children.get(current, []))
    return ticks / os.sysconf("SC_CLK_TCK"), pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def wait_running(sim: SimCluster, namespace: str, pods: int, deadline_s: float) -> dict[str, str]:
    start, last = time.monotonic(), -1
    while time.monotonic() - start < deadline_s:
        ips = running_ips(sim, namespace)
        if len(ips) != last:
            progress(f"  {len(ips)}/{pods} pods running ({time.monotonic() - start:.1f} s)")
            last = len(ips)
        if len(ips) >= pods:
            return ips
        time.sleep(0.5)
    raise TimeoutError(f"{last}/{pods} pods running after {deadline_s:.0f} s")


def drain(sim: SimCluster, namespace: str, deadline_s: float) -> tuple[int, int]:
    """Delete the namespace's Deployments and wait for the pool to empty; (records, endpoints) left."""
    sim.kubectl("delete", "deployments", "--all", "-n", namespace, "--wait=false")
    start = time.monotonic()
    records: dict[str, Obj] = {}
    endpoints: list[Obj] = []
    while time.monotonic() - start < deadline_s:
        records = sim.pool_records(POOL)
        endpoints = sim.api.get(f"{ENDPOINTS}/namespaces/{namespace}/spiderendpoints")["items"]
        if not records and not endpoints and not sim.api.pods(namespace):
            break
        time.sleep(0.5)
    return len(records), len(endpoints)


def storm(sim: SimCluster, pods: int, namespace: str) -> Obj:
    sim.kubectl("create", "namespace", namespace)
    per = 10
    manifests = deployments(namespace, max(1, pods // per), per, "storm")
    sim.admin.reset_counts()
    leader = sim.controllers[sim.leader_index()]
    cpu_before, _ = cpu_and_rss(leader.pid)
    progress(f"storm: {pods} pods in {len(manifests)} Deployments")
    t0 = time.monotonic()
    sim.apply(manifests)
    ips = wait_running(sim, namespace, pods, 900)
    seconds = time.monotonic() - t0
    cpu_after, rss_mb = cpu_and_rss(leader.pid)
    writes = ipam_writes(sim.admin.counts())
    records = sim.pool_records(POOL)
    duplicates = len(ips) - len(set(ips.values()))
    mismatched = len(set(records) ^ set(ips.values()))
    progress("storm: deleting every pod")
    left_records, left_endpoints = drain(sim, namespace, 600)
    return {
        "pods": len(ips),
        "seconds": round(seconds, 2),
        "pods_per_s": round(len(ips) / seconds, 1),
        "writes_per_pod": round(writes / len(ips), 2),
        "duplicates": duplicates,
        "records_not_pods": mismatched,
        "leader_cpu_ms_per_pod": round((cpu_after - cpu_before) * 1000 / max(1, len(ips)), 2),
        "leader_rss_mb": round(rss_mb, 1),
        "leaks": left_records + left_endpoints,
    }


def failover(sim: SimCluster, pods: int, namespace: str) -> Obj:
    sim.kubectl("create", "namespace", namespace)
    leader = sim.leader_index()
    progress(f"failover: {pods} pods, the leader (replica {leader}) killed once 10 are allocated")
    sim.apply(deployments(namespace, max(1, pods // 10), 10, "wave"))
    sim.wait(lambda: len(sim.pool_records(POOL)) >= 10, "the wave to be under way", 300)
    holder = sim.leader()
    killed = time.monotonic()
    sim.controllers[leader].kill()
    # A write the old leader sent before it died may still land: count allocations only from the
    # moment another replica holds the Lease.
    sim.wait(lambda: sim.leader() not in ("", holder), "another replica to take the Lease", 300, 0.1)
    lease_taken_s = time.monotonic() - killed
    before = len(sim.pool_records(POOL))
    sim.wait(lambda: len(sim.pool_records(POOL)) > before, "an allocation by the new leader", 300, 0.1)
    failover_s = time.monotonic() - killed
    new_leader = sim.leader_index()
    ips = wait_running(sim, namespace, pods, 900)
    sim.restart(sim.controllers[leader])
    duplicates = len(ips) - len(set(ips.values()))
    left_records, left_endpoints = drain(sim, namespace, 600)
    return {
        "failover_s": round(failover_s, 2),
        "lease_taken_s": round(lease_taken_s, 2),
        "failover_duplicates": duplicates,
        "failover_leaks": left_records + left_endpoints,
        "new_leader": new_leader,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=300, help="pods in the storm (default 300)")
    parser.add_argument("--failover-pods", type=int, default=60, help="pods of the failover wave")
    parser.add_argument(
        "--lease-duration", type=float, default=15.0, help="the controllers' Lease duration, s (upstream: 15)"
    )
    args = parser.parse_args(argv)
    renew = max(1.0, args.lease_duration * 2 / 3)
    lease = (
        "--leader-lease-duration", f"{args.lease_duration:g}",
        "--leader-renew-deadline", f"{renew:g}",
        "--leader-retry-period", f"{max(0.5, args.lease_duration / 7.5):g}",
    )  # fmt: skip
    progress("starting the simulated cluster (3 nodes, 2 controllers)")
    with SimCluster(SimOptions(controller_args=lease)) as sim:
        sim.apply(
            [
                {
                    "apiVersion": "spiderpool.spidernet.io/v2beta1",
                    "kind": "SpiderIPPool",
                    "metadata": {"name": POOL},
                    "spec": {"subnet": SUBNET, "ips": [f"{FIRST}-{LAST}"], "gateway": GATEWAY},
                }
            ]
        )
        result = storm(sim, args.pods, "storm")
        result.update(failover(sim, args.failover_pods, "wave"))
    result["lease_duration_s"] = args.lease_duration
    print(
        f"storm: {result['pods']} pods in {result['seconds']} s ({result['pods_per_s']} pods/s), "
        f"{result['writes_per_pod']} IPAM API writes per pod, {result['duplicates']} duplicates, "
        f"{result['leaks']} leaks; the leader used {result['leader_cpu_ms_per_pod']} ms of CPU per pod "
        f"(RSS {result['leader_rss_mb']} MB); "
        f"failover {result['failover_s']} s (lease {args.lease_duration:g} s), "
        f"{result['failover_duplicates']} duplicates, {result['failover_leaks']} leaks"
    )
    print(json.dumps(result))
    bad = result["duplicates"] + result["leaks"] + result["failover_duplicates"] + result["failover_leaks"]
    return 1 if bad or result["records_not_pods"] else 0


if __name__ == "__main__":
    sys.exit(main())
