"""The field tables of ``spiderpool.spidernet.io/v2beta1``: one source for the CRDs and the models.

Owns, per kind, every field upstream's API declares (pkg/k8s/apis/spiderpool.spidernet.io/
v2beta1, upstream's charts/spiderpool/crds) with its type, enum, format, range, default and whether it is
required, plus what the CRD says about the kind itself: plural, short names, scope, the
``spiderpool`` category, the status subresource and the printer columns. From these tables

* ``spiderpool_tools.crdgen`` writes ``deploy/crds/*.yaml`` (``make crds``; ``make crds-verify``
  fails when the committed files are stale);
* ``validation.py`` takes the spec field names it accepts and the schema defaults it applies;
* ``tests/unit/test_crd_field_tables.py`` binds each model dataclass (``models.py``,
  ``coordinator_spec.py``, ``multus_config.py``) to its table and fails when a model field has no
  table entry or a table entry no model field, and round-trips a manifest with every field set.

Field names, types, enums and defaults are upstream's. Where upstream leaves a value check to
its webhook, the tables add a format, range or pattern only when every value the webhook accepts
also passes it, so a manifest upstream accepts is never refused here: subnets and route
destinations are ``cidr``, gateways ``ipv4``/``ipv6``, ``ips`` entries match an IP or IP range,
``txQueueLen`` is >= 0, an OVS ``vlan`` is 0-4094, a ``podMACPrefix`` looks like ``0a:1b``.
``podCIDRType`` stays optional in the schema (it is shared with SpiderMultusConfig, where it
may be omitted); the SpiderCoordinator webhook requires it. Pure data: no Kubernetes imports.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from spiderpool_controller.domain.openapi_fields import (
    Field,
    Json,
    ListOf,
    MapOf,
    Obj,
    boolean,
    int32,
    int64,
    integer,
    string,
    strings,
    to_openapi,
)
from spiderpool_controller.domain.openapi_fields import apply_defaults as _apply_defaults

GROUP = "spiderpool.spidernet.io"
VERSION = "v2beta1"
CATEGORY = "spiderpool"

# An IPv4/IPv6 address or an inclusive range of two ("10.6.0.10-10.6.0.20"); validation.py
# checks the family, the order and that the range lies inside the subnet.
_IP_SHAPE = r"([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*)"
IP_RANGE_PATTERN = rf"^{_IP_SHAPE}(-{_IP_SHAPE})?$"
MAC_PREFIX_PATTERN = r"^([0-9A-Fa-f]{2}[:-][0-9A-Fa-f]{2})?$"
_IP = ("ipv4", "ipv6")
_IP_OR_CIDR = ("cidr", "ipv4", "ipv6")

# ---------------------------------------------------------------------------------------
# shared nodes

IP_VERSION = Field("ipVersion", int64(enum=(4, 6)), "IP family of the object: 4 or 6.")
IP_RANGES = strings(string(pattern=IP_RANGE_PATTERN))

ROUTE = Obj(
    "Route",
    (
        Field("dst", string(fmt="cidr"), "Destination CIDR of the route.", required=True),
        Field("gw", string(any_of_formats=_IP), "Next hop of the route.", required=True),
    ),
)
# SpiderCoordinator policy routes: a bare IP destination is accepted and becomes a /32 or /128.
POLICY_ROUTE = Obj(
    "PolicyRoute",
    (
        Field("dst", string(any_of_formats=_IP_OR_CIDR), "Destination IP or CIDR.", required=True),
        Field("gw", string(any_of_formats=_IP), "Next hop of the route.", required=True),
    ),
)

LABEL_SELECTOR_REQUIREMENT = Obj(
    "Requirement",
    (
        Field("key", string(), "The label key the requirement applies to.", required=True),
        Field(
            "operator",
            string(enum=("In", "NotIn", "Exists", "DoesNotExist")),
            "How the key relates to the values.",
            required=True,
        ),
        Field(
            "values",
            strings(list_type="atomic"),
            "Values for In and NotIn (non-empty); empty for Exists and DoesNotExist.",
        ),
    ),
)
LABEL_SELECTOR = Obj(
    "LabelSelector",
    (
        Field("matchLabels", MapOf(string()), "Labels that must all be present with these values."),
        Field(
            "matchExpressions",
            ListOf(LABEL_SELECTOR_REQUIREMENT, list_type="atomic"),
            "Requirements that must all hold.",
        ),
    ),
    description="A label query; an empty selector matches everything.",
    map_type="atomic",
)


def _selector(what: str) -> Obj:
    return Obj(LABEL_SELECTOR.title, LABEL_SELECTOR.fields, what, LABEL_SELECTOR.map_type)


# ---------------------------------------------------------------------------------------
# SpiderIPPool, SpiderSubnet, SpiderReservedIP

_RANGE_FIELDS = (
    IP_VERSION,
    Field(
        "subnet",
        string(fmt="cidr"),
        "The subnet, in canonical form (network address), e.g. 10.6.0.0/16.",
        required=True,
    ),
    Field("ips", IP_RANGES, "IPs and IP ranges (a-b) inside the subnet."),
    Field("excludeIPs", IP_RANGES, "IPs and ranges never handed out.", attr="exclude_ips"),
    Field("gateway", string(any_of_formats=_IP), "Default gateway, inside the subnet."),
    Field("routes", ListOf(ROUTE), "Routes handed to pods; not the default route (use gateway)."),
)

IPPOOL_SPEC = Obj(
    "IPPoolSpec",
    (
        *_RANGE_FIELDS,
        Field("podAffinity", _selector("Pods whose labels match may use the pool.")),
        Field("namespaceAffinity", _selector("Pods in namespaces whose labels match may use the pool.")),
        Field("namespaceName", strings(), "Namespaces whose pods may use the pool (wins over the affinity)."),
        Field("nodeAffinity", _selector("Pods on nodes whose labels match may use the pool.")),
        Field("nodeName", strings(), "Nodes whose pods may use the pool (wins over the affinity)."),
        Field("multusName", strings(), "Multus networks (namespace/name or name) that may use the pool."),
        Field("default", boolean(), "A cluster default pool.", default=False),
        Field("disable", boolean(), "No new allocations from the pool.", default=False),
    ),
    "The addresses of the pool and who may use them.",
)
IPPOOL_STATUS = Obj(
    "IPPoolStatus",
    (
        Field("allocatedIPs", string(), "JSON map of allocated IP to its record (pod, podUid, ...)."),
        Field("totalIPCount", int64(minimum=0), "Usable IPs: ips minus excludeIPs and reserved IPs."),
        Field("allocatedIPCount", int64(minimum=0), "IPs allocated now."),
        Field(
            "releasedIPs",
            string(),
            "JSON map of recently released IP to its release time (Unix seconds), kept for the "
            "pool's reuse delay (this project's; absent when the delay is 0).",
        ),
    ),
    "Allocations, written by the controller only.",
)

SUBNET_SPEC = Obj("SubnetSpec", _RANGE_FIELDS, "The address space pools of this subnet are carved from.")
SUBNET_STATUS = Obj(
    "SubnetStatus",
    (
        Field("controlledIPPools", string(), "JSON map of pool name to the IPs it took from the subnet."),
        Field("totalIPCount", int64(minimum=0), "IPs of the subnet: ips minus excludeIPs."),
        Field("allocatedIPCount", int64(minimum=0), "IPs handed to pools."),
    ),
    "What the subnet handed out, written by the controller only.",
)

RESERVED_IP_SPEC = Obj(
    "ReservedIPSpec",
    (IP_VERSION, Field("ips", IP_RANGES, "IPs and ranges no pool of this family ever hands out.")),
    "Addresses held outside the cluster.",
)

# ---------------------------------------------------------------------------------------
# SpiderEndpoint (status only)

IP_ALLOCATION_DETAIL = Obj(
    "IPAllocationDetail",
    (
        Field("interface", string(), "The pod's interface.", required=True),
        Field("ipv4", string(fmt="cidr"), "IPv4 address with prefix length."),
        Field("ipv6", string(fmt="cidr"), "IPv6 address with prefix length."),
        Field("ipv4Pool", string(), "Pool the IPv4 address came from."),
        Field("ipv6Pool", string(), "Pool the IPv6 address came from."),
        Field("vlan", int64(minimum=0, maximum=4094), "VLAN ID of the pool.", default=0),
        Field("ipv4Gateway", string(fmt="ipv4"), "IPv4 gateway handed to the interface."),
        Field("ipv6Gateway", string(fmt="ipv6"), "IPv6 gateway handed to the interface."),
        Field("cleanGateway", boolean(), "No gateway was handed to this interface."),
        Field("routes", ListOf(ROUTE), "Routes handed to this interface."),
        Field("mac", string(fmt="mac"), "MAC address given by an IaaS provider, e.g. aa:bb:cc:dd:ee:ff."),
    ),
)
POD_IP_ALLOCATION = Obj(
    "PodIPAllocation",
    (
        Field("uid", string(), "UID of the pod.", required=True),
        Field("node", string(), "Node of the pod.", required=True),
        Field("ips", ListOf(IP_ALLOCATION_DETAIL), "Addresses per interface.", required=True),
    ),
)
ENDPOINT_STATUS = Obj(
    "WorkloadEndpointStatus",
    (
        Field("current", POD_IP_ALLOCATION, "The pod's current addresses.", required=True),
        Field(
            "ownerControllerType",
            string(),
            "Kind of the pod's top owner (Deployment, StatefulSet, Pod, ...).",
            required=True,
        ),
        Field("ownerControllerName", string(), "Name of the pod's top owner.", required=True),
    ),
    "The pod's addresses, written by spiderpool.",
)

# ---------------------------------------------------------------------------------------
# SpiderCoordinator (and SpiderMultusConfig's per-network override)

COORDINATOR_SPEC = Obj(
    "CoordinatorSpec",
    (
        Field(
            "mode",
            string(enum=("auto", "underlay", "overlay", "disabled")),
            "How the coordinator runs.",
            default="auto",
        ),
        Field(
            "podCIDRType",
            string(enum=("auto", "cluster", "calico", "cilium", "none")),
            "Where the controller discovers pod CIDRs (required in a SpiderCoordinator).",
        ),
        Field(
            "hijackCIDR",
            strings(string(any_of_formats=_IP_OR_CIDR)),
            "Extra CIDRs the pod reaches through the host (a bare IP is a /32 or /128).",
        ),
        Field("policyRoutes", ListOf(POLICY_ROUTE), "Routes installed in the interface's policy table."),
        Field(
            "podMACPrefix",
            string(pattern=MAC_PREFIX_PATTERN),
            "Fixed 2-byte MAC prefix of pod interfaces, e.g. 0a:1b (first byte unicast).",
            attr="pod_mac_prefix",
        ),
        Field("tunePodRoutes", boolean(), "Tune the routes of pods with several interfaces.", default=True),
        Field("podDefaultRouteNIC", string(), "Pod interface holding the default route (empty: eth0)."),
        Field("hostRuleTable", integer(), "Host policy table for routes to pods.", default=500),
        Field("podRPFilter", integer(), "Pod rp_filter: 0, 1 or 2; negative leaves it alone.", default=0),
        Field("txQueueLen", integer(minimum=0), "Pod interface txqueuelen; 0 leaves it alone.", default=0),
        Field("vethLinkAddress", string(), "IPv4 link-local address of the pod's veth0 (empty: none)."),
        Field("vethMTU", integer(minimum=1), "MTU of the veth pair."),
    ),
    "Coordinator settings.",
)
COORDINATOR_STATUS = Obj(
    "CoordinatorStatus",
    (
        Field("phase", string(), "Synced or NotReady.", required=True),
        Field("reason", string(), "Why the phase is NotReady."),
        Field("overlayPodCIDR", strings(string(fmt="cidr")), "Pod CIDRs of the cluster's overlay CNI."),
        Field("serviceCIDR", strings(string(fmt="cidr")), "Service CIDRs of the cluster."),
    ),
    "CIDRs discovered by the controller.",
)

# ---------------------------------------------------------------------------------------
# SpiderMultusConfig

SPIDERPOOL_POOLS = Obj(
    "SpiderpoolPools",
    (
        Field(
            "matchMasterSubnet",
            boolean(enum=(True, False)),
            "Pick the pool whose subnet matches the master interface's (sriov only).",
            default=False,
        ),
        Field("ipv4", strings(), "Default IPv4 pools of the network."),
        Field("ipv6", strings(), "Default IPv6 pools of the network."),
    ),
    "Default pools written into the generated network's IPAM configuration.",
)
BOND = Obj(
    "BondConfig",
    (
        Field("name", string(), "Name of the bond interface.", required=True),
        Field("mode", int32(minimum=0, maximum=6), "Bonding mode (0-6).", required=True),
        Field("options", string(), "Bond options, ';'-separated, e.g. primary=ens160;arp_interval=1."),
    ),
    "Bond created from the master interfaces (required with two or more).",
)
_VLAN_ID = Field("vlanID", int32(minimum=0, maximum=4094), "VLAN ID (0: untagged).")
_MTU = Field("mtu", int32(minimum=0), "MTU of the interface (0: the kernel's).", default=0)
_MASTER = Field("master", strings(), "Master interface(s); two or more need a bond.", required=True)
_RDMA_RESOURCE = Field("rdmaResourceName", string(), "RDMA resource to inject into pods.")
_IPPOOLS = Field("ippools", SPIDERPOOL_POOLS)


def _master_nic(title: str, *extra: Field) -> Obj:
    return Obj(title, (_MASTER, _MTU, *extra, _VLAN_ID, Field("bond", BOND), _RDMA_RESOURCE, _IPPOOLS))


MACVLAN_CONFIG = _master_nic("SpiderMacvlanCniConfig")
IPVLAN_CONFIG = _master_nic("SpiderIPvlanCniConfig")
VLAN_CONFIG = _master_nic(
    "SpiderVlanCniConfig",
    Field(
        "vlanMode",
        string(enum=("manual", "auto")),
        "manual: vlanID is required; auto: vlanID is forbidden.",
        default="manual",
    ),
)
SRIOV_CONFIG = Obj(
    "SpiderSRIOVCniConfig",
    (
        Field("resourceName", string(), "SR-IOV device plugin resource of the VFs (required)."),
        _VLAN_ID,
        Field("mtu", int32(minimum=0), "MTU set by a chained tuning plugin (0: the kernel's).", default=0),
        Field("minTxRateMbps", integer(minimum=0), "Minimum transmit rate in Mbps (0: no limit)."),
        Field("maxTxRateMbps", integer(minimum=0), "Maximum transmit rate in Mbps (0: no limit)."),
        Field("rdmaIsolation", boolean(), "Chain the rdma plugin to isolate RDMA devices.", default=False),
        _IPPOOLS,
    ),
)
IBSRIOV_CONFIG = Obj(
    "SpiderIBSriovCniConfig",
    (
        Field("resourceName", string(), "SR-IOV device plugin resource of the VFs (required)."),
        Field("pkey", string(), "InfiniBand partition key of the VF."),
        Field(
            "linkState",
            string(enum=("auto", "enable", "disable")),
            "Link state enforced on the VF.",
            default="enable",
        ),
        Field("rdmaIsolation", boolean(), "Isolate the VF's RDMA device in the pod.", default=True),
        Field("enableIbKubernetes", boolean(), "Work with ib-kubernetes.", default=False),
        _IPPOOLS,
    ),
)
IPOIB_CONFIG = Obj(
    "SpiderIpoibCniConfig",
    (Field("master", string(), "Host IPoIB interface to create the link from (required)."), _IPPOOLS),
)
TRUNK = Obj(
    "Trunk",
    (
        Field("minID", integer(minimum=0, maximum=4094), "First VLAN of a range."),
        Field("maxID", integer(minimum=0, maximum=4094), "Last VLAN of a range."),
        Field("id", integer(minimum=0, maximum=4094), "A single VLAN."),
    ),
)
OVS_CONFIG = Obj(
    "SpiderOvsCniConfig",
    (
        Field("bridge", string(), "OVS bridge to attach to.", required=True),
        Field("vlan", int32(minimum=0, maximum=4094), "VLAN tag of the port."),
        Field("trunk", ListOf(TRUNK), "Trunked VLANs of the port."),
        Field("deviceID", string(), "PCI address of a VF (hardware offload)."),
        _IPPOOLS,
    ),
)

CNI_TYPES = ("macvlan", "ipvlan", "vlan", "sriov", "ovs", "ib-sriov", "ipoib", "custom")

MULTUS_CONFIG_SPEC = Obj(
    "MultusCNIConfigSpec",
    (
        Field("cniType", string(enum=CNI_TYPES), "Main CNI of the generated network.", default="custom"),
        Field("macvlan", MACVLAN_CONFIG),
        Field("ipvlan", IPVLAN_CONFIG),
        Field("vlan", VLAN_CONFIG),
        Field("sriov", SRIOV_CONFIG),
        Field("ovs", OVS_CONFIG),
        Field("ibsriov", IBSRIOV_CONFIG),
        Field("ipoib", IPOIB_CONFIG),
        Field("enableCoordinator", boolean(), "Chain the coordinator (false for custom).", default=True),
        Field("disableIPAM", boolean(), "Leave out spiderpool IPAM.", default=False, attr="disable_ipam"),
        Field("coordinator", COORDINATOR_SPEC, "Coordinator settings of this network."),
        Field("chainCNIJsonData", strings(), "CNI plugin configurations (JSON) appended to the chain."),
        Field("customCNI", string(), "The whole CNI configuration (JSON) for cniType custom."),
    ),
    "A Multus network; the controller generates its NetworkAttachmentDefinition.",
)

# ---------------------------------------------------------------------------------------
# the kinds


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str
    description: str
    priority: int = 0


@dataclass(frozen=True)
class Resource:
    """One kind as its CRD declares it."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    scope: str  # "Cluster" | "Namespaced"
    description: str
    spec: Obj | None = None
    status: Obj | None = None
    status_subresource: bool = False
    printer_columns: tuple[PrinterColumn, ...] = ()

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def namespaced(self) -> bool:
        return self.scope == "Namespaced"


