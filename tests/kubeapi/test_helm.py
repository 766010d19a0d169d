"""Helm 4 (helm-python-sdk, in-process) installs, upgrades and uninstalls a chart against the server.

Release records use Helm's default `secret` storage driver: Helm writes them as protobuf Secrets, which the
server decodes (protobuf.py). `wait="watcher"` (kstatus) needs the CRD Established, watch-list with the
initial-events-end bookmark, and Deployment status (faked by workloads.py).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

import helm_python
import pytest

from .conftest import TESTDATA
from .server import ServerThread

CHART = TESTDATA / "chart"
POOL = ("spiderpool.spidernet.io/v2beta1", "SpiderIPPool")


@pytest.fixture
def helm(srv: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[helm_python.Config]:
    monkeypatch.setenv("HOME", str(tmp_path))  # Helm's discovery cache and config dirs
    monkeypatch.setenv("HELM_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HELM_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HELM_DATA_HOME", str(tmp_path / "data"))
    with helm_python.Config(kubeconfig_path=str(srv.kubeconfig_path), namespace="default") as cfg:
        yield cfg
    os.environ.pop("KUBECONFIG", None)


def _release_secret(srv: ServerThread, revision: int) -> dict[str, object]:
    secret = srv.get("v1", "Secret", f"sh.helm.release.v1.demo.v{revision}", "default")
    assert secret is not None
    release = json.loads(gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"]))))
    labels = {k: v for k, v in secret["metadata"]["labels"].items() if k != "modifiedAt"}
    return {"labels": labels, "status": release["info"]["status"], "type": secret["type"]}


def test_install_upgrade_uninstall_leaves_the_cluster_as_helm_says(
    helm: helm_python.Config, srv: ServerThread
) -> None:
    installed = helm.install(
        str(CHART), "demo", {"greeting": "hi", "gateway": "10.6.0.254"}, wait="watcher", timeout=30
    )
    assert (installed["revision"], installed["status"]) == (1, "deployed")
    crd = srv.get(
        "apiextensions.k8s.io/v1", "CustomResourceDefinition", "spiderippools.spiderpool.spidernet.io"
    )
    assert crd is not None
    cm = srv.get("v1", "ConfigMap", "demo-cm", "default")
    assert cm is not None and cm["data"] == {"greeting": "hi", "gateway": "10.6.0.254"}
    pool = srv.get(*POOL, "demo-pool")
    assert pool is not None and pool["spec"]["gateway"] == "10.6.0.254" and pool["spec"]["default"] is False
    web = srv.get("apps/v1", "Deployment", "demo-web", "default")
    assert web is not None and web["status"]["availableReplicas"] == 1
    assert _release_secret(srv, 1) == {
        "labels": {"name": "demo", "owner": "helm", "status": "deployed", "version": "1"},
        "status": "deployed",
        "type": "helm.sh/release.v1",
    }

    upgraded = helm.upgrade(
        str(CHART), "demo", {"greeting": "bye", "replicas": 2}, wait="watcher", timeout=30
    )
    assert (upgraded["revision"], upgraded["status"]) == (2, "deployed")
    cm = srv.get("v1", "ConfigMap", "demo-cm", "default")
    assert cm is not None and cm["data"] == {"greeting": "bye"}  # the dropped key is gone (server-side apply)
    pool = srv.get(*POOL, "demo-pool")
    assert pool is not None and "gateway" not in pool["spec"]
    web = srv.get("apps/v1", "Deployment", "demo-web", "default")
    assert web is not None and web["spec"]["replicas"] == 2 and web["metadata"]["generation"] == 2
    assert [(h["revision"], h["status"]) for h in helm.history("demo")] == [
        (1, "superseded"),
        (2, "deployed"),
    ]
    assert helm.get_values("demo") == {"greeting": "bye", "replicas": 2}

    assert helm.uninstall("demo", wait="watcher", timeout=30)["release"]["status"] == "uninstalled"
    assert helm.list() == []
    for api_version, kind, name, ns in [
        ("v1", "ConfigMap", "demo-cm", "default"),
        (*POOL, "demo-pool", ""),
        ("apps/v1", "Deployment", "demo-web", "default"),
        ("v1", "Secret", "sh.helm.release.v1.demo.v1", "default"),
    ]:
        assert srv.get(api_version, kind, name, ns) is None, name
    # Helm never deletes what it installed from crds/
    assert srv.get(
        "apiextensions.k8s.io/v1", "CustomResourceDefinition", "spiderippools.spiderpool.spidernet.io"
    )
