"""The demo's routing view: iproute2's JSON reduced to the rules and routes a pod's NICs got."""

from __future__ import annotations

from typing import Any

from spiderpool_tools.route_view import Routing, parse_routes, parse_rules, routing_rows

# `ip -j -4 route show table all` / `ip -j -6 ...` of a pod with eth0, net1 in table 102 and veth0.
ROUTES_V4: list[dict[str, Any]] = [
    {"dst": "172.31.0.0/24", "dev": "net1", "table": "102", "scope": "link", "prefsrc": "172.31.0.10"},
    {"dst": "default", "gateway": "172.31.0.1", "dev": "net1", "table": "102", "flags": []},
    {"dst": "default", "gateway": "172.30.0.1", "dev": "eth0", "flags": []},
    {"dst": "172.30.0.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link", "prefsrc": "172.30.0.10"},
    {"dst": "172.30.0.2", "dev": "veth0", "scope": "link", "flags": []},
    {"type": "local", "dst": "172.30.0.10", "dev": "eth0", "table": "local", "scope": "host"},
    {"type": "broadcast", "dst": "172.30.0.255", "dev": "eth0", "table": "local", "scope": "link"},
]
ROUTES_V6: list[dict[str, Any]] = [
    {"dst": "fd00:172:30::/64", "dev": "eth0", "protocol": "kernel", "metric": 256},
    {"dst": "fe80::/64", "dev": "eth0", "protocol": "kernel", "metric": 256},
    {"dst": "default", "gateway": "fd00:172:30::1", "dev": "eth0", "metric": 1024},
    {"type": "multicast", "dst": "ff00::/8", "dev": "eth0", "table": "local", "metric": 256},
    {"dst": "ff00::/8", "dev": "net1", "table": "102", "metric": 256},
    {"type": "local", "dst": "::1", "dev": "lo", "table": "local", "metric": 0},
]
RULES_V4: list[dict[str, Any]] = [
    {"priority": 0, "src": "all", "table": "local"},
    {"priority": 999, "src": "all", "fwmark": "0x1", "table": "100"},
    {"priority": 1000, "src": "172.31.0.10", "table": "102"},
    {"priority": 1001, "src": "10.9.0.0", "srclen": 16, "dst": "10.8.0.0", "dstlen": 24, "table": "7"},
    {"priority": 32766, "src": "all", "table": "main"},
    {"priority": 32767, "src": "all", "table": "default"},
]


def test_routes_keep_unicast_of_every_table_but_local_without_link_local_or_multicast() -> None:
    """The local table, broadcast/multicast entries and IPv6 link-local routes are dropped."""
    v4 = parse_routes(4, ROUTES_V4)
    v6 = parse_routes(6, ROUTES_V6)
    assert [(r.table, r.compact()) for r in v4] == [
        ("102", "172.31.0.0/24 net1"),
        ("102", "default via 172.31.0.1 net1"),
        ("main", "default via 172.30.0.1 eth0"),
        ("main", "172.30.0.0/24 eth0"),
        ("main", "172.30.0.2 veth0"),
    ]
    assert [r.compact() for r in v6] == ["fd00:172:30::/64 eth0", "default via fd00:172:30::1 eth0"]


def test_rules_drop_the_standard_three_and_say_what_the_others_match() -> None:
    """local/main/default at their usual priorities vanish; the rest show source, destination and fwmark."""
    rules = parse_rules(4, RULES_V4)
    assert [(r.compact(), r.table) for r in rules] == [
        ("999: fwmark 0x1", "100"),
        ("1000: from 172.31.0.10", "102"),
        ("1001: from 10.9.0.0/16 to 10.8.0.0/24", "7"),
    ]


def test_rows_list_main_first_then_tables_by_number_with_their_rules() -> None:
    """One row per family and table: main (selected by all), then each numbered table with its rules."""
    routing = Routing(
        tuple(parse_routes(4, ROUTES_V4) + parse_routes(6, ROUTES_V6)), tuple(parse_rules(4, RULES_V4))
    )
    assert routing_rows(routing) == [
        ["4", "main", "all", "default via 172.30.0.1 eth0; 172.30.0.0/24 eth0; 172.30.0.2 veth0"],
        ["4", "7", "1001: from 10.9.0.0/16 to 10.8.0.0/24", "-"],
        ["4", "100", "999: fwmark 0x1", "-"],
        ["4", "102", "1000: from 172.31.0.10", "172.31.0.0/24 net1; default via 172.31.0.1 net1"],
        ["6", "main", "all", "fd00:172:30::/64 eth0; default via fd00:172:30::1 eth0"],
    ]
