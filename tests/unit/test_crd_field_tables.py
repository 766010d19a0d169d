"""The field tables (crd_schema) and the models agree, and the tables say what upstream's CRDs say."""

from __future__ import annotations

import dataclasses
import types
from typing import Any

import pytest
from spiderpool_common.errors import InvalidObject
from spiderpool_controller.domain import coordinator_spec, crd_schema, models, validation
from spiderpool_controller.domain import multus_config as mc
from spiderpool_controller.domain.openapi_fields import Obj, schema_errors, snake_case, to_openapi
from spiderpool_controller.store import kubernetes as k8s_store

from tests.unit.crd_samples import full_manifest, full_value

# model dataclass -> (its table, fields of the table the model flattens into its own attributes)
BINDINGS: dict[type, tuple[Obj, tuple[str, ...]]] = {
    models.IPPoolSpec: (crd_schema.IPPOOL_SPEC, ()),
    models.SubnetSpec: (crd_schema.SUBNET_SPEC, ()),
    models.ReservedIPSpec: (crd_schema.RESERVED_IP_SPEC, ()),
    models.Route: (crd_schema.ROUTE, ()),
    models.LabelSelector: (crd_schema.LABEL_SELECTOR, ()),
    models.Requirement: (crd_schema.LABEL_SELECTOR_REQUIREMENT, ()),
    models.IPAllocationDetail: (crd_schema.IP_ALLOCATION_DETAIL, ()),
    models.EndpointStatus: (crd_schema.ENDPOINT_STATUS, ("current",)),
    coordinator_spec.CoordinatorSpec: (crd_schema.COORDINATOR_SPEC, ()),
    coordinator_spec.CoordinatorStatus: (crd_schema.COORDINATOR_STATUS, ()),
    mc.SpiderpoolPools: (crd_schema.SPIDERPOOL_POOLS, ()),
    mc.BondConfig: (crd_schema.BOND, ()),
    mc.MacvlanConfig: (crd_schema.MACVLAN_CONFIG, ()),
    mc.IPvlanConfig: (crd_schema.IPVLAN_CONFIG, ()),
    mc.VlanConfig: (crd_schema.VLAN_CONFIG, ()),
    mc.SriovConfig: (crd_schema.SRIOV_CONFIG, ()),
    mc.IBSriovConfig: (crd_schema.IBSRIOV_CONFIG, ()),
    mc.IpoibConfig: (crd_schema.IPOIB_CONFIG, ()),
    mc.Trunk: (crd_schema.TRUNK, ()),
    mc.OvsConfig: (crd_schema.OVS_CONFIG, ()),
    mc.MultusConfigSpec: (crd_schema.MULTUS_CONFIG_SPEC, ()),
}
# Dataclasses of the model modules that are no schema node, and why.
NOT_SCHEMA_NODES: dict[type, str] = {
    models.ObjectMeta: "metadata is the API server's (the CRD schema only says type: object)",
    models.IPPool: "an object view: meta, spec and the decoded status.allocatedIPs",
    models.AllocationRecord: "lives JSON-encoded inside status.allocatedIPs, a string in the CRD",
    coordinator_spec.SpiderCoordinator: "an object view: meta, spec, status",
    mc.SpiderMultusConfig: "an object view: meta and spec",
    mc.MasterNicConfig: "the base of MacvlanConfig, IPvlanConfig and VlanConfig",
}
MODEL_MODULES: tuple[types.ModuleType, ...] = (models, coordinator_spec, mc)
# Requirement is parsed and written by LabelSelector, whose round trip covers it.
PARSED_MODELS = [m for m in BINDINGS if hasattr(m, "from_dict")]


def _table_attributes(node: Obj, flatten: tuple[str, ...]) -> set[str]:
    out: set[str] = set()
    for f in node.fields:
        if f.name in flatten:
            assert isinstance(f.node, Obj)
            out |= {g.attribute for g in f.node.fields}
        else:
            out.add(f.attribute)
    return out


