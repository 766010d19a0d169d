"""Upstream's allocation protocol as one node agent runs it: the allocation benchmark's baseline.

What upstream's spiderpool-agent does per address (read for facts in spidernet-io/spiderpool
at a7fbd3b: ``pkg/ipam/allocate.go`` and ``release.go``, ``pkg/ippoolmanager/ippool_manager.go``
``AllocateIP``/``genRandomIP``/``ReleaseIP``, ``pkg/limiter/queue.go``,
``pkg/utils/retry/retry.go``), and what ``CasAgent`` does:

1. Queue for the pool's "ticket" in the agent's limiter. A ticket is granted to one holder
   at a time (``checkAvailableTicket`` refuses a ticket already granted), in queue order,
   and the same limiter serves ADD and DEL: per agent, at most one allocation or release
   runs per pool. Here: ``Tickets``, the same rule (one holder per pool, FIFO hand-over).
2. Read the pool straight from the API server (``GetIPPoolByName(..., IgnoreCache)``): one GET.
3. Pick the lowest free address of ``spec.ips - excludeIPs - reserved IPs - allocatedIPs``
   (reserved IPs come from the informer cache: no API call; an address the pod's UID
   already holds is returned as is), add the record, re-marshal ``allocatedIPs`` and set
   ``allocatedIPCount``.
4. Write the status (``Status().Update``) carrying the resourceVersion read in 2: a
   compare-and-swap, refused with 409 if any other agent wrote the pool meanwhile.
5. On 409, start again at 2 after a backoff, with upstream's ``retry.DefaultRetry``: Steps 5,
   Duration 10 ms, Factor 1.5, Jitter 0.1 through ``wait.ExponentialBackoff``, i.e. at most
   five attempts with sleeps of 10, 15, 22.5 and 33.75 ms (each plus up to 10%) between
   them; after the fifth conflict the ADD fails (``ErrRetriesExhausted``). Upstream's
   DefaultRetry is its own, not client-go's (Factor 1.0); this follows upstream.

Release is the same loop: read, drop the record whose address and pod UID match, write.

Each attempt is one read and one write, nothing more. The arithmetic is the project's:
``IPSet`` intervals and ``PoolState.lowest_free``'s rule (``usable.lowest_not_in(taken |
reserved)``; a test checks the picks agree), ``AllocationRecord.to_dict`` for the new record,
``reserved_sets`` for the reserved IPs. The records an attempt does not change stay decoded
JSON, as a Go agent's unmarshalled structs would be: going through ``PoolState.from_object``
and ``status()`` instead (an ``AllocationRecord`` per record, each re-encoded) measured
25-27 ms per attempt at 1,000 records on the benchmark machine, against 5-12 ms for this
path, and would measure the interpreter rather than the protocol. For the same reason the
text-to-integer parse of addresses is memoised (``ipaddress`` takes about 10 µs per address
there, far more than Go's parser).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from spiderpool_common.errors import PoolExhausted, Unavailable
from spiderpool_controller.domain.ipset import IPSet, int_to_ip, ip_to_int
from spiderpool_controller.domain.models import KIND_IPPOOL, AllocationRecord
from spiderpool_controller.store.contract import Obj, StaleResourceVersion, Store

T = TypeVar("T")
Status = dict[str, Any]


@dataclass(frozen=True)
class Backoff:
    """k8s ``wait.Backoff``: ``steps`` attempts, waits growing by ``factor``, plus jitter."""

    steps: int = 5
    duration_s: float = 0.010
    factor: float = 1.5
    jitter: float = 0.1

    def sleeps(self, rand: Callable[[], float] = random.random) -> list[float]:
        """The waits between attempts (``steps - 1`` of them), as ``Backoff.Step`` draws them."""
        out: list[float] = []
        duration = self.duration_s
        for _ in range(self.steps - 1):
            out.append(duration + rand() * self.jitter * duration if self.jitter > 0 else duration)
            duration *= self.factor
        return out


UPSTREAM_RETRY = Backoff()  # spiderpool pkg/utils/retry.DefaultRetry


class Tickets:
    """upstream's ``pkg/limiter`` queue: a ticket (a pool name) has at most one holder; the
    others wait in arrival order and the ticket passes straight to the first of them."""

    def __init__(self) -> None:
        self._held: set[str] = set()
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}

    async def acquire(self, ticket: str) -> bool:
        """Hold ``ticket``; True if it had to queue for it."""
        if ticket not in self._held:
            self._held.add(ticket)
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(ticket, deque()).append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release(ticket)  # it was handed to us as we were cancelled: pass it on
            raise
        return True

    def release(self, ticket: str) -> None:
        queue = self._queues.get(ticket)
        while queue:
            turn = queue.popleft()
            if not turn.done():
                turn.set_result(None)  # the next holder; the ticket stays held
                return
        self._held.discard(ticket)

    def held(self, ticket: str) -> bool:
        return ticket in self._held

    @contextlib.asynccontextmanager
    async def holding(self, ticket: str, tally: Tally) -> AsyncIterator[None]:
        if await self.acquire(ticket):
            tally.ticket_waits += 1
        try:
            yield
        finally:
            self.release(ticket)


class RetriesExhausted(Unavailable):
    """Every attempt of the retry policy met a conflict: the ADD (or DEL) fails."""

    reason = "RETRIES_EXHAUSTED"


@dataclass
class Tally:
    attempts: int = 0  # pool reads, one per attempt
    writes: int = 0  # status writes sent
    conflicts: int = 0  # of those, refused with 409
    done: int = 0  # operations that succeeded
    failed: int = 0  # operations that ran out of retries
    ticket_waits: int = 0  # operations that found the ticket taken and queued
    # Where an attempt's time goes (its read-to-commit span is the window a conflict needs):
    read_s: float = 0.0  # awaiting the read (the store's work and the frame's decoding included)
    step_s: float = 0.0  # picking the address and encoding the records (the agent's own work)
    write_s: float = 0.0  # awaiting the write's answer (modelled latency, commit, 409)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


_ip_ints: dict[str, int] = {}


def _ip_int(text: str, version: int) -> int:
    value = _ip_ints.get(text)
    if value is None:
        value = _ip_ints[text] = ip_to_int(text, version)
    return value


def pool_version(spec: Mapping[str, Any]) -> int:
    version = spec.get("ipVersion")
    if version in (4, 6):
        return int(version)
    return 6 if ":" in str(spec.get("subnet", "")) else 4


def _records(status: Mapping[str, Any]) -> dict[str, Any]:
    text = status.get("allocatedIPs")
    records = json.loads(text) if text else {}
    if not isinstance(records, dict):
        raise TypeError("status.allocatedIPs is not a JSON object")
    return records


def _with_records(status: Status, records: dict[str, Any]) -> Status:
    if records:
        status["allocatedIPs"] = json.dumps(records, separators=(",", ":"))
    else:
        status.pop("allocatedIPs", None)
    status["allocatedIPCount"] = len(records)
    return status


def allocation_step(
    obj: Obj, record: AllocationRecord, reserved: Mapping[int, IPSet], max_allocated_ips: int
) -> tuple[str, Status | None]:
    """upstream ``genRandomIP`` on a pool just read: the address for ``record`` and the status
    to write, or (the address, None) when the pod's UID already holds one."""
    spec = obj.get("spec") or {}
    version = pool_version(spec)
    status: Status = dict(obj.get("status") or {})
    records = _records(status)
    for held_ip, held in records.items():
        if isinstance(held, dict) and held.get("podUid") == record.pod_uid:
            return held_ip, None
    usable = IPSet.parse(spec.get("ips") or (), version) - IPSet.parse(spec.get("excludeIPs") or (), version)
    taken = IPSet.from_ints(version, [_ip_int(text, version) for text in records])
    blocked = taken | reserved.get(version, IPSet.empty(version))
    free = usable.lowest_not_in(blocked)
    name = obj.get("metadata", {}).get("name", "")
    if free is None:
        raise PoolExhausted(f"IPPool {name}: all IP addresses used out")
    if len(records) + 1 > max_allocated_ips:
        raise PoolExhausted(f"IPPool {name}: threshold of IP records (<={max_allocated_ips}) exceeded")
    text = int_to_ip(free, version)
    records[text] = record.to_dict()
    return text, _with_records(status, records)


