"""The coordinator's rtnetlink client against the kernel, checked with iproute2's view."""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Callable, Iterator

import pytest
from spiderpool_coordinator import namespaces
from spiderpool_coordinator.rtnetlink import RTPROT_STATIC, NetlinkError, Rtnl
from spiderpool_tools.netns import NetNs

pytestmark = pytest.mark.netns


@pytest.fixture
def ns(make_pod: Callable[[], NetNs]) -> NetNs:
    """A namespace with a veth pair a0 <-> a1, both up, a0 holding 10.77.0.1/24 and fd77::1/64."""
    pod = make_pod()
    pod.add_veth("a0", "a1")
    pod.add_address("a0", "10.77.0.1/24")
    pod.add_address("a0", "fd77::1/64", nodad=True)
    return pod


@pytest.fixture
def rtnl(ns: NetNs) -> Iterator[Rtnl]:
    """A client whose socket lives in ``ns``."""
    client = namespaces.iproute(ns.path)
    yield client
    client.close()


def _ip_json(ns: NetNs, *args: str) -> list[dict[str, object]]:
    return list(json.loads(ns.ip("-j", *args) or "[]"))


def test_links_read_by_name_index_and_dump_agree_with_iproute2(ns: NetNs, rtnl: Rtnl) -> None:
    """A link fetched by name and by index, and the dump, carry the name, index, MAC, kind,
    peer index and up flag iproute2 shows; a missing link is ENODEV."""
    shown = {str(link["ifname"]): link for link in _ip_json(ns, "-d", "link", "show")}
    by_name = rtnl.link("get", ifname="a0")[0]
    assert by_name["index"] == shown["a0"]["ifindex"]
    assert by_name["address"] == shown["a0"]["address"]
    assert by_name["kind"] == "veth"
    assert by_name["link"] == shown["a1"]["ifindex"]
    assert by_name["flags"] & 1
    assert rtnl.link("get", index=by_name["index"])[0]["ifname"] == "a0"
    assert {m["ifname"] for m in rtnl.get_links()} == set(shown)
    with pytest.raises(NetlinkError) as failure:
        rtnl.link("get", ifname="nosuch0")
    assert failure.value.code == errno.ENODEV


def test_veth_is_made_with_its_peer_named_in_another_namespace(
    ns: NetNs, rtnl: Rtnl, make_pod: Callable[[], NetNs]
) -> None:
    """``link add`` of a veth puts the named peer, with its MTU, in the namespace of ``net_ns_fd``;
    ``set`` changes MTU and state, ``del`` removes both ends."""
    other = make_pod()
    fd = os.open(other.path, os.O_RDONLY)
    try:
        rtnl.link("add", ifname="h0", kind="veth", mtu=1400, state="up",
                  peer={"ifname": "p0", "net_ns_fd": fd, "mtu": 1400})  # fmt: skip
    finally:
        os.close(fd)
    assert _ip_json(other, "link", "show", "p0")[0]["mtu"] == 1400
    host_end = rtnl.link("get", ifname="h0")[0]
    assert host_end["mtu"] == 1400
    rtnl.link("set", index=host_end["index"], mtu=1300, state="down")
    assert _ip_json(ns, "link", "show", "h0")[0]["mtu"] == 1300
    assert not rtnl.link("get", ifname="h0")[0]["flags"] & 1
    rtnl.link("del", index=host_end["index"])
    assert "p0" not in other.links()
    assert "h0" not in ns.links()


def test_address_add_is_exclusive_and_dump_shows_both_families(ns: NetNs, rtnl: Rtnl) -> None:
    """``addr add`` answers EEXIST for an address already there; the dump shows v4 and v6 addresses."""
    index = rtnl.link("get", ifname="a1")[0]["index"]
    rtnl.addr("add", index=index, address="10.78.0.1", prefixlen=32)
    with pytest.raises(NetlinkError) as failure:
        rtnl.addr("add", index=index, address="10.78.0.1", prefixlen=32)
    assert failure.value.code == errno.EEXIST
    found = {(m["address"], m["prefixlen"]) for m in rtnl.get_addr() if m["scope"] == 0}
    assert {("10.77.0.1", 24), ("fd77::1", 64), ("10.78.0.1", 32)} <= found


