"""The chart's RBAC against the programs' real API traffic: enough for everything they do, nothing more.

The chart is installed with Helm into the test API server with RBAC enforced. Then its programs run as the
chart starts them (tests/chart/rendered.py: the rendered command, arguments, environment and mounted
settings and certificates), each with its ServiceAccount's token: the controller (Kubernetes store, leader
election, GC), the agent (pod facts, owners) reached over mutual TLS, the post-install job, and at the end
the pre-delete cleanup. A scenario walks the code paths that reach the API: allocations for pods of a
Deployment, a StatefulSet, a Job and a KubeVirt VM (owner reads), a pod whose UID the cache does not know
(direct read), a pod deleted behind the agent's back (the GC's confirming read and release), spiderpoolctl
applying, changing and deleting every kind through the controller, the Lease renewed; the leader's
reconcilers: a SpiderMultusConfig created and changed (its NAD created, then replaced), one whose NAD is a
user's own (a Warning Event), the default SpiderCoordinator's status from the CIDR sources (kubeadm's and
Cilium's ConfigMaps, control-plane pods, CRDs, Calico and Cilium pools and ServiceCIDRs, whose CRDs are
installed).

Every authorization decision of the ServiceAccounts is recorded. The test fails when any request was denied
(the role is missing a rule) and when a (verb, resource) a role grants was never used, unless NOT_FORCED names
the code that needs it and why the scenario cannot make it happen deterministically.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from spiderpool_cni import install

from tests.chart.cluster import (
    BIN,
    cluster_secrets,
    helm_config,
    release_rendered,
    run_container,
    service_account_kubeconfig,
)
from tests.chart.rendered import CHART, NAMESPACE, RELEASE, Container, Rendered, containers
from tests.component.conformance_stack import NETNS, Outcome, run_executable
from tests.component.kube_objects import APPS, BATCH, Kube, KubeApiError, owner_ref, third_party
from tests.kubeapi import ServerConfig, ServerThread
from tests.kubeapi.rbac import Attributes

GROUP = "spiderpool.spidernet.io"
SERVICE = "spiderpool-controller.kube-system.svc.cluster.local:5720"
NODE = "node-1"
NS = "apps"
VALUES = {"ipam": {"enableIPv6": False}}
FIELDS = {
    "metadata.name": "spiderpool-controller-5f7c9-abcde",
    "metadata.namespace": NAMESPACE,
    "status.podIP": "127.0.0.1",
    "spec.nodeName": NODE,
}
ACCOUNTS = ("spiderpool-controller", "spiderpool-agent", "spiderpool-init", "spiderpool-init-cleanup")
# (account, group, resource, verb) a role grants that the scenario cannot force, with the code that needs it.
NOT_FORCED = {
    ("spiderpool-agent", "", "namespaces", "get"): (
        "kube_pod_context.py reads a pod's namespace directly when its informer has not seen it yet: a race "
        "between the namespace's watch event and the ADD that the scenario cannot win on purpose"
    ),
    ("spiderpool-agent", "", "nodes", "get"): (
        "kube_pod_context.py reads its Node directly when the informer has not listed it: the agent reports "
        "ready only after that list, so only a Node created after the agent started can take this path"
    ),
}
KUBEVIRT_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "virtualmachineinstances.kubevirt.io"},
    "spec": {
        "group": "kubevirt.io",
        "scope": "Namespaced",
        "names": {
            "plural": "virtualmachineinstances",
            "singular": "virtualmachineinstance",
            "kind": "VirtualMachineInstance",
            "shortNames": ["vmi"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


def crd(group: str, version: str, plural: str, kind: str, scope: str = "Cluster") -> dict[str, Any]:
    """A CRD that stores anything (what another project's CRD looks like to our programs)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


# The coordinator reconciler's optional CIDR sources, served as they would be with Calico, Cilium and a
# Kubernetes with ServiceCIDRs (the test API server has no builtin ServiceCIDR: a CRD of its group, version
# and plural is found through the same discovery).
CIDR_SOURCE_CRDS = (
    crd("crd.projectcalico.org", "v1", "ippools", "IPPool"),
    crd("cilium.io", "v2alpha1", "ciliumpodippools", "CiliumPodIPPool"),
    crd("networking.k8s.io", "v1", "servicecidrs", "ServiceCIDR"),
)


@dataclass
class Recorder:
    """Every authorization decision about the chart's ServiceAccounts."""

    seen: list[Attributes] = field(default_factory=list)

    def used(self, account: str) -> set[tuple[str, str, str]]:
        user = f"system:serviceaccount:{NAMESPACE}:{account}"
        return {
            (a.group, f"{a.resource}/{a.subresource}" if a.subresource else a.resource, a.verb)
            for a in self.seen
            if a.user.name == user and a.is_resource
        }


def granted(rendered: Rendered, account: str) -> set[tuple[str, str, str]]:
    """(group, resource, verb) of every rule of the roles bound to ``account``."""
    out = set()
    for binding in [*rendered.kinds("ClusterRoleBinding"), *rendered.kinds("RoleBinding")]:
        if not any(s["name"] == account for s in binding["subjects"]):
            continue
        kind = binding["roleRef"]["kind"]
        role = rendered.get(kind, binding["roleRef"]["name"])
        for rule in role["rules"]:
            out |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start(argv: list[str], env: dict[str, str], log: Path) -> Running:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env={"PATH": os.environ["PATH"], **env}, stdout=out, stderr=out)
    return Running(proc, log)