def test_every_model_dataclass_is_bound_to_a_table_or_says_why_not() -> None:
    """A new dataclass in a model module fails here until it is bound to its field table."""
    found = {
        obj
        for module in MODEL_MODULES
        for obj in vars(module).values()
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__
    }
    assert found - set(BINDINGS) - set(NOT_SCHEMA_NODES) == set()
    assert set(BINDINGS) | set(NOT_SCHEMA_NODES) <= found


@pytest.mark.parametrize("model", list(BINDINGS), ids=lambda m: m.__name__)
def test_model_fields_are_exactly_the_table_fields(model: type) -> None:
    """Every model attribute has a table entry and every table entry a model attribute."""
    node, flatten = BINDINGS[model]
    attrs = {f.name for f in dataclasses.fields(model)}
    table = _table_attributes(node, flatten)
    assert attrs - table == set(), f"{model.__name__} fields missing from table {node.title}"
    assert table - attrs == set(), f"table {node.title} fields missing from {model.__name__}"


@pytest.mark.parametrize("model", PARSED_MODELS, ids=lambda m: m.__name__)
def test_a_value_with_every_field_set_round_trips_through_the_model(model: type) -> None:
    """from_dict then to_dict gives back every field under its upstream name (none dropped or renamed)."""
    node, _ = BINDINGS[model]
    value = full_value(node)
    assert schema_errors(to_openapi(node), value) == []
    assert model.from_dict(value).to_dict() == value  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", PARSED_MODELS, ids=lambda m: m.__name__)
def test_model_defaults_are_the_schema_defaults(model: type) -> None:
    """Where the table has a default, the model's declared default and its parse of an absent field agree."""
    node, _ = BINDINGS[model]
    by_attr = {f.attribute: f for f in node.fields}
    for field in dataclasses.fields(model):
        entry = by_attr.get(field.name)
        if entry is not None and entry.has_default and field.default not in (None, dataclasses.MISSING):
            assert field.default == entry.default, f"{model.__name__}.{field.name}"
    minimal = {f.name: full_value(f.node, f) for f in node.fields if f.required}
    parsed = model.from_dict(minimal)  # type: ignore[attr-defined]
    for entry in node.fields:
        current = getattr(parsed, entry.attribute, None)
        if entry.has_default and current is not None:
            assert current == entry.default, f"{model.__name__}.{entry.attribute} parsed from an absent field"


def test_models_that_default_a_field_do_so_with_the_table_value() -> None:
    """Pool default/disable and endpoint vlan parse to the table defaults when absent."""
    assert (
        models.IPPoolSpec.from_dict({"subnet": "10.0.0.0/24"}).default
        is crd_schema.IPPOOL_SPEC.field("default").default
    )
    assert models.IPAllocationDetail.from_dict({"interface": "eth0"}).vlan == (
        crd_schema.IP_ALLOCATION_DETAIL.field("vlan").default
    )


def test_the_pool_status_the_engine_writes_fits_the_status_schema() -> None:
    """pool_status_dict (the engine's status writes) validates against the SpiderIPPool status table."""
    record = models.AllocationRecord(pod="ns/pod", pod_uid="uid-1", container_id="c1", interface="eth0")
    status = models.pool_status_dict({"10.0.0.5": record}, 10)
    assert schema_errors(to_openapi(crd_schema.IPPOOL_STATUS), status) == []


@pytest.mark.parametrize("kind", [r.kind for r in crd_schema.RESOURCES])
def test_a_manifest_with_every_field_set_fits_its_kinds_schema(kind: str) -> None:
    """The sampler's manifests are valid, so the round trips above test real manifests."""
    assert schema_errors(crd_schema.openapi_schema(kind), full_manifest(kind)) == []


def test_table_kinds_scopes_and_short_names_are_the_models() -> None:
    """Kinds, namespaced kinds and spiderpoolctl's aliases agree with the tables."""
    kinds = {r.kind for r in crd_schema.RESOURCES}
    assert kinds == {
        models.KIND_IPPOOL,
        models.KIND_SUBNET,
        models.KIND_RESERVED_IP,
        models.KIND_ENDPOINT,
        models.KIND_MULTUS_CONFIG,
        models.KIND_COORDINATOR,
    }
    assert {r.kind for r in crd_schema.RESOURCES if r.namespaced} == models.NAMESPACED_KINDS
    assert f"{crd_schema.GROUP}/{crd_schema.VERSION}" == models.API_VERSION
    for res in crd_schema.RESOURCES:
        if res.kind in models.KIND_ALIASES.values():
            for name in (*res.short_names, res.plural, res.singular):
                assert models.resolve_kind(name) == res.kind


