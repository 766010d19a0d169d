"""Sets of IP addresses as sorted, disjoint, non-adjacent closed intervals of integers.

Owns the IP arithmetic of the whole controller. A /8 or an IPv6 /64 costs the same as a
/24 because no address list is ever materialised (upstream issue #3541: allocation took
minutes on a /10 pool because range strings were expanded into address lists).
Values are immutable; every operation is linear in the number of intervals.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

Interval = tuple[int, int]

_MAX = {4: (1 << 32) - 1, 6: (1 << 128) - 1}


def parse_ip(text: str, version: int | None = None) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse one address, optionally of a given family; errors name the offending text."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a valid IP address") from None
    if version is not None and addr.version != version:
        raise ValueError(f"{text!r} is not an IPv{version} address")
    return addr


def ip_to_int(text: str, version: int | None = None) -> int:
    """The address as an integer. Canonical text (what the pools' records hold) takes a fast
    path through ``inet_pton``, ten times cheaper than ``ipaddress``: a controller loading
    10,000 records at start parses 10,000 of them."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    if version is None or version == (6 if family == socket.AF_INET6 else 4):
        try:
            return int.from_bytes(socket.inet_pton(family, text), "big")
        except OSError:
            pass  # not canonical: the full parser decides, and words the error
    return int(parse_ip(text, version))


def int_to_ip(value: int, version: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def parse_range(text: str, version: int | None = None) -> tuple[int, Interval]:
    """Parse ``a.b.c.d`` or ``a.b.c.d-a.b.c.e`` (either family); return (version, interval)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{text!r} is not an IP range")
    parts = text.split("-")
    if len(parts) == 1:
        addr = parse_ip(parts[0], version)
        return addr.version, (int(addr), int(addr))
    if len(parts) != 2:
        raise ValueError(f"{text!r} is not an IP range: expected 'IP' or 'IP-IP'")
    start, end = parse_ip(parts[0], version), parse_ip(parts[1], version)
    if start.version != end.version:
        raise ValueError(f"{text!r} mixes IPv4 and IPv6")
    if int(start) > int(end):
        raise ValueError(f"{text!r} is not an IP range: start is after end")
    return start.version, (int(start), int(end))


def _normalise(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """Sort and merge overlapping or adjacent intervals."""
    out: list[Interval] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class IPSet:
    """An immutable set of addresses of one IP family."""

    version: int
    intervals: tuple[Interval, ...] = ()

    # construction -----------------------------------------------------------------
    @classmethod
    def empty(cls, version: int) -> IPSet:
        return cls(version, ())

    @classmethod
    def from_intervals(cls, version: int, intervals: Iterable[Interval]) -> IPSet:
        return cls(version, _normalise(intervals))

    @classmethod
    def parse(cls, ranges: Iterable[str], version: int) -> IPSet:
        """Parse upstream range strings (``IP`` or ``IP-IP``) of one family."""
        return cls.from_intervals(version, (parse_range(r, version)[1] for r in ranges))

    @classmethod
    def from_cidr(cls, cidr: str, *, strict: bool = False) -> IPSet:
        net = ipaddress.ip_network(cidr, strict=strict)
        return cls(net.version, ((int(net.network_address), int(net.broadcast_address)),))

    @classmethod
    def from_ints(cls, version: int, values: Iterable[int]) -> IPSet:
        return cls.from_intervals(version, ((v, v) for v in values))

    # set algebra --------------------------------------------------------------------
    def _check(self, other: IPSet) -> None:
        if other.version != self.version:
            raise ValueError(f"cannot combine IPv{self.version} and IPv{other.version} sets")

    def union(self, other: IPSet) -> IPSet:
        self._check(other)
        return IPSet.from_intervals(self.version, self.intervals + other.intervals)

    __or__ = union

    def difference(self, other: IPSet) -> IPSet:
        self._check(other)
        out: list[Interval] = []
        cut = other.intervals
        j = 0
        for lo, hi in self.intervals:
            while j < len(cut) and cut[j][1] < lo:
                j += 1
            k = j
            cur = lo
            while k < len(cut) and cut[k][0] <= hi:
                if cut[k][0] > cur:
                    out.append((cur, cut[k][0] - 1))
                cur = max(cur, cut[k][1] + 1)
                k += 1
            if cur <= hi:
                out.append((cur, hi))
        return IPSet(self.version, tuple(out))

    __sub__ = difference

    def intersection(self, other: IPSet) -> IPSet:
        self._check(other)
        out: list[Interval] = []
        a, b = self.intervals, other.intervals
        i = j = 0
        while i < len(a) and j < len(b):
            lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if lo <= hi:
                out.append((lo, hi))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return IPSet(self.version, tuple(out))

    __and__ = intersection

    def overlaps(self, other: IPSet) -> bool:
        return bool(self.intersection(other).intervals)

    def issubset(self, other: IPSet) -> bool:
        return not self.difference(other).intervals

    # queries ------------------------------------------------------------------------
    def contains_int(self, value: int) -> bool:
        i = bisect.bisect_right(self.intervals, (value, _MAX[6] + 1)) - 1
        return i >= 0 and self.intervals[i][0] <= value <= self.intervals[i][1]

    def __contains__(self, item: object) -> bool:
        if isinstance(item, int):
            return self.contains_int(item)
        if isinstance(item, str):
            try:
                addr = parse_ip(item)
            except ValueError:
                return False
            return addr.version == self.version and self.contains_int(int(addr))
        return False

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def __len__(self) -> int:
        total = self.count()
        if total > (1 << 62):  # len() must fit a C ssize_t; use count() for huge IPv6 sets
            raise OverflowError("IPv6 set too large for len(); use count()")
        return total

    def count(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.intervals)

    def lowest(self) -> int | None:
        return self.intervals[0][0] if self.intervals else None

    def lowest_ip(self) -> str | None:
        low = self.lowest()
        return None if low is None else int_to_ip(low, self.version)

    def lowest_not_in(self, taken: IPSet) -> int | None:
        """The lowest member not in ``taken``, without building the whole difference."""
        self._check(taken)
        cut = taken.intervals
        for lo, hi in self.intervals:
            cur = lo
            j = bisect.bisect_right(cut, (cur, _MAX[6] + 1)) - 1
            j = max(j, 0)
            while j < len(cut) and cut[j][0] <= cur:
                if cut[j][1] >= cur:
                    cur = cut[j][1] + 1
                j += 1
            if cur <= hi:
                return cur
        return None

    def without(self, value: int) -> IPSet:
        """The set less one address: a bisect and a copy of the tuple, no re-normalising
        (the engine calls it on every release, on sets of thousands of intervals)."""
        iv = self.intervals
        i = bisect.bisect_right(iv, (value, _MAX[6] + 1)) - 1
        if i < 0 or iv[i][1] < value:
            return self
        lo, hi = iv[i]
        parts = tuple(part for part in ((lo, value - 1), (value + 1, hi)) if part[0] <= part[1])
        return IPSet(self.version, iv[:i] + parts + iv[i + 1 :])

    def with_(self, value: int) -> IPSet:
        """The set plus one address, merged with an adjacent interval on either side."""
        iv = self.intervals
        i = bisect.bisect_right(iv, (value, _MAX[6] + 1))  # iv[i - 1] starts at or before value
        if i > 0 and iv[i - 1][1] >= value:
            return self
        joins_left = i > 0 and iv[i - 1][1] + 1 == value
        joins_right = i < len(iv) and iv[i][0] - 1 == value
        lo = iv[i - 1][0] if joins_left else value
        hi = iv[i][1] if joins_right else value
        start = i - 1 if joins_left else i
        end = i + 1 if joins_right else i
        return IPSet(self.version, (*iv[:start], (lo, hi), *iv[end:]))

    def addresses(self, limit: int | None = None) -> Iterator[str]:
        """Iterate addresses in order (bounded by ``limit``); for display and tests only."""
        n = 0
        for lo, hi in self.intervals:
            for v in range(lo, hi + 1):
                if limit is not None and n >= limit:
                    return
                yield int_to_ip(v, self.version)
                n += 1

    def to_ranges(self) -> list[str]:
        """Upstream's normalised range strings: ``IP`` or ``IP-IP``, sorted and merged."""
        out = []
        for lo, hi in self.intervals:
            a = int_to_ip(lo, self.version)
            out.append(a if lo == hi else f"{a}-{int_to_ip(hi, self.version)}")
        return out
