"""The SpiderCoordinator object: its model, its defaults and its validation (upstream's
pkg/coordinatormanager).

Owns the mapping between the upstream manifest (``spec`` and ``status`` with upstream field
names) and a typed value, the mutating webhook's defaults and the validating webhook's
rules. The rule for each field is the coordinator library's (``spiderpool_coordinator.config``)
so that a SpiderCoordinator the controller accepts is one the coordinator can run; this
module adds the object-level rules (``podCIDRType`` required) and names the field in the
``InvalidObject`` it raises. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spiderpool_common.errors import InvalidObject
from spiderpool_coordinator import config as rules

from spiderpool_controller.domain.models import ObjectMeta

PHASE_SYNCED = "Synced"
PHASE_NOT_READY = "NotReady"


@dataclass
class CoordinatorSpec:
    """``spec`` of a SpiderCoordinator; ``None`` means unset (the webhook fills defaults)."""

    mode: str | None = None
    pod_cidr_type: str | None = None
    hijack_cidr: list[str] = field(default_factory=list)
    policy_routes: list[dict[str, str]] = field(default_factory=list)
    pod_mac_prefix: str | None = None
    tune_pod_routes: bool | None = None
    pod_default_route_nic: str | None = None
    host_rule_table: int | None = None
    pod_rp_filter: int | None = None
    tx_queue_len: int | None = None
    veth_link_address: str | None = None
    veth_mtu: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoordinatorSpec:
        return cls(
            mode=data.get("mode"),
            pod_cidr_type=data.get("podCIDRType"),
            hijack_cidr=list(data.get("hijackCIDR") or []),
            policy_routes=[dict(r) for r in data.get("policyRoutes") or []],
            pod_mac_prefix=data.get("podMACPrefix"),
            tune_pod_routes=data.get("tunePodRoutes"),
            pod_default_route_nic=data.get("podDefaultRouteNIC"),
            host_rule_table=data.get("hostRuleTable"),
            pod_rp_filter=data.get("podRPFilter"),
            tx_queue_len=data.get("txQueueLen"),
            veth_link_address=data.get("vethLinkAddress"),
            veth_mtu=data.get("vethMTU"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (
            ("mode", self.mode),
            ("podCIDRType", self.pod_cidr_type),
            ("hijackCIDR", list(self.hijack_cidr)),
            ("policyRoutes", [dict(r) for r in self.policy_routes]),
            ("podMACPrefix", self.pod_mac_prefix),
            ("tunePodRoutes", self.tune_pod_routes),
            ("podDefaultRouteNIC", self.pod_default_route_nic),
            ("hostRuleTable", self.host_rule_table),
            ("podRPFilter", self.pod_rp_filter),
            ("txQueueLen", self.tx_queue_len),
            ("vethLinkAddress", self.veth_link_address),
            ("vethMTU", self.veth_mtu),
        ):
            if value is not None:
                out[key] = value
        return out


@dataclass
class CoordinatorStatus:
    phase: str = ""
    reason: str = ""
    overlay_pod_cidr: list[str] = field(default_factory=list)
    service_cidr: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoordinatorStatus:
        return cls(
            phase=str(data.get("phase") or ""),
            reason=str(data.get("reason") or ""),
            overlay_pod_cidr=[str(c) for c in data.get("overlayPodCIDR") or []],
            service_cidr=[str(c) for c in data.get("serviceCIDR") or []],
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "overlayPodCIDR": list(self.overlay_pod_cidr),
            "serviceCIDR": list(self.service_cidr),
        }
        if self.phase:
            out["phase"] = self.phase
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class SpiderCoordinator:
    meta: ObjectMeta
    spec: CoordinatorSpec
    status: CoordinatorStatus

    @property
    def synced(self) -> bool:
        return self.status.phase == PHASE_SYNCED

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> SpiderCoordinator:
        return cls(
            meta=ObjectMeta.from_dict(obj.get("metadata") or {}),
            spec=CoordinatorSpec.from_dict(obj.get("spec") or {}),
            status=CoordinatorStatus.from_dict(obj.get("status") or {}),
        )


def _fail(name: str, key: str, exc: Exception | str) -> InvalidObject:
    return InvalidObject(f"SpiderCoordinator {name or '<unnamed>'}: spec.{key}: {exc}")


def apply_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    """The mutating webhook: a copy of ``obj`` with unset spec fields defaulted and CIDRs normalised.

    Values that cannot be normalised are left as given for ``validate`` to reject by name.
    """
    out = dict(obj)
    spec = dict(out.get("spec") or {})
    spec.setdefault("mode", rules.MODE_AUTO)
    if spec.get("mode") == "disable":
        spec["mode"] = rules.MODE_DISABLED
    spec.setdefault("tunePodRoutes", True)
    spec.setdefault("hostRuleTable", rules.DEFAULT_HOST_RULE_TABLE)
    spec.setdefault("podRPFilter", 0)
    spec.setdefault("txQueueLen", 0)
    spec.setdefault("vethMTU", rules.DEFAULT_VETH_MTU)
    spec.setdefault("hijackCIDR", [])
    spec.setdefault("policyRoutes", [])
    try:
        spec["hijackCIDR"] = list(rules.normalise_cidrs(spec["hijackCIDR"]))
    except ValueError:
        pass
    try:
        spec["policyRoutes"] = [r.to_dict() for r in rules.parse_policy_routes(spec["policyRoutes"])]
    except ValueError:
        pass
    if isinstance(spec.get("podMACPrefix"), str):
        try:
            spec["podMACPrefix"] = rules.normalise_mac_prefix(spec["podMACPrefix"])
        except ValueError:
            pass
    out["spec"] = spec
    return out


_RULES: dict[str, Callable[[Any], object]] = {
    "mode": rules.normalise_mode,
    "hijackCIDR": rules.normalise_cidrs,
    "policyRoutes": rules.parse_policy_routes,
    "podMACPrefix": rules.normalise_mac_prefix,
    "tunePodRoutes": rules.check_bool,
    "hostRuleTable": rules.check_host_rule_table,
    "podRPFilter": rules.normalise_rp_filter,
    "txQueueLen": rules.check_tx_queue_len,
    "vethLinkAddress": rules.check_ip,
    "vethMTU": rules.check_veth_mtu,
}


def first_invalid_field(spec: dict[str, Any]) -> tuple[str, str] | None:
    """The first set field of a coordinator spec that breaks its rule, with the reason.

    Shared by the SpiderCoordinator webhook and SpiderMultusConfig's ``spec.coordinator``
    (upstream's ValidateCoordinatorSpec); ``podCIDRType`` is checked only when set.
    """
    cidr_type = spec.get("podCIDRType")
    if cidr_type is not None and cidr_type not in rules.POD_CIDR_TYPES:
        return "podCIDRType", f"{cidr_type!r} is not one of {', '.join(rules.POD_CIDR_TYPES)}"
    for key, rule in _RULES.items():
        value = spec.get(key)
        if value is None:
            continue
        try:
            rule(value)
        except ValueError as exc:
            return key, str(exc)
    nic = spec.get("podDefaultRouteNIC")
    if nic is not None and not isinstance(nic, str):
        return "podDefaultRouteNIC", f"{nic!r} is not an interface name"
    return None


def validate(obj: dict[str, Any]) -> None:
    """The validating webhook: raise ``InvalidObject`` naming the first invalid spec field."""
    name = str((obj.get("metadata") or {}).get("name", ""))
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        raise _fail(name, "", "spec must be an object")
    if not spec.get("podCIDRType"):
        raise _fail(name, "podCIDRType", "PodCIDRType is not allowed to be empty")
    invalid = first_invalid_field(spec)
    if invalid is not None:
        raise _fail(name, *invalid)
