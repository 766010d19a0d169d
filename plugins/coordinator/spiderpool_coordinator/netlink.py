"""Reading and changing the pod's and the host's routing over rtnetlink (``rtnetlink.Rtnl``).

Owns every netlink call of the library: snapshots of a namespace (links, addresses, main
table) for ``plan.py``, the veth pair, applying a ``Plan`` (ADD), verifying it (CHECK) and
removing the host side of a pod (DEL). All functions are blocking and run in the calling
thread (``api.py``'s one thread per call). Every change is written so that repeating it
changes nothing: routes are replaced, rules and neighbour entries are looked up before they
are added, and a stale host route or neighbour entry for the same address from an earlier
pod is overwritten.

Cost decides the shape of the reads: each request costs a round trip to the kernel (tens
of microseconds with ``rtnetlink``; pyroute2 0.9 took 0.3-0.7 ms), and a link dump grows
with the number of links, which on a node with hundreds of pod veths would dominate a CNI
call. So the pod (a handful of links) is dumped once per call,
the host never: its links are fetched one by one by name or index (the host device, and the
few links that carry a global address), and rules, routes and neighbours are dumped once
per kind for both IP families together, then matched in Python; a rule is simply added,
the kernel refusing a duplicate.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from spiderpool_coordinator import plan as p
from spiderpool_coordinator.errors import CoordinatorError
from spiderpool_coordinator.rtnetlink import NetlinkError, Rtnl

NUD_PERMANENT = 0x80
SCOPE_UNIVERSE = 0
SCOPE_LINK = 253
RTN_UNICAST = 1
IFF_UP = 0x1
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_VERSION = {socket.AF_INET: 4, socket.AF_INET6: 6}
_ENOENT = (2, 3, 19)  # ENOENT, ESRCH, ENODEV: already gone
_EEXIST = 17


def _family(version: int) -> int:
    return _FAMILY[version]


# ---------------------------------------------------------------------------------------
# snapshots


def _link(msg: Any) -> p.Link:
    return p.Link(
        name=str(msg.get("ifname")),
        index=int(msg["index"]),
        mac=str(msg.get("address") or ""),
        kind=str(msg.get("kind") or ""),
        peer_index=int(msg.get("link") or 0),
        master=int(msg.get("master") or 0),
        up=bool(int(msg["flags"]) & IFF_UP),
    )


def read_links(ipr: Any) -> dict[str, p.Link]:
    """Every link of the namespace (a dump: for the pod, never for the host)."""
    return {link.name: link for link in map(_link, ipr.get_links())}


def get_link(ipr: Any, *, name: str = "", index: int = 0) -> p.Link | None:
    """One link by name or index, or None when there is none (a single request, no dump)."""
    try:
        msgs = ipr.link("get", ifname=name) if name else ipr.link("get", index=index)
    except NetlinkError as exc:
        if exc.code in _ENOENT:
            return None
        raise
    return _link(msgs[0]) if msgs else None


def _global_addrs(ipr: Any) -> dict[int, list[p.IPInterface]]:
    """Global-scope addresses by link index (link-local and host scope are not the pod's/host's)."""
    out: dict[int, list[p.IPInterface]] = {}
    for msg in ipr.get_addr():
        if msg["scope"] != 0:
            continue
        iface = ipaddress.ip_interface(f"{msg.get('address')}/{msg['prefixlen']}")
        out.setdefault(int(msg["index"]), []).append(iface)
    return out


def read_addrs(ipr: Any, links: dict[str, p.Link]) -> dict[str, list[p.IPInterface]]:
    by_index = _global_addrs(ipr)
    return {name: by_index.get(link.index, []) for name, link in links.items()}


def _route_entry(msg: Any, by_index: dict[int, str]) -> p.RouteEntry | None:
    if msg["type"] != RTN_UNICAST or msg.get("oif") not in by_index:
        return None
    version = _VERSION[msg["family"]]
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
    """Unicast routes of ``table`` through ``links`` (one dump for both families)."""
    by_index = {link.index: name for name, link in links.items()}
    out: list[p.RouteEntry] = []
    for msg in ipr.get_routes(table=table):
        if msg["family"] not in _VERSION:
            continue
        # An ECMP route (the kernel merges IPv6 routes to one destination, e.g. two NICs'
        # defaults) is read as one entry per next hop, each deletable by device and gateway.
        for single in [{**msg, **hop} for hop in msg["multipath"]] if msg.get("multipath") else [msg]:
            entry = _route_entry(single, by_index)
            if entry is not None and entry.table == table:
                out.append(entry)
    return out


def read_pod(ipr: Any, links: dict[str, p.Link] | None = None) -> p.PodState:
    links = read_links(ipr) if links is None else links
    return p.PodState(
        links=links, addrs=read_addrs(ipr, links), main_routes=read_routes(ipr, links, p.MAIN_TABLE)
    )


def read_host(ipr: Any, pod_ips: Iterable[str], host_dev: p.Link) -> p.HostState:
    """The host's addresses a pod should reach through the host link (upstream's
    cmd/coordinator/cmd/command_add.go):
    first the source the host's main table uses towards each pod address, then the addresses
    of ``host_dev`` and of every non-excluded link. Computed from the main table, not
    ``ip route get``, so the answer does not change once the pod's own host routes exist
    (CHECK recomputes it). Only the links that carry a global address are looked up."""
    addrs = _global_addrs(ipr)
    names: dict[int, str] = {host_dev.index: host_dev.name}

    def name_of(index: int) -> str:
        if index not in names:
            link = get_link(ipr, index=index)
            names[index] = link.name if link is not None else ""
        return names[index]

    main: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int, str]] = []
    for msg in ipr.get_routes(table=p.MAIN_TABLE):
        if msg["family"] not in _VERSION or msg["type"] != RTN_UNICAST or not msg.get("oif"):
            continue
        version = _VERSION[msg["family"]]
        dst = msg.get("dst") or ("0.0.0.0" if version == 4 else "::")
        net = ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False)
        main.append((net, int(msg.get("oif")), str(msg.get("prefsrc") or "")))
    ips: dict[int, list[str]] = {4: [], 6: []}
    for ip in pod_ips:
        addr = ipaddress.ip_address(ip)
        covering = [r for r in main if r[0].version == addr.version and addr in r[0]]
        if not covering:
            continue
        _, oif, prefsrc = max(covering, key=lambda r: r[0].prefixlen)
        src = prefsrc or next((str(a.ip) for a in addrs.get(oif, []) if a.version == addr.version), "")
        if src:
            ips[addr.version].append(src)
    for iface in addrs.get(host_dev.index, []):  # overlay: the node's address on the pod's link
        ips[iface.version].append(str(iface.ip))
    for index in sorted(addrs):
        name = name_of(index)
        if not name or p.excluded_host_link(name):
            continue
        for iface in addrs[index]:
            ips[iface.version].append(str(iface.ip))
    return p.HostState(
        links={host_dev.name: host_dev}, ips={v: list(dict.fromkeys(lst)) for v, lst in ips.items() if lst}
    )


# ---------------------------------------------------------------------------------------
# links


def ensure_veth(
    pod: Any, host: Any, pod_netns: str, host_name: str, *, mtu: int, pod_links: dict[str, p.Link]
) -> tuple[p.Link, p.Link]:
    """The veth pair ``veth0`` (pod) / ``host_name`` (host), up, MTU ``mtu``; reused when whole.

    Returns (pod end, host end). ``pod_links`` is the pod's snapshot taken before.
    """
    pod_end = pod_links.get(p.POD_VETH)
    host_end = get_link(host, name=host_name)
    if pod_end is not None and host_end is not None:
        if pod_end.peer_index != host_end.index:
            raise CoordinatorError(f"{p.POD_VETH} in the pod is not paired with host link {host_name}")
        for ipr, end in ((pod, pod_end), (host, host_end)):
            ipr.link("set", index=end.index, mtu=mtu, state="up")
        return replace(pod_end, up=True), replace(host_end, up=True)
    if host_end is not None:
        host.link("del", index=host_end.index)  # stale half of an earlier pod with this container ID
    if pod_end is not None:
        raise CoordinatorError(f"{p.POD_VETH} already exists in the pod and is not the coordinator's")
    fd = os.open(pod_netns, os.O_RDONLY)
    try:
        host.link(
            "add",
            ifname=host_name,
            kind="veth",
            mtu=mtu,
            state="up",
            peer={"ifname": p.POD_VETH, "net_ns_fd": fd, "mtu": mtu},
        )
    finally:
        os.close(fd)
    pod_end = get_link(pod, name=p.POD_VETH)
    host_end = get_link(host, name=host_name)
    if pod_end is None or host_end is None:
        raise CoordinatorError(f"the veth pair {p.POD_VETH}/{host_name} vanished right after it was made")
    pod.link("set", index=pod_end.index, state="up")
    return replace(pod_end, up=True), host_end


def set_link(ipr: Any, link: p.Link, **attrs: Any) -> None:
    try:
        ipr.link("set", index=link.index, **attrs)
    except NetlinkError as exc:
        if "address" not in attrs or exc.code != 16:  # EBUSY: some links change MAC only when down
            raise
        ipr.link("set", index=link.index, state="down")
        ipr.link("set", index=link.index, **attrs)
        ipr.link("set", index=link.index, state="up")


def ensure_address(ipr: Any, link: p.Link, cidr: str) -> None:
    iface = ipaddress.ip_interface(cidr)
    try:
        ipr.addr("add", index=link.index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    except NetlinkError as exc:
        if exc.code != _EEXIST:
            raise


# ---------------------------------------------------------------------------------------
# routes


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
    (the request's default is universe) misses a scope-link subnet route and answers "no such
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


def _has_route(routes: list[p.RouteEntry], route: p.RouteEntry) -> bool:
    return any(
        r.dst == route.dst and r.dev == route.dev and (not route.gw or r.gw == route.gw) for r in routes
    )


# ---------------------------------------------------------------------------------------
# rules


def read_rules(ipr: Any) -> list[Any]:
    """Every IPv4 and IPv6 rule (one dump)."""
    return [m for m in ipr.get_rules() if m["family"] in _VERSION]


def _net(addr: Any, length: int) -> str:
    return str(ipaddress.ip_network(f"{addr}/{length}", strict=False)) if addr else ""


def _rule_matches(msg: Any, rule: p.RuleEntry) -> bool:
    return (
        msg["family"] == _family(rule.version)
        and int(msg.get("table") or 0) == rule.table
        and int(msg.get("priority") or 0) == rule.priority
        and _net(msg.get("src"), msg["src_len"]) == rule.src
        and _net(msg.get("dst"), msg["dst_len"]) == rule.dst
        and int(msg.get("fwmark") or 0) == rule.fwmark
    )


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


def ensure_rules(ipr: Any, rules: Iterable[p.RuleEntry]) -> None:
    """Add each rule unless an identical one exists: ``add`` is sent with NLM_F_EXCL, so the
    kernel itself answers EEXIST for a rule already there (no dump needed)."""
    for rule in rules:
        try:
            ipr.rule("add", **_rule_args(rule))
        except NetlinkError as exc:
            if exc.code != _EEXIST:
                raise


def delete_rules(ipr: Any, rules: Iterable[p.RuleEntry]) -> None:
    """Delete every copy of each rule (one dump); a rule already gone is fine (DEL)."""
    wanted = list(rules)
    if not wanted:
        return
    for msg in read_rules(ipr):
        rule = next((r for r in wanted if _rule_matches(msg, r)), None)
        if rule is None:
            continue
        try:
            ipr.rule("del", **_rule_args(rule))
        except NetlinkError as exc:
            if exc.code not in _ENOENT:
                raise


# ---------------------------------------------------------------------------------------
# neighbours


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


def delete_stale_neighs(ipr: Any, neighs: list[p.NeighEntry], links: dict[str, p.Link]) -> None:
    """Remove entries for the neighbours' addresses on any other link (an earlier pod's): one dump."""
    keep = {n.ip: links[n.dev].index for n in neighs}
    if not keep:
        return
    for msg in ipr.get_neighbours():
        ip = msg.get("dst")
        if ip in keep and msg["ifindex"] != keep[ip]:
            try:
                ipr.neigh("del", dst=ip, ifindex=msg["ifindex"], family=msg["family"])
            except NetlinkError as exc:
                if exc.code not in _ENOENT:
                    raise


def _neighs(ipr: Any, link: p.Link) -> list[tuple[str, str]]:
    return [(str(m.get("dst")), str(m.get("lladdr")).lower()) for m in ipr.get_neighbours(ifindex=link.index)]


# ---------------------------------------------------------------------------------------
# plan


def apply(
    plan: p.Plan, pod: Any, host: Any, pod_links: dict[str, p.Link], host_links: dict[str, p.Link]
) -> None:
    """Make the plan true: host side first, so the pod never routes to a host that drops it."""
    delete_stale_neighs(host, plan.host_neighs, host_links)
    for neigh in plan.host_neighs:
        replace_neigh(host, neigh, host_links)
    for route in plan.host_routes:
        replace_route(host, route, host_links)
    ensure_rules(host, plan.host_rules)
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
    ensure_rules(pod, plan.pod_rules)


def verify(
    plan: p.Plan, pod: Any, host: Any, pod_links: dict[str, p.Link], host_links: dict[str, p.Link]
) -> list[str]:
    """What the plan says should exist and does not, as readable strings."""
    missing: list[str] = []
    if plan.host_dev not in host_links:
        return [f"host link {plan.host_dev}"]
    if plan.pod_dev not in pod_links:
        return [f"pod link {plan.pod_dev}"]
    for side, ipr, links, routes, rules in (
        ("host", host, host_links, plan.host_routes, plan.host_rules),
        ("pod", pod, pod_links, [*plan.pod_routes, *plan.pod_moves], plan.pod_rules),
    ):
        tables = {t: read_routes(ipr, links, t) for t in sorted({r.table for r in routes})}
        for route in routes:
            if not _has_route(tables[route.table], route):
                via = f" via {route.gw}" if route.gw else ""
                missing.append(f"{side} route {route.dst}{via} dev {route.dev} table {route.table}")
        present = read_rules(ipr) if rules else []
        for rule in rules:
            if not any(_rule_matches(m, rule) for m in present):
                what = (
                    f"from {rule.src}"
                    if rule.src
                    else f"to {rule.dst}"
                    if rule.dst
                    else f"fwmark {rule.fwmark:#x}"
                )
                missing.append(f"{side} rule {rule.priority}: {what} lookup {rule.table}")
    if plan.host_neighs:
        have = set(_neighs(host, host_links[plan.host_dev]))
        for neigh in plan.host_neighs:
            if (neigh.ip, neigh.mac.lower()) not in have:
                missing.append(f"host neighbour {neigh.ip} lladdr {neigh.mac} dev {neigh.dev}")
    return missing


def remove_host_side(
    host: Any, host_dev: str | None, ips: Iterable[str], table: int, delete_dev: bool, *, expand: bool = True
) -> None:
    """DEL on the host: the pod's routes and rules in ``table`` and, if ours, its veth.

    A route to one of the addresses that points elsewhere belongs to a newer pod that reuses
    the address; it is left alone, and so is the rule while such a route exists. When the
    veth is deleted, every route of ``table`` through it names an address of the pod; the
    kernel drops those routes and the neighbour entries with the link, so only the rules are
    deleted by hand, before the link. Without a veth (the pod's namespace, and the peer with
    it, is already gone) there is no link to delete. Must run in the host's namespace (the
    link is deleted from a thread this one starts).

    ``expand`` (DEL): the rules of every address routed through a veth being deleted go too,
    which covers a DEL without prevResult. GC passes False: it removes the rules of the
    recorded addresses only, never another network's attachment that routes through the veth.
    """
    dev = get_link(host, name=host_dev) if host_dev else None
    links = {dev.name: dev} if dev is not None else {}
    routes, others = _split_table(host, table, dev)
    targets = set(ips)
    if dev is not None and delete_dev and expand:
        targets |= {str(ipaddress.ip_network(r.dst).network_address) for r in routes}
    rules: list[p.RuleEntry] = []
    for ip in sorted(targets):
        addr = ipaddress.ip_address(ip)
        prefix = f"{ip}/{addr.max_prefixlen}"
        if not (dev is not None and delete_dev):
            for r in routes:
                if r.dst == prefix:
                    delete_route(host, r, links, missing_ok=True)  # a concurrent DEL may be first
                    _delete_neigh(host, ip, dev)
        if prefix not in others:
            rules.append(p.RuleEntry(addr.version, table, p.HOST_RULE_PRIORITY, dst=prefix))
    delete_rules(host, rules)
    if dev is not None and delete_dev:
        delete_link(host, dev)


def delete_link(ipr: Any, link: p.Link, deadline_s: float = 10.0) -> None:
    """Delete ``link`` (a veth: its peer goes too) and return once it has left the namespace.

    The kernel answers a link delete only after its own clean-up waits (an RCU barrier and
    the device's last references: ~15-20 ms measured here, two thirds of a DEL), although
    the link is unlisted, its name free and its routes flushed within a few milliseconds.
    So the request is sent from a thread of its own, opened in this thread's namespace, and
    this thread returns as soon as ``ipr`` no longer finds the link; the other thread ends
    when the kernel is done. It is not a daemon: a process exiting still waits for it.
    """
    failure: list[BaseException] = []

    def send() -> None:
        own = Rtnl()
        try:
            own.link("del", index=link.index)
        except NetlinkError as exc:
            if exc.code not in _ENOENT:
                failure.append(exc)
        except BaseException as exc:  # reported by the waiting thread
            failure.append(exc)
        finally:
            own.close()

    sender = threading.Thread(target=send, name=f"link-del:{link.name}")
    sender.start()
    deadline = time.monotonic() + deadline_s
    while get_link(ipr, index=link.index) is not None:
        sender.join(0.0005)  # each pass waits for the sender a little, then looks again
        if failure:
            raise CoordinatorError(f"deleting link {link.name}: {failure[0]}")
        if not sender.is_alive() and get_link(ipr, index=link.index) is not None:
            raise CoordinatorError(f"deleting link {link.name}: the kernel kept it")
        if time.monotonic() > deadline:
            raise CoordinatorError(f"deleting link {link.name}: still there after {deadline_s:.0f} s")


def _split_table(host: Any, table: int, dev: p.Link | None) -> tuple[list[p.RouteEntry], set[str]]:
    """``table``'s routes through ``dev``, and the destinations of those through any other link
    (newer pods' routes), from one dump."""
    ours: list[p.RouteEntry] = []
    others: set[str] = set()
    by_index = {dev.index: dev.name} if dev is not None else {}
    for msg in host.get_routes(table=table):
        if msg["family"] not in _VERSION or msg["type"] != RTN_UNICAST:
            continue
        if int(msg.get("table") or msg["table"]) != table:
            continue
        entry = _route_entry(msg, by_index)
        if entry is not None:
            ours.append(entry)
            continue
        dst = msg.get("dst") or ("0.0.0.0" if msg["family"] == socket.AF_INET else "::")
        others.add(str(ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False)))
    return ours, others


def _delete_neigh(host: Any, ip: str, dev: p.Link | None) -> None:
    if dev is None:
        return
    try:
        host.neigh("del", dst=ip, ifindex=dev.index, family=_family(ipaddress.ip_address(ip).version))
    except NetlinkError:
        pass
