"""pyroute2 as the oracle of the coordinator's own rtnetlink client, both directions.

The hand-written client (``spiderpool_coordinator.rtnetlink``, kept for speed: see its
docstring) must build the messages pyroute2 would read as the request we meant, and read
the kernel's messages as pyroute2 does. Requests are captured from a socket stand-in and
decoded with pyroute2's message classes; replies are encoded with pyroute2 and parsed by
the client. Properties over the message kinds and attributes the coordinator uses.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.fibmsg import fibmsg
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg
from spiderpool_coordinator import rtnetlink
from spiderpool_coordinator.rtnetlink import Rtnl

HDR = struct.Struct("=IHHII")


class CapturingSocket:
    """Stands in for the NETLINK_ROUTE socket: keeps what is sent, acknowledges it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def bind(self, _addr: Any) -> None:
        return None

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, _size: int) -> bytes:
        seq = HDR.unpack_from(self.sent[-1])[3]
        body = struct.pack("=i", 0) + self.sent[-1][: HDR.size]
        return HDR.pack(HDR.size + len(body), rtnetlink.NLMSG_ERROR, 0, seq, 0) + body

    def close(self) -> None:
        return None


def sent_by(call: Any) -> bytes:
    sock = CapturingSocket()
    call(Rtnl(sock))  # type: ignore[arg-type]
    (data,) = sock.sent
    return data


def decoded(cls: Any, data: bytes) -> Any:
    msg = cls(data)
    msg.decode()
    return msg


v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).map(str)
family_addr = st.one_of(st.tuples(st.just(4), v4), st.tuples(st.just(6), v6))
u32 = st.integers(min_value=1, max_value=2**32 - 1)
table = st.integers(min_value=1, max_value=2**31 - 1)
mac = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))
ifname = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=15)


def ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Addresses compared as addresses (``::ffff:0:0`` and ``::ffff:0.0.0.0`` are one)."""
    return None if text is None else ipaddress.ip_address(text)


def af(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


def network(version: int, address: str, prefix: int) -> tuple[str, int]:
    net = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return str(net.network_address), net.prefixlen


# -- requests the client builds, read by pyroute2 ---------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    family_addr,
    st.integers(0, 128),
    st.one_of(st.none(), u32),
    st.one_of(st.none(), u32),
    table,
    st.sampled_from([0, 253, 254]),
    st.booleans(),
    st.sampled_from(["replace", "del"]),
)
def test_a_route_request_reads_back_as_the_route_meant(
    fam: tuple[int, str], prefix: int, oif: int | None, priority: int | None, tbl: int, scope: int,
    with_gateway: bool, command: str,
) -> None:  # fmt: skip
    """dst, prefix, gateway, oif, metric, table (above 255 too), scope and flags as pyroute2 reads them."""
    version, address = fam
    dst, dst_len = network(version, address, min(prefix, 32 if version == 4 else 128))
    kw: dict[str, Any] = {"family": af(version), "dst": dst, "dst_len": dst_len, "table": tbl, "scope": scope}
    if oif:
        kw["oif"] = oif
    if priority:
        kw["priority"] = priority
    if with_gateway:
        kw["gateway"] = address
    msg = decoded(rtmsg, sent_by(lambda r: r.route(command, **kw)))
    header = msg["header"]
    assert header["type"] == (rtnetlink.RTM_NEWROUTE if command == "replace" else rtnetlink.RTM_DELROUTE)
    assert header["flags"] & rtnetlink.F_ACK
    if command == "replace":
        assert header["flags"] & rtnetlink.F_REPLACE and header["flags"] & rtnetlink.F_CREATE
        assert (msg["proto"], msg["type"]) == (rtnetlink.RTPROT_STATIC, rtnetlink.RTN_UNICAST)
    assert (msg["family"], msg["dst_len"], msg["scope"]) == (af(version), dst_len, scope)
    assert msg.get_attr("RTA_TABLE") == tbl
    assert msg["table"] == (tbl if tbl < 256 else rtnetlink.RT_TABLE_COMPAT)
    assert ip(msg.get_attr("RTA_DST")) == (ip(dst) if dst_len else None)
    assert ip(msg.get_attr("RTA_GATEWAY")) == (ip(address) if with_gateway else None)
    assert msg.get_attr("RTA_OIF") == oif
    assert msg.get_attr("RTA_PRIORITY") == priority


@settings(max_examples=60, deadline=None)
@given(
    family_addr, st.integers(0, 128), u32, table, st.one_of(st.none(), u32), st.sampled_from(["add", "del"])
)
def test_a_rule_request_reads_back_as_the_rule_meant(
    fam: tuple[int, str], prefix: int, priority: int, tbl: int, fwmark: int | None, command: str
) -> None:
    """to/from prefix, priority, fwmark/mask, table and the to-table action as pyroute2 reads them."""
    version, address = fam
    dst, dst_len = network(version, address, min(prefix, 32 if version == 4 else 128))
    kw: dict[str, Any] = {
        "family": af(version),
        "dst": dst,
        "dst_len": dst_len,
        "priority": priority,
        "table": tbl,
    }
    if fwmark is not None:
        kw.update(fwmark=fwmark, fwmask=0xFFFFFFFF)
    msg = decoded(fibmsg, sent_by(lambda r: r.rule(command, **kw)))
    assert msg["header"]["type"] == (rtnetlink.RTM_NEWRULE if command == "add" else rtnetlink.RTM_DELRULE)
    if command == "add":
        assert msg["header"]["flags"] & rtnetlink.F_EXCL
    assert (msg["family"], msg["dst_len"], msg["action"]) == (af(version), dst_len, rtnetlink.FR_ACT_TO_TBL)
    assert ip(msg.get_attr("FRA_DST")) == (ip(dst) if dst_len else None)
    assert msg.get_attr("FRA_PRIORITY") == priority
    assert msg.get_attr("FRA_TABLE") == tbl
    assert msg.get_attr("FRA_FWMARK") == fwmark
    assert msg.get_attr("FRA_FWMASK") == (0xFFFFFFFF if fwmark is not None else None)


@settings(max_examples=40, deadline=None)
@given(family_addr, u32, mac, st.sampled_from([0x80, 0x02, 0x40]), st.sampled_from(["replace", "del"]))
def test_a_neighbour_request_reads_back_as_the_entry_meant(
    fam: tuple[int, str], ifindex: int, lladdr: str, state: int, command: str
) -> None:
    """Destination, link-layer address, interface and state as pyroute2 reads them."""
    version, address = fam
    ifindex %= 2**31
    msg = decoded(
        ndmsg,
        sent_by(
            lambda r: r.neigh(
                command, dst=address, ifindex=ifindex, family=af(version), lladdr=lladdr, state=state
            )
        ),
    )
    assert (msg["family"], msg["ifindex"]) == (af(version), ifindex)
    assert ip(msg.get_attr("NDA_DST")) == ip(address)
    assert msg.get_attr("NDA_LLADDR") == lladdr
    assert msg["state"] == state


@settings(max_examples=40, deadline=None)
@given(family_addr, st.integers(1, 128), st.integers(1, 2**31 - 1))
def test_an_address_request_reads_back_as_the_address_meant(
    fam: tuple[int, str], prefix: int, index: int
) -> None:
    """Address, local, prefix length and interface, create-exclusive."""
    version, address = fam
    prefix = min(prefix, 32 if version == 4 else 128)
    msg = decoded(ifaddrmsg, sent_by(lambda r: r.addr("add", index=index, address=address, prefixlen=prefix)))
    assert (msg["family"], msg["prefixlen"], msg["index"]) == (af(version), prefix, index)
    assert ip(msg.get_attr("IFA_ADDRESS")) == ip(address) == ip(msg.get_attr("IFA_LOCAL"))
    assert msg["header"]["flags"] & rtnetlink.F_EXCL


@settings(max_examples=40, deadline=None)
@given(ifname, ifname, mac, st.integers(68, 65535), st.integers(0, 100000))
def test_a_veth_request_reads_back_with_its_peer(
    name: str, peer: str, address: str, mtu: int, txqlen: int
) -> None:
    """A veth pair: name, MAC, MTU, queue length, up, and the nested peer name, as pyroute2 reads it."""
    data = sent_by(
        lambda r: r.link(
            "add", ifname=name, kind="veth", address=address, mtu=mtu, txqlen=txqlen, state="up",
            peer={"ifname": peer},
        )
    )  # fmt: skip
    msg = decoded(ifinfmsg, data)
    assert msg.get_attr("IFLA_IFNAME") == name
    assert msg.get_attr("IFLA_ADDRESS") == address
    assert (msg.get_attr("IFLA_MTU"), msg.get_attr("IFLA_TXQLEN")) == (mtu, txqlen)
    assert msg["flags"] & rtnetlink.IFF_UP and msg["change"] & rtnetlink.IFF_UP
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "veth"
    assert info.get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER").get_attr("IFLA_IFNAME") == peer


# -- replies pyroute2 builds, read by the client ----------------------------------------------


def encoded(msg: Any, msg_type: int) -> bytes:
    msg["header"]["type"] = msg_type
    msg.encode()
    return bytes(msg.data)


def parsed(data: bytes) -> dict[str, Any]:
    length, msg_type, _, _, _ = HDR.unpack_from(data)
    return rtnetlink._parse(msg_type, data, HDR.size, length)


@settings(max_examples=60, deadline=None)
@given(family_addr, st.integers(0, 128), u32, u32, table, st.booleans())
def test_a_route_from_the_kernel_reads_as_pyroute2_wrote_it(
    fam: tuple[int, str], prefix: int, oif: int, priority: int, tbl: int, with_gateway: bool
) -> None:
    """dst, gateway, oif, metric, prefsrc and table of an RTM_NEWROUTE."""
    version, address = fam
    dst, dst_len = network(version, address, min(prefix, 32 if version == 4 else 128))
    msg = rtmsg()
    msg.update(family=af(version), dst_len=dst_len, table=min(tbl, 252), proto=4, scope=0, type=1)
    attrs: list[tuple[str, Any]] = [
        ("RTA_TABLE", tbl),
        ("RTA_OIF", oif),
        ("RTA_PRIORITY", priority),
        ("RTA_PREFSRC", address),
    ]
    if dst_len:
        attrs.append(("RTA_DST", dst))
    if with_gateway:
        attrs.append(("RTA_GATEWAY", address))
    msg["attrs"] = attrs
    got = parsed(encoded(msg, rtnetlink.RTM_NEWROUTE))
    assert (got["family"], got["dst_len"], got["table"], got["oif"], got["priority"]) == (
        af(version), dst_len, tbl, oif, priority,
    )  # fmt: skip
    assert ip(got.get("dst")) == (ip(dst) if dst_len else None)
    assert ip(got.get("gateway")) == (ip(address) if with_gateway else None)
    assert ip(got["prefsrc"]) == ip(address)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(u32, v6), min_size=1, max_size=4))
def test_a_multipath_route_reads_as_one_entry_per_next_hop(hops: list[tuple[int, str]]) -> None:
    """RTA_MULTIPATH (the kernel's merged IPv6 defaults): every next hop's oif and gateway."""
    msg = rtmsg()
    msg.update(family=socket.AF_INET6, dst_len=0, table=254, proto=4, scope=0, type=1)
    msg["attrs"] = [
        ("RTA_TABLE", 254),
        ("RTA_MULTIPATH", [{"oif": oif % 2**31, "attrs": [("RTA_GATEWAY", gw)]} for oif, gw in hops]),
    ]
    got = parsed(encoded(msg, rtnetlink.RTM_NEWROUTE))
    assert [(h["oif"], ip(h["gateway"])) for h in got["multipath"]] == [
        (oif % 2**31, ip(gw)) for oif, gw in hops
    ]


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 2**31 - 1),
    ifname,
    mac,
    st.integers(68, 65535),
    st.sampled_from(["veth", "macvlan", "bridge"]),
)
def test_a_link_from_the_kernel_reads_as_pyroute2_wrote_it(
    index: int, name: str, address: str, mtu: int, kind: str
) -> None:
    """Index, flags, name, MAC, MTU and kind of an RTM_NEWLINK."""
    msg = ifinfmsg()
    msg.update(family=0, index=index, flags=1, change=0)
    msg["attrs"] = [
        ("IFLA_IFNAME", name),
        ("IFLA_ADDRESS", address),
        ("IFLA_MTU", mtu),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", kind)]}),
    ]
    got = parsed(encoded(msg, rtnetlink.RTM_NEWLINK))
    assert (got["index"], got["flags"], got["ifname"], got["address"], got["mtu"], got["kind"]) == (
        index, 1, name, address, mtu, kind,
    )  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(family_addr, st.integers(0, 128), u32, table, u32)
def test_a_rule_from_the_kernel_reads_as_pyroute2_wrote_it(
    fam: tuple[int, str], prefix: int, priority: int, tbl: int, fwmark: int
) -> None:
    """Prefix, priority, fwmark/mask and table of an RTM_NEWRULE."""
    version, address = fam
    dst, dst_len = network(version, address, min(prefix, 32 if version == 4 else 128))
    msg = fibmsg()
    msg.update(family=af(version), dst_len=dst_len, table=min(tbl, 252), action=1)
    attrs: list[tuple[str, Any]] = [
        ("FRA_PRIORITY", priority),
        ("FRA_TABLE", tbl),
        ("FRA_FWMARK", fwmark),
        ("FRA_FWMASK", 0xFF),
    ]
    if dst_len:
        attrs.append(("FRA_DST", dst))
    msg["attrs"] = attrs
    got = parsed(encoded(msg, rtnetlink.RTM_NEWRULE))
    assert (got["priority"], got["table"], got["fwmark"], got["fwmask"], got["action"]) == (
        priority, tbl, fwmark, 0xFF, 1,
    )  # fmt: skip
    assert ip(got.get("dst")) == (ip(dst) if dst_len else None)


@settings(max_examples=40, deadline=None)
@given(family_addr, st.integers(1, 2**31 - 1), mac)
def test_addresses_and_neighbours_from_the_kernel_read_as_pyroute2_wrote_them(
    fam: tuple[int, str], index: int, lladdr: str
) -> None:
    """RTM_NEWADDR address/local/prefix and RTM_NEWNEIGH destination/lladdr/state."""
    version, address = fam
    addr = ifaddrmsg()
    addr.update(family=af(version), prefixlen=24, scope=0, index=index)
    addr["attrs"] = [("IFA_ADDRESS", address), ("IFA_LOCAL", address)]
    got = parsed(encoded(addr, rtnetlink.RTM_NEWADDR))
    assert (ip(got["address"]), ip(got["local"]), got["prefixlen"], got["index"]) == (
        ip(address),
        ip(address),
        24,
        index,
    )
    neigh = ndmsg()
    neigh.update(family=af(version), ifindex=index, state=0x80)
    neigh["attrs"] = [("NDA_DST", address), ("NDA_LLADDR", lladdr)]
    got = parsed(encoded(neigh, rtnetlink.RTM_NEWNEIGH))
    assert (ip(got["dst"]), got["lladdr"], got["ifindex"], got["state"]) == (ip(address), lladdr, index, 0x80)