def _column(name: str, path: str, typ: str, description: str, priority: int = 0) -> PrinterColumn:
    return PrinterColumn(name, path, typ, description, priority)


_VERSION_COLUMN = _column("VERSION", ".spec.ipVersion", "string", "ipVersion")
_COUNT_COLUMNS = (
    _column("SUBNET", ".spec.subnet", "string", "subnet"),
    _column("ALLOCATED-IP-COUNT", ".status.allocatedIPCount", "integer", "allocatedIPCount"),
    _column("TOTAL-IP-COUNT", ".status.totalIPCount", "integer", "totalIPCount"),
)
_ENDPOINT_IP = ".status.current.ips[0]"

RESOURCES: tuple[Resource, ...] = (
    Resource(
        "SpiderIPPool",
        "spiderippools",
        ("sp",),
        "Cluster",
        "A pool of IPs that pods get addresses from.",
        spec=IPPOOL_SPEC,
        status=IPPOOL_STATUS,
        status_subresource=True,
        printer_columns=(
            _VERSION_COLUMN,
            *_COUNT_COLUMNS,
            _column("DEFAULT", ".spec.default", "boolean", "default"),
            _column("DISABLE", ".spec.disable", "boolean", "disable", 10),
            _column("NodeName", ".spec.nodeName", "string", "nodeName", 10),
            _column("MultusName", ".spec.multusName", "string", "multusName", 10),
            _column(
                "APP-NAMESPACE",
                r".spec.podAffinity.matchLabels['ipam\.spidernet\.io/app\-namespace']",
                "string",
                "AppNamespace",
                10,
            ),
        ),
    ),
    Resource(
        "SpiderSubnet",
        "spidersubnets",
        ("ss",),
        "Cluster",
        "A subnet that IP pools are carved from.",
        spec=SUBNET_SPEC,
        status=SUBNET_STATUS,
        status_subresource=True,
        printer_columns=(_VERSION_COLUMN, *_COUNT_COLUMNS),
    ),
    Resource(
        "SpiderReservedIP",
        "spiderreservedips",
        ("sr",),
        "Cluster",
        "IPs that no pool hands out.",
        spec=RESERVED_IP_SPEC,
        printer_columns=(_VERSION_COLUMN,),
    ),
    Resource(
        "SpiderEndpoint",
        "spiderendpoints",
        ("se",),
        "Namespaced",
        "The addresses of one pod (status only; written by spiderpool).",
        status=ENDPOINT_STATUS,
        printer_columns=(
            _column("INTERFACE", f"{_ENDPOINT_IP}.interface", "string", "interface"),
            _column("IPV4POOL", f"{_ENDPOINT_IP}.ipv4Pool", "string", "ipv4Pool"),
            _column("IPV4", f"{_ENDPOINT_IP}.ipv4", "string", "ipv4"),
            _column("IPV6POOL", f"{_ENDPOINT_IP}.ipv6Pool", "string", "ipv6Pool"),
            _column("IPV6", f"{_ENDPOINT_IP}.ipv6", "string", "ipv6"),
            _column("NODE", ".status.current.node", "string", "node"),
        ),
    ),
    Resource(
        "SpiderMultusConfig",
        "spidermultusconfigs",
        ("smc",),
        "Namespaced",
        "A Multus network configuration that generates a NetworkAttachmentDefinition.",
        spec=MULTUS_CONFIG_SPEC,
    ),
    Resource(
        "SpiderCoordinator",
        "spidercoordinators",
        ("scc",),
        "Cluster",
        "Cluster-wide coordinator settings (one object, named default).",
        spec=COORDINATOR_SPEC,
        status=COORDINATOR_STATUS,
        status_subresource=True,
    ),
)
_BY_KIND = {r.kind: r for r in RESOURCES}


def resource(kind: str) -> Resource:
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise KeyError(f"{kind!r} is not a {GROUP} kind; known: {', '.join(_BY_KIND)}") from None


@cache
def _openapi_schema(kind: str) -> Json:
    res = resource(kind)
    props: Json = {
        "apiVersion": {
            "type": "string",
            "description": "Versioned schema of this representation of the object.",
        },
        "kind": {"type": "string", "description": "REST resource this object represents, in CamelCase."},
        "metadata": {"type": "object"},
    }
    if res.spec is not None:
        props["spec"] = to_openapi(res.spec)
    if res.status is not None:
        props["status"] = to_openapi(res.status)
    return {"type": "object", "description": res.description, "properties": props}


def openapi_schema(kind: str) -> Json:
    """The ``openAPIV3Schema`` of ``kind`` (a fresh copy: callers may change it)."""
    return copy.deepcopy(_openapi_schema(kind))


def spec_field_names(kind: str) -> frozenset[str]:
    spec = resource(kind).spec
    return spec.names if spec is not None else frozenset()


def apply_defaults(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` with the CRD schema's defaults of ``kind`` filled in (API server semantics)."""
    out = _apply_defaults(_openapi_schema(kind), dict(obj))
    assert isinstance(out, dict)
    return out