def release_step(obj: Obj, ip: str, pod_uid: str) -> tuple[bool, Status | None]:
    """upstream ``ReleaseIP`` on a pool just read: whether the record goes, and the status to
    write (None: the address is not held by that pod UID, nothing to write)."""
    status: Status = dict(obj.get("status") or {})
    records = _records(status)
    held = records.get(ip)
    if not isinstance(held, dict) or held.get("podUid") != pod_uid:
        return False, None
    del records[ip]
    return True, _with_records(status, records)


class CasAgent:
    """One node's agent allocating and releasing with upstream's protocol; see the module
    docstring. ``alloc`` and ``rel`` tally what it did."""

    def __init__(
        self,
        store: Store,
        *,
        reserved: Mapping[int, IPSet] | None = None,
        backoff: Backoff = UPSTREAM_RETRY,
        max_allocated_ips: int = 5000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.reserved: Mapping[int, IPSet] = reserved or {}
        self.backoff = backoff
        self.max_allocated_ips = max_allocated_ips
        self._sleep = sleep
        self._rand = rand
        self.tickets = Tickets()
        self.alloc = Tally()
        self.rel = Tally()

    async def allocate(self, pool: str, record: AllocationRecord) -> str:
        """The address (``ip/prefix``) written for ``record``; ``RetriesExhausted`` after the
        last conflict."""
        async with self.tickets.holding(pool, self.alloc):
            ip, obj = await self._read_modify_write(
                pool, self.alloc, lambda o: allocation_step(o, record, self.reserved, self.max_allocated_ips)
            )
        prefix = ipaddress.ip_network(str(obj["spec"]["subnet"]), strict=False).prefixlen
        return f"{ip}/{prefix}"

    async def release(self, pool: str, ip: str, pod_uid: str) -> bool:
        """Release ``ip`` if ``pod_uid`` holds it (False: it did not, nothing written)."""
        async with self.tickets.holding(pool, self.rel):
            released, _ = await self._read_modify_write(
                pool, self.rel, lambda o: release_step(o, ip, pod_uid)
            )
        return released

    async def _read_modify_write(
        self, pool: str, tally: Tally, step: Callable[[Obj], tuple[T, Status | None]]
    ) -> tuple[T, Obj]:
        sleeps = self.backoff.sleeps(self._rand)
        for attempt in range(self.backoff.steps):
            started = time.perf_counter()
            obj = await self.store.get(KIND_IPPOOL, pool)  # direct read: the resourceVersion to swap
            read = time.perf_counter()
            tally.attempts += 1
            result, status = step(obj)
            stepped = time.perf_counter()
            tally.read_s += read - started
            tally.step_s += stepped - read
            if status is None:
                tally.done += 1
                return result, obj
            obj["status"] = status
            tally.writes += 1
            try:
                await self.store.update_status(obj)
            except StaleResourceVersion:
                tally.conflicts += 1
                tally.write_s += time.perf_counter() - stepped
                if attempt < len(sleeps):
                    await self._sleep(sleeps[attempt])
                continue
            tally.write_s += time.perf_counter() - stepped
            tally.done += 1
            return result, obj
        tally.failed += 1
        raise RetriesExhausted(
            f"IPPool {pool}: {self.backoff.steps} conflicting writes in a row, retries exhausted"
        )
