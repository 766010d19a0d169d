"""A storm of pod creations and deletions through the real shims while the agent and the
controller are killed with SIGKILL and restarted: the embedded mode's proof under faults.

The runtime's part is played faithfully: every CNI call is the installed ``spiderpool``
executable with kubelet's CNI_ARGS; an ADD that fails is followed by a DEL (the spec's
rule), a DEL that fails is retried until it succeeds; an attachment is live exactly when
its ADD succeeded and no DEL of it has. A chaos task kills the agent or the controller at
random moments (SIGKILL) and restarts it a little later. After the storm: everything is
running, the pending DELs are retried to success, the runtime's CNI GC runs with the live
attachments, the release journal and the DEL spool drain. Then the invariants:

- no address held by two attachments, and every live attachment holds exactly the address
  its ADD printed;
- the allocated addresses are exactly the live attachments' (no leak, no loss): every DEL
  that returned success was honoured;
- the journal and the spool are empty.

``run_storm`` returns the counts (operations, kills, duplicates, leaks, time to converge);
``python -m tests.chaos.embedded_storm --seconds 120`` runs the long mode.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.component.agent_harness import ServiceProcess, pool_manifest
from tests.component.conformance_stack import Stack, running_stack, start_service

POOL = "storm-v4"
NETWORK = "storm-net"
NETNS = "/proc/self/ns/net"


@dataclass
class Counts:
    adds: int = 0
    add_failures: int = 0
    dels: int = 0
    del_failures: int = 0
    kills: int = 0
    duplicates: int = 0
    leaks: int = 0
    lost: int = 0
    wrong_address: int = 0
    gc_released: int = 0
    converge_s: float = 0.0
    journal_left: int = 0
    spool_left: int = 0
    live: int = 0
    gc_histories: str = ""  # what happened to the attachments only the runtime's GC collected
    violation_histories: str = ""  # and to those a duplicate, loss or wrong address names
    failures: list[str] = field(default_factory=list)

    def clean(self) -> bool:
        bad = (self.duplicates, self.leaks, self.lost, self.wrong_address, self.journal_left, self.spool_left)
        return not any(bad)


class Runtime:
    """The container runtime's bookkeeping, shared by the storm's worker threads.

    Like a real runtime it never runs two operations for one container at once (CNI: "the
    runtime must not invoke parallel operations for the same container"): a container with
    an ADD or a DEL in flight is ``busy`` and no worker picks it. A failed ADD is DELed
    after it returned, never while it is still running. A DEL that overtook its own ADD
    (the storm used to allow it) either reached the controller first and freed nothing, so
    the ADD's allocation was left for the runtime's GC (``gc_released`` 1 or 2 a minute),
    or waited for the ADD's allocation and freed it, and the runtime, taking the ADD's later
    answer for the last word, counted a lost address and then a duplicate."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.lock = threading.Lock()
        self.live: dict[str, str] = {}  # container ID -> the address its ADD printed
        self.pending_del: set[str] = set()  # failed ADDs and failed DELs: DELed (again) later
        self.busy: set[str] = set()  # an ADD or a DEL of the container is running
        self.next_id = 0
        self.counts = Counts()
        self.history: dict[str, list[str]] = {}  # container ID -> what the runtime did and saw

    def note(self, cid: str, event: str) -> None:
        with self.lock:
            self.history.setdefault(cid, []).append(f"{_stamp()} {event}")

    def conf(self) -> dict[str, Any]:
        conf = self.stack.net_conf("1.1.0", NETWORK, v4=(POOL,), v6=())
        conf["ipam"]["del_spool_dir"] = str(self.stack.workdir / "agent-state" / "spool")
        return conf

    def args(self, cid: str) -> str:
        return (
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE=storm;K8S_POD_NAME={cid};"
            f"K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID=uid-{cid}"
        )

    def add(self) -> None:
        with self.lock:
            cid = f"storm-{self.next_id}"
            self.next_id += 1
            self.busy.add(cid)
        ok = False
        try:
            self.note(cid, "ADD sent")
            outcome = self.stack.run("ADD", self.conf(), cid, netns=NETNS, args=self.args(cid))
            self.note(cid, f"ADD rc={outcome.rc} {outcome.stdout.decode(errors='replace').strip()}")
            with self.lock:
                self.counts.adds += 1
                if outcome.rc == 0 and outcome.obj is not None and "ips" in outcome.obj:
                    self.live[cid] = outcome.obj["ips"][0]["address"].split("/")[0]
                    ok = True
                else:
                    self.counts.add_failures += 1
        finally:
            with self.lock:
                if not ok:
                    self.pending_del.add(cid)  # the runtime DELs a failed ADD, once it returned
                self.busy.discard(cid)

    def delete(self, cid: str) -> bool:
        """DEL ``cid`` unless an operation of it is running; True when the DEL succeeded."""
        with self.lock:
            if cid in self.busy:
                return False
            self.busy.add(cid)
        return self._delete(cid)

    def _delete(self, cid: str) -> bool:
        """DEL ``cid``, which the caller marked busy."""
        ok = False
        try:
            self.note(cid, "DEL sent")
            outcome = self.stack.run("DEL", self.conf(), cid, netns=NETNS, args=self.args(cid))
            self.note(cid, f"DEL rc={outcome.rc} {outcome.stdout.decode(errors='replace').strip()}")
            with self.lock:
                self.counts.dels += 1
                ok = outcome.rc == 0
                if not ok:
                    self.counts.del_failures += 1
        finally:
            with self.lock:
                self.live.pop(cid, None)  # a DEL was asked: the runtime considers it gone
                if ok:
                    self.pending_del.discard(cid)
                else:
                    self.pending_del.add(cid)
                self.busy.discard(cid)
        return ok

    def step(self, rng: random.Random, target: int) -> None:
        with self.lock:
            pending = sorted(self.pending_del - self.busy)
            live = sorted(set(self.live) - self.busy)
            victim = None
            if pending and rng.random() < 0.5:
                victim = rng.choice(pending)
            elif len(live) < target and rng.random() < 0.8:
                pass
            elif live:
                victim = rng.choice(live)
            if victim is not None:
                self.busy.add(victim)
        if victim is None:
            self.add()
        else:
            self._delete(victim)


def _stamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1_000_000):06d}"


