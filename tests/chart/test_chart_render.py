"""The chart with Helm itself (helm-python-sdk): lint, every value set rendered, Kubernetes, values schemas.

Every built-in object the chart renders must pass ``kubernetes-validate --strict`` (the Kubernetes 1.37
schemas; an unknown field is an error). Custom resources (cert-manager, Prometheus Operator) have no schema
there: they are listed and must be exactly the kinds those value sets ask for. Values of the wrong type are
refused by values.schema.json, and upstream knobs this implementation does not do by the templates, each
with its message.
"""

from __future__ import annotations

import helm_python
import kubernetes_validate
import pytest

from tests.chart.rendered import CHART, containers, helm_home, parse_manifests, render
from tests.chart.value_sets import rendered_value_set, value_sets

KUBE_VERSION = kubernetes_validate.latest_version()
EXTERNAL_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
VALUE_SETS = value_sets()


def test_lint_finds_nothing_to_fix() -> None:
    """helm lint --strict reports no error and no warning (only the info that an icon is recommended)."""
    helm_home()
    report = helm_python.lint(str(CHART), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    assert report["total_charts_linted"] == 1


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_value_set_renders_objects_that_pass_the_kubernetes_schemas(name: str) -> None:
    """Built-in objects pass kubernetes-validate --strict; the others are cert-manager/monitoring kinds."""
    rendered = rendered_value_set(name)
    external = set()
    for obj in rendered.objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in EXTERNAL_KINDS:
            external.add(key)
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(
                f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}"
            ) from exc
    expected = set()
    if name == "cert-manager":
        expected = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")}
    elif name == "monitoring":
        expected = {
            ("monitoring.coreos.com/v1", "ServiceMonitor"),
            ("monitoring.coreos.com/v1", "PrometheusRule"),
        }
    assert external == expected


def test_the_strict_check_catches_an_unknown_field() -> None:
    """The validation above can fail: a Deployment with a misspelt field is refused under --strict."""
    deployment = render().get("Deployment", "spiderpool-controller")
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


def test_the_default_render_holds_what_the_issue_lists() -> None:
    """CRDs in crds/, the ConfigMap, agent DaemonSet, 2-replica controller, Service, PDB, RBAC, hooks, TLS."""
    rendered = render()
    kinds = sorted({(o["kind"], o["metadata"]["name"]) for o in rendered.objects})
    assert kinds == sorted([
        ("ConfigMap", "spiderpool-conf"),
        ("ConfigMap", "spiderpool-init"),
        ("DaemonSet", "spiderpool-agent"),
        ("Deployment", "spiderpool-controller"),
        ("Service", "spiderpool-controller"),
        ("PodDisruptionBudget", "spiderpool-controller"),
        ("Secret", "spiderpool-controller-grpc-tls"),
        ("Secret", "spiderpool-controller-server-certs"),
        ("MutatingWebhookConfiguration", "spiderpool-controller"),
        ("ValidatingWebhookConfiguration", "spiderpool-controller"),
        ("Secret", "spiderpool-agent-grpc-tls"),
        ("ServiceAccount", "spiderpool-controller"),
        ("ServiceAccount", "spiderpool-agent"),
        ("ServiceAccount", "spiderpool-init"),
        ("ServiceAccount", "spiderpool-init-cleanup"),
        ("ClusterRole", "spiderpool-controller"),
        ("ClusterRole", "spiderpool-agent"),
        ("ClusterRole", "spiderpool-init"),
        ("ClusterRole", "spiderpool-init-cleanup"),
        ("ClusterRoleBinding", "spiderpool-controller"),
        ("ClusterRoleBinding", "spiderpool-agent"),
        ("ClusterRoleBinding", "spiderpool-init"),
        ("ClusterRoleBinding", "spiderpool-init-cleanup"),
        ("Role", "spiderpool-controller-leader-election"),
        ("Role", "spiderpool-controller-cidr-sources"),
        ("RoleBinding", "spiderpool-controller-cidr-sources"),
        ("RoleBinding", "spiderpool-controller-leader-election"),
        ("Job", "spiderpool-init"),
        ("Job", "spiderpool-init-cleanup"),
    ])  # fmt: skip
    crds = helm_python.Chart.load(str(CHART)).crds
    assert sorted(c["name"].removeprefix("crds/") for c in crds) == sorted(
        p.name for p in (CHART.parent.parent / "crds").glob("*.yaml")
    )
    assert rendered.get("Deployment", "spiderpool-controller")["spec"]["replicas"] == 2
    hooks = {
        j["metadata"]["name"]: j["metadata"]["annotations"]["helm.sh/hook"] for j in rendered.kinds("Job")
    }
    assert hooks == {"spiderpool-init": "post-install,post-upgrade", "spiderpool-init-cleanup": "pre-delete"}


