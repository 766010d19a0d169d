"""The coordinator's entry points for the agent: ADD, DEL and CHECK of one pod NIC.

Owns the order of the steps (upstream's cmd/coordinator/cmd/command_add.go): bring the NIC up,
resolve the mode, detect
conflicts then the gateway, set MAC/txqueuelen/sysctls, make the veth pair, plan and apply
routes, rules, neighbours and connmark, announce. The pod side is the namespace at
``netns`` (CNI_NETNS); the host side is ``host_netns`` (None: the caller's own namespace,
which is how the agent runs on a node; tests pass their "node" namespace).

Netlink, libnftables and raw sockets block, so each call is one fresh thread
(``namespaces.in_fresh_thread``) that opens one netlink socket on the host, enters the pod's
namespace once and opens one there, and does every step with them: the pod is read once
(links, addresses, then the main table after the veth exists), the host only for what the
plan needs, and nothing is re-read to plan or apply. CHECK reads the same way; DEL reads the
pod only when it must (an overlay NIC's host device, or no addresses in prevResult).

What ADD leaves on the node is described by a ``host_records.HostSide``: ADD hands it to
``on_host_side`` after planning and before the first node-side route or rule is made (the
agent records it per attachment), DEL takes it back as ``known`` (it then needs neither
prevResult nor the pod), and ``remove`` deletes exactly what a record names, for GC.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from spiderpool_coordinator import detection, mangle, namespaces, netlink
from spiderpool_coordinator import plan as p
from spiderpool_coordinator.config import MODE_DISABLED, MODE_UNDERLAY, CoordinatorConfig
from spiderpool_coordinator.errors import CheckFailed, CoordinatorError
from spiderpool_coordinator.host_records import HostSide
from spiderpool_coordinator.rtnetlink import NetlinkError

HostSideSink = Callable[[HostSide], None]


@dataclass(frozen=True)
class Call:
    """One CNI call for one pod NIC, as the agent received it."""

    netns: str
    ifname: str
    container_id: str
    cfg: CoordinatorConfig
    prev_result: dict[str, Any] = field(default_factory=dict)
    host_netns: str | None = None
    on_host_side: HostSideSink | None = None  # ADD: told what it is about to leave on the node
    known: HostSide | None = None  # DEL: what the attachment's ADD recorded


async def add(
    netns: str,
    ifname: str,
    container_id: str,
    prev_result: dict[str, Any],
    cfg: CoordinatorConfig,
    *,
    host_netns: str | None = None,
    on_host_side: HostSideSink | None = None,
) -> dict[str, Any]:
    """Set up routing for ``ifname``; return prevResult (the coordinator does not change it).

    ``on_host_side`` is called (in the worker thread) with what the call is about to leave on
    the node, before it makes the first node-side route or rule."""
    if cfg.mode != MODE_DISABLED:
        call = Call(netns, ifname, container_id, cfg, prev_result, host_netns, on_host_side)
        await namespaces.in_fresh_thread(_add, _present(call), name=f"coordinator-add:{ifname}")
    return prev_result


async def del_(
    netns: str,
    ifname: str,
    container_id: str,
    prev_result: dict[str, Any] | None,
    cfg: CoordinatorConfig,
    *,
    host_netns: str | None = None,
    known: HostSide | None = None,
) -> None:
    """Remove the host side of ``ifname``; succeeds when there is nothing left to remove.

    ``known`` is what the attachment's ADD recorded: its addresses and host device count
    even without prevResult or the pod's namespace."""
    if cfg.mode != MODE_DISABLED or known is not None:
        call = Call(netns, ifname, container_id, cfg, prev_result or {}, host_netns, known=known)
        await namespaces.in_fresh_thread(_del, call, name=f"coordinator-del:{ifname}")