def _chaos(
    stack: Stack, stop: threading.Event, rng: random.Random, counts: Counts, events: list[str]
) -> None:
    while not stop.wait(rng.uniform(0.5, 1.5)):
        victim = stack.controller if rng.random() < 0.5 else stack.agent
        name = "controller" if victim is stack.controller else "agent"
        events.append(f"{_stamp()} SIGKILL {name}")
        victim.stop(signal.SIGKILL)
        counts.kills += 1
        stopping = stop.wait(rng.uniform(0.1, 0.5))
        _restart(victim, name, counts, events)
        if stopping:
            return


def _restart(service: ServiceProcess, name: str, counts: Counts, events: list[str]) -> None:
    """Start ``service`` again; a start that misses its health deadline (an agent replaying
    hundreds of spooled DELs on a loaded machine) is retried, not left for dead."""
    for attempt in range(3):
        try:
            start_service(service)
        except RuntimeError:
            events.append(f"{_stamp()} {name} not healthy in time (attempt {attempt + 1})")
            continue
        events.append(f"{_stamp()} {name} serving again")
        return
    counts.failures.append(f"{name} did not become healthy in three attempts")


def _mentions(path: Path, cid: str) -> list[str]:
    """The lines of a log file that name container ``cid`` (not a longer ID it prefixes)."""
    if not path.exists():
        return []
    pattern = re.compile(re.escape(cid) + r"(?![0-9])")
    return [line for line in path.read_text(errors="replace").splitlines() if pattern.search(line)]


def key_histories(stack: Stack, runtime: Runtime, cids: Iterable[str], events: Sequence[str]) -> str:
    """What the runtime, the shims, the agent and the controller said about each of ``cids``,
    with the storm's kills, for the report of allocations only the runtime's GC collected."""
    out = ["kills: " + "; ".join(events)]
    for cid in sorted(cids):
        out.append(f"=== {cid}")
        out += [f"  runtime {line}" for line in runtime.history.get(cid, [])]
        for name in ("ipam-shim.log", "agent.log", "controller.log"):
            out += [f"  {name} {line}" for line in _mentions(stack.workdir / name, cid)]
    return "\n".join(out)


def _records(stack: Stack) -> dict[str, dict[str, Any]]:
    return stack.records(POOL)


def journal_pending(state_dir: Path) -> int:
    """Releases the agent's journal still owes (a ``release`` line without its ``done``)."""
    path = state_dir / "release-journal.jsonl"
    if not path.exists():
        return 0
    pending: set[int] = set()
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("op") == "release":
            pending.add(entry["seq"])
        elif entry.get("op") == "done":
            pending.discard(entry["seq"])
    return len(pending)


def spool_left(spool: Path) -> int:
    """DELs the shims spooled that the agent has not replayed yet."""
    return len([p for p in spool.iterdir() if p.is_file()]) if spool.is_dir() else 0


def _journal_pending(stack: Stack) -> int:
    return journal_pending(stack.workdir / "agent-state")


def _spool_left(stack: Stack) -> int:
    return spool_left(stack.workdir / "agent-state" / "spool")


