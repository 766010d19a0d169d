"""IP conflict and gateway detection with ARP/NDP, and the announcement of the pod's addresses.

Owns the raw frames (upstream's pkg/networking/networking/ipam_detection.go). Everything runs on
``AF_PACKET`` sockets created
inside the pod's namespace and bound to the pod's NIC, so the probes leave exactly where
the pod's traffic will, and the sender's MAC of every answer is visible:

* conflict: an ARP probe (sender IP 0.0.0.0) or a DAD-style neighbour solicitation (source
  ``::``) for each of the pod's addresses; an answer from another MAC is a conflict;
* gateway: an ARP request or neighbour solicitation for the gateway; any answer means
  reachable (ARP/NDP, not ICMP, which networks often filter: upstream #3535);
* announce: a gratuitous ARP or an unsolicited neighbour advertisement per address, so
  neighbours that cached an earlier pod's MAC for the address learn the new one (#4650).

Each probe is tried ``retries`` times with ``timeout`` seconds per try. Conflict checks run
before the gateway check: probing both at once poisoned neighbours' caches (upstream #4475).

Packet sockets are cheap to use and dear to bind and close: the kernel waits for an RCU
grace period (``synchronize_net``, 5-20 ms measured here) when a socket created for a
protocol is re-bound to a device, and again when any packet socket is released. So sockets
are created for no protocol and then bound to (device, protocol), which skips the first
wait, and are closed by a short-lived thread of their own once their frames are sent,
which takes the second off the CNI call: the announcement has left the NIC when ADD
answers, exactly as before. The closing thread is not a daemon, so a process exiting still
closes every socket.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
from dataclasses import dataclass

from spiderpool_coordinator import namespaces
from spiderpool_coordinator.errors import CoordinatorError, GatewayUnreachable, IPConflict

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
BROADCAST = b"\xff" * 6
_ICMPV6_NS, _ICMPV6_NA = 135, 136

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Tries:
    """How often a probe is sent and how long each try waits (upstream: 3 x 100 ms)."""

    count: int = 3
    timeout: float = 0.1


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _open(ifname: str, proto: int, timeout: float) -> socket.socket:
    """A packet socket on ``ifname`` for ``proto``, created for no protocol first (see above)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.bind((ifname, proto))
    except OSError:
        _close_later(sock)
        raise
    sock.settimeout(timeout)
    return sock


def _close_later(sock: socket.socket) -> None:
    """Close ``sock`` in a thread of its own: the kernel's grace period is not the caller's."""
    threading.Thread(target=sock.close, name="packet-socket-close").start()


# ---------------------------------------------------------------------------------------
# frames


def arp_frame(op: int, mac: bytes, spa: IPAddress, tpa: IPAddress, dst: bytes = BROADCAST) -> bytes:
    tha = b"\x00" * 6 if op == 1 else dst
    eth = dst + mac + struct.pack("!H", ETH_P_ARP)
    return eth + struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + spa.packed + tha + tpa.packed


def _solicited_node(ip: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + ip.packed[-3:])


def _icmpv6_checksum(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, payload: bytes) -> int:
    data = src.packed + dst.packed + struct.pack("!I3xB", len(payload), 58) + payload
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _ipv6_frame(
    mac: bytes, dst_mac: bytes, src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, icmp: bytes
) -> bytes:
    checksum = _icmpv6_checksum(src, dst, icmp)
    icmp = icmp[:2] + struct.pack("!H", checksum) + icmp[4:]
    header = struct.pack("!IHBB", 6 << 28, len(icmp), 58, 255) + src.packed + dst.packed
    return dst_mac + mac + struct.pack("!H", ETH_P_IPV6) + header + icmp


def ns_frame(mac: bytes, src: ipaddress.IPv6Address, target: ipaddress.IPv6Address) -> bytes:
    """A neighbour solicitation; from ``::`` (a DAD probe) it carries no link-layer option."""
    dst = _solicited_node(target)
    icmp = struct.pack("!BBHI", _ICMPV6_NS, 0, 0, 0) + target.packed
    if not src.is_unspecified:
        icmp += struct.pack("!BB", 1, 1) + mac
    return _ipv6_frame(mac, b"\x33\x33" + dst.packed[-4:], src, dst, icmp)


def unsolicited_na_frame(mac: bytes, ip: ipaddress.IPv6Address) -> bytes:
    dst = ipaddress.IPv6Address("ff02::1")
    icmp = struct.pack("!BBHI", _ICMPV6_NA, 0, 0, 0x20 << 24) + ip.packed + struct.pack("!BB", 2, 1) + mac
    return _ipv6_frame(mac, b"\x33\x33\x00\x00\x00\x01", ip, dst, icmp)


