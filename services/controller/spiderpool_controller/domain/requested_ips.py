"""Requested addresses: whether the address a pod asked for may be granted, and if not, why.

Owns the rule behind CNI's ``ips`` capability (CONVENTIONS.md: ``runtimeConfig.ips``, which
Multus fills from a network selection element's ``"ips"`` and podman/nerdctl from ``--ip``)
and the ``IP=`` CNI_ARGS convention of host-local and static. Peers either
grant anything inside their one range (host-local, static: no notion of who may use which
addresses) or ignore the request (upstream Spiderpool). Here a request is judged against the
same pools pool selection gives the NIC, so every filter an automatic pick obeys (node,
namespace, pod and Multus affinity, disabled and terminating pools) binds it too.

Decisions:

- One address per family per NIC: a NIC holds one address of each family. A family the
  request does not name is picked as usual; a named family must have candidate pools.
- Granted when, in this order: a candidate pool of the NIC holds the address in
  ``spec.ips`` minus ``spec.excludeIPs``; a prefix length given with it (Multus and static
  write CIDRs) is the pool subnet's or a host prefix (/32, /128) -- the answer's prefix is
  always the subnet's, and another one means the request was written for another network;
  no SpiderReservedIP reserves it; no attachment holds it; the pool is below its record
  threshold (records, and bytes of its stored status). The first rule that fails is the
  answer: ``RequestedIPNotAllowed`` (code 108) says which pool and rule,
  ``RequestedIPInUse`` (109) names the holder, ``PoolExhausted`` (100) the threshold,
  ``Unavailable`` (11) an address whose release is not durable yet.
- The reuse delay and the conflict quarantine do not apply: both steer *automatic* picks
  away from an address; an operator who names one has decided (conflict detection, when
  on, still probes it before the ADD succeeds).
- Which pool: pools sharing a subnet never share addresses and subnets of one family never
  overlap unless identical (validation), so at most one pool holds a given address.
- Where a NIC's request comes from: the ADD's own NIC takes what the runtime passed (the
  agent sends it, from the capability or ``IP=``); a NIC the same ADD allocates ahead of its
  own ADD (the ``ippools`` annotation) takes its Multus selection element's ``"ips"``, the
  very list Multus will pass as that NIC's ``runtimeConfig.ips``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from spiderpool_common.errors import (
    InvalidAnnotation,
    InvalidRequest,
    PoolExhausted,
    RequestedIPInUse,
    RequestedIPNotAllowed,
    SpiderpoolError,
    Unavailable,
)

from spiderpool_controller.domain import annotations as anno
from spiderpool_controller.domain.ipset import IPSet, int_to_ip
from spiderpool_controller.domain.models import AllocationRecord
from spiderpool_controller.domain.pool_selection import NicCandidates, multus_resolver, rejection
from spiderpool_controller.domain.pool_state import PoolState
from spiderpool_controller.domain.request import AllocationRequest

_HOST_PREFIX = {4: 32, 6: 128}


@dataclass(frozen=True)
class RequestedIP:
    """One address asked for, as an integer of its family, with the prefix it was written with."""

    version: int
    value: int
    prefixlen: int | None  # None: written without a prefix
    text: str  # as the request wrote it

    @property
    def address(self) -> str:
        return int_to_ip(self.value, self.version)


def parse_requested(
    texts: Iterable[str], source: str, error: type[SpiderpoolError] = InvalidRequest
) -> dict[int, RequestedIP]:
    """``{version: address}`` from IP or CIDR texts; ``error`` names ``source`` for bad input.

    Refused: a text that is neither an IP nor a CIDR, and two different addresses of one
    family (a NIC gets one address per family). A repeated address counts once.
    """
    out: dict[int, RequestedIP] = {}
    for text in texts:
        try:
            iface = ipaddress.ip_interface(text.strip())
        except ValueError:
            raise error(f"{source}: {text!r} is not an IP address or CIDR") from None
        prefix = iface.network.prefixlen if "/" in text else None
        want = RequestedIP(iface.version, int(iface.ip), prefix, text.strip())
        seen = out.get(want.version)
        if seen is not None and seen.value != want.value:
            raise error(
                f"{source}: {seen.text} and {want.text} are both IPv{want.version}; "
                "an interface gets one address per family"
            )
        if seen is None:
            out[want.version] = want
    return out


def requested_for_nic(req: AllocationRequest, nic: str) -> dict[int, RequestedIP]:
    """The addresses asked for on ``nic``: the runtime's for the ADD's own NIC, the Multus
    selection element's ``"ips"`` for a NIC this ADD allocates ahead of its own ADD."""
    if nic == req.ifname:
        return parse_requested(req.requested_ips, f"requested IPs for {nic}")
    selection = anno.multus_selection_for_nic(req.pod_annotations, req.pod_namespace, nic)
    if selection is None or not selection.ips:
        return {}
    source = f"annotation {anno.MULTUS_NETWORKS}: ips of {selection.key} ({nic})"
    return parse_requested(selection.ips, source, InvalidAnnotation)


