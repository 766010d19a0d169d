"""The coordinator's effective configuration and the rules for each of its fields.

Owns three things, all pure: the ``CoordinatorConfig`` value the routing code reads; the
field rules (CIDR normalisation, MAC prefix, rp_filter, policy routes, ...) that both this
library and the controller's SpiderCoordinator webhook apply, so the two never disagree;
and the merge upstream performs (upstream's cmd/coordinator/cmd/cni_types.go): the
SpiderCoordinator ``default`` object
(spec and status) is the base, every field set in the CNI config overrides it, and the pod
annotation ``ipam.spidernet.io/default-route-nic`` overrides ``podDefaultRouteNic``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from spiderpool_coordinator.errors import InvalidCoordinatorConfig

MODE_AUTO = "auto"
MODE_UNDERLAY = "underlay"
MODE_OVERLAY = "overlay"
MODE_DISABLED = "disabled"
# The CRD enum says "disabled", upstream's plugin constant says "disable": accept both.
MODES = {
    MODE_AUTO: MODE_AUTO,
    MODE_UNDERLAY: MODE_UNDERLAY,
    MODE_OVERLAY: MODE_OVERLAY,
    MODE_DISABLED: MODE_DISABLED,
    "disable": MODE_DISABLED,
}
POD_CIDR_TYPES = ("auto", "cluster", "calico", "cilium", "none")

DEFAULT_HOST_RULE_TABLE = 500
DEFAULT_VETH_MTU = 1500
DEFAULT_CNI_NIC = "eth0"
DEFAULT_ROUTE_NIC_ANNOTATION = "ipam.spidernet.io/default-route-nic"
# Kernel tables that must never be used as the host rule table (unspec, default, main, local).
_RESERVED_TABLES = frozenset({0, 253, 254, 255})
_MAC_PREFIX = re.compile(r"^([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})$")


@dataclass(frozen=True)
class PolicyRoute:
    """One static route installed in the current NIC's policy table (``dst via gw``)."""

    dst: str  # normalised CIDR
    gw: str

    @property
    def version(self) -> int:
        return ipaddress.ip_network(self.dst).version

    def to_dict(self) -> dict[str, str]:
        return {"dst": self.dst, "gw": self.gw}


@dataclass(frozen=True)
class CoordinatorConfig:
    """What the coordinator does for one CNI call, after merging all sources."""

    mode: str = MODE_AUTO
    tune_pod_routes: bool = True
    pod_default_route_nic: str = ""
    pod_default_cni_nic: str = DEFAULT_CNI_NIC
    overlay_pod_cidr: tuple[str, ...] = ()
    service_cidr: tuple[str, ...] = ()
    hijack_cidr: tuple[str, ...] = ()
    policy_routes: tuple[PolicyRoute, ...] = ()
    host_rule_table: int = DEFAULT_HOST_RULE_TABLE
    pod_rp_filter: int = 0  # negative: leave the pod's rp_filter alone
    tx_queue_len: int = 0  # 0: leave txqueuelen alone
    pod_mac_prefix: str = ""
    veth_link_address: str = ""
    veth_mtu: int = DEFAULT_VETH_MTU
    # Detection (upstream's configmap enableIPConflictDetection / enableGatewayDetection).
    detect_ip_conflict: bool = False
    detect_gateway: bool = False
    detect_retries: int = 3
    detect_timeout: float = 0.1

    def routes_via_host(self) -> tuple[str, ...]:
        """overlayPodCIDR + serviceCIDR + hijackCIDR, in that order, without duplicates."""
        return tuple(dict.fromkeys((*self.overlay_pod_cidr, *self.service_cidr, *self.hijack_cidr)))


# ---------------------------------------------------------------------------------------
# field rules (raise FieldError naming the offending value; callers add the field name)


class FieldError(ValueError):
    """One field's value breaks its rule; the message names the value, not the field."""


def normalise_mode(value: Any) -> str:
    mode = MODES.get(str(value))
    if mode is None:
        raise FieldError(f"{value!r} is not a coordinator mode; expected auto, underlay, overlay or disabled")
    return mode


def normalise_cidr(value: Any) -> str:
    """A CIDR in canonical form; a bare IP becomes a /32 or /128 (upstream hijackCIDR rule)."""
    text = str(value).strip()
    try:
        if "/" not in text:
            addr = ipaddress.ip_address(text)
            return f"{addr}/{addr.max_prefixlen}"
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise FieldError(f"{value!r} is not a valid IP or CIDR") from None


def normalise_cidrs(values: Any) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise FieldError(f"{values!r} is not a list of CIDRs")
    return tuple(dict.fromkeys(normalise_cidr(v) for v in values))


def parse_policy_route(value: Any) -> PolicyRoute:
    if not isinstance(value, Mapping):
        raise FieldError(f"{value!r} is not a route object with dst and gw")
    dst = normalise_cidr(value.get("dst", ""))
    try:
        gw = ipaddress.ip_address(str(value.get("gw", "")).strip())
    except ValueError:
        raise FieldError(f"gw {value.get('gw')!r} of route to {dst} is not a valid IP") from None
    if gw.version != ipaddress.ip_network(dst).version:
        raise FieldError(f"route to {dst} has gateway {gw} of another IP family")
    return PolicyRoute(dst, str(gw))


def parse_policy_routes(values: Any) -> tuple[PolicyRoute, ...]:
    if values is None:
        return ()
    if isinstance(values, (str, Mapping)) or not isinstance(values, Iterable):
        raise FieldError(f"{values!r} is not a list of routes")
    return tuple(dict.fromkeys(parse_policy_route(v) for v in values))


