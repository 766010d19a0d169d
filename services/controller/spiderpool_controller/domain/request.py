"""The domain form of one allocation request (one CNI ADD for one NIC).

Owns the fact that selection and allocation are pure functions of the request and the
pools: the agent gathers everything selection needs (pod identity, labels, annotations,
namespace labels and annotations, node name and labels, the CNI config's default pools,
the pod's top owner) before it asks the controller, so the controller never looks a pod
up to answer an ADD. The gRPC servicer translates ``AllocateRequest`` into this; nothing
here knows about protobuf.

It also owns the bounds of what one request may carry (``bounds_problem``,
``pool_names_problem``): Kubernetes' own limits, generous where the embedded mode has
none. The strings an allocation records end up in pool status records and SpiderEndpoint
names, and each default pool name is a pattern (``fnmatch`` compiles it to a regular
expression: a 1 MiB name took the controller's event loop 12 s) matched against every
pool; so a request beyond them is refused before anything is read or stored. Fields are
named as the ``AllocateRequest`` message names them, which is what the caller sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MAX_NAME = 253  # a DNS-1123 subdomain: pod, node, pool, owner and NetworkAttachmentDefinition names
MAX_NAMESPACE = 63  # a DNS-1123 label
MAX_ID = 253  # pod and owner UIDs (36 in Kubernetes), container IDs (64 in every runtime)
MAX_IFNAME = 15  # IFNAMSIZ - 1, as libcni checks CNI_IFNAME
MAX_POOLS = 128  # default pools (names or patterns) per family
MAX_REQUESTED_IPS = 8  # one per family is allowed; more is refused by the requested-IPs rule
MAX_ADDRESS = 64  # an IPv6 address with a prefix length is at most 43 characters
MAX_CONFLICTING_IPS = 64  # addresses one ADD's conflict probe may name
MAX_VALID_ATTACHMENTS = 1_000_000  # a runtime's GC list of live attachments on one node
MAX_METADATA_BYTES = 256 * 1024  # per map: Kubernetes' limit on an object's total annotations


@dataclass(frozen=True, kw_only=True)
class AllocationRequest:
    """Everything the controller needs to choose pools and record an allocation."""

    container_id: str
    ifname: str
    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""  # empty outside Kubernetes; the container ID is the identity then
    node: str = ""
    network: str = ""  # the CNI config's "name", recorded with each allocation (GC scope)
    pod_labels: dict[str, str] = field(default_factory=dict, hash=False)
    pod_annotations: dict[str, str] = field(default_factory=dict, hash=False)
    namespace_labels: dict[str, str] = field(default_factory=dict, hash=False)
    namespace_annotations: dict[str, str] = field(default_factory=dict, hash=False)
    node_labels: dict[str, str] = field(default_factory=dict, hash=False)
    default_ipv4_pools: tuple[str, ...] = ()  # CNI config default_ipv4_ippool
    default_ipv6_pools: tuple[str, ...] = ()  # CNI config default_ipv6_ippool
    clean_gateway: bool = False  # CNI config clean_gateway: no gateway for this NIC
    owner_api_version: str = ""  # the top controller's apiVersion (apps/v1, ...): auto pools
    owner_kind: str = ""  # the pod's top controller: Pod, Deployment, StatefulSet, ...
    owner_name: str = ""
    owner_uid: str = ""
    owner_replicas: int = 0  # StatefulSet .spec.replicas
    owner_exists: bool = False  # whether the owner still exists (StatefulSet IP retention)
    multus_name: str = ""  # the NetworkAttachmentDefinition "ns/name" this NIC came from
    requested_ips: tuple[str, ...] = ()  # addresses asked for on ifname (IP or CIDR), one per family

    @property
    def identity(self) -> str:
        """The owner key of the allocation: pod UID, or the container ID outside Kubernetes."""
        return self.pod_uid or self.container_id

    @property
    def pod_key(self) -> str:
        """Upstream's ``namespace/name`` pod reference, as written into pool records."""
        return f"{self.pod_namespace}/{self.pod_name}"


def _too_long(name: str, value: str, limit: int, what: str) -> str:
    if len(value) <= limit:
        return ""
    return f"{name} is {len(value)} characters long; at most {limit} ({what})"


def _first_too_long(fields: Iterable[tuple[str, str, int, str]]) -> str:
    """The first of (name, value, limit, what) whose value is beyond its limit, said; or ""."""
    return next((problem for problem in (_too_long(*field) for field in fields) if problem), "")


def _list_problem(name: str, values: Iterable[str], most: int, unit: str, *, limit: int, what: str) -> str:
    """Why the list ``name`` is out of bounds (more than ``most`` entries, or one beyond ``limit``), or ""."""
    values = list(values)
    if len(values) > most:
        return f"{name} lists {len(values)} {unit}; at most {most}"
    return _first_too_long((f"{name}[{i}]", value, limit, what) for i, value in enumerate(values))


