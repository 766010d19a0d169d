"""IP sets as intervals: parsing, algebra against Python sets, and size-independent cost."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spiderpool_controller.domain.ipset import IPSet, int_to_ip, ip_to_int, parse_range

small_ranges = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 8)).map(lambda t: (t[0], t[0] + t[1])), max_size=6
)


def as_set(intervals: list[tuple[int, int]]) -> set[int]:
    return {v for lo, hi in intervals for v in range(lo, hi + 1)}


def members(s: IPSet) -> set[int]:
    return as_set(list(s.intervals))


def test_parses_single_addresses_and_ranges_of_both_families() -> None:
    """``a.b.c.d`` and ``a-b`` forms parse for IPv4 and IPv6, into inclusive intervals."""
    assert parse_range("10.0.0.1") == (4, (ip_to_int("10.0.0.1"), ip_to_int("10.0.0.1")))
    assert parse_range("10.0.0.1-10.0.0.9")[1][1] - parse_range("10.0.0.1-10.0.0.9")[1][0] == 8
    assert parse_range("fd00::1-fd00::ff")[0] == 6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.9-10.0.0.1", "start is after end"),
        ("10.0.0.1-fd00::1", "mixes IPv4 and IPv6"),
        ("10.0.0.300", "is not a valid IP address"),
        ("10.0.0.1-10.0.0.2-10.0.0.3", "expected 'IP' or 'IP-IP'"),
        ("", "is not an IP range"),
    ],
)
def test_bad_ranges_are_rejected_naming_the_text(text: str, message: str) -> None:
    """A malformed range raises ValueError that says what is wrong with which text."""
    with pytest.raises(ValueError, match=message):
        parse_range(text)


def test_a_range_of_the_wrong_family_is_rejected() -> None:
    """Parsing IPv6 text into an IPv4 set fails clearly."""
    with pytest.raises(ValueError, match="is not an IPv4 address"):
        IPSet.parse(["fd00::1"], 4)


def test_ranges_are_normalised_sorted_and_merged() -> None:
    """Overlapping and adjacent ranges merge, as upstream's webhook normalises spec.ips."""
    s = IPSet.parse(["10.0.0.5-10.0.0.9", "10.0.0.1", "10.0.0.2-10.0.0.4", "10.0.0.20"], 4)
    assert s.to_ranges() == ["10.0.0.1-10.0.0.9", "10.0.0.20"]
    assert s.count() == 10


@given(small_ranges, small_ranges)
def test_union_difference_intersection_agree_with_python_sets(
    a: list[tuple[int, int]], b: list[tuple[int, int]]
) -> None:
    """Interval algebra gives exactly the members plain set algebra gives."""
    x, y = IPSet.from_intervals(4, a), IPSet.from_intervals(4, b)
    assert members(x | y) == as_set(a) | as_set(b)
    assert members(x - y) == as_set(a) - as_set(b)
    assert members(x & y) == as_set(a) & as_set(b)
    assert x.overlaps(y) == bool(as_set(a) & as_set(b))
    assert x.issubset(y) == (as_set(a) <= as_set(b))
    assert x.count() == len(as_set(a))


@given(small_ranges, small_ranges)
def test_lowest_not_in_is_the_minimum_of_the_difference(
    a: list[tuple[int, int]], b: list[tuple[int, int]]
) -> None:
    """The next address to allocate is the lowest member not taken, or None when all are."""
    x, y = IPSet.from_intervals(4, a), IPSet.from_intervals(4, b)
    free = as_set(a) - as_set(b)
    assert x.lowest_not_in(y) == (min(free) if free else None)


@given(small_ranges, st.integers(0, 80))
def test_membership_and_single_address_updates(a: list[tuple[int, int]], v: int) -> None:
    """contains, with_ and without behave like set membership, add and discard."""
    x = IPSet.from_intervals(4, a)
    one = IPSet(4, ((v, v),))
    assert (v in x) == (v in as_set(a))
    assert members(x.with_(v)) == as_set(a) | {v}
    assert members(x.without(v)) == as_set(a) - {v}
    assert x.with_(v) == x | one  # normalised: sorted, merged, nothing adjacent left apart
    assert x.without(v) == x - one


def test_string_membership_checks_the_family() -> None:
    """An IPv6 string is never a member of an IPv4 set, and garbage is simply not a member."""
    s = IPSet.parse(["10.0.0.1-10.0.0.9"], 4)
    assert "10.0.0.5" in s
    assert "::ffff:10.0.0.5" not in s
    assert "not-an-ip" not in s


def test_an_ipv6_slash_64_costs_the_same_as_a_slash_24() -> None:
    """A /64 has 2**64 addresses: counting, taking the lowest and removing one stay O(intervals)."""
    huge = IPSet.from_cidr("fd00:1::/64")
    assert huge.count() == 2**64
    taken = IPSet.empty(6)
    for _ in range(1000):
        low = huge.lowest_not_in(taken)
        assert low is not None
        taken = taken.with_(low)
    assert len(taken.intervals) == 1  # a thousand consecutive allocations are one interval
    assert int_to_ip(taken.intervals[0][1], 6) == "fd00:1::3e7"
    rest = huge - taken
    assert rest.count() == 2**64 - 1000
    assert rest.lowest_ip() == "fd00:1::3e8"


def test_a_slash_8_pool_is_a_single_interval() -> None:
    """A /8 parses to one interval, whatever its size, and converts back to its range text."""
    s = IPSet.parse(["10.0.0.0-10.255.255.255"], 4)
    assert s.intervals == ((ip_to_int("10.0.0.0"), ip_to_int("10.255.255.255")),)
    assert s.count() == 2**24
    assert s == IPSet.from_cidr("10.0.0.0/8")
    assert ipaddress.ip_address(int_to_ip(s.intervals[0][1], 4)) == ipaddress.ip_address("10.255.255.255")


def test_mixing_families_is_an_error() -> None:
    """Combining an IPv4 and an IPv6 set is refused rather than silently wrong."""
    with pytest.raises(ValueError, match="cannot combine IPv4 and IPv6"):
        IPSet.parse(["10.0.0.1"], 4) | IPSet.parse(["fd00::1"], 6)