async def remove(side: HostSide, *, host_netns: str | None = None) -> None:
    """Remove exactly what ``side`` names from the node (GC of an attachment no runtime holds).

    Unlike DEL it reads nothing from the pod and infers nothing from the kernel: only the
    recorded addresses' routes, neighbours and rules, and the device when the coordinator
    owns it. A device the coordinator does not own counts only while it is the recorded one
    (same index); a rule for an address that a route through another link still serves (a
    newer pod reusing it) is kept."""
    await namespaces.in_fresh_thread(_remove, side, host_netns, name=f"coordinator-gc:{side.host_dev}")


async def check(
    netns: str,
    ifname: str,
    container_id: str,
    prev_result: dict[str, Any],
    cfg: CoordinatorConfig,
    *,
    host_netns: str | None = None,
) -> None:
    """Raise ``CheckFailed`` naming every route, rule, neighbour or link ADD made that is gone."""
    if cfg.mode != MODE_DISABLED:
        call = Call(netns, ifname, container_id, cfg, prev_result, host_netns)
        try:
            _present(call)
        except CoordinatorError as exc:
            raise CheckFailed(f"coordinator CHECK for {ifname}: {exc}") from None
        await namespaces.in_fresh_thread(_check, call, name=f"coordinator-check:{ifname}")


# ---------------------------------------------------------------------------------------


def _present(call: Call) -> Call:
    if not namespaces.exists(call.netns):
        raise CoordinatorError(f"network namespace {call.netns} does not exist")
    return call


def result_ips(prev_result: dict[str, Any], ifname: str) -> list[tuple[p.IPInterface, str]]:
    """(address, gateway) pairs prevResult gives for ``ifname`` (the sandbox interface of that name)."""
    interfaces = prev_result.get("interfaces") or []
    wanted = {i for i, itf in enumerate(interfaces) if itf.get("name") == ifname and itf.get("sandbox")}
    out: list[tuple[p.IPInterface, str]] = []
    for entry in prev_result.get("ips") or []:
        index = entry.get("interface")
        if wanted and index not in wanted:
            continue
        try:
            out.append((ipaddress.ip_interface(entry["address"]), str(entry.get("gateway") or "")))
        except (KeyError, ValueError):
            continue
    return out


def _gateways(prev_result: dict[str, Any], ifname: str, addrs: list[p.IPInterface]) -> dict[int, str]:
    ours = {a.ip for a in addrs}
    gws: dict[int, str] = {}
    for iface, gw in result_ips(prev_result, ifname):
        if gw and (not ours or iface.ip in ours):
            gws.setdefault(iface.version, gw)
    return gws