def wait_healthy(probe: list[str], running: Running, deadline: float = 30.0) -> None:
    """The chart's exec probe, run until it passes (as the kubelet's startup probe does)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert running.proc.poll() is None, running.log.read_text()
        if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"{probe[0]} never passed; log:\n{running.log.read_text()}")


def chart_argv(
    container: Container,
    rendered: Rendered,
    srv: ServerThread,
    tmp: Path,
    *extra: str,
    rewrite: dict[str, str],
) -> tuple[list[str], dict[str, str], dict[str, Path]]:
    """The container's argv as the chart renders it, relocated, its addresses moved to this machine's
    ports (``rewrite``), plus the ServiceAccount's kubeconfig (the in-cluster token mount's stand-in)."""
    run = container.materialize(rendered, tmp, field_values=FIELDS, secrets=cluster_secrets(srv, rendered))
    argv = [rewrite.get(a, a) for a in run.argv]
    account = str(container.pod["serviceAccountName"])
    kubeconfig = service_account_kubeconfig(srv, tmp / "kubeconfig", NAMESPACE, account)
    return [str(BIN / argv[0]), *argv[1:], f"--kubeconfig={kubeconfig}", *extra], run.env, run.places


def wait_webhooks(port: int, running: Running, deadline: float = 30.0) -> None:
    """The controller's admission webhooks answer their health check (upstream's readiness path)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # only "is it up", as the kubelet
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert running.proc.poll() is None, running.log.read_text()
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}/webhook-health-check", context=context
            ) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the webhooks never answered; log:\n{running.log.read_text()}")


def kubelet_args(pod: dict[str, Any], container_id: str, uid: str | None = None) -> str:
    meta = pod["metadata"]
    return (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE={meta['namespace']};K8S_POD_NAME={meta['name']};"
        f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid or meta['uid']}"
    )


@dataclass
class Node:
    bin_dir: Path
    socket: Path
    log_dir: Path

    def cni(
        self,
        verb: str,
        pod: dict[str, Any] | None,
        container_id: str = "",
        uid: str | None = None,
        ifname: str = "eth0",
    ) -> Outcome:
        conf = {
            "cniVersion": "1.1.0",
            "name": "k8s-net",
            "type": "macvlan",
            "ipam": {
                "type": "spiderpool",
                "default_ipv4_ippool": ["rbac-v4"],
                "ipam_unix_socket_path": str(self.socket),
                "log_file_path": str(self.log_dir / "shim.log"),
            },
        }
        env = {"CNI_COMMAND": verb, "CNI_PATH": str(self.bin_dir)}
        if pod is not None:
            env |= {
                "CNI_CONTAINERID": container_id,
                "CNI_NETNS": NETNS,
                "CNI_IFNAME": ifname,
                "CNI_ARGS": kubelet_args(pod, container_id, uid),
            }
        return run_executable(self.bin_dir / "spiderpool", env, json.dumps(conf).encode())


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(rbac_enforce=True, history_size=5000)) as s:
        yield s


