"""``helm install``, ``upgrade`` and ``uninstall`` of the chart into the test API server, with RBAC enforced.

Helm runs in-process (helm-python-sdk) with its default release storage (protobuf Secrets) and waits with
kstatus (``wait="watcher"``; the server fakes workload status, and Jobs complete at once since nothing runs
pods). Because nothing runs the hook Jobs' pods, the test runs each hook's container itself, as its
ServiceAccount, from the release's own manifests: the post-install job after install and after upgrade,
the pre-delete cleanup before uninstall. After each step the test reads what the cluster holds. The
registered admission webhooks reach an allow-all HTTPS server holding the chart's serving certificate
(tests/chart/test_rbac.py runs the controller's own).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.cluster import (
    admin,
    helm_config,
    hook_phases,
    release_rendered,
    run_container,
    serve_webhooks,
)
from tests.chart.rendered import CHART, NAMESPACE, RELEASE, settings_file
from tests.chart.value_sets import DUAL_STACK_POOLS
from tests.kubeapi import ServerConfig, ServerThread

GROUP = "spiderpool.spidernet.io/v2beta1"
INIT = "Job/spiderpool-init/spiderpool-init"
CLEANUP = "Job/spiderpool-init-cleanup/cleanup"
CRDS = [
    f"{p}.spiderpool.spidernet.io"
    for p in (
        "spiderippools",
        "spidersubnets",
        "spiderreservedips",
        "spiderendpoints",
        "spidermultusconfigs",
        "spidercoordinators",
    )
]
RELEASE_OBJECTS = [
    ("v1", "ConfigMap", "spiderpool-conf", NAMESPACE),
    ("apps/v1", "DaemonSet", "spiderpool-agent", NAMESPACE),
    ("apps/v1", "Deployment", "spiderpool-controller", NAMESPACE),
    ("v1", "Service", "spiderpool-controller", NAMESPACE),
    ("policy/v1", "PodDisruptionBudget", "spiderpool-controller", NAMESPACE),
    ("v1", "Secret", "spiderpool-controller-grpc-tls", NAMESPACE),
    ("v1", "Secret", "spiderpool-agent-grpc-tls", NAMESPACE),
    ("v1", "ServiceAccount", "spiderpool-agent", NAMESPACE),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "spiderpool-controller", ""),
    ("rbac.authorization.k8s.io/v1", "Role", "spiderpool-controller-leader-election", NAMESPACE),
]


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(rbac_enforce=True)) as s:
        yield s


def allow_webhooks(srv: ServerThread, directory: Path) -> list[str]:
    """The controller Service's webhooks answered "allowed" by a server with the chart's certificate."""
    data = secret_data(srv, "spiderpool-controller-server-certs")
    return serve_webhooks(
        srv, base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]), directory
    )


def secret_data(srv: ServerThread, name: str) -> dict[str, str]:
    secret = srv.get("v1", "Secret", name, NAMESPACE)
    assert secret is not None, name
    return dict(secret["data"])


def pools(srv: ServerThread) -> list[str]:
    return sorted(p["metadata"]["name"] for p in _list(srv, "spiderippools"))


def _list(srv: ServerThread, plural: str) -> list[dict[str, Any]]:
    status, body = admin(srv, "GET", f"/apis/{GROUP}/{plural}")
    assert status == 200, body
    return list(body["items"])


def test_install_upgrade_and_uninstall_leave_the_cluster_as_the_chart_says(
    srv: ServerThread, tmp_path: Path
) -> None:
    """Install creates everything and the init job the SpiderCoordinator; upgrade changes the settings and
    adds the asked pools but keeps certificates and users' edits; cleanup and uninstall remove it all."""
    with helm_config(srv) as helm:
        installed = helm.install(str(CHART), RELEASE, {}, wait="watcher", timeout=60)
        assert (installed["revision"], installed["status"]) == (1, "deployed")
        for crd in CRDS:
            obj = srv.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd)
            assert obj is not None, crd
            assert {"type": "Established", "status": "True"} in [
                {k: c[k] for k in ("type", "status")} for c in obj["status"]["conditions"]
            ]
        for api_version, kind, name, ns in RELEASE_OBJECTS:
            assert srv.get(api_version, kind, name, ns) is not None, (kind, name)
        reviews = allow_webhooks(srv, tmp_path / "webhooks")
        assert hook_phases(helm)["spiderpool-init"] == "Succeeded"
        assert srv.get("batch/v1", "Job", "spiderpool-init", NAMESPACE) is None  # hook-succeeded: deleted
        certs = {
            name: secret_data(srv, name)
            for name in ("spiderpool-controller-grpc-tls", "spiderpool-agent-grpc-tls")
        }
        assert (
            certs["spiderpool-controller-grpc-tls"]["ca.crt"] == certs["spiderpool-agent-grpc-tls"]["ca.crt"]
        )

        # The post-install job, run as its ServiceAccount from the release's own hook manifest.
        done = run_container(srv, release_rendered(helm), INIT, tmp_path / "init1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["SpiderCoordinator default: created"]
        coordinator = srv.get(GROUP, "SpiderCoordinator", "default")
        assert coordinator is not None
        assert {k: coordinator["spec"][k] for k in ("mode", "podCIDRType", "hijackCIDR", "vethMTU")} == {
            "mode": "auto",
            "podCIDRType": "auto",
            "hijackCIDR": ["169.254.0.0/16"],
            "vethMTU": 1500,
        }
        assert pools(srv) == []
        # A user's edit, which the upgrade's init job must leave alone.
        coordinator["spec"]["podRPFilter"] = 2
        status, _ = admin(srv, "PUT", f"/apis/{GROUP}/spidercoordinators/default", coordinator)
        assert status == 200

        upgraded_values = {
            **DUAL_STACK_POOLS,
            "ipam": {"enableIPv6": True, "enableIPConflictDetection": True, "spiderSubnet": {"enable": True}},
            "spiderpoolAgent": {"debug": {"logLevel": "debug"}},
        }
        upgraded = helm.upgrade(str(CHART), RELEASE, upgraded_values, wait="watcher", timeout=60)
        assert (upgraded["revision"], upgraded["status"]) == (2, "deployed")
        rendered = release_rendered(helm)
        assert settings_file(rendered, "controller.yaml")["enable_ip_conflict_detection"] is True
        cm = srv.get("v1", "ConfigMap", "spiderpool-conf", NAMESPACE)
        assert cm is not None and "enable_ip_conflict_detection: true" in cm["data"]["controller.yaml"]
        assert "log_level: debug" in cm["data"]["agent.yaml"]
        for name, data in certs.items():
            assert secret_data(srv, name) == data, f"{name} was regenerated by the upgrade"
        assert hook_phases(helm)["spiderpool-init"] == "Succeeded"
        done = run_container(srv, rendered, INIT, tmp_path / "init2")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "SpiderCoordinator default: exists, left as it is",
            "SpiderSubnet default-v4-subnet: created",
            "SpiderIPPool default-v4-ippool: created",
            "SpiderSubnet default-v6-subnet: created",
            "SpiderIPPool default-v6-ippool: created",
        ]
        assert pools(srv) == ["default-v4-ippool", "default-v6-ippool"]
        assert reviews.count("/validate-spiderpool-spidernet-io-v2beta1-spiderippool") == 2
        kept = srv.get(GROUP, "SpiderCoordinator", "default")
        assert kept is not None and kept["spec"]["podRPFilter"] == 2
        assert [(h["revision"], h["status"]) for h in helm.history(RELEASE)] == [
            (1, "superseded"),
            (2, "deployed"),
        ]

        # Uninstall: the pre-delete hook's work (run here, since no pod runs it), then Helm's deletions.
        rendered = release_rendered(helm)
        done = run_container(srv, rendered, CLEANUP, tmp_path / "cleanup")
        assert done.returncode == 0, done.stderr
        for crd in CRDS:
            assert srv.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd) is None, crd
        helm.uninstall(RELEASE, wait="watcher", timeout=60)
        assert helm.list() == []
        for api_version, kind, name, ns in RELEASE_OBJECTS:
            assert srv.get(api_version, kind, name, ns) is None, (kind, name)
        assert srv.get("v1", "Secret", "sh.helm.release.v1.spiderpool.v1", NAMESPACE) is None
    assert srv.server.authorizer.take_denied() == []