def _wait(predicate: Any, deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def run_storm(
    stack: Stack, *, seconds: float, workers: int = 6, target: int = 60, seed: int = 1, min_kills: int = 0
) -> Counts:
    """Storm for ``seconds`` (longer, up to four times as long, until ``min_kills`` kills happened)."""
    runtime = Runtime(stack)
    stop = threading.Event()
    events: list[str] = []
    chaos = threading.Thread(
        target=_chaos, args=(stack, stop, random.Random(seed + 1), runtime.counts, events)
    )
    chaos.start()
    deadline = time.monotonic() + seconds

    hard_deadline = deadline + 3 * seconds

    def storming() -> bool:
        now = time.monotonic()
        return now < deadline or (runtime.counts.kills < min_kills and now < hard_deadline)

    def worker(n: int) -> None:
        local = random.Random(seed * 100 + n)
        while storming():
            try:
                runtime.step(local, target)
            except Exception as exc:  # a harness failure is a finding, not a crash
                with runtime.lock:
                    runtime.counts.failures.append(repr(exc))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(worker, range(workers)))
    stop.set()
    chaos.join()
    settle_started = time.monotonic()
    for service in (stack.controller, stack.agent):
        if service.proc is None or service.proc.poll() is not None:
            service.proc = None
            start_service(service)
    # The runtime retries its failed DELs until they succeed, and pods keep coming.
    while runtime.pending_del and time.monotonic() - settle_started < 60:
        for cid in sorted(runtime.pending_del):
            runtime.delete(cid)
    for _ in range(max(1, target // 3)):
        runtime.add()
    collect(runtime, events)
    counts = runtime.counts
    _wait(lambda: _journal_pending(stack) == 0 and _spool_left(stack) == 0, 30)
    counts.converge_s = round(time.monotonic() - settle_started, 2)
    final = _records(stack)
    judge(counts, runtime.live, final)
    bad = offenders(runtime.live, final)
    if bad:
        counts.violation_histories = key_histories(stack, runtime, bad, events)
    counts.journal_left = _journal_pending(stack)
    counts.spool_left = _spool_left(stack)
    counts.live = len(runtime.live)
    return counts


def collect(runtime: Runtime, events: Sequence[str] = ()) -> None:
    """The runtime's CNI GC, the live attachments being the valid ones, once the journal and
    the spool drained: ``gc_released`` counts the allocations it freed, ``gc_histories`` says
    what happened to their containers (with the storm's kill ``events``)."""
    stack = runtime.stack
    _wait(lambda: _journal_pending(stack) == 0 and _spool_left(stack) == 0, 30)
    valid = [{"containerID": cid, "ifname": "eth0"} for cid in sorted(runtime.live)]
    records = _records(stack)
    doomed = {str(rec.get("cid", "")) for rec in records.values()} - set(runtime.live)
    if doomed:
        runtime.counts.gc_histories = key_histories(stack, runtime, doomed, events)
    gc = stack.run("GC", {**runtime.conf(), "cni.dev/valid-attachments": valid})
    if gc.rc != 0:
        runtime.counts.failures.append(f"GC failed: {gc.stdout!r}")
    runtime.counts.gc_released = len(set(records) - set(_records(stack)))


def offenders(live: dict[str, str], records: dict[str, dict[str, Any]]) -> set[str]:
    """The containers an invariant violation names: live without its address, holding another
    one or two, or sharing its printed address with another live container."""
    held: dict[str, list[str]] = {}
    for ip, rec in records.items():
        held.setdefault(str(rec.get("cid", "")), []).append(ip)
    bad = {cid for cid, ips in held.items() if len(ips) > 1}
    bad |= {cid for cid, ip in live.items() if held.get(cid) != [ip]}
    by_ip: dict[str, list[str]] = {}
    for cid, ip in live.items():
        by_ip.setdefault(ip, []).append(cid)
    bad |= {cid for cids in by_ip.values() if len(cids) > 1 for cid in cids}
    return bad


def judge(counts: Counts, live: dict[str, str], records: dict[str, dict[str, Any]]) -> None:
    """The invariants, from the runtime's live attachments (container ID -> the address its ADD
    printed) and the pool's records (address -> record naming its ``cid``): duplicates, leaks,
    losses and wrong addresses are added to ``counts``."""
    held: dict[str, str] = {}
    for ip, rec in records.items():
        cid = str(rec.get("cid", ""))
        if cid in held:
            counts.duplicates += 1  # one attachment holding two addresses of one family
        held[cid] = ip
    by_ip: dict[str, list[str]] = {}
    for cid, ip in live.items():
        by_ip.setdefault(ip, []).append(cid)
    counts.duplicates += sum(len(cids) - 1 for cids in by_ip.values())
    counts.leaks = len(set(held) - set(live))
    counts.lost = len(set(live) - set(held))
    counts.wrong_address = sum(1 for cid, ip in live.items() if cid in held and held[cid] != ip)


def storm_pools() -> Iterable[dict[str, Any]]:
    return [pool_manifest(POOL, "10.200.0.0/16", ["10.200.0.10-10.200.1.250"])]


def main() -> None:
    parser = argparse.ArgumentParser(description="the embedded-mode storm with SIGKILLs, long mode")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with running_stack("storm-", storm_pools()) as stack:
        counts = run_storm(stack, seconds=args.seconds, workers=args.workers, seed=args.seed)
    for histories in (counts.gc_histories, counts.violation_histories):
        if histories:
            print(histories)
    print(json.dumps({k: v for k, v in counts.__dict__.items() if not k.endswith("histories")}))
    if not counts.clean():
        raise SystemExit(1)


if __name__ == "__main__":
    main()
