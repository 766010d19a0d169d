"""A minimal synchronous rtnetlink client: the requests the coordinator makes, nothing else.

Owns the wire format of the coordinator's netlink traffic (links, addresses, routes, rules,
neighbours: rtnetlink(7), include/uapi/linux/{rtnetlink,if_link,fib_rules,neighbour}.h).
pyroute2 0.9 runs every request of its synchronous ``IPRoute`` through an asyncio loop and a
generic request pipeline: 0.3-0.7 ms per request measured here, against ~0.03 ms for one
``send``/``recv`` of a few dozen bytes. A CNI ADD makes some 25 requests, so that overhead
was most of the coordinator's time. This client keeps pyroute2's call shapes (``link("get",
ifname=...)``, ``route("replace", ...)``, ``get_routes(table=...)``) and its message keys
(``ifname``, ``oif``, ``prefsrc``...) so ``netlink.py`` reads the same, with pyroute2's
defaults where the kernel's matching depends on them: a new route is ``proto static`` and
``unicast``, a rule points ``to_tbl``, ``add`` is create-exclusive (EEXIST for a duplicate).

A socket lives in the namespace of the thread that made it, like any socket. Not thread safe.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Any

Msg = dict[str, Any]

NLMSG_ERROR, NLMSG_DONE = 2, 3
F_REQUEST, F_MULTI, F_ACK, F_DUMP = 0x1, 0x2, 0x4, 0x300
F_REPLACE, F_EXCL, F_CREATE = 0x100, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
IFF_UP = 0x1
RTPROT_STATIC, RTN_UNICAST, FR_ACT_TO_TBL, RT_TABLE_COMPAT = 4, 1, 1, 252

_NLMSGHDR = struct.Struct("=IHHII")
_NLA = struct.Struct("=HH")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBi")
_RTMSG = struct.Struct("=BBBBBBBBI")
_FIBRULE = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")
_U32 = struct.Struct("=I")
_NLA_F_NESTED = 0x8000
_RECV_SIZE = 65536  # the kernel caps a dump datagram at 32 KiB (netlink_recvmsg)

# attribute type -> (key, decoder) per message kind
_ADDR, _STR, _U32T, _MAC = "addr", "str", "u32", "mac"
_LINK_ATTRS = {1: ("address", _MAC), 3: ("ifname", _STR), 4: ("mtu", _U32T), 5: ("link", _U32T),
               10: ("master", _U32T)}  # fmt: skip
_IFLA_LINKINFO, _IFLA_INFO_KIND = 18, 1
# RTA_MULTIPATH: a sequence of struct rtnexthop {u16 len; u8 flags; u8 hops; s32 ifindex}, each
# followed by its own attributes (a gateway). The kernel merges IPv6 routes to the same
# destination and metric into one such route (ECMP), e.g. two NICs' default routes.
_RTA_MULTIPATH = 9
_RTNEXTHOP = struct.Struct("=HBBi")
_ADDR_ATTRS = {1: ("address", _ADDR), 2: ("local", _ADDR)}
_ROUTE_ATTRS = {1: ("dst", _ADDR), 4: ("oif", _U32T), 5: ("gateway", _ADDR), 6: ("priority", _U32T),
                7: ("prefsrc", _ADDR), 15: ("table", _U32T)}  # fmt: skip
_RULE_ATTRS = {1: ("dst", _ADDR), 2: ("src", _ADDR), 6: ("priority", _U32T), 10: ("fwmark", _U32T),
               15: ("table", _U32T), 16: ("fwmask", _U32T)}  # fmt: skip
_NEIGH_ATTRS = {1: ("dst", _ADDR), 2: ("lladdr", _MAC)}
_ATTR_ID = {
    "link": {"address": 1, "ifname": 3, "mtu": 4, "txqlen": 13, "net_ns_fd": 28},
    "route": {"dst": 1, "oif": 4, "gateway": 5, "priority": 6, "prefsrc": 7, "table": 15},
    "rule": {"dst": 1, "src": 2, "priority": 6, "fwmark": 10, "table": 15, "fwmask": 16},
}


class NetlinkError(Exception):
    """The kernel refused a request; ``code`` is the errno (pyroute2's ``NetlinkError`` shape)."""

    def __init__(self, code: int, msg: str = "") -> None:
        super().__init__(code, msg or os.strerror(code))
        self.code = code


def _nla(kind: int, payload: bytes) -> bytes:
    raw = _NLA.pack(_NLA.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _ip(family: int, text: str) -> bytes:
    return socket.inet_pton(family, text)


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def _decode(kind: str, payload: bytes, family: int) -> Any:
    if kind == _U32T:
        return _U32.unpack_from(payload)[0] if len(payload) >= 4 else 0
    if kind == _STR:
        return payload.split(b"\0", 1)[0].decode()
    if kind == _MAC:
        return ":".join(f"{b:02x}" for b in payload)
    fam = socket.AF_INET if len(payload) == 4 else socket.AF_INET6 if len(payload) == 16 else family
    return socket.inet_ntop(fam, payload)


def _attrs(data: bytes, offset: int, end: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    while offset + _NLA.size <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < _NLA.size:
            break
        out.append((kind & ~_NLA_F_NESTED, data[offset + _NLA.size : offset + length]))
        offset += (length + 3) & ~3
    return out


def _parse(msg_type: int, data: bytes, offset: int, end: int) -> Msg:
    """One message's header fields and the attributes this client knows, by pyroute2's names."""
    msg: Msg = {}
    if msg_type in (RTM_NEWLINK, RTM_DELLINK):
        msg["family"], _, msg["index"], msg["flags"], _ = _IFINFO.unpack_from(data, offset)
        start, table, family = offset + _IFINFO.size, _LINK_ATTRS, 0
    elif msg_type == RTM_NEWADDR:
        family, prefixlen, _, scope, index = _IFADDR.unpack_from(data, offset)
        msg.update(family=family, prefixlen=prefixlen, scope=scope, index=index)
        start, table = offset + _IFADDR.size, _ADDR_ATTRS
    elif msg_type in (RTM_NEWROUTE, RTM_NEWRULE):
        fields = _RTMSG.unpack_from(data, offset)
        family = fields[0]
        msg.update(family=family, dst_len=fields[1], src_len=fields[2], table=fields[4])
        if msg_type == RTM_NEWROUTE:
            msg.update(proto=fields[5], scope=fields[6], type=fields[7])
            start, table = offset + _RTMSG.size, _ROUTE_ATTRS
        else:
            msg["action"] = fields[7]
            start, table = offset + _FIBRULE.size, _RULE_ATTRS
    elif msg_type == RTM_NEWNEIGH:
        family, ifindex, state, _, _ = _NDMSG.unpack_from(data, offset)
        msg.update(family=family, ifindex=ifindex, state=state)
        start, table = offset + _NDMSG.size, _NEIGH_ATTRS
    else:
        return msg
    for kind, payload in _attrs(data, start, end):
        if msg_type == RTM_NEWROUTE and kind == _RTA_MULTIPATH:
            msg["multipath"] = _nexthops(payload, family)
            continue
        if msg_type == RTM_NEWLINK and kind == _IFLA_LINKINFO:
            for sub, value in _attrs(payload, 0, len(payload)):
                if sub == _IFLA_INFO_KIND:
                    msg["kind"] = _decode(_STR, value, 0)
            continue
        known = table.get(kind)
        if known is not None:
            msg[known[0]] = _decode(known[1], payload, family)
    return msg


def _nexthops(payload: bytes, family: int) -> list[Msg]:
    """The next hops of an RTA_MULTIPATH attribute: ``oif`` and ``gateway`` of each."""
    hops: list[Msg] = []
    offset = 0
    while offset + _RTNEXTHOP.size <= len(payload):
        length, _, _, ifindex = _RTNEXTHOP.unpack_from(payload, offset)
        if length < _RTNEXTHOP.size:
            break
        hop: Msg = {"oif": ifindex}
        for kind, value in _attrs(payload, offset + _RTNEXTHOP.size, offset + length):
            if kind == 5:  # RTA_GATEWAY
                hop["gateway"] = _decode(_ADDR, value, family)
        hops.append(hop)
        offset += (length + 3) & ~3
    return hops


class Rtnl:
    """One NETLINK_ROUTE socket in the namespace it was made in (or ``sock``, made elsewhere)."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self._sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    # -- transport -----------------------------------------------------------------------

    def _request(self, msg_type: int, flags: int, body: bytes) -> list[Msg]:
        """Send one request; return the messages answered (a dump's, or none), raise on error."""
        self._seq += 1
        seq = self._seq
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body)
        out: list[Msg] = []
        while True:
            data = self._sock.recv(_RECV_SIZE)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, mflags, mseq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    return out
                end = offset + length
                if mseq == seq:
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + _NLMSGHDR.size)[0]
                        if code:
                            raise NetlinkError(code)
                        return out
                    if kind == NLMSG_DONE:
                        return out
                    out.append(_parse(kind, data, offset + _NLMSGHDR.size, end))
                    if not (mflags & F_MULTI) and not (flags & F_ACK):
                        return out
                offset = (end + 3) & ~3

    def _dump(self, msg_type: int, header: bytes) -> list[Msg]:
        return self._request(msg_type, F_REQUEST | F_DUMP, header)

    # -- links ---------------------------------------------------------------------------

    def link(self, command: str, **kw: Any) -> list[Msg]:
        """``get`` (by ``ifname`` or ``index``), ``set``, ``add`` (a veth with ``peer``), ``del``."""
        index = int(kw.pop("index", 0))
        if command == "get":
            attrs = _nla(3, kw["ifname"].encode() + b"\0") if kw.get("ifname") else b""
            msgs = self._request(RTM_GETLINK, F_REQUEST, _IFINFO.pack(0, 0, index, 0, 0) + attrs)
            if not msgs:
                raise NetlinkError(errno.ENODEV)
            return msgs
        if command == "del":
            return self._request(RTM_DELLINK, F_REQUEST | F_ACK, _IFINFO.pack(0, 0, index, 0, 0))
        kind, peer = kw.pop("kind", None), kw.pop("peer", None)
        body = self._link_body(index, kw)
        if kind is not None:
            info = _nla(1, kind.encode() + b"\0")
            if peer is not None:
                info += _nla(2 | _NLA_F_NESTED, _nla(1 | _NLA_F_NESTED, self._link_body(0, dict(peer))))
            body += _nla(_IFLA_LINKINFO | _NLA_F_NESTED, info)
        flags = F_REQUEST | F_ACK | (F_CREATE | F_EXCL if command == "add" else 0)
        return self._request(RTM_NEWLINK, flags, body)

    @staticmethod
    def _link_body(index: int, kw: dict[str, Any]) -> bytes:
        state = kw.pop("state", None)
        flags = IFF_UP if state == "up" else 0
        change = IFF_UP if state in ("up", "down") else 0
        body = _IFINFO.pack(0, 0, index, flags, change)
        ids = _ATTR_ID["link"]
        for key, value in kw.items():
            if key == "ifname":
                body += _nla(ids[key], value.encode() + b"\0")
            elif key == "address":
                body += _nla(ids[key], _mac(value))
            else:
                body += _nla(ids[key], _U32.pack(int(value)))
        return body

    def get_links(self) -> list[Msg]:
        return self._dump(RTM_GETLINK, _IFINFO.pack(0, 0, 0, 0, 0))

    # -- addresses -----------------------------------------------------------------------

    def get_addr(self) -> list[Msg]:
        return self._dump(RTM_GETADDR, _IFADDR.pack(0, 0, 0, 0, 0))

    def addr(self, command: str, *, index: int, address: str, prefixlen: int) -> list[Msg]:
        """``add`` one address (create-exclusive: EEXIST when present)."""
        if command != "add":
            raise ValueError(command)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        raw = _ip(family, address)
        body = _IFADDR.pack(family, prefixlen, 0, 0, index) + _nla(2, raw) + _nla(1, raw)
        return self._request(RTM_NEWADDR, F_REQUEST | F_ACK | F_CREATE | F_EXCL, body)

    # -- routes --------------------------------------------------------------------------

    def get_routes(self, *, table: int) -> list[Msg]:
        """Every route of ``table`` (both families, one dump filtered here)."""
        msgs = self._dump(RTM_GETROUTE, _RTMSG.pack(0, 0, 0, 0, 0, 0, 0, 0, 0))
        return [m for m in msgs if m.get("table") == table]

    def route(self, command: str, **kw: Any) -> list[Msg]:
        """``replace`` (proto static, unicast unless given) or ``del`` one route."""
        family, table = int(kw["family"]), int(kw.get("table", 254))
        if command == "replace":
            msg_type, flags = RTM_NEWROUTE, F_REQUEST | F_ACK | F_CREATE | F_REPLACE
            proto, rtype = int(kw.get("proto") or RTPROT_STATIC), RTN_UNICAST
        elif command == "del":
            msg_type, flags = RTM_DELROUTE, F_REQUEST | F_ACK
            proto, rtype = int(kw.get("proto") or 0), 0
        else:
            raise ValueError(command)
        header_table = table if table < 256 else RT_TABLE_COMPAT
        body = _RTMSG.pack(family, kw.get("dst_len", 0), 0, 0, header_table, proto,
                           int(kw.get("scope", 0)), rtype, 0)  # fmt: skip
        ids = _ATTR_ID["route"]
        if kw.get("dst_len"):
            body += _nla(ids["dst"], _ip(family, kw["dst"]))
        for key in ("gateway", "prefsrc"):
            if kw.get(key):
                body += _nla(ids[key], _ip(family, kw[key]))
        for key in ("oif", "priority"):
            if kw.get(key):
                body += _nla(ids[key], _U32.pack(int(kw[key])))
        body += _nla(ids["table"], _U32.pack(table))
        return self._request(msg_type, flags, body)

    # -- rules ---------------------------------------------------------------------------

    def get_rules(self) -> list[Msg]:
        return self._dump(RTM_GETRULE, _FIBRULE.pack(0, 0, 0, 0, 0, 0, 0, 0, 0))

    def rule(self, command: str, **kw: Any) -> list[Msg]:
        """``add`` (create-exclusive: EEXIST for an identical rule) or ``del`` one rule."""
        if command == "add":
            msg_type, flags = RTM_NEWRULE, F_REQUEST | F_ACK | F_CREATE | F_EXCL
        elif command == "del":
            msg_type, flags = RTM_DELRULE, F_REQUEST | F_ACK
        else:
            raise ValueError(command)
        family, table = int(kw["family"]), int(kw["table"])
        header_table = table if table < 256 else RT_TABLE_COMPAT
        body = _FIBRULE.pack(family, kw.get("dst_len", 0), kw.get("src_len", 0), 0, header_table,
                             0, 0, FR_ACT_TO_TBL, 0)  # fmt: skip
        ids = _ATTR_ID["rule"]
        for key in ("dst", "src"):
            if kw.get(key) and kw.get(f"{key}_len"):  # a zero-length prefix is no selector
                body += _nla(ids[key], _ip(family, kw[key]))
        for key in ("priority", "fwmark", "fwmask"):
            if key in kw:
                body += _nla(ids[key], _U32.pack(int(kw[key])))
        body += _nla(ids["table"], _U32.pack(table))
        return self._request(msg_type, flags, body)

    # -- neighbours ----------------------------------------------------------------------

    def get_neighbours(self, *, ifindex: int = 0) -> list[Msg]:
        msgs = self._dump(RTM_GETNEIGH, _NDMSG.pack(0, 0, 0, 0, 0))
        return [m for m in msgs if not ifindex or m["ifindex"] == ifindex]

    def neigh(self, command: str, *, dst: str, ifindex: int, family: int, **kw: Any) -> list[Msg]:
        """``replace`` (with ``lladdr`` and ``state``) or ``del`` one neighbour entry."""
        if command == "replace":
            msg_type, flags = RTM_NEWNEIGH, F_REQUEST | F_ACK | F_CREATE | F_REPLACE
        elif command == "del":
            msg_type, flags = RTM_DELNEIGH, F_REQUEST | F_ACK
        else:
            raise ValueError(command)
        body = _NDMSG.pack(family, ifindex, int(kw.get("state", 0)), 0, 0) + _nla(1, _ip(family, dst))
        if kw.get("lladdr"):
            body += _nla(2, _mac(kw["lladdr"]))
        return self._request(msg_type, flags, body)