def test_validation_accepts_the_spec_fields_of_the_tables() -> None:
    """The embedded mode's known-field check takes its field names from the tables."""
    spec: dict[str, Any] = {"subnet": "10.6.0.0/16", "ips": ["10.6.0.10"], "vlan": 5}
    pool = {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND_IPPOOL,
        "metadata": {"name": "p"},
        "spec": spec,
    }
    with pytest.raises(InvalidObject, match=r"spec\.vlan: unknown field"):
        validation.validate_create(validation.default_object(pool))
    del spec["vlan"]
    validation.validate_create(validation.default_object(pool))


def test_embedded_defaulting_applies_the_schema_defaults() -> None:
    """default_object fills the CRD defaults of a SpiderIPPool (default and disable false)."""
    pool = {"apiVersion": models.API_VERSION, "kind": models.KIND_IPPOOL, "metadata": {"name": "p"}}
    pool["spec"] = {"subnet": "10.6.0.0/16"}
    spec = validation.default_object(pool)["spec"]
    assert (spec["default"], spec["disable"]) == (False, False)


# ---------------------------------------------------------------------------------------
# upstream's facts (pkg/k8s/apis/spiderpool.spidernet.io/v2beta1, charts/spiderpool/crds)

UPSTREAM_ENUMS: dict[tuple[Obj, str], tuple[Any, ...]] = {
    (crd_schema.IPPOOL_SPEC, "ipVersion"): (4, 6),
    (crd_schema.SUBNET_SPEC, "ipVersion"): (4, 6),
    (crd_schema.RESERVED_IP_SPEC, "ipVersion"): (4, 6),
    (crd_schema.COORDINATOR_SPEC, "mode"): ("auto", "underlay", "overlay", "disabled"),
    (crd_schema.COORDINATOR_SPEC, "podCIDRType"): ("auto", "cluster", "calico", "cilium", "none"),
    (crd_schema.MULTUS_CONFIG_SPEC, "cniType"): (
        "macvlan",
        "ipvlan",
        "vlan",
        "sriov",
        "ovs",
        "ib-sriov",
        "ipoib",
        "custom",
    ),
    (crd_schema.VLAN_CONFIG, "vlanMode"): ("manual", "auto"),
    (crd_schema.IBSRIOV_CONFIG, "linkState"): ("auto", "enable", "disable"),
    (crd_schema.SPIDERPOOL_POOLS, "matchMasterSubnet"): (True, False),
}
UPSTREAM_DEFAULTS: dict[tuple[Obj, str], Any] = {
    (crd_schema.IPPOOL_SPEC, "default"): False,
    (crd_schema.IPPOOL_SPEC, "disable"): False,
    (crd_schema.IP_ALLOCATION_DETAIL, "vlan"): 0,
    (crd_schema.COORDINATOR_SPEC, "mode"): "auto",
    (crd_schema.COORDINATOR_SPEC, "tunePodRoutes"): True,
    (crd_schema.COORDINATOR_SPEC, "hostRuleTable"): 500,
    (crd_schema.COORDINATOR_SPEC, "podRPFilter"): 0,
    (crd_schema.COORDINATOR_SPEC, "txQueueLen"): 0,
    (crd_schema.MULTUS_CONFIG_SPEC, "cniType"): "custom",
    (crd_schema.MULTUS_CONFIG_SPEC, "enableCoordinator"): True,
    (crd_schema.MULTUS_CONFIG_SPEC, "disableIPAM"): False,
    (crd_schema.MACVLAN_CONFIG, "mtu"): 0,
    (crd_schema.IPVLAN_CONFIG, "mtu"): 0,
    (crd_schema.VLAN_CONFIG, "mtu"): 0,
    (crd_schema.VLAN_CONFIG, "vlanMode"): "manual",
    (crd_schema.SRIOV_CONFIG, "mtu"): 0,
    (crd_schema.SRIOV_CONFIG, "rdmaIsolation"): False,
    (crd_schema.IBSRIOV_CONFIG, "linkState"): "enable",
    (crd_schema.IBSRIOV_CONFIG, "rdmaIsolation"): True,
    (crd_schema.IBSRIOV_CONFIG, "enableIbKubernetes"): False,
    (crd_schema.SPIDERPOOL_POOLS, "matchMasterSubnet"): False,
}


