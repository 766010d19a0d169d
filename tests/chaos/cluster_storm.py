"""The cluster mode under faults: a storm of pod creations and deletions in the simulated cluster while
the harness SIGKILLs agents and the leading controller, pauses the leader past its lease (SIGSTOP, then
SIGCONT), drops the API server's connections and watches, and injects 409 storms and 500s; then it
restarts everything and checks, once the cluster has settled and garbage collection has run:

- no address held by two attachments (also sampled during the storm: two Running pods with one address),
  every live attachment holds the address its pod reports, and nothing else is allocated (no leak, no
  loss);
- every DEL that returned success is honoured: no pool record names a sandbox whose DEL the kubelet saw
  succeed;
- the SpiderEndpoints are exactly the live pods';
- the release journals and DEL spools of every node are empty;
- split brain: the API server accepted no write from a paused leader after it resumed, until it took the
  Lease again itself (its writes are told by the User-Agent, which names the replica; the API server's
  write log records each accepted write with the time it arrived).

Everything runs for real (cluster.py): the pods are created and deleted through the API, the scheduler
binds them, each node's kubelet stand-in runs Debian's macvlan with our shims, the agents and the two
controller replicas (`--store kubernetes://`, leader election on the Lease) do the rest; the only fake is
the test API server. The faults are scoped to what the project's programs use (pool status, endpoints,
pod reads, Lease renewals), so the harness's own requests pass, except the dropped connections, which its
requests retry.

``run_cluster_storm`` returns the counts (operations, kills, pauses, duplicates, leaks, time to converge);
``python -m tests.chaos.cluster_storm --seconds 120`` is the long mode (``make bench-chaos``), which
starts its own cluster and prints the counts and a final JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tests.chaos.embedded_storm import Counts, journal_pending, judge, spool_left
from tests.simcluster.api import ApiError
from tests.simcluster.cluster import LEASE, SimCluster, SimOptions
from tests.simcluster.kubelet import SANDBOX_ID
from tests.simcluster.processes import Proc, wait_ready
from tests.simcluster.topology import UNDERLAY

T = TypeVar("T")
Obj = dict[str, Any]

NAMESPACE = "chaos"
POOL = "chaos-v4"
POOL_RANGE = ("172.30.0.100", "172.30.0.220")
AGENT_STATE = "/var/lib/spiderpool/agent"
SANDBOXES = "/var/lib/kubelet/sandboxes"
POOL_API = "/apis/spiderpool.spidernet.io/v2beta1"
# Leader election scaled down (upstream's 15/10/2 s) so a killed or paused leader is replaced within
# seconds; a GC scan every 5 s; the agents replay their DEL spool every second.
LEASE_S = 3.0
CONTROLLER_ARGS = (
    "--leader-lease-duration", str(int(LEASE_S)), "--leader-renew-deadline", "2",
    "--leader-retry-period", "0.5", "--gc-interval-seconds", "5",
)  # fmt: skip
GC_INTERVAL_S = 5.0
AGENT_ENV = (("SPIDERPOOL_SPOOL_REPLAY_INTERVAL", "1"),)
MIN_AGE_S = 4.0  # a pod deleted at random is mostly one older than this
FAULTS = ("kill-agent", "kill-leader", "pause-leader", "drop-connections", "drop-watches", "409", "500")
# What the injected faults hit: the project's own requests (verb, resource).
CONFLICT_TARGETS = (
    ("update", "spiderippools/status"),
    ("update", "spiderendpoints/status"),
    ("update", "leases"),
)
ERROR_TARGETS = (
    ("update", "spiderippools/status"), ("create", "spiderendpoints"), ("delete", "spiderendpoints"),
    ("get", "pods"), ("update", "leases"), ("list", "pods"),
)  # fmt: skip
_CREATED = re.compile(r"sandbox ([0-9a-f]{12}) of \S+ created")
_DELETED = re.compile(r"sandbox ([0-9a-f]{12}) of \S+ deleted")
_ADD_FAILED = re.compile(r"sandbox of \S+ failed")
_DEL_FAILED = re.compile(r"DEL of sandbox [0-9a-f]{12} failed")


def cluster_options() -> SimOptions:
    return SimOptions(controller_args=CONTROLLER_ARGS, agent_env=AGENT_ENV)


@dataclass
class ClusterCounts(Counts):
    pod_creates: int = 0
    pod_deletes: int = 0
    pauses: int = 0
    pauses_taken_over: int = 0  # pauses during which another replica took the Lease
    split_brain_writes: int = 0  # writes accepted from a paused leader after it resumed
    split_brain: list[str] = field(default_factory=list)
    drops: int = 0
    conflicts_armed: int = 0
    errors_armed: int = 0
    restarts: int = 0
    leader_transitions: int = 0
    duplicates_seen: int = 0  # two Running pods reporting one address, sampled during the storm
    dels_dishonoured: int = 0
    endpoint_leaks: int = 0
    endpoint_missing: int = 0
    gc_released: int = 0  # leaked at the first settled look, released since (by GC)
    settle_parts: dict[str, float] = field(default_factory=dict)  # seconds after the restart each held
    settled: bool = False

    @property
    def operations(self) -> int:
        return self.pod_creates + self.pod_deletes

    def clean(self) -> bool:
        extra = (
            self.split_brain_writes, self.duplicates_seen, self.dels_dishonoured, self.endpoint_leaks,
            self.endpoint_missing,
        )  # fmt: skip
        return super().clean() and not any(extra) and self.settled

    def summary(self) -> str:
        return (
            f"operations {self.operations} (pods created {self.pod_creates}, deleted {self.pod_deletes}; CNI "
            f"ADD {self.adds} ({self.add_failures} failed), DEL {self.dels} ({self.del_failures} failed)); "
            f"kills {self.kills}, pauses {self.pauses} ({self.pauses_taken_over} taken over), drops "
            f"{self.drops}, 409 storms {self.conflicts_armed}, 500 bursts {self.errors_armed}, restarts "
            f"{self.restarts}, leader transitions {self.leader_transitions}; duplicates {self.duplicates} "
            f"(seen during the storm {self.duplicates_seen}), leaks {self.leaks}, lost {self.lost}, wrong "
            f"address {self.wrong_address}, DELs not honoured {self.dels_dishonoured}, endpoint leaks "
            f"{self.endpoint_leaks}/missing {self.endpoint_missing}, split-brain writes "
            f"{self.split_brain_writes}, journal {self.journal_left}, spool {self.spool_left}; live "
            f"{self.live}; released by GC after settling {self.gc_released}; converged in {self.converge_s}s"
        )

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "operations": self.operations, "clean": self.clean()}


def retrying(call: Callable[[], T], attempts: int = 20) -> T:
    """The harness's own API calls: retried through dropped connections and 5xx answers."""
    for attempt in range(attempts):
        try:
            return call()
        except (OSError, ApiError) as exc:
            if (isinstance(exc, ApiError) and exc.status < 500) or attempt == attempts - 1:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