def test_cleanup_removes_objects_whose_finalizers_nobody_will_remove(
    srv: ServerThread, tmp_path: Path
) -> None:
    """A pool and an endpoint holding finalizers are gone after the cleanup job, the CRDs too."""
    with helm_config(srv) as helm:
        helm.install(str(CHART), RELEASE, {}, wait="watcher", timeout=60)
        rendered = release_rendered(helm)
        allow_webhooks(srv, tmp_path / "webhooks")
        pool = {
            "apiVersion": GROUP,
            "kind": "SpiderIPPool",
            "metadata": {"name": "held", "finalizers": ["spiderpool.spidernet.io"]},
            "spec": {"subnet": "10.9.0.0/24", "ips": ["10.9.0.10"]},
        }
        endpoint = {
            "apiVersion": GROUP,
            "kind": "SpiderEndpoint",
            "metadata": {"name": "pod-a", "namespace": "default", "finalizers": ["spiderpool.spidernet.io"]},
        }
        for path, obj in (
            (f"/apis/{GROUP}/spiderippools", pool),
            (f"/apis/{GROUP}/namespaces/default/spiderendpoints", endpoint),
        ):
            status, body = admin(srv, "POST", path, obj)
            assert status == 201, body
        done = run_container(srv, rendered, CLEANUP, tmp_path / "cleanup")
        assert done.returncode == 0, done.stderr
        assert "SpiderIPPool held: deleted" in done.stdout
        assert "SpiderEndpoint default/pod-a: deleted" in done.stdout
        for crd in CRDS:
            assert srv.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd) is None
        again = run_container(srv, rendered, CLEANUP, tmp_path / "again")  # the hook may run twice
        assert again.returncode == 0, again.stderr
    assert srv.server.authorizer.take_denied() == []


def test_the_init_job_stops_at_once_on_a_refusal_retrying_will_not_change(
    srv: ServerThread, tmp_path: Path
) -> None:
    """Without its role binding the init job's create is forbidden (403): it fails fast, naming the object."""
    with helm_config(srv) as helm:
        helm.install(str(CHART), RELEASE, {}, wait="watcher", timeout=60)
        rendered = release_rendered(helm)
        status, _ = admin(
            srv, "DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/spiderpool-init"
        )
        assert status == 200
        done = run_container(srv, rendered, INIT, tmp_path / "init", timeout=30)
        assert done.returncode == 1
        assert "SpiderCoordinator default" in done.stderr and "forbidden" in done.stderr
    assert [d["resource"] for d in srv.server.authorizer.take_denied()] == ["spidercoordinators"]
