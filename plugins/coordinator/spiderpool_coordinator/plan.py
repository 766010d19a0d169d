"""What the coordinator intends to change, computed from the configuration and a snapshot.

Pure: no netlink, no namespaces. ``netlink.py`` reads the pod and host namespaces into a
``PodState`` and a ``HostState``, this module turns them into a ``Plan`` (routes, rules and
neighbour entries on each side, routes to move out of the main table), and ``netlink.py``
applies the plan (ADD) or verifies it (CHECK). Decisions encoded here (upstream's
cmd/coordinator/cmd/command_add.go):

* Modes: ``auto`` is underlay when the NIC is the first CNI NIC (eth0) or ``veth0`` already
  exists, else overlay. Underlay's first NIC gets the veth pair, the host routes and the
  connmark reply table 100; every NIC after it gets its own policy table.
* Policy tables: table ``100 + n`` for the n-th pod NIC (eth0 first, then net1, net2, ... in
  name order, ``veth0`` and ``lo`` not counted), so eth0 is 101, net1 102, net2 103; table 100
  is the veth0 reply table. Deterministic from names, hence the same on a repeated ADD.
* Rule priorities in the pod: the fwmark rule (replies to connections that entered through
  veth0) at 999 comes before the per-NIC ``from <ip>`` rules at 1000, so a connection the
  node opens to any of the pod's addresses is answered through veth0. On the host, one
  ``to <pod ip> lookup hostRuleTable`` rule per address at priority 1000 (upstream's rule
  priority), so DEL can remove exactly the pod's rules.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from spiderpool_coordinator.config import MODE_DISABLED, MODE_OVERLAY, MODE_UNDERLAY, CoordinatorConfig
from spiderpool_coordinator.errors import CoordinatorError, InvalidCoordinatorConfig

POD_VETH = "veth0"
REPLY_TABLE = 100  # connmark table: default via the host through veth0
NIC_TABLE_BASE = 100
FWMARK = 0x1
FWMARK_RULE_PRIORITY = 999
NIC_RULE_PRIORITY = 1000
HOST_RULE_PRIORITY = 1000
MAIN_TABLE = 254
# Host links whose addresses are never "the host" for a pod (upstream's exclusion list).
_EXCLUDED_HOST_LINKS = re.compile(
    r"^(docker|cbr|dummy|virbr|lxcbr|veth|cali|flannel|kube-ipvs|cni|vx-submariner|cilium)|^lo$"
)

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_veth_name(container_id: str) -> str:
    """``veth`` + the first 11 characters of the container ID (fits IFNAMSIZ, as upstream)."""
    return "veth" + container_id[:11]


def excluded_host_link(name: str) -> bool:
    return _EXCLUDED_HOST_LINKS.search(name) is not None


def mac_from_prefix(prefix: str, ip: IPAddress) -> str:
    """The 2-byte prefix followed by the last 4 bytes of the address (upstream's
    cmd/coordinator/cmd/utils.go)."""
    tail = ip.packed[-4:]
    return prefix.lower() + ":" + ":".join(f"{b:02x}" for b in tail)


def resolve_mode(mode: str, ifname: str, first_nic: str, veth0_exists: bool) -> tuple[str, bool]:
    """(effective mode, first invoke) for this NIC (upstream's cmd/coordinator/cmd/command_add.go)."""
    if mode == MODE_DISABLED:
        return MODE_DISABLED, False
    if mode == "auto":
        mode = MODE_UNDERLAY if ifname == first_nic or veth0_exists else MODE_OVERLAY
    if mode == MODE_UNDERLAY:
        first = ifname == first_nic
        if not first and not veth0_exists:
            raise CoordinatorError(
                f"underlay mode: {POD_VETH} is missing in the pod; enable the coordinator for the first "
                f"interface {first_nic} before {ifname}"
            )
        return MODE_UNDERLAY, first
    if mode == MODE_OVERLAY:
        if ifname == first_nic:
            raise CoordinatorError(f"overlay mode: {ifname} is the overlay CNI's interface; nothing to do")
        if veth0_exists:
            raise CoordinatorError(f"overlay mode: {POD_VETH} exists in the pod, which is underlay mode")
        return MODE_OVERLAY, False
    raise InvalidCoordinatorConfig(f"unknown coordinator mode {mode!r}")


def _nic_key(name: str, first_nic: str) -> tuple[int, str, int, str]:
    m = re.match(r"^(.*?)(\d*)$", name)
    prefix, digits = (m.group(1), m.group(2)) if m else (name, "")
    return (0 if name == first_nic else 1, prefix, int(digits) if digits else -1, name)


def nic_table(nic: str, nics: Iterable[str], first_nic: str) -> int:
    """Policy table of ``nic``: 100 + its position among the pod NICs (1-based, eth0 first)."""
    ordered = sorted({*nics, nic} - {POD_VETH, "lo"}, key=lambda n: _nic_key(n, first_nic))
    return NIC_TABLE_BASE + ordered.index(nic) + 1


# ---------------------------------------------------------------------------------------
# snapshots


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    mac: str
    kind: str = ""
    peer_index: int = 0  # IFLA_LINK (a veth's peer index, in the peer's namespace)
    master: int = 0
    up: bool = False  # IFF_UP


@dataclass(frozen=True)
class RouteEntry:
    dst: str  # CIDR; "0.0.0.0/0" / "::/0" for default
    dev: str
    table: int = MAIN_TABLE
    gw: str = ""
    scope: str = ""  # "link" or "" (universe)
    src: str = ""
    # As read from the kernel (0: unset), so a route moved out of main is deleted exactly.
    proto: int = 0
    metric: int = 0

    @property
    def version(self) -> int:
        return ipaddress.ip_network(self.dst).version

    @property
    def is_default(self) -> bool:
        return ipaddress.ip_network(self.dst).prefixlen == 0


@dataclass(frozen=True)
class RuleEntry:
    version: int
    table: int
    priority: int
    src: str = ""  # CIDR
    dst: str = ""  # CIDR
    fwmark: int = 0


@dataclass(frozen=True)
class NeighEntry:
    ip: str
    mac: str
    dev: str


@dataclass
class PodState:
    links: dict[str, Link]
    addrs: dict[str, list[IPInterface]]  # global-scope addresses per NIC
    main_routes: list[RouteEntry]

    def default_nic(self, version: int, *, besides: str = "") -> str | None:
        """The NIC of the main table's default route. When the NIC being added (``besides``)
        got a second default route from its IPAM (spiderpool answers one for every NIC whose
        pool has a gateway), the earlier holder is the one that counts."""
        holders = [r.dev for r in self.main_routes if r.is_default and r.version == version]
        others = [dev for dev in holders if dev != besides]
        return next(iter(others or holders), None)


@dataclass
class HostState:
    links: dict[str, Link]  # the host links the plan uses (the host device), not every link
    ips: dict[int, list[str]]  # host addresses for the pod, preferred first, per family


@dataclass
class Plan:
    mode: str
    first: bool
    table: int  # this NIC's policy table (main for underlay's first NIC)
    host_dev: str
    pod_dev: str  # veth0 (underlay) or the overlay NIC (eth0)
    pod_routes: list[RouteEntry] = field(default_factory=list)
    pod_rules: list[RuleEntry] = field(default_factory=list)
    pod_neighs: list[NeighEntry] = field(default_factory=list)
    # Main-table routes (as read: scope, src, proto, metric) to move to their .table.
    pod_moves: list[RouteEntry] = field(default_factory=list)
    host_routes: list[RouteEntry] = field(default_factory=list)
    host_rules: list[RuleEntry] = field(default_factory=list)
    host_neighs: list[NeighEntry] = field(default_factory=list)
    connmark: bool = False
    families: tuple[int, ...] = ()


def _host_prefix(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    return f"{addr}/{addr.max_prefixlen}"


def _default(version: int) -> str:
    return "0.0.0.0/0" if version == 4 else "::/0"


def _movable(route: RouteEntry) -> bool:
    """Routes of a NIC that go to its policy table: all but IPv6 link-local and multicast."""
    net = ipaddress.ip_network(route.dst)
    return not (net.version == 6 and (net.is_link_local or net.is_multicast))


def build_plan(
    cfg: CoordinatorConfig,
    *,
    ifname: str,
    mode: str,
    first: bool,
    pod: PodState,
    host: HostState,
    host_dev: str,
    pod_dev: str,
    gateways: dict[int, str],
) -> Plan:
    """The routes, rules and neighbour entries for NIC ``ifname`` (upstream's
    cmd/coordinator/cmd/command_add.go)."""
    addrs = pod.addrs.get(ifname, [])
    families = tuple(sorted({a.version for a in addrs}))
    nics = [n for n in pod.links if n not in ("lo", POD_VETH)]
    table = MAIN_TABLE
    if not (mode == MODE_UNDERLAY and first):
        table = nic_table(ifname, nics, cfg.pod_default_cni_nic)
    plan = Plan(mode=mode, first=first, table=table, host_dev=host_dev, pod_dev=pod_dev, families=families)
    pod_mac = pod.links[pod_dev].mac
    host_mac = host.links[host_dev].mac

    # Step 7/8, host side: the pod's addresses through host_dev in hostRuleTable, and neighbours.
    for a in addrs:
        ip = str(a.ip)
        plan.host_routes.append(RouteEntry(_host_prefix(ip), host_dev, cfg.host_rule_table, scope="link"))
        plan.host_rules.append(
            RuleEntry(a.version, cfg.host_rule_table, HOST_RULE_PRIORITY, dst=_host_prefix(ip))
        )
        plan.host_neighs.append(NeighEntry(ip, pod_mac, host_dev))

    # Step 7/8, pod side: the host's addresses through pod_dev, in main (first) and this NIC's table.
    tables = [MAIN_TABLE] if table == MAIN_TABLE else [table]
    if mode == MODE_OVERLAY and first:
        tables = [MAIN_TABLE, table]
    for version in families:
        src = next((str(a.ip) for a in addrs if a.version == version == 4), "")
        for hip in host.ips.get(version, []):
            if mode == MODE_UNDERLAY and first:
                plan.pod_neighs.append(NeighEntry(hip, host_mac, pod_dev))
            for t in tables:
                plan.pod_routes.append(RouteEntry(_host_prefix(hip), pod_dev, t, scope="link", src=src))

    # Step 9: overlay pod CIDRs, service CIDRs and hijack CIDRs via the host (underlay first NIC).
    if mode == MODE_UNDERLAY and first:
        for version in families:
            hips = host.ips.get(version, [])
            if not hips:
                continue
            # The pod's own address as source, never veth0's vethLinkAddress (the node has no
            # route back to a link-local address).
            src = next((str(a.ip) for a in addrs if a.version == version == 4), "")
            for cidr in cfg.routes_via_host():
                if ipaddress.ip_network(cidr).version == version:
                    plan.pod_routes.append(RouteEntry(cidr, pod_dev, MAIN_TABLE, gw=hips[0], src=src))
    if mode == MODE_OVERLAY:
        # The cluster and service CIDRs stay on the overlay NIC whichever NIC holds the default.
        for version in families:
            gw = next(
                (r.gw for r in pod.main_routes if r.dev == pod_dev and r.gw and r.version == version), ""
            )
            if not gw:
                continue
            plan.pod_routes.append(RouteEntry(_host_prefix(gw), pod_dev, MAIN_TABLE, scope="link"))
            for cidr in cfg.routes_via_host():
                if ipaddress.ip_network(cidr).version == version:
                    plan.pod_routes.append(RouteEntry(cidr, pod_dev, MAIN_TABLE, gw=gw))
    if mode == MODE_UNDERLAY and first:
        # Step 10: replies to connections that came in through veth0 leave through it.
        plan.connmark = True
        for version in families:
            hips = host.ips.get(version, [])
            if hips:
                plan.pod_rules.append(RuleEntry(version, REPLY_TABLE, FWMARK_RULE_PRIORITY, fwmark=FWMARK))
                plan.pod_routes.append(RouteEntry(_default(version), pod_dev, REPLY_TABLE, gw=hips[0]))
                plan.pod_routes.append(RouteEntry(_host_prefix(hips[0]), pod_dev, REPLY_TABLE, scope="link"))

    # Step 11: per-NIC policy routing.
    if cfg.tune_pod_routes and not (mode == MODE_UNDERLAY and first):
        _tune(cfg, ifname=ifname, pod=pod, plan=plan, addrs=addrs, gateways=gateways, nics=nics)

    # Step 12: policy routes in this NIC's table; the config is pod-wide, so each route goes to
    # the NIC whose subnet holds its gateway (elsewhere the kernel refuses it as unreachable).
    for pr in cfg.policy_routes:
        if any(ipaddress.ip_address(pr.gw) in a.network for a in addrs):
            plan.pod_routes.append(RouteEntry(pr.dst, ifname, table, gw=pr.gw))
    return plan


def _tune(
    cfg: CoordinatorConfig,
    *,
    ifname: str,
    pod: PodState,
    plan: Plan,
    addrs: Sequence[IPInterface],
    gateways: dict[int, str],
    nics: Sequence[str],
) -> None:
    for version in plan.families:
        holder = pod.default_nic(version, besides=ifname)
        if holder == ifname:
            continue  # this NIC already owns the main table (a repeated ADD after a move)
        wanted = cfg.pod_default_route_nic or holder or ifname
        if wanted == ifname:
            # Move the default route here; the old holder's routes go to its own table. A default
            # NIC that does not exist yet keeps the default where it is until its own ADD.
            old_table = nic_table(holder, nics, cfg.pod_default_cni_nic) if holder else 0
            for r in pod.main_routes:
                if holder and r.dev == holder and r.version == version and _movable(r):
                    plan.pod_moves.append(replace(r, table=old_table))
            for a in pod.addrs.get(holder or "", []):
                if a.version == version:
                    plan.pod_rules.append(
                        RuleEntry(version, old_table, NIC_RULE_PRIORITY, src=_host_prefix(str(a.ip)))
                    )
            gw = gateways.get(version)
            if gw:
                plan.pod_routes.append(RouteEntry(_default(version), ifname, MAIN_TABLE, gw=gw))
            continue
        # The default stays where it is: this NIC's routes live in its own table.
        for r in pod.main_routes:
            if r.dev == ifname and r.version == version and _movable(r):
                plan.pod_moves.append(replace(r, table=plan.table))
        for a in addrs:
            if a.version == version:
                plan.pod_routes.append(
                    RouteEntry(str(a.network), ifname, plan.table, scope="link", src=str(a.ip))
                )
                plan.pod_rules.append(
                    RuleEntry(version, plan.table, NIC_RULE_PRIORITY, src=_host_prefix(str(a.ip)))
                )
        gw = gateways.get(version)
        if gw:
            plan.pod_routes.append(RouteEntry(_default(version), ifname, plan.table, gw=gw))
