"""The reuse delay's memory and order, as pure functions of an injected wall time."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from spiderpool_controller.domain.ipset import IPSet, ip_to_int
from spiderpool_controller.domain.models import AllocationRecord, new_object
from spiderpool_controller.domain.pool_state import PoolState
from spiderpool_controller.domain.released_ips import (
    ANNOTATION,
    MAX_ENTRIES,
    ReleasedIPs,
    reuse_delay_seconds,
)

NONE = IPSet.empty(4)
T0 = 1_767_225_600.0  # a wall-clock instant (Unix seconds)


def ip(last: int) -> int:
    return ip_to_int(f"10.0.0.{last}")


def state(first: int = 1, last: int = 5, status: dict[str, Any] | None = None) -> PoolState:
    spec = {"ipVersion": 4, "subnet": "10.0.0.0/24", "ips": [f"10.0.0.{first}-10.0.0.{last}"]}
    obj = new_object("SpiderIPPool", "p", spec=spec, status=status or {})
    obj["metadata"]["resourceVersion"] = "1"
    return PoolState.from_object(obj)


def rec(n: int) -> AllocationRecord:
    return AllocationRecord(f"ns/pod-{n}", f"uid-{n}")


def hold_and_release(s: PoolState, last: int, at: float) -> None:
    s.take(ip(last), rec(last))
    s.give_back(ip(last), at)
    s.forget(ip(last))


def test_a_released_address_comes_after_every_other_free_one_until_its_delay_passes() -> None:
    """.1 released at T0 with a 300 s delay: picks give .2 until T0+300, then .1 again."""
    s = state()
    hold_and_release(s, 1, T0)
    assert s.pick(NONE, T0 + 10, 300) == ip(2)
    assert s.pick(NONE, T0 + 299.9, 300) == ip(2)
    assert s.pick(NONE, T0 + 300, 300) == ip(1)
    assert len(s.released) == 0


def test_when_only_cooling_addresses_are_free_the_oldest_released_goes_first() -> None:
    """A full pool never fails over the delay: the address released longest ago is handed out."""
    s = state(1, 3)
    for last in (1, 2, 3):
        s.take(ip(last), rec(last))
    for last, at in ((3, T0), (1, T0 + 5), (2, T0 + 9)):
        s.give_back(ip(last), at)
        s.forget(ip(last))
    assert s.pick(NONE, T0 + 10, 300) == ip(3)
    s.take(ip(3), rec(30))
    assert s.pick(NONE, T0 + 10, 300) == ip(1)
    assert s.pick(IPSet.from_ints(4, [ip(1)]), T0 + 10, 300) == ip(2)  # blocked ones are skipped
    s.take(ip(1), rec(10))
    s.take(ip(2), rec(20))
    assert s.pick(NONE, T0 + 10, 300) is None


def test_delay_zero_hands_the_lowest_back_and_forgets_what_was_remembered() -> None:
    """Without a delay nothing is remembered: the lowest free address comes straight back."""
    s = state()
    hold_and_release(s, 1, T0)
    assert s.pick(NONE, T0 + 1, 0) == ip(1)
    assert len(s.released) == 0
    s.take(ip(1), rec(1))
    s.give_back(ip(1), None)  # the engine passes no release time when the pool has no delay
    assert len(s.released) == 0
    assert "releasedIPs" not in s.status(NONE)


def test_release_times_round_trip_through_the_status_and_skip_reallocated_addresses() -> None:
    """status.releasedIPs holds each cooling address with its time; a loaded state honours it."""
    s = state()
    hold_and_release(s, 1, T0)
    hold_and_release(s, 2, T0 + 1.25)
    s.take(ip(2), rec(22))  # taken again: no longer cooling, not written
    status = s.status(NONE)
    assert json.loads(status["releasedIPs"]) == {"10.0.0.1": T0}
    reloaded = state(status=status)
    assert reloaded.released.released_at(ip(1)) == T0
    assert reloaded.pick(NONE, T0 + 10, 300) == ip(3)  # .1 cooling, .2 held


def test_the_memory_is_bounded_and_drops_the_oldest() -> None:
    """Past MAX_ENTRIES releases the oldest entries go (their delay is nearly over)."""
    memory = ReleasedIPs(4)
    for n in range(MAX_ENTRIES + 5):
        memory.note(n, T0 + n)
    assert len(memory) == MAX_ENTRIES
    assert next(iter(memory)) == 5
    assert memory.cooling.count() == MAX_ENTRIES


def test_a_damaged_released_ips_field_is_read_as_far_as_it_goes() -> None:
    """Garbage in status.releasedIPs never stops the pool: bad entries are dropped."""
    text = json.dumps({"10.0.0.1": T0, "nonsense": T0, "10.0.0.2": "soon", "10.0.0.3": True, "fd00::1": T0})
    assert list(ReleasedIPs.decode(4, text)) == [ip(1)]
    assert len(ReleasedIPs.decode(4, "{not json")) == 0
    assert len(ReleasedIPs.decode(4, 42)) == 0


def test_the_pool_annotation_overrides_the_default_and_a_bad_one_falls_back() -> None:
    """The annotation wins over the controller's default; an invalid value counts as unset."""
    assert reuse_delay_seconds({}, 30) == 30
    assert reuse_delay_seconds({ANNOTATION: "0"}, 30) == 0
    assert reuse_delay_seconds({ANNOTATION: "120"}, 0) == 120
    assert reuse_delay_seconds({ANNOTATION: "two minutes"}, 30) == 30


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["take", "release", "wait"]), st.integers(1, 8), st.integers(0, 200)),
        max_size=60,
    )
)
def test_picks_prefer_addresses_out_of_their_delay_and_never_a_held_one(
    steps: list[tuple[str, int, int]],
) -> None:
    """Whatever happened, a pick is free; it is cooling only when every free address is, and then
    it is the one released longest ago; the incremental union of held and cooling stays exact."""
    s, now, delay = state(1, 8), T0, 100.0
    held: set[int] = set()
    for action, last, amount in steps:
        if action == "take" and ip(last) not in held:
            s.take(ip(last), rec(last))
            held.add(ip(last))
        elif action == "release" and ip(last) in held:
            s.give_back(ip(last), now)
            s.forget(ip(last))
            held.discard(ip(last))
        elif action == "wait":
            now += amount
        picked = s.pick(NONE, now, delay)
        assert s.held_or_cooling == s.taken | s.released.cooling  # kept address by address
        free = {ip(n) for n in range(1, 9)} - held
        cooling = {a for a in free if (at := s.released.released_at(a)) is not None and at + delay > now}
        if not free:
            assert picked is None
            continue
        assert picked in free
        if free - cooling:
            assert picked == min(free - cooling)
        else:
            assert picked == min(cooling, key=lambda a: s.released.released_at(a) or 0.0)


def size_in_status(text: str) -> int:
    """The bytes the field takes in the stored status object: a JSON string, quotes escaped."""
    return len(json.dumps({"releasedIPs": text}, separators=(",", ":"))) - 1  # one brace of two, a comma


def test_the_persisted_list_fits_the_room_the_records_leave_newest_first() -> None:
    """releasedIPs takes only the bytes below the status limit: the newest entries, in age order;
    the oldest stay in memory but are not written."""
    memory = ReleasedIPs(4)
    for last in range(1, 11):
        memory.note(ip(last), T0 + last)
    everything = memory.encode({})
    assert everything is not None
    assert list(json.loads(everything)) == [f"10.0.0.{n}" for n in range(1, 11)]
    stored = size_in_status(everything)
    tight = memory.encode({}, room=stored // 2)
    assert tight is not None
    kept = list(json.loads(tight))
    assert kept == [f"10.0.0.{n}" for n in range(11 - len(kept), 11)]
    assert 0 < len(kept) < 10
    assert size_in_status(tight) <= stored // 2
    assert memory.encode({}, room=10) is None
    assert len(memory) == 10
