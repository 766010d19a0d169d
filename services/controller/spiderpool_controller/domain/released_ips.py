"""The reuse delay: a just-released address stays out of circulation for a while.

In underlay networks switches and hosts keep ARP/NDP entries for minutes; an address freed
by one pod and handed at once to another pod (another MAC) is unreachable until those
entries age out, because not every device honours the gratuitous ARP the new pod sends.
Peers hand the lowest free address straight back (whereabouts #288). Owns:

- the setting: the SpiderIPPool annotation ``ipam.spidernet.io/ip-reuse-delay-seconds``
  (an annotation, so upstream's CRDs and manifests stay valid; upstream has no such key),
  a whole number of seconds from 0 to 86400, falling back to the controller's
  ``--ip-reuse-delay-seconds`` (default 0: today's behaviour, nothing is remembered);
- the memory: ``ReleasedIPs``, each released address with its release time, oldest first,
  persisted in the pool's status as ``releasedIPs`` (a JSON string like ``allocatedIPs``,
  ``{"10.0.0.5": 1767225601}``) so the delay survives a controller restart. The time is
  wall-clock time in whole Unix seconds, rounded up (monotonic time means nothing to another
  process or after a reboot; whole seconds keep an entry at about 25 bytes). An entry goes
  once its delay has passed, when the address is taken again, and beyond ``MAX_ENTRIES``
  the oldest goes first (its delay is nearly over): at worst 1,000 entries of at most 55
  bytes (IPv6), so the status object, one write of up to 5,000 records, stays well below
  the API server's 1.5 MiB limit. The delay's real cost is these bytes in every status
  write of the pool while addresses cool down, not the pick;
- the order (``PoolState.pick``): the lowest free address that is not cooling down; when
  every free address is cooling down, the one released longest ago, so a full pool never
  fails because of the delay. Sets stay intervals (``ipset``): the cooling set and its
  union with the held addresses are kept address by address, never rebuilt.

What the delay does not touch: a StatefulSet or KubeVirt member re-getting its own address
(that is a re-bind, not a pick), an address a pod asks for by name (``requested_ips``), and
the idempotent answer of a repeated ADD.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from spiderpool_controller.domain.ipset import IPSet, int_to_ip, ip_to_int

ANNOTATION = "ipam.spidernet.io/ip-reuse-delay-seconds"
MAX_DELAY_S = 86_400
MAX_ENTRIES = 1_000
MAX_STATUS_ROOM = 1 << 20  # the default room; PoolState passes what its records leave
_FIELD_OVERHEAD = len('"releasedIPs":"{}",')


def parse_delay(text: str) -> int:
    """The annotation's value as seconds; ``ValueError`` says what is wrong."""
    value = text.strip()
    if not value.isdigit() or not value.isascii():
        raise ValueError(f"{text!r} is not a whole number of seconds")
    seconds = int(value)
    if seconds > MAX_DELAY_S:
        raise ValueError(f"{seconds} is more than {MAX_DELAY_S} seconds (one day)")
    return seconds


def reuse_delay_seconds(annotations: Mapping[str, str], default: float) -> float:
    """The pool's delay: its annotation when valid, else the controller's default.

    Validation refuses a bad value on apply; one that reached the store anyway (written
    around the webhook) must not stop allocation, so it counts as unset here.
    """
    text = annotations.get(ANNOTATION)
    if text is None:
        return default
    try:
        return float(parse_delay(text))
    except ValueError:
        return default


class ReleasedIPs:
    """Released addresses of one pool family with their release times, oldest first."""

    def __init__(self, version: int, entries: Mapping[int, float] | None = None) -> None:
        self.version = version
        ordered = sorted((entries or {}).items(), key=lambda item: item[1])
        self._at: dict[int, float] = dict(ordered[-MAX_ENTRIES:])
        self._fragments: dict[int, str] = {}  # ip -> '"ip":time' (status JSON, built once)
        self.cooling = IPSet.from_ints(version, self._at)

    def __len__(self) -> int:
        return len(self._at)

    def __iter__(self) -> Iterator[int]:
        """Addresses, oldest release first."""
        return iter(self._at)

    def released_at(self, ip: int) -> float | None:
        return self._at.get(ip)

    def note(self, ip: int, at: float) -> list[int]:
        """``ip`` was released at ``at`` (it moves to the newest end); return the oldest
        entries dropped to stay within ``MAX_ENTRIES``."""
        if self._at.pop(ip, None) is None:
            self.cooling = self.cooling.with_(ip)
        self._fragments.pop(ip, None)
        self._at[ip] = at
        dropped = []
        while len(self._at) > MAX_ENTRIES:
            oldest = next(iter(self._at))
            self.discard(oldest)
            dropped.append(oldest)
        return dropped

    def discard(self, ip: int) -> bool:
        """Forget ``ip``; whether it was remembered."""
        if self._at.pop(ip, None) is None:
            return False
        self._fragments.pop(ip, None)
        self.cooling = self.cooling.without(ip)
        return True

    def expire(self, now: float, delay: float) -> list[int]:
        """Forget the entries whose delay has passed (all of them when ``delay`` is 0); return them."""
        if delay <= 0:
            gone = list(self._at)
            if gone:
                self._at.clear()
                self._fragments.clear()
                self.cooling = IPSet.empty(self.version)
            return gone
        gone = []
        for ip, at in self._at.items():  # oldest first: stop at the first still cooling
            if at + delay > now:
                break
            gone.append(ip)
        for ip in gone:
            self.discard(ip)
        return gone

    def copy(self) -> ReleasedIPs:
        return ReleasedIPs(self.version, self._at)

    # persistence --------------------------------------------------------------------
    def encode(self, skip: Mapping[int, Any], room: int = MAX_STATUS_ROOM) -> str | None:
        """``status.releasedIPs``, without the addresses in ``skip`` (allocated again), in at
        most ``room`` bytes of the stored object: the newest entries first, the oldest left
        out when it is short (their delay is nearly over; the memory keeps them).

        Each entry's JSON is built once and cached, so a status write costs a join."""
        budget = room - _FIELD_OVERHEAD
        parts: list[str] = []
        for ip in reversed(self._at):
            if ip in skip:
                continue
            fragment = self._fragments.get(ip)
            if fragment is None:
                # whole seconds, rounded up: the delay is whole seconds and never ends early
                at = math.ceil(self._at[ip])
                fragment = self._fragments[ip] = f'"{int_to_ip(ip, self.version)}":{at}'
            budget -= len(fragment) + 3  # stored inside a JSON string: two escaped quotes, a comma
            if budget < 0:
                break
            parts.append(fragment)
        parts.reverse()
        return "{" + ",".join(parts) + "}" if parts else None

    @classmethod
    def decode(cls, version: int, text: Any) -> ReleasedIPs:
        """Read ``status.releasedIPs``; entries that do not parse are dropped, never fatal."""
        entries: dict[int, float] = {}
        raw: Any = None
        if isinstance(text, str) and text:
            try:
                raw = json.loads(text)
            except ValueError:
                raw = None
        if isinstance(raw, dict):
            for ip_text, at in raw.items():
                if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
                    continue
                try:
                    entries[ip_to_int(str(ip_text), version)] = float(at)
                except ValueError:
                    continue
        return cls(version, entries)