def _pod_sysctls(cfg: CoordinatorConfig, ifname: str, families: tuple[int, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    if 6 in families:
        for scope in ("all", "default", ifname):
            values[f"net.ipv6.conf.{scope}.disable_ipv6"] = "0"
    if cfg.pod_rp_filter >= 0:
        for scope in ("all", ifname):
            values[f"net.ipv4.conf.{scope}.rp_filter"] = str(cfg.pod_rp_filter)
    return values


def _host_device(
    mode: str,
    cfg: CoordinatorConfig,
    container_id: str,
    pod_state: p.PodState,
    host: Any,
    *,
    known: p.Link | None = None,
) -> tuple[p.Link, str]:
    """(host link, pod device) that connect the pod and the host; ``known``: the host end of
    veth0 when this call just made or checked it."""
    if mode == MODE_UNDERLAY:
        name = p.host_veth_name(container_id)
        if p.POD_VETH not in pod_state.links:
            raise CoordinatorError(f"{p.POD_VETH} is missing in the pod (host side {name})")
        link = known if known is not None else netlink.get_link(host, name=name)
        peer = pod_state.links[p.POD_VETH].peer_index
        if link is None and peer:
            link = netlink.get_link(host, index=peer)
        if link is None:
            raise CoordinatorError(f"the host side of {p.POD_VETH} is missing")
        return link, p.POD_VETH
    first = cfg.pod_default_cni_nic
    if first not in pod_state.links:
        raise CoordinatorError(f"overlay mode: the overlay interface {first} is missing in the pod")
    peer = pod_state.links[first].peer_index
    link = netlink.get_link(host, index=peer) if peer else None
    if link is None or link.kind != "veth":
        raise CoordinatorError(f"overlay mode: the host peer of {first} is not a veth in the host namespace")
    if link.master:  # a bridge port (bridge plugin): the host's address lives on the bridge
        bridge = netlink.get_link(host, index=link.master)
        if bridge is None:
            raise CoordinatorError(f"overlay mode: the bridge of host link {link.name} is missing")
        link = bridge
    return link, first


def _plan(
    call: Call, mode: str, first: bool, pod_state: p.PodState, host: Any, *, host_end: p.Link | None = None
) -> tuple[p.Plan, p.HostState]:
    ifname = call.ifname
    addrs = pod_state.addrs.get(ifname, [])
    host_link, pod_dev = _host_device(mode, call.cfg, call.container_id, pod_state, host, known=host_end)
    host_state = netlink.read_host(host, [str(a.ip) for a in addrs], host_link)
    plan = p.build_plan(
        call.cfg,
        ifname=ifname,
        mode=mode,
        first=first,
        pod=pod_state,
        host=host_state,
        host_dev=host_link.name,
        pod_dev=pod_dev,
        gateways=_gateways(call.prev_result, ifname, addrs),
    )
    return plan, host_state


def _add(call: Call) -> None:
    """ADD in this (fresh) thread, which ends up in the pod's namespace."""
    netns, ifname, container_id, cfg = call.netns, call.ifname, call.container_id, call.cfg
    with namespaces.sides(netns, call.host_netns) as (pod, host):
        links = netlink.read_links(pod)
        nic = links.get(ifname)
        if nic is None:
            raise CoordinatorError(f"interface {ifname} not found in {netns}")
        if not nic.up:
            netlink.set_link(pod, nic, state="up")
            nic = links[ifname] = replace(nic, up=True)
        mode, first = p.resolve_mode(cfg.mode, ifname, cfg.pod_default_cni_nic, p.POD_VETH in links)
        all_addrs = netlink.read_addrs(pod, links)
        addrs = all_addrs.get(ifname, [])
        if not addrs:
            raise CoordinatorError(f"interface {ifname} has no IP address; run the coordinator after IPAM")
        families = tuple(sorted({a.version for a in addrs}))
        namespaces.write_sysctls(None, _pod_sysctls(cfg, ifname, families))
        ips = [a.ip for a in addrs]
        tries = detection.Tries(cfg.detect_retries, cfg.detect_timeout)
        if cfg.detect_ip_conflict:
            detection.check_conflicts(None, ifname, nic.mac, ips, tries)
        if cfg.detect_gateway:
            gws = _gateways(call.prev_result, ifname, addrs)
            pairs = [(ip, ipaddress.ip_address(gws[ip.version])) for ip in ips if ip.version in gws]
            detection.check_gateways(None, ifname, nic.mac, pairs, tries)
        if cfg.pod_mac_prefix:
            source = next((ip for ip in ips if ip.version == 4), ips[0])
            mac = p.mac_from_prefix(cfg.pod_mac_prefix, source)
            netlink.set_link(pod, nic, address=mac)
            nic = links[ifname] = replace(nic, mac=mac)
        if cfg.tx_queue_len > 0:
            netlink.set_link(pod, nic, txqlen=cfg.tx_queue_len)
        host_end = None
        if mode == MODE_UNDERLAY and first:
            name = p.host_veth_name(container_id)
            links[p.POD_VETH], host_end = netlink.ensure_veth(
                pod, host, netns, name, mtu=cfg.veth_mtu, pod_links=links
            )
            if cfg.veth_link_address and ipaddress.ip_address(cfg.veth_link_address).version == 4:
                netlink.ensure_address(pod, links[p.POD_VETH], f"{cfg.veth_link_address}/32")
        # The main table is read last: bringing links up adds the kernel's routes.
        pod_state = p.PodState(links, all_addrs, netlink.read_routes(pod, links, p.MAIN_TABLE))
        the_plan, host_state = _plan(call, mode, first, pod_state, host, host_end=host_end)
        if call.on_host_side is not None:
            owns = mode == MODE_UNDERLAY and first
            host_link = host_state.links[the_plan.host_dev]
            call.on_host_side(
                HostSide(
                    host_dev=the_plan.host_dev,
                    owns_dev=owns,
                    ips=tuple(str(a.ip) for a in addrs),
                    table=cfg.host_rule_table,
                    host_index=0 if owns else host_link.index,
                )
            )
        netlink.apply(the_plan, pod, host, links, host_state.links)
        if the_plan.connmark:
            mangle.ensure()
        detection.announce(ifname, nic.mac, ips)


def _check(call: Call) -> None:
    """CHECK in this (fresh) thread, which ends up in the pod's namespace."""
    try:
        missing = _missing(call)
    except (CoordinatorError, FileNotFoundError) as exc:
        raise CheckFailed(f"coordinator CHECK for {call.ifname}: {exc}") from None
    if missing:
        raise CheckFailed(f"coordinator CHECK for {call.ifname}: missing {'; '.join(missing)}")


def _missing(call: Call) -> list[str]:
    ifname, cfg = call.ifname, call.cfg
    with namespaces.sides(call.netns, call.host_netns) as (pod, host):
        pod_state = netlink.read_pod(pod)
        if ifname not in pod_state.links:
            raise CoordinatorError(f"interface {ifname} not found in {call.netns}")
        veth0 = p.POD_VETH in pod_state.links
        mode, first = p.resolve_mode(cfg.mode, ifname, cfg.pod_default_cni_nic, veth0)
        the_plan, host_state = _plan(call, mode, first, pod_state, host)
        missing = netlink.verify(the_plan, pod, host, pod_state.links, host_state.links)
        if the_plan.connmark:
            missing += mangle.missing()
    return missing


def _del(call: Call) -> None:
    """DEL in this (fresh) thread, which stays in the host's namespace; the pod is read only
    when it must be, through a socket of its own."""
    ifname, cfg, known = call.ifname, call.cfg, call.known
    first_nic = ifname == cfg.pod_default_cni_nic
    ips = {str(iface.ip) for iface, _ in result_ips(call.prev_result, ifname)}
    host_dev = p.host_veth_name(call.container_id)
    owns_veth = True
    table = cfg.host_rule_table
    if known is not None:
        # The record says what ADD made, whatever the configuration says now.
        ips |= set(known.ips)
        host_dev, owns_veth, first_nic, table = known.host_dev, known.owns_dev, known.owns_dev, known.table
    with namespaces.sides(None, call.host_netns) as (_, host):
        # The first NIC's veth and every route through it are found on the host; another NIC
        # may be an overlay one, whose host device only the pod can tell.
        if known is None and (not first_nic or not ips) and namespaces.exists(call.netns):
            with contextlib.suppress(CoordinatorError, OSError, NetlinkError):
                pod = namespaces.iproute(call.netns)
                try:
                    state = netlink.read_pod(pod)
                finally:
                    pod.close()
                ips |= {str(a.ip) for a in state.addrs.get(ifname, [])}
                if p.POD_VETH not in state.links and not first_nic:
                    link, _ = _host_device("overlay", cfg, call.container_id, state, host)
                    host_dev, owns_veth = link.name, False
        netlink.remove_host_side(host, host_dev, ips, table, owns_veth and first_nic)


def _remove(side: HostSide, host_netns: str | None) -> None:
    """GC of one recorded attachment, in this (fresh) thread, in the host's namespace."""
    with namespaces.sides(None, host_netns) as (_, host):
        dev: str | None = side.host_dev
        if not side.owns_dev and side.host_index:
            link = netlink.get_link(host, name=side.host_dev)
            if link is None or link.index != side.host_index:
                dev = None  # the recorded device is gone; the name may now be another pod's
        netlink.remove_host_side(host, dev, side.ips, side.table, side.owns_dev, expand=False)