def pool_names_problem(name: str, pools: Iterable[str]) -> str:
    """Why the pool list ``name`` is out of bounds, or "" when it is not."""
    return _list_problem(name, pools, MAX_POOLS, "pools", limit=MAX_NAME, what="a pool name")


def _metadata_problem(name: str, values: Mapping[str, str]) -> str:
    size = sum(
        len(k.encode("utf-8", "surrogatepass")) + len(v.encode("utf-8", "surrogatepass"))
        for k, v in values.items()
    )
    if size <= MAX_METADATA_BYTES:
        return ""
    return f"{name} holds {size} bytes; at most {MAX_METADATA_BYTES} (Kubernetes' limit on annotations)"


def bounds_problem(req: AllocationRequest) -> str:
    """The first field of ``req`` beyond its bound, with the bound, or "" when there is none."""
    strings = (
        ("pod.namespace", req.pod_namespace, MAX_NAMESPACE, "a namespace name"),
        ("pod.name", req.pod_name, MAX_NAME, "a pod name"),
        ("pod.uid", req.pod_uid, MAX_ID, "a pod UID"),
        ("pod.container_id", req.container_id, MAX_ID, "a container ID"),
        ("pod.node", req.node, MAX_NAME, "a node name"),
        ("ifname", req.ifname, MAX_IFNAME, "an interface name"),
        ("network", req.network, MAX_NAME, "a network name"),
        ("multus_name", req.multus_name, MAX_NAMESPACE + 1 + MAX_NAME, "a namespace/name"),
        ("owner.kind", req.owner_kind, MAX_NAME, "a kind"),
        ("owner.name", req.owner_name, MAX_NAME, "an owner name"),
        ("owner.uid", req.owner_uid, MAX_ID, "an owner UID"),
    )
    problem = _first_too_long(strings)
    if problem:
        return problem
    for name, pools in (
        ("default_ipv4_ippools", req.default_ipv4_pools),
        ("default_ipv6_ippools", req.default_ipv6_pools),
    ):
        problem = pool_names_problem(name, pools)
        if problem:
            return problem
    problem = _list_problem(
        "requested_ips",
        req.requested_ips,
        MAX_REQUESTED_IPS,
        "addresses",
        limit=MAX_ADDRESS,
        what="an IP address or CIDR",
    )
    if problem:
        return problem
    for name, values in (
        ("pod_labels", req.pod_labels),
        ("pod_annotations", req.pod_annotations),
        ("namespace_labels", req.namespace_labels),
        ("namespace_annotations", req.namespace_annotations),
        ("node_labels", req.node_labels),
    ):
        problem = _metadata_problem(name, values)
        if problem:
            return problem
    return ""


def attachment_bounds_problem(
    *,
    pod_namespace: str = "",
    pod_name: str = "",
    pod_uid: str = "",
    container_id: str = "",
    ifname: str = "",
    owner_kind: str = "",
    owner_name: str = "",
    conflicting_ips: Iterable[str] = (),
) -> str:
    """The first field of a release or lookup of one attachment beyond its bound, or "" (the bounds of
    ``bounds_problem``: names nothing holds are refused rather than looked up)."""
    strings = (
        ("pod.namespace", pod_namespace, MAX_NAMESPACE, "a namespace name"),
        ("pod.name", pod_name, MAX_NAME, "a pod name"),
        ("pod.uid", pod_uid, MAX_ID, "a pod UID"),
        ("pod.container_id", container_id, MAX_ID, "a container ID"),
        ("ifname", ifname, MAX_IFNAME, "an interface name"),
        ("owner.kind", owner_kind, MAX_NAME, "a kind"),
        ("owner.name", owner_name, MAX_NAME, "an owner name"),
    )
    return _first_too_long(strings) or _list_problem(
        "conflicting_ips",
        conflicting_ips,
        MAX_CONFLICTING_IPS,
        "addresses",
        limit=MAX_ADDRESS,
        what="an IP address",
    )


def unlisted_bounds_problem(node: str, network: str, valid: Iterable[tuple[str, str]]) -> str:
    """The first field of a runtime GC's request beyond its bound, or ""."""
    problem = _first_too_long(
        (("node", node, MAX_NAME, "a node name"), ("network", network, MAX_NAME, "a network name"))
    )
    if problem:
        return problem
    for i, (container_id, ifname) in enumerate(valid):
        if i >= MAX_VALID_ATTACHMENTS:
            return f"valid lists more than {MAX_VALID_ATTACHMENTS} attachments"
        problem = _first_too_long(
            (
                (f"valid[{i}].container_id", container_id, MAX_ID, "a container ID"),
                (f"valid[{i}].ifname", ifname, MAX_IFNAME, "an interface name"),
            )
        )
        if problem:
            return problem
    return ""
