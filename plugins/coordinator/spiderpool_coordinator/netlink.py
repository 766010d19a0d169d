"""Reading and changing the pod's and the host's routing with pyroute2.

Owns every netlink call of the library: snapshots of a namespace (links, addresses, main
table) for ``plan.py``, the veth pair, applying a ``Plan`` (ADD), verifying it (CHECK) and
removing the host side of a pod (DEL). All functions are blocking; ``api.py`` runs them in a
worker thread. Every change is written so that repeating it changes nothing: routes are
replaced, rules and neighbour entries are looked up before they are added, and a stale host
route or neighbour entry for the same address from an earlier pod is overwritten.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from spiderpool_coordinator import plan as p
from spiderpool_coordinator.errors import CoordinatorError

NUD_PERMANENT = 0x80
SCOPE_UNIVERSE = 0
SCOPE_LINK = 253
RTN_UNICAST = 1
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_ENOENT = (2, 3, 19)  # ENOENT, ESRCH, ENODEV: already gone
_EEXIST = 17


def _family(version: int) -> int:
    return _FAMILY[version]


# ---------------------------------------------------------------------------------------
# snapshots


def read_links(ipr: Any) -> dict[str, p.Link]:
    links: dict[str, p.Link] = {}
    for msg in ipr.get_links():
        name = msg.get("ifname")
        links[name] = p.Link(
            name=name,
            index=msg["index"],
            mac=str(msg.get("address") or ""),
            kind=str(msg.get(("linkinfo", "kind")) or ""),
            peer_index=int(msg.get("link") or 0),
            master=int(msg.get("master") or 0),
        )
    return links


def read_addrs(ipr: Any, links: dict[str, p.Link]) -> dict[str, list[p.IPInterface]]:
    by_index = {link.index: name for name, link in links.items()}
    out: dict[str, list[p.IPInterface]] = {name: [] for name in links}
    for msg in ipr.get_addr():
        if msg["scope"] != 0 or msg["index"] not in by_index:
            continue  # link-local and host scope addresses are not the pod's addresses
        out[by_index[msg["index"]]].append(ipaddress.ip_interface(f"{msg.get('address')}/{msg['prefixlen']}"))
    return out


def _route_entry(msg: Any, by_index: dict[int, str]) -> p.RouteEntry | None:
    if msg["type"] != RTN_UNICAST or msg.get("oif") not in by_index:
        return None
    version = 4 if msg["family"] == socket.AF_INET else 6
    dst = msg.get("dst") or ("0.0.0.0" if version == 4 else "::")
    return p.RouteEntry(
        dst=str(ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False)),
        dev=by_index[msg.get("oif")],
        table=int(msg.get("table") or msg["table"]),
        gw=str(msg.get("gateway") or ""),
        scope="link" if msg["scope"] == SCOPE_LINK else "",
        src=str(msg.get("prefsrc") or ""),
        proto=int(msg["proto"]),
        metric=int(msg.get("priority") or 0),
    )


def read_routes(ipr: Any, links: dict[str, p.Link], table: int) -> list[p.RouteEntry]:
    by_index = {link.index: name for name, link in links.items()}
    out: list[p.RouteEntry] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for msg in ipr.get_routes(family=family, table=table):
            entry = _route_entry(msg, by_index)
            if entry is not None and entry.table == table:
                out.append(entry)
    return out


def read_pod(ipr: Any) -> p.PodState:
    links = read_links(ipr)
    return p.PodState(
        links=links, addrs=read_addrs(ipr, links), main_routes=read_routes(ipr, links, p.MAIN_TABLE)
    )


def read_host(ipr: Any, pod_ips: Iterable[str], host_dev: str = "") -> p.HostState:
    """The host's addresses a pod should reach through the host link (reference 5.3 step 3):
    first the source the host's main table uses towards each pod address, then the addresses
    of ``host_dev`` and of every non-excluded link. Computed from the main table, not
    ``ip route get``, so the answer does not change once the pod's own host routes exist
    (CHECK recomputes it)."""
    links = read_links(ipr)
    addrs = read_addrs(ipr, links)
    main = read_routes(ipr, links, p.MAIN_TABLE)
    ips: dict[int, list[str]] = {4: [], 6: []}
    for ip in pod_ips:
        addr = ipaddress.ip_address(ip)
        covering = [r for r in main if r.version == addr.version and addr in ipaddress.ip_network(r.dst)]
        if not covering:
            continue
        best = max(covering, key=lambda r: ipaddress.ip_network(r.dst).prefixlen)
        src = best.src or next((str(a.ip) for a in addrs.get(best.dev, []) if a.version == addr.version), "")
        if src:
            ips[addr.version].append(src)
    for iface in addrs.get(host_dev, []):  # overlay: the node's address on the pod's link
        ips[iface.version].append(str(iface.ip))
    for name, ifaces in addrs.items():
        if p.excluded_host_link(name):
            continue
        for iface in ifaces:
            ips[iface.version].append(str(iface.ip))
    return p.HostState(links=links, ips={v: list(dict.fromkeys(lst)) for v, lst in ips.items() if lst})


# ---------------------------------------------------------------------------------------
# links


def link_index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def ensure_veth(pod: Any, host: Any, pod_netns: str, host_name: str, mtu: int) -> None:
    """The veth pair ``veth0`` (pod) / ``host_name`` (host), up, MTU ``mtu``; reused when whole."""
    pod_idx = link_index(pod, p.POD_VETH)
    host_idx = link_index(host, host_name)
    if pod_idx is not None and host_idx is not None:
        peer = read_links(pod)[p.POD_VETH].peer_index
        if peer != host_idx:
            raise CoordinatorError(f"{p.POD_VETH} in the pod is not paired with host link {host_name}")
    else:
        if host_idx is not None:
            host.link("del", index=host_idx)  # stale half of an earlier pod with this container ID
        if pod_idx is not None:
            raise CoordinatorError(f"{p.POD_VETH} already exists in the pod and is not the coordinator's")
        fd = os.open(pod_netns, os.O_RDONLY)
        try:
            host.link(
                "add",
                ifname=host_name,
                kind="veth",
                mtu=mtu,
                peer={"ifname": p.POD_VETH, "net_ns_fd": fd, "mtu": mtu},
            )
        finally:
            os.close(fd)
    for ipr, name in ((pod, p.POD_VETH), (host, host_name)):
        idx = link_index(ipr, name)
        ipr.link("set", index=idx, mtu=mtu, state="up")


def set_link(ipr: Any, name: str, **attrs: Any) -> None:
    idx = link_index(ipr, name)
    if idx is None:
        raise CoordinatorError(f"interface {name} not found")
    try:
        ipr.link("set", index=idx, **attrs)
    except NetlinkError as exc:
        if "address" not in attrs or exc.code != 16:  # EBUSY: some links change MAC only when down
            raise
        ipr.link("set", index=idx, state="down")
        ipr.link("set", index=idx, **attrs)
        ipr.link("set", index=idx, state="up")


def ensure_address(ipr: Any, name: str, cidr: str) -> None:
    iface = ipaddress.ip_interface(cidr)
    try:
        ipr.addr("add", index=link_index(ipr, name), address=str(iface.ip), prefixlen=iface.network.prefixlen)
    except NetlinkError as exc:
        if exc.code != _EEXIST:
            raise


# ---------------------------------------------------------------------------------------
# routes, rules, neighbours


def _route_args(route: p.RouteEntry, links: dict[str, p.Link]) -> dict[str, Any]:
    net = ipaddress.ip_network(route.dst)
    args: dict[str, Any] = {
        "dst": str(net.network_address),
        "dst_len": net.prefixlen,
        "family": _family(net.version),
        "oif": links[route.dev].index,
        "table": route.table,
        "scope": SCOPE_LINK if route.scope == "link" else SCOPE_UNIVERSE,
    }
    if route.gw:
        args["gateway"] = route.gw
    if route.src:
        args["prefsrc"] = route.src
    if route.proto:
        args["proto"] = route.proto
    if route.metric:
        args["priority"] = route.metric
    return args


def replace_route(ipr: Any, route: p.RouteEntry, links: dict[str, p.Link]) -> None:
    ipr.route("replace", **_route_args(route, links))


def delete_route(ipr: Any, route: p.RouteEntry, links: dict[str, p.Link], *, missing_ok: bool) -> None:
    """Delete exactly ``route`` (dst, table, device, gateway, scope, source, proto, metric).

    The kernel matches an IPv4 delete on its scope too: one sent without the route's scope
    (pyroute2's default is universe) misses a scope-link subnet route and answers "no such
    process". So the route is described as it was read, and ``missing_ok`` is only for
    callers that may race with another remover (DEL); a route the caller just read must go.
    """
    try:
        ipr.route("del", **_route_args(route, links))
    except NetlinkError as exc:
        if not (missing_ok and exc.code in _ENOENT):
            raise CoordinatorError(
                f"deleting route {route.dst} dev {route.dev} table {route.table}: {exc}"
            ) from exc


def _rule_matches(msg: Any, rule: p.RuleEntry) -> bool:
    def net(addr: Any, length: int) -> str:
        return str(ipaddress.ip_network(f"{addr}/{length}", strict=False)) if addr else ""

    return (
        int(msg.get("table") or 0) == rule.table
        and int(msg.get("priority") or 0) == rule.priority
        and net(msg.get("src"), msg["src_len"]) == rule.src
        and net(msg.get("dst"), msg["dst_len"]) == rule.dst
        and int(msg.get("fwmark") or 0) == rule.fwmark
    )


def has_rule(ipr: Any, rule: p.RuleEntry) -> bool:
    return any(_rule_matches(m, rule) for m in ipr.get_rules(family=_family(rule.version)))


def _rule_args(rule: p.RuleEntry) -> dict[str, Any]:
    args: dict[str, Any] = {"table": rule.table, "priority": rule.priority, "family": _family(rule.version)}
    for key, cidr in (("src", rule.src), ("dst", rule.dst)):
        if cidr:
            net = ipaddress.ip_network(cidr)
            args[key] = str(net.network_address)
            args[f"{key}_len"] = net.prefixlen
    if rule.fwmark:
        args["fwmark"] = rule.fwmark
        args["fwmask"] = rule.fwmark
    return args


def ensure_rule(ipr: Any, rule: p.RuleEntry) -> None:
    if not has_rule(ipr, rule):
        ipr.rule("add", **_rule_args(rule))


def delete_rule(ipr: Any, rule: p.RuleEntry) -> None:
    while has_rule(ipr, rule):
        try:
            ipr.rule("del", **_rule_args(rule))
        except NetlinkError as exc:
            if exc.code not in _ENOENT:
                raise
            return


def replace_neigh(ipr: Any, neigh: p.NeighEntry, links: dict[str, p.Link]) -> None:
    version = ipaddress.ip_address(neigh.ip).version
    ipr.neigh(
        "replace",
        dst=neigh.ip,
        lladdr=neigh.mac,
        ifindex=links[neigh.dev].index,
        state=NUD_PERMANENT,
        family=_family(version),
    )


def delete_stale_neighs(ipr: Any, ip: str, keep_dev: int) -> None:
    """Remove neighbour entries for ``ip`` on any link but ``keep_dev`` (an earlier pod's)."""
    version = ipaddress.ip_address(ip).version
    for msg in ipr.get_neighbours(family=_family(version)):
        if msg.get("dst") == ip and msg["ifindex"] != keep_dev:
            try:
                ipr.neigh("del", dst=ip, ifindex=msg["ifindex"], family=_family(version))
            except NetlinkError as exc:
                if exc.code not in _ENOENT:
                    raise


def _has_neigh(ipr: Any, neigh: p.NeighEntry, links: dict[str, p.Link]) -> bool:
    version = ipaddress.ip_address(neigh.ip).version
    return any(
        m.get("dst") == neigh.ip and str(m.get("lladdr")).lower() == neigh.mac.lower()
        for m in ipr.get_neighbours(family=_family(version), ifindex=links[neigh.dev].index)
    )


# ---------------------------------------------------------------------------------------
# plan


def apply(plan: p.Plan, pod: Any, host: Any) -> None:
    """Make the plan true: host side first, so the pod never routes to a host that drops it."""
    host_links = read_links(host)
    pod_links = read_links(pod)
    for neigh in plan.host_neighs:
        delete_stale_neighs(host, neigh.ip, host_links[neigh.dev].index)
        replace_neigh(host, neigh, host_links)
    for route in plan.host_routes:
        replace_route(host, route, host_links)
    for rule in plan.host_rules:
        ensure_rule(host, rule)
    for neigh in plan.pod_neighs:
        replace_neigh(pod, neigh, pod_links)
    # Moves before additions (a new main default must not replace the one being moved), and
    # scope-link routes first: a gateway must be on-link before a route through it is added.
    for moved in sorted(plan.pod_moves, key=lambda r: r.scope != "link"):
        replace_route(pod, replace(moved, proto=0, metric=0), pod_links)
    for moved in sorted(plan.pod_moves, key=lambda r: r.scope == "link"):
        delete_route(pod, replace(moved, table=p.MAIN_TABLE), pod_links, missing_ok=False)
    for route in sorted(plan.pod_routes, key=lambda r: (r.scope != "link", r.table)):
        replace_route(pod, route, pod_links)
    for rule in plan.pod_rules:
        ensure_rule(pod, rule)


def _has_route(ipr: Any, route: p.RouteEntry, links: dict[str, p.Link]) -> bool:
    return any(
        r.dst == route.dst and r.dev == route.dev and (not route.gw or r.gw == route.gw)
        for r in read_routes(ipr, links, route.table)
    )


def verify(plan: p.Plan, pod: Any, host: Any) -> list[str]:
    """What the plan says should exist and does not, as readable strings."""
    missing: list[str] = []
    host_links = read_links(host)
    pod_links = read_links(pod)
    if plan.host_dev not in host_links:
        return [f"host link {plan.host_dev}"]
    if plan.pod_dev not in pod_links:
        return [f"pod link {plan.pod_dev}"]
    for side, ipr, links, routes, rules in (
        ("host", host, host_links, plan.host_routes, plan.host_rules),
        ("pod", pod, pod_links, [*plan.pod_routes, *plan.pod_moves], plan.pod_rules),
    ):
        for route in routes:
            if not _has_route(ipr, route, links):
                via = f" via {route.gw}" if route.gw else ""
                missing.append(f"{side} route {route.dst}{via} dev {route.dev} table {route.table}")
        for rule in rules:
            if not has_rule(ipr, rule):
                what = (
                    f"from {rule.src}"
                    if rule.src
                    else f"to {rule.dst}"
                    if rule.dst
                    else f"fwmark {rule.fwmark:#x}"
                )
                missing.append(f"{side} rule {rule.priority}: {what} lookup {rule.table}")
    for neigh in plan.host_neighs:
        if not _has_neigh(host, neigh, host_links):
            missing.append(f"host neighbour {neigh.ip} lladdr {neigh.mac} dev {neigh.dev}")
    return missing


def remove_host_side(
    host: Any, host_dev: str | None, ips: Iterable[str], table: int, delete_dev: bool
) -> None:
    """DEL on the host: the pod's routes and rules in ``table`` and, if ours, its veth.

    A route to one of the addresses that points elsewhere belongs to a newer pod that reuses
    the address; it is left alone, and so is the rule while such a route exists.
    """
    links = read_links(host)
    dev = links.get(host_dev) if host_dev else None
    routes = read_routes(host, links, table)
    targets = set(ips)
    if dev is not None:
        targets |= {str(ipaddress.ip_network(r.dst).network_address) for r in routes if r.dev == dev.name}
    for ip in sorted(targets):
        prefix = p.RouteEntry(f"{ip}/{ipaddress.ip_address(ip).max_prefixlen}", "", table)
        ours = [r for r in routes if r.dst == prefix.dst and dev is not None and r.dev == dev.name]
        others = [r for r in routes if r.dst == prefix.dst and (dev is None or r.dev != dev.name)]
        for r in ours:
            delete_route(host, r, links, missing_ok=True)  # a concurrent DEL may be first
            if dev is not None:
                try:
                    host.neigh(
                        "del", dst=ip, ifindex=dev.index, family=_family(ipaddress.ip_address(ip).version)
                    )
                except NetlinkError:
                    pass
        if not others:
            rule = p.RuleEntry(ipaddress.ip_address(ip).version, table, p.HOST_RULE_PRIORITY, dst=prefix.dst)
            delete_rule(host, rule)
    if dev is not None and delete_dev:
        try:
            host.link("del", index=dev.index)
        except NetlinkError as exc:
            if exc.code not in _ENOENT:
                raise