def pool_manifest() -> Obj:
    first, last = POOL_RANGE
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": POOL},
        "spec": {"subnet": UNDERLAY.v4, "ips": [f"{first}-{last}"], "gateway": UNDERLAY.gateways[0]},
    }


def prepare(cluster: SimCluster) -> None:
    """The storm's namespace and pool (applied with kubectl, as a user would)."""
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.apply([pool_manifest()])
    cluster.wait(lambda: cluster.pool(POOL), f"pool {POOL}")


def pod_manifest(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app": "chaos"},
            "annotations": {"ipam.spidernet.io/ippool": json.dumps({"ipv4": [POOL]})},
        },
        "spec": {"containers": [{"name": "c", "image": "pause"}]},
    }


class Storm:
    """The harness's bookkeeping, shared by the worker, chaos and sampler threads."""

    def __init__(
        self, cluster: SimCluster, counts: ClusterCounts, seed: int, faults: tuple[str, ...] = FAULTS
    ) -> None:
        self.cluster = cluster
        self.faults = faults
        self.counts = counts
        self.lock = threading.Lock()
        self.existing: dict[str, float] = {}  # pods created and not deleted -> when created
        self.next_id = 0
        self.seed = seed
        self.stop = threading.Event()
        self.pauses: list[tuple[str, float]] = []  # (the paused leader's identity, when it resumed)
        self.seen_pairs: set[tuple[str, ...]] = set()

    # --- the workload -------------------------------------------------------------------------------------

    def create(self) -> None:
        with self.lock:
            name = f"p{self.next_id}"
            self.next_id += 1
        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        try:
            retrying(lambda: self.cluster.api.create(path, pod_manifest(name)))
        except ApiError as exc:
            if exc.status != 409:  # created by an attempt whose answer was lost
                raise
        with self.lock:
            self.existing[name] = time.monotonic()
            self.counts.pod_creates += 1

    def delete(self, name: str) -> None:
        with self.lock:
            if self.existing.pop(name, None) is None:
                return
        try:
            retrying(lambda: self.cluster.api.delete(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}"))
        except ApiError as exc:
            if not exc.not_found:
                raise
        with self.lock:
            self.counts.pod_deletes += 1

    def worker(self, n: int, target: int) -> None:
        rng = random.Random(self.seed * 100 + n)
        while not self.stop.is_set():
            try:
                with self.lock:
                    existing = sorted(self.existing)
                    # Mostly pods that had time to start; now and then one still starting (DEL racing ADD).
                    grown = [n for n in existing if time.monotonic() - self.existing[n] > MIN_AGE_S]
                if (len(existing) < target and rng.random() < 0.7) or not existing:
                    self.create()
                else:
                    self.delete(rng.choice(grown if grown and rng.random() < 0.8 else existing))
            except Exception as exc:  # a harness failure is a finding, not a crash
                with self.lock:
                    self.counts.failures.append(f"worker: {exc!r}")
            self.stop.wait(rng.uniform(0.1, 0.5))
        self.cluster.api.close()

    # --- sampling -----------------------------------------------------------------------------------------

    def sampler(self) -> None:
        while not self.stop.wait(1.0):
            try:
                pods = retrying(lambda: self.cluster.api.pods(NAMESPACE))
            except Exception:
                continue
            by_ip: dict[str, list[str]] = {}
            for pod in pods:
                status = pod.get("status") or {}
                if status.get("phase") == "Running":
                    for entry in status.get("podIPs") or []:
                        by_ip.setdefault(entry["ip"], []).append(pod["metadata"]["name"])
            for ip, names in by_ip.items():
                pair = (ip, *sorted(names))
                if len(names) > 1 and pair not in self.seen_pairs:
                    self.seen_pairs.add(pair)
                    with self.lock:
                        self.counts.duplicates_seen += 1
                        self.counts.failures.append(f"{ip} reported by Running pods {names}")
        self.cluster.api.close()

    # --- faults -------------------------------------------------------------------------------------------

    def chaos(self) -> None:
        rng = random.Random(self.seed + 1)
        deck: list[str] = []
        while not self.stop.wait(rng.uniform(0.8, 2.0)):
            if not deck:
                deck = list(self.faults)
                rng.shuffle(deck)
            fault = deck.pop()
            try:
                self.inject(fault, rng)
            except Exception as exc:
                with self.lock:
                    self.counts.failures.append(f"chaos {fault}: {exc!r}")
        self.cluster.api.close()

    def inject(self, fault: str, rng: random.Random) -> None:
        cluster, counts, admin = self.cluster, self.counts, self.cluster.admin
        if fault == "kill-agent":
            agent = cluster.agent(rng.choice(sorted(cluster.nodes)))
            self._kill_and_restart(agent, rng)
        elif fault == "kill-leader":
            leader = retrying(cluster.leader_index)
            self._kill_and_restart(cluster.controller(leader), rng)
        elif fault == "pause-leader":
            self.pause_leader()
        elif fault == "drop-connections":
            with contextlib.suppress(OSError):  # the admin call's own connection is dropped too
                admin.drop_connections()
            counts.drops += 1
        elif fault == "drop-watches":
            retrying(admin.drop_watches)
            counts.drops += 1
        elif fault == "409":
            verb, resource = rng.choice(CONFLICT_TARGETS)
            retrying(
                lambda: admin.add_fault(verb=verb, resource=resource, status=409, count=rng.randint(5, 20))
            )
            counts.conflicts_armed += 1
        elif fault == "500":
            verb, resource = rng.choice(ERROR_TARGETS)
            retrying(
                lambda: admin.add_fault(verb=verb, resource=resource, status=500, count=rng.randint(3, 10))
            )
            counts.errors_armed += 1

    def _kill_and_restart(self, proc: Proc, rng: random.Random) -> None:
        proc.kill()
        self.counts.kills += 1
        self.stop.wait(rng.uniform(0.1, 0.8))
        proc.start()

    def pause_leader(self) -> None:
        """SIGSTOP the Lease holder until another replica holds the Lease (past its lease), then SIGCONT."""
        cluster = self.cluster
        index = retrying(cluster.leader_index)
        identity = retrying(cluster.leader)
        proc = cluster.controller(index)
        proc.pause()
        self.counts.pauses += 1
        deadline = time.monotonic() + 4 * LEASE_S + 10
        taken = False
        try:
            while time.monotonic() < deadline:
                holder = retrying(cluster.leader)
                if holder and holder != identity:
                    taken = True
                    break
                time.sleep(0.1)
            time.sleep(0.5)  # the new leader at work while the old one still sleeps
        finally:
            resumed = time.time()
            proc.resume()
        self.counts.pauses_taken_over += int(taken)
        with self.lock:
            self.pauses.append((identity, resumed))


# --- observing the cluster ------------------------------------------------------------------------------


@dataclass
class Snapshot:
    pods: dict[str, Obj]  # name -> pod
    live: dict[str, str]  # sandbox ID -> IPv4 of Running pods
    sandboxes: set[str]  # sandbox IDs on the nodes' disks (not retired)
    records: dict[str, Obj]
    endpoints: set[str]
    journal: int
    spool: int

    def parts(self, existing: set[str]) -> dict[str, bool]:
        """Each part of being settled, on its own (the time each first held is reported)."""
        running = {n for n, p in self.pods.items() if (p.get("status") or {}).get("phase") == "Running"}
        return {
            "pods_running": set(self.pods) == existing == running and len(self.live) == len(existing),
            "sandboxes": self.sandboxes == set(self.live),
            "records": {str(r.get("cid", "")): ip for ip, r in self.records.items()} == self.live,
            "endpoints": self.endpoints == existing,
            "journal_spool": self.journal == 0 and self.spool == 0,
        }

    def settled(self, existing: set[str]) -> bool:
        return all(self.parts(existing).values())


def observe(cluster: SimCluster) -> Snapshot:
    pods = {p["metadata"]["name"]: p for p in retrying(lambda: cluster.api.pods(NAMESPACE))}
    live: dict[str, str] = {}
    for pod in pods.values():
        status = pod.get("status") or {}
        sandbox = ((pod["metadata"].get("annotations") or {}).get(SANDBOX_ID)) or ""
        ips = [e["ip"] for e in status.get("podIPs") or [] if ":" not in e["ip"]]
        if status.get("phase") == "Running" and sandbox and ips:
            live[sandbox] = ips[0]
    sandboxes: set[str] = set()
    journal = spool = 0
    for node in cluster.nodes.values():
        for path in node.host.outside(SANDBOXES).glob("*.json"):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # replaced or removed while read
            if not record.get("retired") and record.get("namespace") == NAMESPACE:
                sandboxes.add(str(record["sandbox_id"]))
        state = node.host.outside(AGENT_STATE)
        journal += journal_pending(state)
        spool += spool_left(state / "spool")
    records = retrying(lambda: cluster.pool_records(POOL))
    endpoints = retrying(lambda: cluster.api.items(f"{POOL_API}/namespaces/{NAMESPACE}/spiderendpoints"))
    return Snapshot(
        pods, live, sandboxes, records, {e["metadata"]["name"] for e in endpoints}, journal, spool
    )


def kubelet_log_counts(cluster: SimCluster) -> tuple[dict[str, int], set[str]]:
    """From the kubelets' logs: how many sandboxes were created, failed, deleted, failed to delete, and the
    (12-digit) IDs of the sandboxes whose DEL succeeded."""
    counts = {"adds": 0, "add_failures": 0, "dels": 0, "del_failures": 0}
    deleted: set[str] = set()
    for node in cluster.nodes.values():
        text = node.kubelet.log_path.read_text(errors="replace")
        counts["adds"] += len(_CREATED.findall(text))
        counts["add_failures"] += len(_ADD_FAILED.findall(text))
        counts["del_failures"] += len(_DEL_FAILED.findall(text))
        found = _DELETED.findall(text)
        counts["dels"] += len(found)
        deleted.update(found)
    return counts, deleted


def split_brain_writes(cluster: SimCluster, pauses: list[tuple[str, float]]) -> list[str]:
    """Writes the API server accepted from a paused leader after it resumed and before it took the Lease
    again (a Lease write is a compare-and-swap: one accepted means it won the Lease fairly)."""
    found = []
    for identity, resumed in pauses:
        entries = retrying(lambda at=resumed, who=identity: cluster.admin.writes(at, f"({who})"))  # type: ignore[misc]
        for entry in entries:
            if entry["resource"] == "leases":
                break
            found.append(
                f"{identity} {entry['verb']} {entry['resource']} {entry['namespace']}/{entry['name']} "
                f"{entry['received'] - resumed:.3f}s after it resumed"
            )
    return found


def restart_everything(cluster: SimCluster) -> int:
    """SIGKILL every controller replica, agent and kubelet, then start them all again."""
    procs = [*cluster.controllers, *(p for n in cluster.nodes.values() for p in n.procs())]
    for proc in procs:
        proc.resume()
        proc.kill()
    for proc in procs:
        proc.start()
    wait_ready(procs, 60)
    return len(procs)


def lease_transitions(cluster: SimCluster) -> int:
    lease = retrying(
        lambda: cluster.api.get_or_none(
            f"/apis/coordination.k8s.io/v1/namespaces/{LEASE[0]}/leases/{LEASE[1]}"
        )
    )
    return int(((lease or {}).get("spec") or {}).get("leaseTransitions") or 0)


def run_cluster_storm(
    cluster: SimCluster,
    *,
    seconds: float,
    workers: int = 4,
    target: int = 24,
    seed: int = 1,
    settle_s: float = 90.0,
    faults: tuple[str, ...] = FAULTS,
) -> ClusterCounts:
    """Storm for ``seconds`` with every fault of FAULTS, restart everything, wait until the cluster settles
    (or ``settle_s`` passes), let GC run a full scan, and judge."""
    counts = ClusterCounts()
    storm = Storm(cluster, counts, seed, faults)
    transitions_before = lease_transitions(cluster)
    threads = [
        threading.Thread(target=storm.worker, args=(n, target), name=f"storm-{n}") for n in range(workers)
    ]
    threads += [threading.Thread(target=storm.chaos, name="chaos"), threading.Thread(target=storm.sampler)]
    for thread in threads:
        thread.start()
    storm.stop.wait(seconds)
    storm.stop.set()
    for thread in threads:
        thread.join()
    retrying(cluster.admin.clear_faults)
    settle_started = time.monotonic()
    counts.restarts = restart_everything(cluster)
    first: Snapshot | None = None
    snapshot = observe(cluster)
    while time.monotonic() - settle_started < settle_s:
        snapshot = observe(cluster)
        for part, holds in snapshot.parts(set(storm.existing)).items():
            if holds and part not in counts.settle_parts:
                counts.settle_parts[part] = round(time.monotonic() - settle_started, 2)
        if (
            first is None
            and snapshot.sandboxes == set(snapshot.live)
            and len(snapshot.live) == len(storm.existing)
        ):
            first = snapshot
        if snapshot.settled(set(storm.existing)):
            counts.settled = True
            break
        time.sleep(0.25)
    counts.converge_s = round(time.monotonic() - settle_started, 2)
    if counts.settled:  # GC's full scan runs on the settled cluster: it must change nothing
        time.sleep(GC_INTERVAL_S + 1)
        snapshot = observe(cluster)
        counts.settled = snapshot.settled(set(storm.existing))
    judge(counts, snapshot.live, snapshot.records)
    if first is not None:
        counts.gc_released = len(set(first.records) - set(snapshot.records) - set(snapshot.live.values()))
    log_counts, deleted = kubelet_log_counts(cluster)
    for key, value in log_counts.items():
        setattr(counts, key, value)
    counts.dels_dishonoured = sum(
        1 for r in snapshot.records.values() if str(r.get("cid", ""))[:12] in deleted
    )
    counts.endpoint_leaks = len(snapshot.endpoints - set(snapshot.pods))
    counts.endpoint_missing = len(set(snapshot.pods) - snapshot.endpoints)
    counts.journal_left, counts.spool_left = snapshot.journal, snapshot.spool
    counts.live = len(snapshot.live)
    counts.split_brain = split_brain_writes(cluster, storm.pauses)
    counts.split_brain_writes = len(counts.split_brain)
    counts.leader_transitions = lease_transitions(cluster) - transitions_before
    if not counts.settled:
        counts.failures.append(f"not settled after {settle_s:g}s: {describe(snapshot, set(storm.existing))}")
    cluster.api.close()  # this thread's connection (the cluster reconnects when used again)
    return counts


def describe(snapshot: Snapshot, existing: set[str]) -> str:
    phases = {n: (p.get("status") or {}).get("phase") for n, p in snapshot.pods.items()}
    why = {
        n: [
            str(c.get("message", ""))[-240:]
            for c in (p.get("status") or {}).get("conditions") or []
            if c.get("message")
        ]
        for n, p in snapshot.pods.items()
        if phases[n] != "Running"
    }
    held = {str(r.get("cid", ""))[:12]: ip for ip, r in snapshot.records.items()}
    return json.dumps(
        {
            "pods_not_running": {n: [ph, *why.get(n, [])] for n, ph in phases.items() if ph != "Running"},
            "pods_missing": sorted(existing - set(snapshot.pods)),
            "pods_unexpected": sorted(set(snapshot.pods) - existing),
            "sandboxes_extra": sorted(s[:12] for s in snapshot.sandboxes - set(snapshot.live)),
            "records_not_live": {c: ip for c, ip in held.items() if c not in {s[:12] for s in snapshot.live}},
            "live_not_recorded": {s[:12]: ip for s, ip in snapshot.live.items() if s[:12] not in held},
            "endpoints_extra": sorted(snapshot.endpoints - existing),
            "endpoints_missing": sorted(existing - snapshot.endpoints),
            "journal": snapshot.journal,
            "spool": snapshot.spool,
        }
    )


@contextmanager
def storm_cluster() -> Iterator[SimCluster]:
    with SimCluster(cluster_options()) as cluster:
        prepare(cluster)
        yield cluster


def main() -> None:
    parser = argparse.ArgumentParser(description="the cluster-mode storm with kills, pauses and API faults")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--target", type=int, default=30, help="live pods the storm keeps around")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()
    with storm_cluster() as cluster:
        counts = run_cluster_storm(
            cluster, seconds=args.seconds, workers=args.workers, target=args.target, seed=args.seed
        )
    print(counts.summary())
    for line in (*counts.split_brain, *counts.failures):
        print("  ", line)
    print(f"total {time.monotonic() - started:.1f}s")
    print(json.dumps(counts.as_json()))
    if not counts.clean():
        raise SystemExit(1)


if __name__ == "__main__":
    main()