def _holder(rec: AllocationRecord) -> str:
    who = f"pod {rec.pod}" if rec.pod else f"container {rec.container_id}"
    return f"{who} (interface {rec.interface})" if rec.interface else who


@dataclass(frozen=True)
class Judge:
    """What judging a request needs besides the address: the NIC's candidates and the pools.

    ``why_not_candidate(pool)`` says why selection did not give the NIC that pool (built by
    ``judge_for`` from pool selection's own filter, so the reason reads the same).
    """

    nic: str
    candidates: NicCandidates
    pools: Mapping[str, PoolState]
    reserved: Callable[[int], IPSet]
    max_allocated: int
    why_not_candidate: Callable[[str, int], str]
    fits: Callable[[PoolState, int], bool] = lambda _state, _ip: True  # the status' byte limit

    def grant(self, want: RequestedIP) -> str:
        """The candidate pool that grants ``want``; raises naming the first rule that fails."""
        version, ip = want.version, want.value
        where = f"requested IPv{version} address {want.address} for {self.nic}"
        names: Sequence[str] = self.candidates.for_family(version)
        if not names:
            raise RequestedIPNotAllowed(f"{where}: the pod has no IPv{version} pool for {self.nic}")
        family = [s for s in self.pools.values() if s.version == version]
        owner = next((s for s in family if s.usable.contains_int(ip)), None)
        if owner is None:
            raise RequestedIPNotAllowed(f"{where}: {self._outside(ip, version, names)}")
        if owner.name not in names:
            raise RequestedIPNotAllowed(
                f"{where}: IPPool {owner.name} holds it, but {self.why_not_candidate(owner.name, version)}"
            )
        host = _HOST_PREFIX[version]
        if want.prefixlen is not None and want.prefixlen not in (owner.prefixlen, host):
            raise RequestedIPNotAllowed(
                f"{where}: asked as /{want.prefixlen}, but IPPool {owner.name}'s subnet is "
                f"{owner.pool.spec.subnet} (give the address alone, or with /{owner.prefixlen})"
            )
        if self.reserved(version).contains_int(ip):
            raise RequestedIPNotAllowed(f"{where}: it is reserved by a SpiderReservedIP")
        rec = owner.allocated.get(ip)
        if rec is not None:
            raise RequestedIPInUse(f"{where}: IPPool {owner.name} gave it to {_holder(rec)}")
        if owner.taken.contains_int(ip):
            raise Unavailable(f"{where}: its release in IPPool {owner.name} is being written; try again")
        if len(owner.allocated) >= self.max_allocated:
            raise PoolExhausted(
                f"{where}: IPPool {owner.name} holds {len(owner.allocated)} allocations, its threshold"
            )
        if not self.fits(owner, ip):
            raise PoolExhausted(f"{where}: IPPool {owner.name}'s status is at its size limit")
        return owner.name

    def _outside(self, ip: int, version: int, names: Sequence[str]) -> str:
        """Why no pool's usable set holds ``ip``: excluded or outside the candidates' ranges."""
        for name in names:
            state = self.pools.get(name)
            if state is None:
                continue
            spec = state.pool.spec
            if IPSet.parse(spec.ips, version).contains_int(ip):
                return f"spec.excludeIPs of IPPool {name} excludes it"
        in_subnet = [
            n
            for n in names
            if (s := self.pools.get(n)) is not None and IPSet.from_cidr(s.pool.spec.subnet).contains_int(ip)
        ]
        if in_subnet:
            return f"it is outside spec.ips of IPPool {', '.join(in_subnet)}"
        return f"it is in none of the pod's IPv{version} pools for {self.nic}: {', '.join(names)}"


def judge_for(
    req: AllocationRequest,
    candidates: NicCandidates,
    pools: Mapping[str, PoolState],
    reserved: Callable[[int], IPSet],
    max_allocated: int,
    *,
    fits: Callable[[PoolState, int], bool] = lambda _state, _ip: True,
) -> Judge:
    """A ``Judge`` for one NIC of ``req``, explaining dropped pools with selection's own words;
    ``fits`` says whether a pool's stored status has room for one more record."""
    multus_of = multus_resolver(req)

    def why_not(name: str, version: int) -> str:
        state = pools[name]
        reason = rejection(state.pool, version, req, candidates.nic, multus_of)
        if reason is not None:
            return reason
        chosen = ", ".join(candidates.for_family(version))
        source = candidates.source or "pool selection"
        return f"it is not among the IPPools {source} gives {candidates.nic}: {chosen}"

    return Judge(candidates.nic, candidates, pools, reserved, max_allocated, why_not, fits)


def matches_held(wanted: Mapping[int, RequestedIP], held: Iterable[tuple[int, int]]) -> bool:
    """Whether the held ``(version, ip)`` addresses are the requested ones, family by family."""
    by_family = dict(held)
    return all(by_family.get(v) == want.value for v, want in wanted.items())
