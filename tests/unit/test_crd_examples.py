"""Manifests against the generated CRDs offline (jsonschema), and through the project's webhook rules.

Covers deploy/examples, the upstream documentation examples under tests/data/upstream-examples,
and invalid manifests that must be refused naming the field, by the offline validator (which
reads the generated files) and by the domain's own schema check (which reads the tables).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from spiderpool_common.errors import InvalidObject
from spiderpool_controller.domain import crd_schema, models, validation
from spiderpool_controller.domain import multus_config as mc
from spiderpool_controller.domain.openapi_fields import format_ok, schema_errors
from spiderpool_tools.crdgen.offline import CrdSet, ManifestInvalid, validate_manifest

from tests.unit.crd_samples import full_manifest

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = REPO / "tests" / "data" / "upstream-examples"
CRDS = CrdSet.load(REPO / "deploy" / "crds")


def _docs(paths: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in paths:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            out.append((f"{path.relative_to(REPO)}#{i}", doc))
    return out


EXAMPLES = _docs(sorted((REPO / "deploy" / "examples").glob("*.yaml")))
UPSTREAM_OK = _docs(sorted(UPSTREAM.glob("*.yaml")))
UPSTREAM_STRICT = _docs(sorted((UPSTREAM / "refused-strict").glob("*.yaml")))
UPSTREAM_WEBHOOK = _docs(sorted((UPSTREAM / "refused-webhook").glob("*.yaml")))


def _webhook(obj: dict[str, Any]) -> None:
    """The project's mutating then validating webhook for the object's kind."""
    if obj["kind"] == mc.KIND:
        mc.validate(mc.apply_defaults(obj))
    elif obj["kind"] == models.KIND_ENDPOINT:
        status = models.EndpointStatus.from_dict(obj["status"])
        assert status.to_dict()["current"]["ips"][0]["interface"]
    else:
        validation.validate_create(validation.default_object(obj))


def test_every_example_set_is_present() -> None:
    """The example sets are not empty and every kind has an upstream example."""
    assert len(EXAMPLES) >= 7
    kinds = {doc["kind"] for _, doc in UPSTREAM_OK + UPSTREAM_STRICT}
    assert kinds == {r.kind for r in crd_schema.RESOURCES}
    assert len(UPSTREAM_OK) >= 30


@pytest.mark.parametrize(("where", "doc"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_deploy_examples_are_admitted_strictly_and_pass_the_webhook(where: str, doc: dict[str, Any]) -> None:
    """Every manifest in deploy/examples fits its CRD with strict field validation and passes validation."""
    admitted = validate_manifest(doc, CRDS)
    assert admitted.pruned == ()
    _webhook(admitted.obj)


@pytest.mark.parametrize(("where", "doc"), UPSTREAM_OK, ids=[w for w, _ in UPSTREAM_OK])
def test_upstream_examples_are_admitted_strictly_and_pass_the_webhook(
    where: str, doc: dict[str, Any]
) -> None:
    """Upstream's documented manifests fit the generated CRDs and the project's webhook rules."""
    admitted = validate_manifest(doc, CRDS)
    assert admitted.pruned == ()
    assert schema_errors(crd_schema.openapi_schema(doc["kind"]), admitted.obj) == []
    _webhook(admitted.obj)


STALE_FIELDS = {
    "coordinator-calico.yaml": ["spec.detectGateway", "spec.detectIPConflict", "spec.hostRPFilter"],
    "coordinator-istio.yaml": ["spec.detectGateway", "spec.detectIPConflict", "spec.hostRPFilter"],
    "coordinator-reference.yaml": ["spec.enableVethLinkLocalAddress"],
    "sriov-rdma.yaml": ["spec.sriov.enableRdma"],
    "sriov-bandwidth.yaml": ["spec.sriov.MaxTxRateMbps"],
}


@pytest.mark.parametrize(("where", "doc"), UPSTREAM_STRICT, ids=[w for w, _ in UPSTREAM_STRICT])
def test_stale_upstream_examples_are_refused_strictly_and_pruned_otherwise(
    where: str, doc: dict[str, Any]
) -> None:
    """Fields the API no longer has are named by strict validation; without it they are dropped."""
    expected = STALE_FIELDS[Path(where.split("#", maxsplit=1)[0]).name]
    with pytest.raises(ManifestInvalid) as refused:
        validate_manifest(doc, CRDS)
    assert refused.value.paths == expected
    assert all(e.message == "unknown field" for e in refused.value.errors)
    admitted = validate_manifest(doc, CRDS, strict=False)
    assert list(admitted.pruned) == expected
    _webhook(admitted.obj)


WEBHOOK_REFUSALS = {
    "ipvlan-conf-bond.yaml": "spec.ipvlan: required when spec.cniType is ipvlan",
    "ippool-gpu1-net11.yaml": "spec.subnet: 172.16.11.0/16 is not in canonical form; use 172.16.0.0/16",
}


@pytest.mark.parametrize(("where", "doc"), UPSTREAM_WEBHOOK, ids=[w for w, _ in UPSTREAM_WEBHOOK])
def test_upstream_examples_the_webhook_refuses_fit_the_schema(where: str, doc: dict[str, Any]) -> None:
    """The schema admits them; the validating webhook refuses them naming the field."""
    admitted = validate_manifest(doc, CRDS)
    with pytest.raises(InvalidObject) as refused:
        _webhook(admitted.obj)
    assert WEBHOOK_REFUSALS[Path(where.split("#", maxsplit=1)[0]).name] in str(refused.value)


@pytest.mark.parametrize("kind", [r.kind for r in crd_schema.RESOURCES])
def test_a_manifest_with_every_field_set_is_admitted(kind: str) -> None:
    """No table field is missing from the generated file (strict validation would name it)."""
    admitted = validate_manifest(full_manifest(kind), CRDS)
    assert admitted.pruned == ()


def _pool(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND_IPPOOL,
        "metadata": {"name": "p"},
        "spec": {"subnet": "10.6.0.0/16", **spec},
    }


def _smc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": models.API_VERSION,
        "kind": mc.KIND,
        "metadata": {"name": "n", "namespace": "default"},
        "spec": spec,
    }


def _without(obj: dict[str, Any], *path: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("wrong enum", _pool(ipVersion=5), "spec.ipVersion"),
    ("wrong type", _pool(ips="10.6.0.10"), "spec.ips"),
    ("wrong item type", _pool(ips=[10]), "spec.ips[0]"),
    ("unknown field", _pool(vlan=100), "spec.vlan"),
    ("missing required", _without(_pool(), "spec", "subnet"), "spec.subnet"),
    ("missing required in list", _pool(routes=[{"dst": "10.7.0.0/16"}]), "spec.routes[0].gw"),
    ("not a cidr", _pool(subnet="10.6.0.1"), "spec.subnet"),
    ("not an ip", _pool(gateway="10.6.0.256"), "spec.gateway"),
    ("not an ip range", _pool(ips=["10.6.0.10..10.6.0.20"]), "spec.ips[0]"),
    ("wrong boolean", _pool(default="yes"), "spec.default"),
    (
        "selector operator",
        _pool(podAffinity={"matchExpressions": [{"key": "a", "operator": "in"}]}),
        "spec.podAffinity.matchExpressions[0].operator",
    ),
    ("cni type", _smc(cniType="bridge"), "spec.cniType"),
    (
        "bond mode above 6",
        _smc(cniType="macvlan", macvlan={"master": ["a", "b"], "bond": {"name": "b", "mode": 7}}),
        "spec.macvlan.bond.mode",
    ),
    ("vlan above 4094", _smc(cniType="vlan", vlan={"master": ["a"], "vlanID": 4095}), "spec.vlan.vlanID"),
    ("negative mtu", _smc(cniType="ipvlan", ipvlan={"master": ["a"], "mtu": -1}), "spec.ipvlan.mtu"),
    ("master required", _smc(cniType="macvlan", macvlan={"mtu": 1500}), "spec.macvlan.master"),
    (
        "link state",
        _smc(cniType="ib-sriov", ibsriov={"resourceName": "r", "linkState": "up"}),
        "spec.ibsriov.linkState",
    ),
    ("mac prefix", _smc(coordinator={"podMACPrefix": "0a:1b:2c"}), "spec.coordinator.podMACPrefix"),
    ("coordinator mode", _smc(coordinator={"mode": "bridge"}), "spec.coordinator.mode"),
    ("trunk id", _smc(cniType="ovs", ovs={"bridge": "br1", "trunk": [{"id": 5000}]}), "spec.ovs.trunk[0].id"),
]


@pytest.mark.parametrize(("case", "manifest", "path"), INVALID, ids=[c for c, _, _ in INVALID])
def test_invalid_manifests_are_refused_naming_the_field(
    case: str, manifest: dict[str, Any], path: str
) -> None:
    """The offline validator (generated files) and the domain check (tables) both name the same field."""
    with pytest.raises(ManifestInvalid) as refused:
        validate_manifest(manifest, CRDS)
    assert path in refused.value.paths, str(refused.value)
    assert path in [p for p, _ in schema_errors(crd_schema.openapi_schema(manifest["kind"]), manifest)]


def test_endpoint_status_missing_uid_is_refused() -> None:
    """A SpiderEndpoint whose status.current lacks uid is refused naming status.current.uid."""
    doc = copy.deepcopy(dict(UPSTREAM_OK)["tests/data/upstream-examples/endpoint.yaml#0"])
    del doc["status"]["current"]["uid"]
    with pytest.raises(ManifestInvalid) as refused:
        validate_manifest(doc, CRDS)
    assert refused.value.paths == ["status.current.uid"]


def test_kind_and_name_are_checked_before_the_schema() -> None:
    """An unknown kind or a missing name is refused before any field."""
    with pytest.raises(ManifestInvalid, match="no served CRD"):
        validate_manifest({**_pool(), "kind": "SpiderClaimParameter"}, CRDS)
    with pytest.raises(ManifestInvalid) as refused:
        validate_manifest({**_pool(), "metadata": {}}, CRDS)
    assert refused.value.paths == ["metadata.name"]


def test_admission_applies_the_schema_defaults() -> None:
    """Defaults land where the enclosing object exists: pool flags, SMC cniType and mtu, endpoint vlan."""
    pool = validate_manifest(_pool(), CRDS).obj
    assert (pool["spec"]["default"], pool["spec"]["disable"]) == (False, False)
    smc = validate_manifest(_smc(macvlan={"master": ["eth0"]}), CRDS).obj["spec"]
    assert smc["cniType"] == "custom"
    assert (smc["enableCoordinator"], smc["disableIPAM"]) == (True, False)
    assert smc["macvlan"] == {"master": ["eth0"], "mtu": 0}
    assert "coordinator" not in smc  # an absent object gets no defaults
    endpoint = validate_manifest(dict(UPSTREAM_OK)["tests/data/upstream-examples/endpoint.yaml#0"], CRDS).obj
    assert endpoint["status"]["current"]["ips"][0]["vlan"] == 0


def test_nulls_are_dropped_and_then_defaulted() -> None:
    """A null field is dropped like the API server does, so its default applies."""
    admitted = validate_manifest(_pool(default=None, gateway=None), CRDS)
    assert admitted.obj["spec"]["default"] is False
    assert "gateway" not in admitted.obj["spec"]


@pytest.mark.parametrize(
    ("fmt", "value", "ok"),
    [
        ("ipv4", "10.0.0.1", True),
        ("ipv4", "fd00::1", False),
        ("ipv4", "010.0.0.1", False),
        ("ipv6", "fd00::1", True),
        ("ipv6", "fe80::1%eth0", False),
        ("cidr", "10.0.0.5/24", True),
        ("cidr", "fd00::/64", True),
        ("cidr", "10.0.0.0", False),
        ("cidr", "10.0.0.0/255.255.255.0", False),
        ("cidr", "10.0.0.0/33", False),
        ("mac", "aa:bb:cc:dd:ee:ff", True),
        ("mac", "aa-bb-cc-dd-ee-ff", True),
        ("mac", "aabb.ccdd.eeff", True),
        ("mac", "aa:bb:cc:dd:ee", False),
        ("mac", "aa:bb-cc:dd:ee:ff", False),
        ("int32", 2**31, False),
        ("int64", 2**31, True),
    ],
)
def test_formats_are_checked_as_the_api_server_does(fmt: str, value: Any, ok: bool) -> None:
    """Formats follow Go's parsers: no IPv6 zones, no netmasks, CIDR host bits allowed."""
    assert format_ok(fmt, value) is ok
