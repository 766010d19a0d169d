"""What an ADD answers, built from the allocation records alone.

Owns the rule that makes a repeated ADD, a CHECK and the SpiderEndpoint agree after any
restart: the answer is a pure function of the persisted records (address, NIC, network,
clean gateway, the pod's annotation routes for the NIC) and the pool's current spec
(gateway, pool routes). Nothing the engine keeps only in memory enters it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from spiderpool_controller.domain.annotations import parse_routes
from spiderpool_controller.domain.models import AllocationRecord, Route
from spiderpool_controller.domain.pool_state import PoolState


@dataclass(frozen=True)
class Address:
    nic: str
    version: int
    address: str  # ip/prefixlen
    gateway: str | None
    pool: str
    clean_gateway: bool = False
    vlan: int = 0
    network: str = ""  # the CNI network the attachment was made through
    container_id: str = ""  # the sandbox holding the address now


@dataclass
class Allocation:
    ips: list[Address] = field(default_factory=list)
    routes: list[tuple[str, Route]] = field(default_factory=list)  # (nic, route)


HeldRecord = tuple[PoolState, int, AllocationRecord]


def address_of(state: PoolState, ip: int, rec: AllocationRecord) -> Address:
    clean = rec.clean_gateway
    return Address(
        nic=rec.interface,
        version=state.version,
        address=state.address(ip),
        gateway=None if clean else state.gateway,
        pool=state.name,
        clean_gateway=clean,
        network=rec.network,
        container_id=rec.container_id,
    )


def nic_routes(held: Iterable[HeldRecord]) -> list[Route]:
    """The NIC's routes: each pool's routes, then the pod's recorded annotation routes,
    without repeats, in that order."""
    out: list[Route] = []
    for state, _, _ in held:
        out.extend(r for r in state.routes if r not in out)
    for _, _, rec in held:
        out.extend(r for r in rec.routes if r not in out)
    return out


def answer(by_nic: Mapping[str, list[HeldRecord]]) -> Allocation:
    """The ADD answer for every NIC of an identity, NICs in name order."""
    out = Allocation()
    for nic in sorted(by_nic):
        held = by_nic[nic]
        out.ips.extend(address_of(state, ip, rec) for state, ip, rec in held)
        out.routes.extend((nic, r) for r in nic_routes(held))
    return out


def annotation_routes_for(annotations: Mapping[str, str], subnets: Iterable[str]) -> tuple[Route, ...]:
    """The pod's ``ipam.spidernet.io/routes`` whose gateway lies in one of a NIC's subnets
    (upstream: routes whose gateway matches no NIC are dropped)."""
    if not annotations:
        return ()
    nets = [ipaddress.ip_network(s, strict=False) for s in subnets]
    out: list[Route] = []
    for r in parse_routes(annotations):
        try:
            gw = ipaddress.ip_address(r.gw)
        except ValueError:
            continue
        if any(gw.version == net.version and gw in net for net in nets) and r not in out:
            out.append(r)
    return tuple(out)