def _all_fields(node: Obj) -> list[tuple[Obj, str]]:
    out = [(node, f.name) for f in node.fields]
    for f in node.fields:
        child = f.node.items if hasattr(f.node, "items") else f.node
        if isinstance(child, Obj):
            out += _all_fields(child)
    return out


def test_enums_are_upstreams() -> None:
    """Every enum is upstream's, value for value and in order, and no other field has one (bar operator)."""
    for (node, name), values in UPSTREAM_ENUMS.items():
        assert node.field(name).node.enum == values  # type: ignore[union-attr]
    roots = [r.spec or r.status for r in crd_schema.RESOURCES]
    enums = {
        (node.title, name)
        for root in roots
        if root is not None
        for node, name in _all_fields(root)
        if getattr(node.field(name).node, "enum", ())
    }
    expected = {(node.title, name) for node, name in UPSTREAM_ENUMS} | {("Requirement", "operator")}
    assert enums == expected


def test_defaults_are_upstreams() -> None:
    """Every schema default is upstream's and no other field has one."""
    for (node, name), value in UPSTREAM_DEFAULTS.items():
        assert node.field(name).default == value, f"{node.title}.{name}"
    roots = [n for r in crd_schema.RESOURCES for n in (r.spec, r.status) if n is not None]
    defaults = {
        (node.title, name)
        for root in roots
        for node, name in _all_fields(root)
        if node.field(name).has_default
    }
    assert defaults == {(node.title, name) for node, name in UPSTREAM_DEFAULTS}


def test_required_fields_are_upstreams() -> None:
    """Exactly upstream's required fields are required (subnet, route dst/gw, bond, master, ...)."""
    roots = [n for r in crd_schema.RESOURCES for n in (r.spec, r.status) if n is not None]
    required = {
        (node.title, name) for root in roots for node, name in _all_fields(root) if node.field(name).required
    }
    assert required == {
        ("IPPoolSpec", "subnet"),
        ("SubnetSpec", "subnet"),
        ("Route", "dst"),
        ("Route", "gw"),
        ("PolicyRoute", "dst"),
        ("PolicyRoute", "gw"),
        ("Requirement", "key"),
        ("Requirement", "operator"),
        ("IPAllocationDetail", "interface"),
        ("PodIPAllocation", "uid"),
        ("PodIPAllocation", "node"),
        ("PodIPAllocation", "ips"),
        ("WorkloadEndpointStatus", "current"),
        ("WorkloadEndpointStatus", "ownerControllerType"),
        ("WorkloadEndpointStatus", "ownerControllerName"),
        ("CoordinatorStatus", "phase"),
        ("BondConfig", "name"),
        ("BondConfig", "mode"),
        ("SpiderMacvlanCniConfig", "master"),
        ("SpiderIPvlanCniConfig", "master"),
        ("SpiderVlanCniConfig", "master"),
        ("SpiderOvsCniConfig", "bridge"),
    }