def test_the_crds_in_the_chart_are_the_generated_ones() -> None:
    """crds/ holds byte for byte what make crds writes to deploy/crds (make crds-verify checks both)."""
    chart_crds = sorted((CHART / "crds").glob("*.yaml"))
    assert [p.name for p in chart_crds] == sorted(
        p.name for p in (CHART.parent.parent / "crds").glob("*.yaml")
    )
    for path in chart_crds:
        assert path.read_bytes() == (CHART.parent.parent / "crds" / path.name).read_bytes(), path.name


def test_default_pools_and_subnets_are_rendered_for_the_init_job() -> None:
    """With clusterDefaultPool.install*, the init ConfigMap holds each family's default subnet and pool."""
    rendered = render(VALUE_SETS["dual-stack-default-pools"])
    data = rendered.get("ConfigMap", "spiderpool-init")["data"]
    assert sorted(data) == ["coordinator.yaml", "ippool-v4.yaml", "ippool-v6.yaml"]
    v6 = parse_manifests([data["ippool-v6.yaml"]])
    assert [(o["kind"], o["metadata"]["name"]) for o in v6] == [
        ("SpiderSubnet", "default-v6-subnet"),
        ("SpiderIPPool", "default-v6-ippool"),
    ]
    assert v6[1]["spec"] == {
        "subnet": "fc00:f853:ccd:e793::/64",
        "ips": ["fc00:f853:ccd:e793::40-fc00:f853:ccd:e793::200"],
        "gateway": "fc00:f853:ccd:e793::1",
        "default": True,
    }
    init = rendered.get("ClusterRole", "spiderpool-init")
    assert init["rules"][0]["resources"] == ["spidercoordinators", "spiderippools", "spidersubnets"]


def test_no_init_job_when_there_is_nothing_to_create() -> None:
    """coordinator.enabled=false and no default pools: no init job, ConfigMap, ServiceAccount or role."""
    rendered = render({"coordinator": {"enabled": False}})
    assert not [o for o in rendered.objects if o["metadata"]["name"] == "spiderpool-init"]
    assert "Job/spiderpool-init/spiderpool-init" not in containers(rendered)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ipam": {"enableIPv4": "yes"}}, "at '/ipam/enableIPv4': got string, want boolean"),
        ({"ipam": {"bogus": 1}}, "additional properties 'bogus' not allowed"),
        ({"spiderpoolController": {"tls": {"method": "self"}}}, "/spiderpoolController/tls/method"),
        ({"coordinator": {"mode": "sideways"}}, "/coordinator/mode"),
        ({"spiderpoolAgent": {"stateHostPath": "var/lib"}}, "/spiderpoolAgent/stateHostPath"),
    ],
    ids=["type", "unknown-key", "tls-method", "coordinator-mode", "relative-path"],
)
def test_values_of_the_wrong_shape_are_refused_by_the_schema(values: dict[str, object], message: str) -> None:
    """values.schema.json names the offending value."""
    with pytest.raises(helm_python.HelmError, match=message):
        render(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ipam": {"enableStatefulSet": False}}, "StatefulSet pods always keep their addresses"),
        ({"multus": {"multusCNI": {"install": True}}}, "does not bundle Multus"),
        ({"ipam": {"enableIPv4": False, "enableIPv6": False}}, "enable at least one family"),
        ({"clusterDefaultPool": {"installIPv4IPPool": True}}, "needs clusterDefaultPool.ipv4Subnet"),
        ({"spiderpoolController": {"tls": {"method": "provided"}}}, "tls.provided.tlsCa is required"),
        (
            {"spiderpoolController": {"tls": {"method": "provided"}, "webhook": {"enabled": False}}},
            "grpcControllerSecret is required",
        ),
    ],
    ids=[
        "statefulset",
        "multus",
        "no-family",
        "pool-without-subnet",
        "provided-without-webhook-pem",
        "provided-without-grpc-secrets",
    ],
)
def test_settings_this_implementation_does_not_do_are_refused_with_a_reason(
    values: dict[str, object], message: str
) -> None:
    """An upstream knob set to what the programs do not do fails the render, saying why."""
    with pytest.raises(helm_python.HelmError, match=message):
        render(values)