def test_the_programs_need_every_rule_of_their_roles_and_no_other(srv: ServerThread, tmp_path: Path) -> None:
    """No request of the chart's programs is denied, and every (verb, resource) granted is one they used."""
    recorder = Recorder()
    authorizer = srv.server.authorizer
    check = authorizer.check

    def recording(a: Attributes) -> None:
        recorder.seen.append(a)
        check(a)

    authorizer.check = recording  # type: ignore[method-assign]
    kube = Kube(srv)
    with helm_config(srv) as helm:
        helm.install(str(CHART), RELEASE, VALUES, wait="watcher", timeout=60)
        rendered = release_rendered(helm)
    got = containers(rendered)
    port, webhook_port = free_port(), free_port()
    srv.server.admission.service_urls[(NAMESPACE, "spiderpool-controller")] = (
        f"https://127.0.0.1:{webhook_port}"
    )
    rewrite = {
        "--webhook-listen=0.0.0.0:5722": f"--webhook-listen=127.0.0.1:{webhook_port}",
        "--listen=0.0.0.0:5720": f"--listen=127.0.0.1:{port}",
        "--advertise=127.0.0.1:5720": f"--advertise=127.0.0.1:{port}",
        f"--controller={SERVICE}": f"--controller=127.0.0.1:{port}",
    }
    processes: list[Running] = []
    try:
        ctl = got["Deployment/spiderpool-controller/spiderpool-controller"]
        argv, env, _ = chart_argv(ctl, rendered, srv, tmp_path / "controller", rewrite=rewrite)
        processes.append(start(argv, env, tmp_path / "controller.log"))
        agent = got["DaemonSet/spiderpool-agent/spiderpool-agent"]
        sock = tmp_path / "agent.sock"
        argv, env, places = chart_argv(
            agent,
            rendered,
            srv,
            tmp_path / "agent",
            f"--socket={sock}",
            f"--state-dir={tmp_path / 'state'}",
            rewrite=rewrite,
        )
        tls = places["/etc/spiderpool/grpc-tls"]
        probe = [
            str(BIN / "spiderpool-health"),
            f"--address=127.0.0.1:{port}",
            f"--tls-cert-file={tls}/tls.crt",
            f"--tls-key-file={tls}/tls.key",
            f"--tls-ca-file={tls}/ca.crt",
            "--tls-server-name=spiderpool-controller.kube-system.svc",
        ]
        wait_healthy(probe, processes[0])
        wait_webhooks(webhook_port, processes[0])
        kube.namespace(NS)
        kube.node(NODE, {"kubernetes.io/os": "linux"})
        kube.create(
            f"/apis/{GROUP}/v2beta1/spiderippools",
            {
                "apiVersion": f"{GROUP}/v2beta1",
                "kind": "SpiderIPPool",
                "metadata": {"name": "rbac-v4"},
                "spec": {"subnet": "10.90.0.0/24", "ips": ["10.90.0.10-10.90.0.99"]},
            },
        )
        for definition in (KUBEVIRT_CRD, *CIDR_SOURCE_CRDS):
            made = kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", definition)
            assert made["metadata"]["name"] == definition["metadata"]["name"]

        # The post-install job, as spiderpool-init.
        done = run_container(srv, rendered, "Job/spiderpool-init/spiderpool-init", tmp_path / "init")
        assert done.returncode == 0, done.stderr

        processes.append(start(argv, env, tmp_path / "agent.log"))
        wait_healthy([str(BIN / "spiderpool-health"), f"--socket={sock}"], processes[1])
        node = Node(tmp_path / "bin", sock, tmp_path)
        install.install(str(node.bin_dir))
        end = time.monotonic() + 20
        while node.cni("STATUS", None).rc != 0:
            assert time.monotonic() < end, "the agent never synced"
            time.sleep(0.1)
        reconcilers(kube)  # first: the init job's default SpiderCoordinator exists (the scenario deletes it)
        scenario(kube, node, srv, tls, port)
        time.sleep(2.5)  # one leader-election retry period: the Lease is read and renewed
        # Objects of every kind left for the cleanup to remove (with a finalizer nobody will drop).
        leftovers = {
            "spidersubnets": {
                "kind": "SpiderSubnet",
                "metadata": {"name": "left"},
                "spec": {"subnet": "10.93.0.0/24", "ips": ["10.93.0.10"]},
            },
            "spiderreservedips": {
                "kind": "SpiderReservedIP",
                "metadata": {"name": "left"},
                "spec": {"ipVersion": 4, "ips": ["10.93.0.10"]},
            },
            f"namespaces/{NS}/spidermultusconfigs": {
                "kind": "SpiderMultusConfig",
                "metadata": {"name": "left", "finalizers": ["example.com/x"]},
                "spec": {"cniType": "macvlan", "macvlan": {"master": ["eth1"]}},
            },
            "spidercoordinators": {
                "kind": "SpiderCoordinator",
                "metadata": {"name": "left"},
                "spec": {"mode": "auto", "podCIDRType": "auto"},
            },
            f"namespaces/{NS}/spiderendpoints": {"kind": "SpiderEndpoint", "metadata": {"name": "left"}},
        }
        for path, body in leftovers.items():
            kube.create(f"/apis/{GROUP}/v2beta1/{path}", {"apiVersion": f"{GROUP}/v2beta1", **body})
    finally:
        for running in reversed(processes):
            running.stop()

    done = run_container(srv, rendered, "Job/spiderpool-init-cleanup/cleanup", tmp_path / "cleanup")
    assert done.returncode == 0, done.stderr

    denied = authorizer.take_denied()
    assert denied == [], denied
    for key in NOT_FORCED:
        assert key[1:] in granted(rendered, key[0]), f"NOT_FORCED names {key}, which no role grants any more"
    unused = {}
    for account in ACCOUNTS:
        missing = {g for g in granted(rendered, account) if g not in recorder.used(account)}
        missing -= {k[1:] for k in NOT_FORCED if k[0] == account}
        if missing:
            unused[account] = sorted(missing)
    assert unused == {}, f"granted but never used: {unused}"