def test_kinds_are_declared_as_upstream() -> None:
    """Plural, short name, scope and status subresource per kind, as upstream's CRDs."""
    got = {(r.kind, r.plural, r.short_names, r.scope, r.status_subresource) for r in crd_schema.RESOURCES}
    assert got == {
        ("SpiderIPPool", "spiderippools", ("sp",), "Cluster", True),
        ("SpiderSubnet", "spidersubnets", ("ss",), "Cluster", True),
        ("SpiderReservedIP", "spiderreservedips", ("sr",), "Cluster", False),
        ("SpiderEndpoint", "spiderendpoints", ("se",), "Namespaced", False),
        ("SpiderMultusConfig", "spidermultusconfigs", ("smc",), "Namespaced", False),
        ("SpiderCoordinator", "spidercoordinators", ("scc",), "Cluster", True),
    }
    endpoint = crd_schema.resource("SpiderEndpoint")
    assert endpoint.spec is None and endpoint.status is not None
    for kind in ("SpiderReservedIP", "SpiderMultusConfig"):
        assert crd_schema.resource(kind).status is None


UPSTREAM_COLUMNS = {
    "SpiderIPPool": [
        ("VERSION", ".spec.ipVersion", "string", 0),
        ("SUBNET", ".spec.subnet", "string", 0),
        ("ALLOCATED-IP-COUNT", ".status.allocatedIPCount", "integer", 0),
        ("TOTAL-IP-COUNT", ".status.totalIPCount", "integer", 0),
        ("DEFAULT", ".spec.default", "boolean", 0),
        ("DISABLE", ".spec.disable", "boolean", 10),
        ("NodeName", ".spec.nodeName", "string", 10),
        ("MultusName", ".spec.multusName", "string", 10),
        (
            "APP-NAMESPACE",
            r".spec.podAffinity.matchLabels['ipam\.spidernet\.io/app\-namespace']",
            "string",
            10,
        ),
    ],
    "SpiderSubnet": [
        ("VERSION", ".spec.ipVersion", "string", 0),
        ("SUBNET", ".spec.subnet", "string", 0),
        ("ALLOCATED-IP-COUNT", ".status.allocatedIPCount", "integer", 0),
        ("TOTAL-IP-COUNT", ".status.totalIPCount", "integer", 0),
    ],
    "SpiderReservedIP": [("VERSION", ".spec.ipVersion", "string", 0)],
    "SpiderEndpoint": [
        ("INTERFACE", ".status.current.ips[0].interface", "string", 0),
        ("IPV4POOL", ".status.current.ips[0].ipv4Pool", "string", 0),
        ("IPV4", ".status.current.ips[0].ipv4", "string", 0),
        ("IPV6POOL", ".status.current.ips[0].ipv6Pool", "string", 0),
        ("IPV6", ".status.current.ips[0].ipv6", "string", 0),
        ("NODE", ".status.current.node", "string", 0),
    ],
    "SpiderMultusConfig": [],
    "SpiderCoordinator": [],
}


@pytest.mark.parametrize("kind", list(UPSTREAM_COLUMNS))
def test_printer_columns_are_upstreams(kind: str) -> None:
    """Name, JSON path, type and priority of every printer column, in upstream's order."""
    cols = [(c.name, c.json_path, c.type, c.priority) for c in crd_schema.resource(kind).printer_columns]
    assert cols == UPSTREAM_COLUMNS[kind]


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("podCIDRType", "pod_cidr_type"),
        ("vlanID", "vlan_id"),
        ("ipv4Pool", "ipv4_pool"),
        ("podMACPrefix", "pod_mac_prefix"),
        ("chainCNIJsonData", "chain_cni_json_data"),
        ("vethMTU", "veth_mtu"),
        ("enableIbKubernetes", "enable_ib_kubernetes"),
    ],
)
def test_snake_case_maps_upstream_names_to_model_attributes(name: str, snake: str) -> None:
    """The default attribute of a field is the snake_case of its JSON name, acronyms kept whole."""
    assert snake_case(name) == snake


def test_the_kubernetes_stores_resource_table_agrees_with_the_crds() -> None:
    """The Kubernetes Store's plural, scope and status subresource per kind are the CRDs' (no drift)."""
    store = {k: (r.plural, r.namespaced, r.status_subresource) for k, r in k8s_store.RESOURCES.items()}
    tables = {r.kind: (r.plural, r.namespaced, r.status_subresource) for r in crd_schema.RESOURCES}
    assert store == tables
    assert k8s_store.VERSION == crd_schema.VERSION
