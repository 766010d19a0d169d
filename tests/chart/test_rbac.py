"""The chart's RBAC against the programs' real API traffic: enough for everything they do, nothing more.

The chart is installed with Helm into the test API server with RBAC enforced. Then its programs run as the
chart starts them (tests/chart/rendered.py: the rendered command, arguments, environment and mounted
settings and certificates), each with its ServiceAccount's token: the controller (Kubernetes store, leader
election, GC), the agent (pod facts, owners) reached over mutual TLS, the post-install job, and at the end
the pre-delete cleanup. A scenario walks the code paths that reach the API: allocations for pods of a
Deployment, a StatefulSet, a Job and a KubeVirt VM (owner reads), a pod whose UID the cache does not know
(direct read), a pod deleted behind the agent's back (the GC's confirming read and release), spiderpoolctl
applying, changing and deleting every kind through the controller, the Lease renewed; SpiderSubnet auto pools
for a pod of each builtin workload kind whose watch event is held back (the controller's direct reads) and of
OpenKruise's two third-party kinds (their informers, and the reads before their pools are reclaimed); a
SpiderMultusConfig made and changed (its NetworkAttachmentDefinition created and replaced); the coordinator's
CIDR sources, Calico's and Cilium's pools among them.

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
    ("spiderpool-controller", "networking.k8s.io", "servicecidrs", "list"): (
        "coordinator_reconciler.py watches ServiceCIDRs where the API server serves them (Kubernetes 1.33 "
        "and later); the test API server does not serve networking.k8s.io servicecidrs"
    ),
    ("spiderpool-controller", "networking.k8s.io", "servicecidrs", "watch"): (
        "coordinator_reconciler.py, as above: the ServiceCIDR informer's watch"
    ),
}
SUBNET_ANNO = {"ipam.spidernet.io/subnet": '{"ipv4": ["rbac-auto"]}'}
THIRD_PARTY_ANNO = {**SUBNET_ANNO, "ipam.spidernet.io/ippool-ip-number": "1"}
# The third-party kinds of the chart's default ipam.spiderSubnet.autoPool.thirdPartyControllers, and the
# optional CIDR sources of the coordinator reconciler: (group, version, kind, plural).
EXTRA_KINDS = (
    ("apps.kruise.io", "v1alpha1", "CloneSet", "clonesets"),
    ("apps.kruise.io", "v1beta1", "StatefulSet", "statefulsets"),
    ("crd.projectcalico.org", "v1", "IPPool", "ippools"),
    ("cilium.io", "v2alpha1", "CiliumPodIPPool", "ciliumpodippools"),
)


def crd(group: str, version: str, kind: str, plural: str, *, namespaced: bool = True) -> dict[str, Any]:
    """A CustomResourceDefinition that takes any object of the kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced" if namespaced else "Cluster",
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


KUBEVIRT_CRD = {
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
        made = kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", KUBEVIRT_CRD)
        assert made["metadata"]["name"] == "virtualmachineinstances.kubevirt.io"
        for group, version, kind, plural in EXTRA_KINDS:
            namespaced = group == "apps.kruise.io"
            body = crd(group, version, kind, plural, namespaced=namespaced)
            kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body)

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
        scenario(kube, node, srv, tls, port)
        auto_pools(kube, node, srv)
        multus_config(kube)
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