def scenario(kube: Kube, node: Node, srv: ServerThread, tls: Path, port: int) -> None:
    """The code paths that reach the API server, one after the other."""
    # Owners: Deployment <- ReplicaSet <- pod; StatefulSet <- pod; CronJob <- Job <- pod; VM <- VMI <- pod.
    deployment = kube.workload(APPS, "Deployment", NS, "web", replicas=1, **_template())
    replicaset = kube.workload(APPS, "ReplicaSet", NS, "web-1", owner=deployment, replicas=1, **_template())
    statefulset = kube.workload(APPS, "StatefulSet", NS, "db", replicas=1, serviceName="db", **_template())
    job = kube.workload(
        BATCH,
        "Job",
        NS,
        "once",
        owner=third_party("CronJob", "nightly", "uid-cron", "batch/v1"),
        template=_template()["template"],
    )
    vmi = kube.create(
        f"/apis/kubevirt.io/v1/namespaces/{NS}/virtualmachineinstances",
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {
                "name": "vm1",
                "namespace": NS,
                "ownerReferences": [
                    owner_ref(third_party("VirtualMachine", "vm1", "uid-vm", "kubevirt.io/v1"))
                ],
            },
        },
    )
    pods = {
        "web-1-a": kube.pod(NS, "web-1-a", NODE, owner=replicaset),
        "db-0": kube.pod(NS, "db-0", NODE, owner=statefulset),
        "once-a": kube.pod(NS, "once-a", NODE, owner=job),
        "virt-launcher-vm1": kube.pod(NS, "virt-launcher-vm1", NODE, owner=vmi),
        "gc-me": kube.pod(NS, "gc-me", NODE),
    }
    time.sleep(0.5)  # the agent's informer has the pods: the UID check below reads the API only on a mismatch
    for name, pod in pods.items():
        outcome = node.cni("ADD", pod, f"c-{name}")
        assert outcome.rc == 0, outcome.stdout
    # A UID the cache does not have: the agent reads the pod directly before refusing (code 3).
    stale = node.cni("ADD", pods["once-a"], "c-stale", uid="0a0a0a0a-dead-beef-0000-000000000000")
    assert stale.rc == 1 and stale.obj is not None and stale.obj["code"] == 3
    # A second NIC, then its release: the pod's SpiderEndpoint is updated twice, then deleted.
    time.sleep(0.5)  # the endpoint writer has created web-1-a's endpoint
    assert node.cni("ADD", pods["web-1-a"], "c-web-1-a", ifname="net1").rc == 0
    time.sleep(0.5)
    assert node.cni("DEL", pods["web-1-a"], "c-web-1-a", ifname="net1").rc == 0
    time.sleep(0.5)
    for name in ("web-1-a", "db-0", "once-a", "virt-launcher-vm1"):
        assert node.cni("DEL", pods[name], f"c-{name}").rc == 0
    # A pod gone behind the agent's back: the GC confirms with a direct read and releases its address.
    kube.delete(f"/api/v1/namespaces/{NS}/pods/gc-me")
    end = time.monotonic() + 30
    while any(r["pod"] == f"{NS}/gc-me" for r in _records(kube, "rbac-v4").values()):
        assert time.monotonic() < end, f"the GC kept {_records(kube, 'rbac-v4')}"
        time.sleep(0.2)
    # A StatefulSet member keeps its address across DEL (its replica is valid): read again on DEL.
    assert [r["pod"] for r in _records(kube, "rbac-v4").values()] == [f"{NS}/db-0"]

    # Every kind through the controller (spiderpoolctl over mutual TLS, with the agent's certificate).
    manifests: dict[str, dict[str, Any]] = {
        "subnet": {
            "kind": "SpiderSubnet",
            "metadata": {"name": "rbac-subnet"},
            "spec": {"subnet": "10.91.0.0/24", "ips": ["10.91.0.10-10.91.0.20"]},
        },
        "reserved": {
            "kind": "SpiderReservedIP",
            "metadata": {"name": "rbac-reserved"},
            "spec": {"ipVersion": 4, "ips": ["10.90.0.99"]},
        },
        "pool": {
            "kind": "SpiderIPPool",
            "metadata": {"name": "rbac-extra"},
            "spec": {"subnet": "10.92.0.0/24", "ips": ["10.92.0.10"]},
        },
        "coordinator": {
            "kind": "SpiderCoordinator",
            "metadata": {"name": "default"},
            "spec": {"mode": "underlay", "podCIDRType": "auto", "podRPFilter": 1},
        },
    }
    ctl = [
        str(BIN / "spiderpoolctl"),
        "--controller",
        f"127.0.0.1:{port}",
        "--tls-cert",
        f"{tls}/tls.crt",
        "--tls-key",
        f"{tls}/tls.key",
        "--tls-ca",
        f"{tls}/ca.crt",
        "--tls-server-name",
        "spiderpool-controller.kube-system.svc",
    ]
    # The init job's coordinator goes first, so that apply creates one. The webhook gives a coordinator a
    # finalizer that nothing in cluster mode drops yet (reported): the test drops it, as an admin would.
    gone = subprocess.run([*ctl, "delete", "coordinator", "default"], capture_output=True, check=False)
    assert gone.returncode == 0, gone.stderr
    kube.patch(f"/apis/{GROUP}/v2beta1/spidercoordinators/default", {"metadata": {"finalizers": None}})
    end = time.monotonic() + 30
    while _exists(kube, f"/apis/{GROUP}/v2beta1/spidercoordinators/default"):
        assert time.monotonic() < end, "the coordinator was never deleted"
        time.sleep(0.2)
    for name, manifest in manifests.items():
        body: dict[str, Any] = {"apiVersion": f"{GROUP}/v2beta1", **manifest}
        for _ in range(2):  # create, then update (a changed label)
            proc = subprocess.run(
                [*ctl, "apply", "-f", "-"],
                input=json.dumps(body),
                text=True,
                capture_output=True,
                check=False,
            )
            assert proc.returncode == 0, (name, proc.stderr)
            body["metadata"] = {**body["metadata"], "labels": {"changed": "yes"}}
    for kind in ("ippools", "subnets", "reservedips", "endpoints", "coordinators"):
        proc = subprocess.run(
            [*ctl, "get", kind, "-A"] if kind == "endpoints" else [*ctl, "get", kind],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, (kind, proc.stderr)
    for kind, name, ns in (
        ("subnet", "rbac-subnet", ""),
        ("reservedip", "rbac-reserved", ""),
        ("ippool", "rbac-extra", ""),
        ("coordinator", "default", ""),
    ):
        proc = subprocess.run(
            [*ctl, "delete", kind, name, *(["-n", ns] if ns else [])],
            text=True,
            capture_output=True,
            check=False,
        )
        assert proc.returncode == 0, (kind, proc.stderr)


def reconcilers(kube: Kube) -> None:
    """The leader's Multus and coordinator reconcilers, each path that reaches the API."""
    smcs = f"/apis/{GROUP}/v2beta1/namespaces/{NS}/spidermultusconfigs"
    nads = f"/apis/k8s.cni.cncf.io/v1/namespaces/{NS}/network-attachment-definitions"

    def smc(name: str, master: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/v2beta1",
            "kind": "SpiderMultusConfig",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"cniType": "macvlan", "macvlan": {"master": [master]}},
        }

    def nad_config(name: str) -> str:
        try:
            return str(kube.get(f"{nads}/{name}")["spec"]["config"])
        except KubeApiError as err:
            if err.status == 404:
                return ""
            raise

    # Created: the NAD is read (absent), then created; changed: read again and replaced.
    kube.create(smcs, smc("rbac-net", "eth1"))
    wait_until(lambda: '"eth1"' in nad_config("rbac-net"), "the NAD of rbac-net")
    kube.patch(f"{smcs}/rbac-net", {"spec": {"macvlan": {"master": ["eth2"]}}})
    wait_until(lambda: '"eth2"' in nad_config("rbac-net"), "the NAD of rbac-net replaced")
    # A user's own NAD under the name a SpiderMultusConfig would generate: left alone, an Event says so.
    kube.create(
        nads,
        {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "users-own", "namespace": NS},
            "spec": {"config": '{"cniVersion": "1.0.0", "name": "users-own", "type": "bridge"}'},
        },
    )
    kube.create(smcs, smc("users-own", "eth1"))
    events = f"/api/v1/namespaces/{NS}/events"
    wait_until(
        lambda: any(
            e["reason"] == "NetworkAttachmentDefinitionNotManaged" for e in kube.get(events)["items"]
        ),
        "the Warning Event about users-own",
    )
    assert '"bridge"' in nad_config("users-own")
    # The default SpiderCoordinator (the init job's, podCIDRType auto: Calico's CRD is served, so Calico): its
    # status from the CIDR sources, NotReady (a Warning Event) until a Calico IPPool and a ServiceCIDR exist.
    kube.create(
        "/apis/crd.projectcalico.org/v1/ippools",
        {
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "IPPool",
            "metadata": {"name": "default-ipv4-ippool"},
            "spec": {"cidr": "10.244.0.0/16"},
        },
    )
    kube.create(
        "/apis/networking.k8s.io/v1/servicecidrs",
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "ServiceCIDR",
            "metadata": {"name": "kubernetes"},
            "spec": {"cidrs": ["10.233.0.0/18"]},
        },
    )
    coordinator = f"/apis/{GROUP}/v2beta1/spidercoordinators/default"
    wait_until(
        lambda: (kube.get(coordinator).get("status") or {}).get("serviceCIDR") == ["10.233.0.0/18"],
        "the coordinator's serviceCIDR from the ServiceCIDR",
    )
    assert kube.get(coordinator)["status"]["overlayPodCIDR"] == ["10.244.0.0/16"]


def wait_until(condition: Any, what: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def _exists(kube: Kube, path: str) -> bool:
    try:
        kube.get(path)
    except KubeApiError as err:
        if err.status == 404:
            return False
        raise
    return True


def _records(kube: Kube, pool: str) -> dict[str, Any]:
    obj = kube.get(f"/apis/{GROUP}/v2beta1/spiderippools/{pool}")
    return dict(json.loads((obj.get("status") or {}).get("allocatedIPs") or "{}"))


def _template() -> dict[str, Any]:
    labels = {"app": "x"}
    return {
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
        },
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
