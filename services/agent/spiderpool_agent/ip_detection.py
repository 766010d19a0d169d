"""IP-conflict and gateway detection for the IPAM ADD, and the announcement after it.

Owns what upstream's IPAM plugin does between allocating and answering (upstream's
pkg/ipam/allocate.go and pkg/networking/networking/ipam_detection.go): when the controller's
switches ride on the allocated IPs
(``detect_ip_conflict`` / ``detect_gateway``), the NIC the main plugin just created in the
pod's namespace is brought up and

* every address is probed first (ARP probe for IPv4, DAD neighbour solicitation for IPv6):
  an answer from another MAC is a conflict (code 103);
* then every gateway is asked (ARP request / neighbour solicitation, not ICMP: upstream
  #3535); silence is "unreachable" (code 104). Conflicts go first because probing both at
  once poisoned neighbours' caches (upstream #4475);
* after success the addresses are announced (gratuitous ARP / unsolicited neighbour
  advertisement, upstream #4650): bringing the link up early means the kernel will not
  announce them itself. Best effort, and only when the link was brought up here.

Each probe is ``Tries`` (3 x 100 ms, upstream's numbers); the families are probed in
parallel. The address need not be on the link: the probes are raw frames from the
coordinator library's ``detection`` module, whose blocking work runs in threads that join
the pod's namespace, never on the event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Protocol

from spiderpool_coordinator import detection, namespaces, netlink
from spiderpool_coordinator.detection import IPAddress, Tries
from spiderpool_coordinator.errors import CoordinatorError

from spiderpool_agent.cni_result import AllocatedIP


class DetectableIP(AllocatedIP, Protocol):
    """An allocated IP with the controller's detection switches (``ipam_pb2.IPConfig``)."""

    @property
    def detect_ip_conflict(self) -> bool: ...
    @property
    def detect_gateway(self) -> bool: ...


@dataclass(frozen=True)
class Probes:
    """What to probe for one NIC: its addresses (conflict) and (address, gateway) pairs."""

    conflicts: tuple[IPAddress, ...] = ()
    gateways: tuple[tuple[IPAddress, IPAddress], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.conflicts or self.gateways)

    @property
    def addresses(self) -> list[IPAddress]:
        """Every address involved, in order, once (what the announcement covers)."""
        return list(dict.fromkeys((*self.conflicts, *(ip for ip, _ in self.gateways))))


def plan_probes(ips: Iterable[DetectableIP], ifname: str, *, clean_gateway: bool = False) -> Probes:
    """The probes ``ifname``'s allocated IPs ask for; a cleaned gateway is never probed."""
    conflicts: list[IPAddress] = []
    gateways: list[tuple[IPAddress, IPAddress]] = []
    for ip in ips:
        if ip.nic != ifname:
            continue
        address = ipaddress.ip_interface(ip.address).ip
        if ip.detect_ip_conflict:
            conflicts.append(address)
        if ip.detect_gateway and ip.gateway and not (clean_gateway or ip.clean_gateway):
            gateways.append((address, ipaddress.ip_address(ip.gateway)))
    return Probes(tuple(conflicts), tuple(gateways))


class Detector(Protocol):
    """Runs the probes in a pod's namespace; raises ``CoordinatorError`` (103/104/120)."""

    async def verify(self, netns: str, ifname: str, probes: Probes) -> None: ...
    async def announce(self, netns: str, ifname: str, ips: list[IPAddress]) -> None: ...


def _link_up(netns: str, ifname: str) -> str:
    """Bring ``ifname`` up in ``netns`` (the main plugin left it down) and return its MAC."""
    try:
        ipr = namespaces.iproute(netns)
    except FileNotFoundError:
        raise CoordinatorError(f"network namespace {netns} does not exist") from None
    try:
        link = netlink.get_link(ipr, name=ifname)
        if link is None:
            raise CoordinatorError(
                f"interface {ifname} not found in {netns}: the main plugin must create it before IPAM"
            )
        if not link.up:
            netlink.set_link(ipr, link, state="up")
        return link.mac
    finally:
        ipr.close()


async def _all(calls: Iterable[Awaitable[None]]) -> None:
    """Await every call; then raise the first failure (no probe is left running behind us)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class NetnsDetector:
    """The real ``Detector``: raw ARP/NDP frames on the pod's NIC, via the coordinator library."""

    def __init__(self, tries: Tries | None = None) -> None:
        self.tries = tries or Tries()

    async def verify(self, netns: str, ifname: str, probes: Probes) -> None:
        mac = await asyncio.to_thread(_link_up, netns, ifname)
        tries = self.tries
        await _all(
            asyncio.to_thread(detection.check_conflicts, netns, ifname, mac, [ip], tries)
            for ip in probes.conflicts
        )
        await _all(
            asyncio.to_thread(detection.check_gateways, netns, ifname, mac, [pair], tries)
            for pair in probes.gateways
        )

    async def announce(self, netns: str, ifname: str, ips: list[IPAddress]) -> None:
        mac = await asyncio.to_thread(_link_up, netns, ifname)
        await asyncio.to_thread(detection.announce_in, netns, ifname, mac, ips)
