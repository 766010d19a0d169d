"""Typed views of the upstream ``spiderpool.spidernet.io/v2beta1`` objects.

Owns the mapping between manifest dicts (upstream field names, as stored and as users
write them) and the dataclasses the domain logic reads. An upstream YAML manifest loads
unchanged; ``to_dict`` writes the upstream shape back. Pool allocations live in the pool's
``status.allocatedIPs`` JSON map, upstream's record ``{"pod": "ns/name", "podUid": ...}``
extended with this project's identity fields (container ID, interface, node, network).
Parsing is lenient about types only where upstream is (ints given as strings are not);
validation of values is ``validation.py``'s job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

API_GROUP = "spiderpool.spidernet.io"
API_VERSION = f"{API_GROUP}/v2beta1"
FINALIZER = "spiderpool.spidernet.io"

KIND_IPPOOL = "SpiderIPPool"
KIND_SUBNET = "SpiderSubnet"
KIND_RESERVED_IP = "SpiderReservedIP"
KIND_ENDPOINT = "SpiderEndpoint"
KIND_COORDINATOR = "SpiderCoordinator"
KIND_MULTUS_CONFIG = "SpiderMultusConfig"

NAMESPACED_KINDS = frozenset({KIND_ENDPOINT, KIND_MULTUS_CONFIG})

# kubectl-style names accepted by spiderpoolctl, mapped to kinds.
KIND_ALIASES: dict[str, str] = {}
for _kind, _aliases in {
    KIND_IPPOOL: ("ippool", "ippools", "sp", "spiderippool", "spiderippools"),
    KIND_SUBNET: ("subnet", "subnets", "ss", "spidersubnet", "spidersubnets"),
    KIND_RESERVED_IP: ("reservedip", "reservedips", "sr", "spiderreservedip", "spiderreservedips"),
    KIND_ENDPOINT: ("endpoint", "endpoints", "se", "spiderendpoint", "spiderendpoints"),
    KIND_COORDINATOR: ("coordinator", "coordinators", "scc", "spidercoordinator", "spidercoordinators"),
    KIND_MULTUS_CONFIG: ("multusconfig", "multusconfigs", "smc", "spidermultusconfig", "spidermultusconfigs"),
}.items():
    for _alias in (_kind.lower(), *_aliases):
        KIND_ALIASES[_alias] = _kind


def resolve_kind(text: str) -> str:
    kind = KIND_ALIASES.get(text.lower())
    if kind is None:
        known = ", ".join(sorted({a for a in KIND_ALIASES if len(a) <= 12}))
        raise ValueError(f"unknown kind {text!r}; known: {known}")
    return kind


# ---------------------------------------------------------------------------------------
# label selectors


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        raise ValueError(f"unknown label selector operator {self.operator!r}")


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes ``metav1.LabelSelector``; an empty selector matches everything."""

    match_labels: dict[str, str] = field(default_factory=dict)
    match_expressions: tuple[Requirement, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LabelSelector | None:
        if data is None:
            return None
        exprs = tuple(
            Requirement(str(e.get("key", "")), str(e.get("operator", "")), tuple(e.get("values") or ()))
            for e in data.get("matchExpressions") or ()
        )
        return cls(dict(data.get("matchLabels") or {}), exprs)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            out["matchExpressions"] = [
                {"key": r.key, "operator": r.operator, **({"values": list(r.values)} if r.values else {})}
                for r in self.match_expressions
            ]
        return out

    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(r.matches(labels) for r in self.match_expressions)


# ---------------------------------------------------------------------------------------
# shared pieces


@dataclass(frozen=True)
class Route:
    dst: str
    gw: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Route:
        return cls(str(data.get("dst", "")), str(data.get("gw", "")))

    def to_dict(self) -> dict[str, str]:
        return {"dst": self.dst, "gw": self.gw}


@dataclass
class ObjectMeta:
    name: str
    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: str = ""
    uid: str = ""
    deletion_timestamp: str | None = None
    finalizers: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectMeta:
        return cls(
            name=str(data.get("name", "")),
            namespace=str(data.get("namespace", "") or ""),
            labels=dict(data.get("labels") or {}),
            annotations=dict(data.get("annotations") or {}),
            resource_version=str(data.get("resourceVersion", "") or ""),
            uid=str(data.get("uid", "") or ""),
            deletion_timestamp=data.get("deletionTimestamp"),
            finalizers=list(data.get("finalizers") or []),
        )


def _opt_bool(value: Any) -> bool:
    return bool(value) if value is not None else False


def _str_list(value: Any) -> list[str]:
    return [str(v) for v in value] if value else []


def _range_spec_dict(spec: IPPoolSpec | SubnetSpec | ReservedIPSpec) -> dict[str, Any]:
    """The fields pools, subnets and reserved IPs share, in their manifest shape."""
    subnet = getattr(spec, "subnet", None)
    ip_version, ips = spec.ip_version, spec.ips
    exclude_ips: list[str] = getattr(spec, "exclude_ips", [])
    gateway: str | None = getattr(spec, "gateway", None)
    routes: list[Route] = getattr(spec, "routes", [])
    out: dict[str, Any] = {}
    if ip_version is not None:
        out["ipVersion"] = ip_version
    if subnet is not None:
        out["subnet"] = subnet
    if ips:
        out["ips"] = list(ips)
    if exclude_ips:
        out["excludeIPs"] = list(exclude_ips)
    if gateway is not None:
        out["gateway"] = gateway
    if routes:
        out["routes"] = [r.to_dict() for r in routes]
    return out


# ---------------------------------------------------------------------------------------
# SpiderIPPool


@dataclass
class IPPoolSpec:
    subnet: str
    ip_version: int | None = None
    ips: list[str] = field(default_factory=list)
    exclude_ips: list[str] = field(default_factory=list)
    gateway: str | None = None
    routes: list[Route] = field(default_factory=list)
    pod_affinity: LabelSelector | None = None
    namespace_affinity: LabelSelector | None = None
    namespace_name: list[str] = field(default_factory=list)
    node_affinity: LabelSelector | None = None
    node_name: list[str] = field(default_factory=list)
    multus_name: list[str] = field(default_factory=list)
    default: bool = False
    disable: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IPPoolSpec:
        v = data.get("ipVersion")
        return cls(
            subnet=str(data.get("subnet", "")),
            ip_version=int(v) if v is not None else None,
            ips=_str_list(data.get("ips")),
            exclude_ips=_str_list(data.get("excludeIPs")),
            gateway=data.get("gateway"),
            routes=[Route.from_dict(r) for r in data.get("routes") or ()],
            pod_affinity=LabelSelector.from_dict(data.get("podAffinity")),
            namespace_affinity=LabelSelector.from_dict(data.get("namespaceAffinity")),
            namespace_name=_str_list(data.get("namespaceName")),
            node_affinity=LabelSelector.from_dict(data.get("nodeAffinity")),
            node_name=_str_list(data.get("nodeName")),
            multus_name=_str_list(data.get("multusName")),
            default=_opt_bool(data.get("default")),
            disable=_opt_bool(data.get("disable")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest ``spec`` (upstream names; unset optional fields left out)."""
        out = _range_spec_dict(self)
        for key, selector in (
            ("podAffinity", self.pod_affinity),
            ("namespaceAffinity", self.namespace_affinity),
            ("nodeAffinity", self.node_affinity),
        ):
            if selector is not None:
                out[key] = selector.to_dict()
        for key, names in (
            ("namespaceName", self.namespace_name),
            ("nodeName", self.node_name),
            ("multusName", self.multus_name),
        ):
            if names:
                out[key] = list(names)
        out["default"] = self.default
        out["disable"] = self.disable
        return out


# The record's keys beyond upstream's ``pod``/``podUid`` are short on purpose: a pool's
# status is one object under etcd's 1.5 MiB limit, and 5,000 records (upstream's cap) of
# long keys, escaped inside the ``allocatedIPs`` string, would not fit. Records written
# with the earlier long keys are still read.
_LONG_KEYS = {
    "cid": "containerID",
    "nic": "interface",
    "net": "network",
    "kind": "ownerKind",
    "owner": "ownerName",
}


@dataclass(frozen=True)
class AllocationRecord:
    """One allocated address in ``status.allocatedIPs``: upstream's keys plus ours.

    Everything an ADD answered for the attachment is here, so a repeated ADD, a CHECK and
    the SpiderEndpoint read the same facts after any restart: the sandbox holding the
    address now (``cid``, the container ID; a new sandbox of the same pod takes it over),
    the NIC (``nic``), node and CNI network (``net``), the workload owner (``kind``,
    ``owner``), whether the gateway was cleaned for this NIC (``cleanGateway``), the
    pod's ``ipam.spidernet.io/routes`` that apply to this NIC (``routes``), and
    ``requested`` when the address is the one the pod asked for (CNI ``ips`` capability,
    ``IP=``). Our keys are written only when set.
    """

    pod: str  # "namespace/name" (upstream)
    pod_uid: str  # upstream "podUid"; empty outside Kubernetes
    container_id: str = ""
    interface: str = ""
    node: str = ""
    network: str = ""  # the CNI config "name" the ADD came through (GC scope)
    owner_kind: str = ""  # "StatefulSet" keeps the IP across pod re-creation
    owner_name: str = ""
    clean_gateway: bool = False  # the answer carries no gateway for this NIC
    routes: tuple[Route, ...] = ()  # the pod's annotation routes that apply to this NIC
    requested: bool = False  # the pod asked for this very address

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AllocationRecord:
        def get(key: str) -> str:  # the compact key, or the long one an earlier version wrote
            return str(data.get(key, data.get(_LONG_KEYS.get(key, key), "")))

        return cls(
            pod=str(data.get("pod", "")),
            pod_uid=str(data.get("podUid", "")),
            container_id=get("cid"),
            interface=get("nic"),
            node=get("node"),
            network=get("net"),
            owner_kind=get("kind"),
            owner_name=get("owner"),
            clean_gateway=bool(data.get("cleanGateway", False)),
            routes=tuple(Route.from_dict(r) for r in data.get("routes") or () if isinstance(r, dict)),
            requested=data.get("requested") is True,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pod": self.pod, "podUid": self.pod_uid}
        for key, value in (
            ("cid", self.container_id),
            ("nic", self.interface),
            ("node", self.node),
            ("net", self.network),
            ("kind", self.owner_kind),
            ("owner", self.owner_name),
        ):
            if value:
                out[key] = value
        if self.clean_gateway:
            out["cleanGateway"] = True
        if self.routes:
            out["routes"] = [r.to_dict() for r in self.routes]
        if self.requested:
            out["requested"] = True
        return out

    @property
    def identity(self) -> str:
        """The owner key: pod UID, or the container ID outside Kubernetes."""
        return self.pod_uid or self.container_id


def decode_allocated_ips(text: str | None) -> dict[str, AllocationRecord]:
    """Parse upstream's ``status.allocatedIPs`` JSON string."""
    if not text:
        return {}
    raw = json.loads(text)
    return {ip: AllocationRecord.from_dict(rec) for ip, rec in raw.items()}


def encode_allocated_ips(records: dict[str, AllocationRecord]) -> str | None:
    if not records:
        return None
    return json.dumps({ip: rec.to_dict() for ip, rec in records.items()}, separators=(",", ":"))


@dataclass
class IPPool:
    meta: ObjectMeta
    spec: IPPoolSpec
    allocated: dict[str, AllocationRecord] = field(default_factory=dict)
    total_ip_count: int = 0

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def version(self) -> int:
        """The pool's family: ``spec.ipVersion`` or, before defaulting, the subnet's."""
        if self.spec.ip_version is not None:
            return self.spec.ip_version
        return 6 if ":" in self.spec.subnet else 4

    @property
    def terminating(self) -> bool:
        return self.meta.deletion_timestamp is not None

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> IPPool:
        status = obj.get("status") or {}
        return cls(
            meta=ObjectMeta.from_dict(obj.get("metadata") or {}),
            spec=IPPoolSpec.from_dict(obj.get("spec") or {}),
            allocated=decode_allocated_ips(status.get("allocatedIPs")),
            total_ip_count=int(status.get("totalIPCount") or 0),
        )


def pool_status_dict(records: dict[str, AllocationRecord], total: int) -> dict[str, Any]:
    """The ``status`` of a pool with these records (upstream field names)."""
    status: dict[str, Any] = {"allocatedIPCount": len(records), "totalIPCount": total}
    encoded = encode_allocated_ips(records)
    if encoded is not None:
        status["allocatedIPs"] = encoded
    return status


# ---------------------------------------------------------------------------------------
# SpiderSubnet and SpiderReservedIP


@dataclass
class SubnetSpec:
    subnet: str
    ip_version: int | None = None
    ips: list[str] = field(default_factory=list)
    exclude_ips: list[str] = field(default_factory=list)
    gateway: str | None = None
    routes: list[Route] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubnetSpec:
        v = data.get("ipVersion")
        return cls(
            subnet=str(data.get("subnet", "")),
            ip_version=int(v) if v is not None else None,
            ips=_str_list(data.get("ips")),
            exclude_ips=_str_list(data.get("excludeIPs")),
            gateway=data.get("gateway"),
            routes=[Route.from_dict(r) for r in data.get("routes") or ()],
        )

    def to_dict(self) -> dict[str, Any]:
        return _range_spec_dict(self)


@dataclass
class ReservedIPSpec:
    ip_version: int | None = None
    ips: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReservedIPSpec:
        v = data.get("ipVersion")
        return cls(ip_version=int(v) if v is not None else None, ips=_str_list(data.get("ips")))

    def to_dict(self) -> dict[str, Any]:
        return _range_spec_dict(self)


# ---------------------------------------------------------------------------------------
# SpiderEndpoint (status only)


@dataclass
class IPAllocationDetail:
    interface: str
    ipv4: str | None = None  # "ip/prefix"
    ipv6: str | None = None
    ipv4_pool: str | None = None
    ipv6_pool: str | None = None
    vlan: int = 0
    ipv4_gateway: str | None = None
    ipv6_gateway: str | None = None
    clean_gateway: bool = False
    routes: list[Route] = field(default_factory=list)
    mac: str | None = None  # given by an IaaS provider, when one allocates

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IPAllocationDetail:
        return cls(
            interface=str(data.get("interface", "")),
            ipv4=data.get("ipv4"),
            ipv6=data.get("ipv6"),
            ipv4_pool=data.get("ipv4Pool"),
            ipv6_pool=data.get("ipv6Pool"),
            vlan=int(data.get("vlan") or 0),
            ipv4_gateway=data.get("ipv4Gateway"),
            ipv6_gateway=data.get("ipv6Gateway"),
            clean_gateway=bool(data.get("cleanGateway", False)),
            routes=[Route.from_dict(r) for r in data.get("routes") or ()],
            mac=data.get("mac"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"interface": self.interface}
        for key, value in (
            ("ipv4", self.ipv4),
            ("ipv6", self.ipv6),
            ("ipv4Pool", self.ipv4_pool),
            ("ipv6Pool", self.ipv6_pool),
            ("ipv4Gateway", self.ipv4_gateway),
            ("ipv6Gateway", self.ipv6_gateway),
            ("mac", self.mac),
        ):
            if value:
                out[key] = value
        out["vlan"] = self.vlan
        out["cleanGateway"] = self.clean_gateway
        if self.routes:
            out["routes"] = [r.to_dict() for r in self.routes]
        return out


@dataclass
class EndpointStatus:
    uid: str
    node: str
    ips: list[IPAllocationDetail] = field(default_factory=list)
    owner_controller_type: str = "Pod"
    owner_controller_name: str = ""

    @classmethod
    def from_dict(cls, status: dict[str, Any]) -> EndpointStatus:
        current = status.get("current") or {}
        return cls(
            uid=str(current.get("uid", "")),
            node=str(current.get("node", "")),
            ips=[IPAllocationDetail.from_dict(d) for d in current.get("ips") or ()],
            owner_controller_type=str(status.get("ownerControllerType", "Pod")),
            owner_controller_name=str(status.get("ownerControllerName", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "current": {"uid": self.uid, "node": self.node, "ips": [d.to_dict() for d in self.ips]},
            "ownerControllerType": self.owner_controller_type,
            "ownerControllerName": self.owner_controller_name,
        }


def new_object(kind: str, name: str, namespace: str = "", **sections: Any) -> dict[str, Any]:
    """A fresh manifest dict of ``kind`` (metadata filled in by the store on create)."""
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, **sections}
