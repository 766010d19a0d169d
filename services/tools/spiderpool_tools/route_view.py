"""A compact view of a namespace's policy routing: which table each rule selects, and its routes.

The demo shows what the coordinator did to a pod: routes moved out of the main table into a
per-NIC table (101, 102, ...), the rules that select those tables (``from <ip>``, the
``fwmark`` reply rule), and the host routes through ``veth0``. ``ip -j route show table
all`` and ``ip -j rule show`` hold all of that, but also the kernel's ``local`` table,
broadcast and multicast entries and IPv6 link-local routes, which every namespace has and
which say nothing about the pod. This module parses iproute2's JSON (pure functions,
tested without a namespace), drops that noise, and renders one row per family and table:

    IP  TABLE  SELECTED BY          ROUTES
    4   main   all                  default via 172.30.0.1 eth0; 172.30.0.0/24 eth0; 172.30.0.2 veth0
    4   102    1000: from 172.31.0.10  default via 172.31.0.1 net1; 172.31.0.0/24 net1

``read_routing`` is the one function that runs ``ip`` (inside the namespace, via ``ip -n``).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from spiderpool_tools.netns import NetNs

MAIN = "main"
# Rules every namespace has (priority, table): not worth a line.
_STANDARD_RULES = {(0, "local"), (32766, "main"), (32767, "default")}


@dataclass(frozen=True)
class Route:
    family: int  # 4 or 6
    table: str  # "main" or the number
    dst: str  # "default" or a CIDR / address as iproute2 prints it
    dev: str
    gateway: str = ""

    def compact(self) -> str:
        """``dst [via gw] dev`` without the words iproute2 spends on it."""
        via = f" via {self.gateway}" if self.gateway else ""
        return f"{self.dst}{via} {self.dev}"


@dataclass(frozen=True)
class Rule:
    family: int
    priority: int
    selector: str  # "from 172.31.0.10", "fwmark 0x1", "all", "to fd00::5/128", ...
    table: str

    def compact(self) -> str:
        return f"{self.priority}: {self.selector}"


@dataclass(frozen=True)
class Routing:
    """The routes and rules of one namespace that are not the kernel's own."""

    routes: tuple[Route, ...]
    rules: tuple[Rule, ...]

    def tables(self, family: int) -> list[str]:
        """The family's tables that hold routes or are selected by a rule: main first, then by number."""
        names = {r.table for r in self.routes if r.family == family}
        names |= {r.table for r in self.rules if r.family == family}
        return sorted(names, key=_table_key)

    def routes_of(self, family: int, table: str) -> list[Route]:
        return [r for r in self.routes if r.family == family and r.table == table]

    def rules_for(self, family: int, table: str) -> list[Rule]:
        return sorted(
            (r for r in self.rules if r.family == family and r.table == table), key=lambda r: r.priority
        )


def _table_key(name: str) -> tuple[int, int, str]:
    if name == MAIN:
        return (0, 0, name)
    return (1, int(name), name) if name.isdigit() else (2, 0, name)


def _noise(family: int, dst: str) -> bool:
    """IPv6 link-local and multicast routes: on every IPv6 link, never the pod's choice."""
    if family != 6 or dst == "default":
        return False
    try:
        net = ipaddress.ip_network(dst, strict=False)
    except ValueError:
        return False
    return net.is_link_local or net.is_multicast


def parse_routes(family: int, entries: Iterable[dict[str, Any]]) -> list[Route]:
    """Unicast routes of every table but ``local`` from ``ip -j -4|-6 route show table all``."""
    routes = []
    for entry in entries:
        if entry.get("type", "unicast") != "unicast":
            continue
        table = str(entry.get("table", MAIN))
        dst = str(entry.get("dst", ""))
        if table == "local" or not dst or _noise(family, dst):
            continue
        routes.append(Route(family, table, dst, str(entry.get("dev", "")), str(entry.get("gateway", ""))))
    return routes


def _prefix(entry: dict[str, Any], key: str) -> str:
    value = str(entry[key])
    length = entry.get(f"{key}len")
    return f"{value}/{length}" if length is not None else value


def parse_rules(family: int, entries: Iterable[dict[str, Any]]) -> list[Rule]:
    """The non-standard rules from ``ip -j -4|-6 rule show``, each with what it matches."""
    rules = []
    for entry in entries:
        priority = int(entry.get("priority", 0))
        table = str(entry.get("table", ""))
        parts = []
        if entry.get("src", "all") != "all":
            parts.append(f"from {_prefix(entry, 'src')}")
        if "dst" in entry and entry["dst"] != "all":
            parts.append(f"to {_prefix(entry, 'dst')}")
        if "fwmark" in entry:
            parts.append(f"fwmark {entry['fwmark']}")
        if "iif" in entry:
            parts.append(f"iif {entry['iif']}")
        if not parts and (priority, table) in _STANDARD_RULES:
            continue
        rules.append(Rule(family, priority, " ".join(parts) or "all", table))
    return rules


def routing_rows(routing: Routing, families: Sequence[int] = (4, 6)) -> list[list[str]]:
    """Rows ``[family, table, selected by, routes]``; main is selected by "all" (its standard rule)."""
    rows = []
    for family in families:
        for table in routing.tables(family):
            rules = routing.rules_for(family, table)
            selected = ", ".join(r.compact() for r in rules) or ("all" if table == MAIN else "-")
            routes = "; ".join(r.compact() for r in routing.routes_of(family, table)) or "-"
            rows.append([str(family), table, selected, routes])
    return rows


def read_routing(ns: NetNs) -> Routing:
    """Routes and rules of ``ns``, both families, as iproute2 reports them."""
    routes: list[Route] = []
    rules: list[Rule] = []
    for family in (4, 6):
        flag = f"-{family}"
        routes += parse_routes(family, json.loads(ns.ip(flag, "-j", "route", "show", "table", "all") or "[]"))
        rules += parse_rules(family, json.loads(ns.ip(flag, "-j", "rule", "show") or "[]"))
    return Routing(tuple(routes), tuple(rules))
