"""The coordinator's entry points for the agent: ADD, DEL and CHECK of one pod NIC.

Owns the order of the steps (reference 5.3): bring the NIC up, resolve the mode, detect
conflicts then the gateway, set MAC/txqueuelen/sysctls, make the veth pair, plan and apply
routes, rules, neighbours and connmark, announce. The pod side is the namespace at
``netns`` (CNI_NETNS); the host side is ``host_netns`` (None: the caller's own namespace,
which is how the agent runs on a node; tests pass their "node" namespace). pyroute2 and
raw sockets block, so each call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from spiderpool_coordinator import detection, mangle, namespaces, netlink
from spiderpool_coordinator import plan as p
from spiderpool_coordinator.config import MODE_DISABLED, MODE_UNDERLAY, CoordinatorConfig
from spiderpool_coordinator.errors import CheckFailed, CoordinatorError


@dataclass(frozen=True)
class Call:
    """One CNI call for one pod NIC, as the agent received it."""

    netns: str
    ifname: str
    container_id: str
    cfg: CoordinatorConfig
    prev_result: dict[str, Any] = field(default_factory=dict)
    host_netns: str | None = None


async def add(
    netns: str,
    ifname: str,
    container_id: str,
    prev_result: dict[str, Any],
    cfg: CoordinatorConfig,
    *,
    host_netns: str | None = None,
) -> dict[str, Any]:
    """Set up routing for ``ifname``; return prevResult (the coordinator does not change it)."""
    await asyncio.to_thread(_add, Call(netns, ifname, container_id, cfg, prev_result, host_netns))
    return prev_result


async def del_(
    netns: str,
    ifname: str,
    container_id: str,
    prev_result: dict[str, Any] | None,
    cfg: CoordinatorConfig,
    *,
    host_netns: str | None = None,
) -> None:
    """Remove the host side of ``ifname``; succeeds when there is nothing left to remove."""
    await asyncio.to_thread(_del, Call(netns, ifname, container_id, cfg, prev_result or {}, host_netns))


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
    await asyncio.to_thread(_check, Call(netns, ifname, container_id, cfg, prev_result, host_netns))


# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _sockets(netns: str, host_netns: str | None) -> Iterator[tuple[Any, Any]]:
    if not namespaces.exists(netns):
        raise CoordinatorError(f"network namespace {netns} does not exist")
    pod = namespaces.iproute(netns)
    try:
        host = namespaces.iproute(host_netns)
        try:
            yield pod, host
        finally:
            host.close()
    finally:
        pod.close()


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


def _devices(
    mode: str, cfg: CoordinatorConfig, container_id: str, pod_state: p.PodState, host: Any
) -> tuple[str, str]:
    """(host device, pod device) that connect the pod and the host."""
    host_links = netlink.read_links(host)
    if mode == MODE_UNDERLAY:
        name = p.host_veth_name(container_id)
        if p.POD_VETH not in pod_state.links:
            raise CoordinatorError(f"{p.POD_VETH} is missing in the pod (host side {name})")
        if name not in host_links:
            peer = pod_state.links[p.POD_VETH].peer_index
            name = next((n for n, link in host_links.items() if link.index == peer), "")
        if not name:
            raise CoordinatorError(f"the host side of {p.POD_VETH} is missing")
        return name, p.POD_VETH
    first = cfg.pod_default_cni_nic
    if first not in pod_state.links:
        raise CoordinatorError(f"overlay mode: the overlay interface {first} is missing in the pod")
    peer = pod_state.links[first].peer_index
    link = next((lk for lk in host_links.values() if lk.index == peer and lk.kind == "veth"), None)
    if link is None:
        raise CoordinatorError(f"overlay mode: the host peer of {first} is not a veth in the host namespace")
    if link.master:  # a bridge port (bridge plugin): the host's address lives on the bridge
        link = next(lk for lk in host_links.values() if lk.index == link.master)
    return link.name, first


def _plan(call: Call, pod: Any, host: Any) -> p.Plan:
    netns, ifname, container_id = call.netns, call.ifname, call.container_id
    prev_result, cfg = call.prev_result, call.cfg
    pod_state = netlink.read_pod(pod)
    if ifname not in pod_state.links:
        raise CoordinatorError(f"interface {ifname} not found in {netns}")
    mode, first = p.resolve_mode(cfg.mode, ifname, cfg.pod_default_cni_nic, p.POD_VETH in pod_state.links)
    addrs = pod_state.addrs.get(ifname, [])
    host_dev, pod_dev = _devices(mode, cfg, container_id, pod_state, host)
    host_state = netlink.read_host(host, [str(a.ip) for a in addrs], host_dev)
    return p.build_plan(
        cfg,
        ifname=ifname,
        mode=mode,
        first=first,
        pod=pod_state,
        host=host_state,
        host_dev=host_dev,
        pod_dev=pod_dev,
        gateways=_gateways(prev_result, ifname, addrs),
    )


def _add(call: Call) -> None:
    netns, ifname, container_id = call.netns, call.ifname, call.container_id
    prev_result, cfg, host_netns = call.prev_result, call.cfg, call.host_netns
    if cfg.mode == MODE_DISABLED:
        return
    with _sockets(netns, host_netns) as (pod, host):
        links = netlink.read_links(pod)
        if ifname not in links:
            raise CoordinatorError(f"interface {ifname} not found in {netns}")
        netlink.set_link(pod, ifname, state="up")
        mode, first = p.resolve_mode(cfg.mode, ifname, cfg.pod_default_cni_nic, p.POD_VETH in links)
        addrs = netlink.read_addrs(pod, links).get(ifname, [])
        if not addrs:
            raise CoordinatorError(f"interface {ifname} has no IP address; run the coordinator after IPAM")
        families = tuple(sorted({a.version for a in addrs}))
        namespaces.write_sysctls(netns, _pod_sysctls(cfg, ifname, families))
        ips = [a.ip for a in addrs]
        tries = detection.Tries(cfg.detect_retries, cfg.detect_timeout)
        if cfg.detect_ip_conflict:
            detection.check_conflicts(netns, ifname, links[ifname].mac, ips, tries)
        if cfg.detect_gateway:
            gws = _gateways(prev_result, ifname, addrs)
            pairs = [(ip, ipaddress.ip_address(gws[ip.version])) for ip in ips if ip.version in gws]
            detection.check_gateways(netns, ifname, links[ifname].mac, pairs, tries)
        if cfg.pod_mac_prefix:
            source = next((ip for ip in ips if ip.version == 4), ips[0])
            netlink.set_link(pod, ifname, address=p.mac_from_prefix(cfg.pod_mac_prefix, source))
        if cfg.tx_queue_len > 0:
            netlink.set_link(pod, ifname, txqlen=cfg.tx_queue_len)
        if mode == MODE_UNDERLAY and first:
            netlink.ensure_veth(pod, host, netns, p.host_veth_name(container_id), cfg.veth_mtu)
            if cfg.veth_link_address and ipaddress.ip_address(cfg.veth_link_address).version == 4:
                netlink.ensure_address(pod, p.POD_VETH, f"{cfg.veth_link_address}/32")
        the_plan = _plan(call, pod, host)
        netlink.apply(the_plan, pod, host)
        if the_plan.connmark:
            mangle.ensure(netns, the_plan.families)
        mac = netlink.read_links(pod)[ifname].mac
    detection.announce_in(netns, ifname, mac, ips)


def _check(call: Call) -> None:
    netns, ifname, cfg, host_netns = call.netns, call.ifname, call.cfg, call.host_netns
    if cfg.mode == MODE_DISABLED:
        return
    try:
        with _sockets(netns, host_netns) as (pod, host):
            the_plan = _plan(call, pod, host)
            missing = netlink.verify(the_plan, pod, host)
    except CoordinatorError as exc:
        raise CheckFailed(f"coordinator CHECK for {ifname}: {exc}") from None
    if the_plan.connmark:
        missing += mangle.missing(netns, the_plan.families)
    if missing:
        raise CheckFailed(f"coordinator CHECK for {ifname}: missing {'; '.join(missing)}")


def _del(call: Call) -> None:
    netns, ifname, container_id = call.netns, call.ifname, call.container_id
    prev_result, cfg, host_netns = call.prev_result, call.cfg, call.host_netns
    if cfg.mode == MODE_DISABLED:
        return
    ips = {str(iface.ip) for iface, _ in result_ips(prev_result, ifname)}
    host_dev: str | None = p.host_veth_name(container_id)
    owns_veth = True
    if namespaces.exists(netns):
        with contextlib.suppress(CoordinatorError, OSError), _sockets(netns, host_netns) as (pod, host):
            state = netlink.read_pod(pod)
            ips |= {str(a.ip) for a in state.addrs.get(ifname, [])}
            if p.POD_VETH not in state.links and ifname != cfg.pod_default_cni_nic:
                host_dev, _ = _devices("overlay", cfg, container_id, state, host)
                owns_veth = False
    delete_dev = owns_veth and ifname == cfg.pod_default_cni_nic
    host = namespaces.iproute(host_netns)
    try:
        netlink.remove_host_side(host, host_dev, ips, cfg.host_rule_table, delete_dev)
    finally:
        host.close()