def normalise_mac_prefix(value: Any) -> str:
    """``xx:yy`` in lower case; the first byte must be a unicast byte (lowest bit 0)."""
    text = str(value).strip()
    if not text:
        return ""
    m = _MAC_PREFIX.match(text)
    if m is None:
        raise FieldError(f"{value!r} is not a 2-byte MAC prefix like '0a:1b'")
    if int(m.group(1), 16) & 1:
        raise FieldError(f"{value!r} is a multicast MAC prefix; the first byte's lowest bit must be 0")
    return f"{m.group(1)}:{m.group(2)}".lower()


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"{value!r} is not an integer {what}")
    return value


def normalise_rp_filter(value: Any) -> int:
    """0, 1 or 2 as given; any negative value means "leave alone" and becomes -1."""
    n = _int(value, "rp_filter")
    if n < 0:
        return -1
    if n > 2:
        raise FieldError(f"rp_filter {n} is not one of 0, 1, 2 (or negative to leave it alone)")
    return n


def check_tx_queue_len(value: Any) -> int:
    n = _int(value, "txQueueLen")
    if n < 0:
        raise FieldError(f"txQueueLen {n} must be >= 0")
    return n


def check_veth_mtu(value: Any) -> int:
    n = _int(value, "vethMTU")
    if n < 1:
        raise FieldError(f"vethMTU {n} must be >= 1")
    return n


def check_host_rule_table(value: Any) -> int:
    n = _int(value, "hostRuleTable")
    if n < 0 or n >= 1 << 32 or n in _RESERVED_TABLES:
        raise FieldError(f"hostRuleTable {n} is not a usable routing table (1..2^32-1, not 253-255)")
    return n


def check_ip(value: Any) -> str:
    text = str(value).strip()
    if not text:
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise FieldError(f"{value!r} is not a valid IP address") from None


def check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError(f"{value!r} is not a boolean")
    return value


# ---------------------------------------------------------------------------------------
# sources and merge

# camelCase key (as in the SpiderCoordinator spec and the CNI config) -> (attribute, rule)
_SPEC_FIELDS: dict[str, tuple[str, Any]] = {
    "mode": ("mode", normalise_mode),
    "tunePodRoutes": ("tune_pod_routes", check_bool),
    "podDefaultRouteNIC": ("pod_default_route_nic", str),
    "hijackCIDR": ("hijack_cidr", normalise_cidrs),
    "policyRoutes": ("policy_routes", parse_policy_routes),
    "hostRuleTable": ("host_rule_table", check_host_rule_table),
    "podRPFilter": ("pod_rp_filter", normalise_rp_filter),
    "txQueueLen": ("tx_queue_len", check_tx_queue_len),
    "podMACPrefix": ("pod_mac_prefix", normalise_mac_prefix),
    "vethLinkAddress": ("veth_link_address", check_ip),
    "vethMTU": ("veth_mtu", check_veth_mtu),
}
_STATUS_FIELDS: dict[str, tuple[str, Any]] = {
    "overlayPodCIDR": ("overlay_pod_cidr", normalise_cidrs),
    "serviceCIDR": ("service_cidr", normalise_cidrs),
}
# The CNI config spells a few keys differently from the CRD (cmd/coordinator/cmd/cni_types.go).
_CNI_FIELDS: dict[str, tuple[str, Any]] = {
    **{k: v for k, v in _SPEC_FIELDS.items() if k != "podDefaultRouteNIC"},
    **_STATUS_FIELDS,
    "podDefaultRouteNic": ("pod_default_route_nic", str),
    "podDefaultCniNic": ("pod_default_cni_nic", str),
}


def _is_unset(value: Any) -> bool:
    """Upstream treats empty strings, empty lists and null as "not set" (take the base's value)."""
    return value is None or (isinstance(value, (str, list, tuple, dict)) and len(value) == 0)


def _apply(
    base: CoordinatorConfig, data: Mapping[str, Any], fields: Mapping[str, tuple[str, Any]], where: str
) -> CoordinatorConfig:
    changes: dict[str, Any] = {}
    for key, (attr, rule) in fields.items():
        value = data.get(key)
        if _is_unset(value):
            continue
        try:
            changes[attr] = rule(value)
        except ValueError as exc:
            raise InvalidCoordinatorConfig(f"{where} field {key}: {exc}") from None
    return replace(base, **changes) if changes else base


def from_spider_coordinator(obj: Mapping[str, Any] | None) -> CoordinatorConfig:
    """The base configuration from a SpiderCoordinator object (spec and status); defaults if None."""
    if not obj:
        return CoordinatorConfig()
    cfg = _apply(CoordinatorConfig(), obj.get("spec") or {}, _SPEC_FIELDS, "SpiderCoordinator spec")
    return _apply(cfg, obj.get("status") or {}, _STATUS_FIELDS, "SpiderCoordinator status")


def merge(
    base: CoordinatorConfig,
    cni_conf: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> CoordinatorConfig:
    """Fields set in the CNI config override ``base``; the pod annotation overrides the default NIC."""
    cfg = _apply(base, cni_conf or {}, _CNI_FIELDS, "coordinator CNI config")
    nic = (annotations or {}).get(DEFAULT_ROUTE_NIC_ANNOTATION, "").strip()
    if nic:
        cfg = replace(cfg, pod_default_route_nic=nic)
    if not cfg.pod_default_cni_nic:
        cfg = replace(cfg, pod_default_cni_nic=DEFAULT_CNI_NIC)
    return cfg