def test_routes_replace_read_and_delete_in_a_high_table(ns: NetNs, rtnl: Rtnl) -> None:
    """A route replaced into table 500 is proto static, listed only for that table with its
    gateway, source and metric, replacing it again keeps one copy, and ``del`` removes it."""
    index = rtnl.link("get", ifname="a0")[0]["index"]
    for family, dst, length, gw, src in (
        (socket.AF_INET, "10.90.0.0", 16, "10.77.0.254", "10.77.0.1"),
        (socket.AF_INET6, "fd90::", 64, "fd77::fe", "fd77::1"),
    ):
        args = {"dst": dst, "dst_len": length, "family": family, "oif": index, "table": 500,
                "scope": 0, "gateway": gw, "prefsrc": src, "priority": 7}  # fmt: skip
        rtnl.route("replace", **args)
        rtnl.route("replace", **args)
        ours = [m for m in rtnl.get_routes(table=500) if m.get("dst") == dst]
        assert len(ours) == 1
        assert (ours[0]["gateway"], ours[0]["prefsrc"], ours[0]["priority"]) == (gw, src, 7)
        assert ours[0]["proto"] == RTPROT_STATIC
        assert not [m for m in rtnl.get_routes(table=254) if m.get("dst") == dst]
        rtnl.route("del", **args, proto=RTPROT_STATIC)
    assert ns.ip("route", "show", "table", "500") == ""
    assert ns.ip("-6", "route", "show", "table", "500") == ""


def test_rules_add_is_exclusive_and_delete_matches(ns: NetNs, rtnl: Rtnl) -> None:
    """A rule is added once (EEXIST the second time), read back with its fields, and deleted."""
    rule = {"table": 500, "priority": 1234, "family": socket.AF_INET, "dst": "10.77.0.9", "dst_len": 32}
    mark = {"table": 100, "priority": 99, "family": socket.AF_INET6, "fwmark": 1, "fwmask": 1}
    for args in (rule, mark):
        rtnl.rule("add", **args)
        with pytest.raises(NetlinkError) as failure:
            rtnl.rule("add", **args)
        assert failure.value.code == errno.EEXIST
    read = {m.get("priority", 0): m for m in rtnl.get_rules()}
    assert (read[1234]["table"], read[1234]["dst"], read[1234]["dst_len"]) == (500, "10.77.0.9", 32)
    assert (read[99]["table"], read[99]["fwmark"], read[99]["family"]) == (100, 1, socket.AF_INET6)
    for args in (rule, mark):
        rtnl.rule("del", **args)
    assert "1234:" not in ns.ip("rule", "show")
    assert "99:" not in ns.ip("-6", "rule", "show")


def test_neighbours_replace_dump_and_delete(ns: NetNs, rtnl: Rtnl) -> None:
    """A permanent neighbour entry is written, listed for its link only, and deleted."""
    index = rtnl.link("get", ifname="a0")[0]["index"]
    other = rtnl.link("get", ifname="a1")[0]["index"]
    rtnl.neigh("replace", dst="10.77.0.5", lladdr="02:00:00:00:00:05", ifindex=index, state=0x80,
               family=socket.AF_INET)  # fmt: skip
    listed = {(m["dst"], m["lladdr"]) for m in rtnl.get_neighbours(ifindex=index)}
    assert ("10.77.0.5", "02:00:00:00:00:05") in listed
    assert not [m for m in rtnl.get_neighbours(ifindex=other) if m.get("dst") == "10.77.0.5"]
    assert "PERMANENT" in ns.ip("neigh", "show", "10.77.0.5")
    rtnl.neigh("del", dst="10.77.0.5", ifindex=index, family=socket.AF_INET)
    assert ns.ip("neigh", "show", "10.77.0.5") == ""