def auto_pools(kube: Kube, node: Node, srv: ServerThread) -> None:
    """SpiderSubnet auto pools: a pod of each builtin kind whose workload's watch event is held back, so the
    controller reads the workload directly; pods of OpenKruise's CloneSet and Advanced StatefulSet, whose
    pools are reclaimed once their owners are gone (the kind watched, the owner read, its collection
    listed)."""
    kube.create(
        f"/apis/{GROUP}/v2beta1/spidersubnets",
        {
            "apiVersion": f"{GROUP}/v2beta1",
            "kind": "SpiderSubnet",
            "metadata": {"name": "rbac-auto"},
            "spec": {"subnet": "10.94.0.0/24", "ips": ["10.94.0.10-10.94.0.99"]},
        },
    )
    plurals = ("deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs")
    rules = [srv.faults.delay(20.0, verb="watch", resource=plural) for plural in plurals]
    srv.drop_watches()
    try:
        spec = _template(SUBNET_ANNO)
        dep = kube.workload(APPS, "Deployment", NS, "auto-web", replicas=1, **spec)
        rs = kube.workload(APPS, "ReplicaSet", NS, "auto-web-1", owner=dep, replicas=1, **spec)
        cron = kube.create(
            f"{BATCH}/namespaces/{NS}/cronjobs",
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": "auto-cron", "namespace": NS},
                "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": spec["template"]}}},
            },
        )
        owners = {
            "auto-web-1-a": rs,
            "auto-rs-a": kube.workload(APPS, "ReplicaSet", NS, "auto-rs", replicas=1, **spec),
            "auto-db-0": kube.workload(
                APPS, "StatefulSet", NS, "auto-db", replicas=1, serviceName="db", **spec
            ),
            "auto-ds-a": kube.workload(APPS, "DaemonSet", NS, "auto-ds", **spec),
            "auto-job-a": kube.workload(BATCH, "Job", NS, "auto-job", template=spec["template"]),
            "auto-cron-1-a": kube.workload(
                BATCH, "Job", NS, "auto-cron-1", owner=cron, template=spec["template"]
            ),
        }
        pods = {
            name: kube.pod(NS, name, NODE, annotations=SUBNET_ANNO, owner=o) for name, o in owners.items()
        }
        time.sleep(0.5)  # the agent's pod informer has them (its watch is not held back)
        for name, pod in pods.items():
            outcome = node.cni("ADD", pod, f"c-{name}")
            assert outcome.rc == 0, (name, outcome.stdout)
            assert outcome.result()["ips"][0]["address"].startswith("10.94.0."), outcome.stdout
    finally:
        for rule in rules:
            rule.delay = 0.0
    for name, pod in pods.items():
        assert node.cni("DEL", pod, f"c-{name}").rc == 0

    kruise = "/apis/apps.kruise.io"
    third = {
        "auto-clone-a": (
            f"{kruise}/v1alpha1/namespaces/{NS}/clonesets",
            "apps.kruise.io/v1alpha1",
            "CloneSet",
        ),
        "auto-asts-0": (
            f"{kruise}/v1beta1/namespaces/{NS}/statefulsets",
            "apps.kruise.io/v1beta1",
            "StatefulSet",
        ),
    }
    made: dict[str, tuple[str, dict[str, Any]]] = {}
    for pod_name, (collection, api_version, kind) in third.items():
        owner = kube.create(
            collection,
            {"apiVersion": api_version, "kind": kind, "metadata": {"name": pod_name.rsplit("-", 1)[0]}},
        )
        made[pod_name] = (f"{collection}/{owner['metadata']['name']}", owner)
        pod = kube.pod(NS, pod_name, NODE, annotations=THIRD_PARTY_ANNO, owner=owner)
        time.sleep(0.3)
        outcome = node.cni("ADD", pod, f"c-{pod_name}")
        assert outcome.rc == 0, (pod_name, outcome.stdout)
        assert node.cni("DEL", pod, f"c-{pod_name}").rc == 0
    for path, _ in made.values():
        kube.delete(path)
    names = {f"auto4-{o['metadata']['name']}-eth0-{_uid5(o)}" for _, o in made.values()}
    end = time.monotonic() + 30
    while names & {p["metadata"]["name"] for p in kube.get(f"/apis/{GROUP}/v2beta1/spiderippools")["items"]}:
        assert time.monotonic() < end, f"the third-party pools {names} were never reclaimed"
        time.sleep(0.2)


def multus_config(kube: Kube) -> None:
    """A SpiderMultusConfig made, then changed: its NetworkAttachmentDefinition created, then replaced."""
    smc = f"/apis/{GROUP}/v2beta1/namespaces/{NS}/spidermultusconfigs"
    kube.create(
        smc,
        {
            "apiVersion": f"{GROUP}/v2beta1",
            "kind": "SpiderMultusConfig",
            "metadata": {"name": "rbac-net"},
            "spec": {"cniType": "macvlan", "macvlan": {"master": ["eth1"]}},
        },
    )
    nad = f"/apis/k8s.cni.cncf.io/v1/namespaces/{NS}/network-attachment-definitions/rbac-net"
    end = time.monotonic() + 30
    while not _exists(kube, nad):
        assert time.monotonic() < end, "the NetworkAttachmentDefinition was never made"
        time.sleep(0.2)
    kube.patch(f"{smc}/rbac-net", {"spec": {"macvlan": {"master": ["eth2"]}}})
    while "eth2" not in kube.get(nad)["spec"]["config"]:
        assert time.monotonic() < end, "the NetworkAttachmentDefinition was never replaced"
        time.sleep(0.2)


def _uid5(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["uid"]).rsplit("-", 1)[-1][:5]


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


def _template(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {"app": "x"}
    return {
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
        },
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