def parse_answer(frame: bytes) -> tuple[IPAddress, bytes] | None:
    """(address answered for, sender MAC) of an ARP reply or a neighbour advertisement."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack("!H", frame[12:14])[0]
    if ethertype == ETH_P_ARP and len(frame) >= 42 and struct.unpack("!H", frame[20:22])[0] == 2:
        return ipaddress.IPv4Address(frame[28:32]), frame[22:28]
    if ethertype == ETH_P_IPV6 and len(frame) >= 78 and frame[20] == 58 and frame[54] == _ICMPV6_NA:
        return ipaddress.IPv6Address(frame[62:78]), frame[6:12]
    return None


# ---------------------------------------------------------------------------------------
# probes (blocking; run inside the pod namespace)


def _ask(ifname: str, frame: bytes, want: IPAddress, own: bytes, tries: Tries) -> bytes | None:
    """Send ``frame`` up to ``retries`` times; the MAC of the first other host answering for ``want``."""
    proto = ETH_P_ARP if want.version == 4 else ETH_P_IPV6
    timeout = tries.timeout
    try:
        sock = _open(ifname, proto, timeout)
    except OSError as exc:
        raise CoordinatorError(f"opening a packet socket on {ifname} failed: {exc}") from exc
    try:
        for _ in range(tries.count):
            try:
                sock.send(frame)
            except OSError as exc:
                raise CoordinatorError(f"sending a probe on {ifname} failed: {exc}") from exc
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, addr = sock.recvfrom(2048)
                except TimeoutError:
                    break
                except InterruptedError:  # upstream #4975: EINTR is not an answer
                    continue
                if addr[2] == PACKET_OUTGOING:
                    continue
                answer = parse_answer(data)
                if answer is not None and answer[0] == want and answer[1] != own:
                    return answer[1]
    finally:
        _close_later(sock)
    return None


def probe_conflict(ifname: str, mac: str, ip: IPAddress, tries: Tries) -> str | None:
    """The MAC of another host holding ``ip``, or None."""
    own = _mac(mac)
    if ip.version == 4:
        frame = arp_frame(1, own, ipaddress.IPv4Address(0), ip)
    else:
        frame = ns_frame(own, ipaddress.IPv6Address(0), ipaddress.IPv6Address(ip))
    found = _ask(ifname, frame, ip, own, tries)
    return _mac_text(found) if found else None


def probe_gateway(ifname: str, mac: str, ip: IPAddress, gateway: IPAddress, tries: Tries) -> str | None:
    """The gateway's MAC, or None when it never answered."""
    own = _mac(mac)
    if gateway.version == 4:
        frame = arp_frame(1, own, ip, gateway)
    else:
        frame = ns_frame(own, ipaddress.IPv6Address(ip), ipaddress.IPv6Address(gateway))
    found = _ask(ifname, frame, gateway, own, tries)
    return _mac_text(found) if found else None


def announce(ifname: str, mac: str, ips: list[IPAddress]) -> None:
    """Send a gratuitous ARP / unsolicited NA for every address: one socket per family."""
    own = _mac(mac)
    frames: dict[int, list[bytes]] = {}
    for ip in ips:
        if ip.version == 4:
            frames.setdefault(ETH_P_ARP, []).append(arp_frame(1, own, ip, ip))
        else:
            frames.setdefault(ETH_P_IPV6, []).append(unsolicited_na_frame(own, ipaddress.IPv6Address(ip)))
    for proto, batch in frames.items():
        sock = _open(ifname, proto, 1.0)
        try:
            for frame in batch:
                sock.send(frame)
        finally:
            _close_later(sock)


# ---------------------------------------------------------------------------------------
# entry points; netns None: the calling thread's namespace (api.py's thread is in the pod's)


def check_conflicts(netns: str | None, ifname: str, mac: str, ips: list[IPAddress], tries: Tries) -> None:
    for ip in ips:
        other = namespaces.run_in(netns, probe_conflict, ifname, mac, ip, tries)
        if other is not None:
            raise IPConflict(
                f"IP conflict: {ip} of pod interface {ifname} is already used by a host with MAC {other}",
                address=str(ip),
            )


def check_gateways(
    netns: str | None, ifname: str, mac: str, pairs: list[tuple[IPAddress, IPAddress]], tries: Tries
) -> None:
    for ip, gateway in pairs:
        found = namespaces.run_in(netns, probe_gateway, ifname, mac, ip, gateway, tries)
        if found is None:
            raise GatewayUnreachable(
                f"gateway {gateway} of pod interface {ifname} ({ip}) did not answer "
                f"{'ARP' if gateway.version == 4 else 'NDP'} after {tries.count} tries "
                f"of {tries.timeout * 1000:.0f} ms"
            )


def announce_in(netns: str | None, ifname: str, mac: str, ips: list[IPAddress]) -> None:
    namespaces.run_in(netns, announce, ifname, mac, ips)
