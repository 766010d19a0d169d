"""The in-memory state of one SpiderIPPool, and the pure rules for taking and returning IPs.

Owns "which address comes next": the lowest address of ``spec.ips - excludeIPs -
SpiderReservedIPs - allocated`` (upstream: first free IP in ``spec.ips`` order, which the
webhook keeps sorted), skipping the addresses still cooling down after their release when
the pool has a reuse delay (``released_ips``: then the oldest-released one when nothing
else is free). Everything is interval arithmetic (``ipset.IPSet``), so the cost does not
depend on the pool's size. No I/O here: the allocation engine owns persistence.

It also knows how large the pool's stored status is (``stored_bytes``): the status is one
object written whole, and the API server refuses objects over its limit (etcd: 1.5 MiB),
so the engine stops adding records to a pool near ``MAX_STATUS_BYTES`` even below the
record-count cap (at upstream's 5,000 records, long pod names and container IDs reach the
limit first). The reuse delay's ``releasedIPs`` is written only into the room the records
leave below ``MAX_STATUS_BYTES``: the newest entries first, the oldest dropped (their delay
is nearly over), so a pool full of records never fails a write or an allocation over it.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from spiderpool_controller.domain.ipset import IPSet, int_to_ip, ip_to_int
from spiderpool_controller.domain.models import AllocationRecord, IPPool, Route
from spiderpool_controller.domain.released_ips import ReleasedIPs

# Records stop being added to a pool whose status would pass this size: below etcd's
# 1.5 MiB (1,572,864 bytes) value limit with room for the pool's spec and metadata.
MAX_STATUS_BYTES = 1_540_000


@dataclass
class PoolState:
    """One pool as the engine sees it: spec-derived sets plus the allocation records."""

    pool: IPPool
    resource_version: str
    usable: IPSet  # spec.ips - spec.excludeIPs
    allocated: dict[int, AllocationRecord] = field(default_factory=dict)
    taken: IPSet = field(init=False)
    released: ReleasedIPs = field(init=False)  # addresses cooling down after release (reuse delay)
    # taken | released.cooling, kept up to date address by address: a pick with a reuse
    # delay looks past both without building their union (each single-address update is a
    # bisect; a union of two sets of thousands of intervals is not).
    held_or_cooling: IPSet = field(init=False)

    def __post_init__(self) -> None:
        self.taken = IPSet.from_ints(self.version, self.allocated)
        self.set_released(ReleasedIPs(self.version))
        self._fragments: dict[int, str] = {}  # ip -> '"ip":{record}' (status JSON cache)
        self._fragment_of: dict[int, AllocationRecord] = {}  # the record each fragment encodes
        self._prefixlen: int | None = None
        self._bytes: int | None = None  # stored size of the records (computed on first use)

    def set_released(self, released: ReleasedIPs) -> None:
        self.released = released
        self.held_or_cooling = self.taken | released.cooling if len(released) else self.taken

    def _not_cooling(self, ips: list[int]) -> None:
        """``ips`` left the released memory: those not held leave ``held_or_cooling``."""
        for ip in ips:
            if not self.taken.contains_int(ip):
                self.held_or_cooling = self.held_or_cooling.without(ip)

    # construction -------------------------------------------------------------------
    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> PoolState:
        pool = IPPool.from_dict(obj)
        usable = IPSet.parse(pool.spec.ips, pool.version) - IPSet.parse(pool.spec.exclude_ips, pool.version)
        allocated = {ip_to_int(ip, pool.version): rec for ip, rec in pool.allocated.items()}
        state = cls(pool, str(obj["metadata"].get("resourceVersion", "")), usable, allocated)
        state.set_released(ReleasedIPs.decode(pool.version, (obj.get("status") or {}).get("releasedIPs")))
        return state

    def with_spec_of(self, obj: dict[str, Any]) -> PoolState:
        """A state with ``obj``'s spec and metadata but this state's allocation records and
        released addresses (the engine is their only writer)."""
        fresh = PoolState.from_object(obj)
        fresh.allocated = dict(self.allocated)
        fresh.taken = IPSet.from_ints(fresh.version, fresh.allocated)
        fresh.set_released(self.released.copy())
        fresh._fragments, fresh._fragment_of = dict(self._fragments), dict(self._fragment_of)
        return fresh

    # facts --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.pool.name

    @property
    def version(self) -> int:
        return self.pool.version

    @property
    def prefixlen(self) -> int:
        if self._prefixlen is None:
            self._prefixlen = ipaddress.ip_network(self.pool.spec.subnet, strict=False).prefixlen
        return self._prefixlen

    @property
    def gateway(self) -> str | None:
        return self.pool.spec.gateway or None

    @property
    def routes(self) -> list[Route]:
        return list(self.pool.spec.routes)

    @property
    def terminating(self) -> bool:
        return self.pool.terminating

    def total(self, reserved: IPSet) -> int:
        """upstream ``totalIPCount``: usable addresses not reserved."""
        return (self.usable - reserved).count()

    def free_count(self, reserved: IPSet) -> int:
        return (self.usable - reserved - self.taken).count()

    # allocation ---------------------------------------------------------------------
    def lowest_free(self, reserved: IPSet) -> int | None:
        blocked = self.taken | reserved if reserved else self.taken
        return self.usable.lowest_not_in(blocked)

    def pick(self, blocked: IPSet, now: float = 0.0, delay: float = 0.0) -> int | None:
        """The next address to hand out, or None when the pool has no free one.

        ``blocked``: reserved and quarantined addresses. With a reuse ``delay`` (seconds)
        the addresses released less than ``delay`` ago at wall time ``now`` come last,
        the one released longest ago first among them; without one, the lowest free.
        """
        cooling = self.released
        self._not_cooling(cooling.expire(now, delay))
        if not len(cooling):
            return self.lowest_free(blocked)
        ip = self.usable.lowest_not_in(self.held_or_cooling | blocked if blocked else self.held_or_cooling)
        if ip is not None:
            return ip
        unavailable = self.taken | blocked if blocked else self.taken
        for candidate in cooling:  # every free address is cooling down: the oldest first
            if self.usable.contains_int(candidate) and not unavailable.contains_int(candidate):
                return candidate
        return None

    def _fragment(self, ip: int, rec: AllocationRecord) -> str:
        frag = self._fragments.get(ip)
        if frag is None or self._fragment_of.get(ip) is not rec:
            frag = json.dumps({int_to_ip(ip, self.version): rec.to_dict()}, separators=(",", ":"))[1:-1]
            self._fragments[ip] = frag
            self._fragment_of[ip] = rec
        return frag

    def record_bytes(self, ip: int, rec: AllocationRecord) -> int:
        """What the record adds to the stored object: its fragment escaped inside the
        ``allocatedIPs`` string, and a separator."""
        return len(json.dumps(self._fragment(ip, rec))) - 1

    def stored_bytes(self) -> int:
        """The size the ``allocatedIPs`` string takes in the stored object."""
        if self._bytes is None:
            self._bytes = sum(self.record_bytes(ip, rec) for ip, rec in self.allocated.items())
        return self._bytes

    def _account(self, ip: int, rec: AllocationRecord, sign: int) -> None:
        if self._bytes is not None:
            self._bytes += sign * self.record_bytes(ip, rec)

    def take(self, ip: int, record: AllocationRecord) -> None:
        if ip in self.allocated:
            raise ValueError(f"{int_to_ip(ip, self.version)} is already allocated in {self.name}")
        self.allocated[ip] = record
        self.taken = self.taken.with_(ip)
        self.held_or_cooling = self.held_or_cooling.with_(ip)
        self.released.discard(ip)
        self._account(ip, record, +1)

    def replace(self, ip: int, record: AllocationRecord) -> None:
        """Put another record on an allocated address (a sandbox takeover, a re-bind, an undo)."""
        old = self.allocated.get(ip)
        if old is not None:
            self._account(ip, old, -1)
        self.allocated[ip] = record
        self._account(ip, record, +1)

    def give_back(self, ip: int, released_at: float | None = None) -> AllocationRecord | None:
        """Drop the record but keep the address blocked until the release is durable.

        Otherwise a new request could take it while the release might still be rolled
        back; ``forget`` unblocks it once the release is written. ``released_at`` (wall
        time) starts the address's reuse delay; None when the pool has none."""
        rec = self.allocated.get(ip)
        if rec is not None:
            self._account(ip, rec, -1)
        self._fragments.pop(ip, None)
        record = self.allocated.pop(ip, None)
        if record is not None and released_at is not None:
            self._not_cooling(self.released.note(ip, released_at))
        return record

    def forget(self, ip: int) -> None:
        if ip not in self.allocated:
            self.taken = self.taken.without(ip)
            if self.released.released_at(ip) is None:
                self.held_or_cooling = self.held_or_cooling.without(ip)

    def restore(self, ip: int, record: AllocationRecord) -> None:
        self.allocated[ip] = record
        self.taken = self.taken.with_(ip)
        self.held_or_cooling = self.held_or_cooling.with_(ip)
        self.released.discard(ip)
        self._account(ip, record, +1)

    def address(self, ip: int) -> str:
        return f"{int_to_ip(ip, self.version)}/{self.prefixlen}"

    def status(self, reserved: IPSet) -> dict[str, Any]:
        """The pool's ``status`` (upstream shape). ``allocatedIPs`` is assembled from cached
        per-record JSON fragments, so a write costs a join, not a re-encode of every record."""
        status: dict[str, Any] = {
            "allocatedIPCount": len(self.allocated),
            "totalIPCount": self.total(reserved),
        }
        if self.allocated:
            parts = [self._fragment(ip, self.allocated[ip]) for ip in sorted(self.allocated)]
            status["allocatedIPs"] = "{" + ",".join(parts) + "}"
        if len(self.released):
            room = MAX_STATUS_BYTES - self.stored_bytes()
            released = self.released.encode(self.allocated, room)
            if released is not None:
                status["releasedIPs"] = released
        return status


def reserved_sets(objects: list[dict[str, Any]]) -> dict[int, IPSet]:
    """Union of every SpiderReservedIP's ``spec.ips`` per family (upstream's pkg/reservedipmanager)."""
    out = {4: IPSet.empty(4), 6: IPSet.empty(6)}
    for obj in objects:
        spec = obj.get("spec") or {}
        for text in spec.get("ips") or ():
            version = 6 if ":" in text else 4
            try:
                out[version] = out[version] | IPSet.parse([text], version)
            except ValueError:
                continue  # validation rejects these on apply; never let one block allocation
    return out
