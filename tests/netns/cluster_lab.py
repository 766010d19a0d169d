"""A small cluster for netns tests: the test API server, a controller in cluster mode, agents on nodes.

What a cluster's control plane does for the networks of issue 9 runs here for real: the test
API server (in-process thread, on 127.0.0.1) holds the generated CRDs, the pools, the
SpiderMultusConfigs, the kubeadm ConfigMap and the SpiderCoordinator ``default``; one
``spiderpool-controller --store kubernetes://`` process leads and runs its reconcilers (the
NetworkAttachmentDefinitions and the coordinator's CIDRs come from it, nothing here writes
them); each node is a network namespace with its own ``spiderpool-agent`` (its node name and
labels, its socket and state directory) and our CNI runtime executing plugins inside it.

``attach`` is the kubelet-and-Multus stand-in: it reads the NetworkAttachmentDefinition from
the API server and runs its ``spec.config`` through the node's runtime with Kubernetes'
``CNI_ARGS``; a failed ADD is followed by DEL, as Multus and kubelet do. One adaptation, made
by ``node_local`` and checked by it: the generated configuration names no agent socket, log
file or DEL spool (a real node has them at the defaults, under /var and /run); nodes here share
the machine's filesystem, so the node's own paths are added to the spiderpool IPAM and
coordinator entries and nothing else changes. (The simulated cluster under tests/simcluster
gives every node its own /run and /var and runs the configuration byte for byte.) The
controller's IP garbage collector is off: the pods here are network namespaces the API server
does not know.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from spiderpool_tools.cni_runtime import (
    CniPluginError,
    CniRuntime,
    NetworkConfigList,
    RuntimeConf,
    load_config,
)
from spiderpool_tools.netns import NetNs, stop_process
from spiderpool_tools.node_stack import SCRIPTS_DIR, grpc_serving

from tests.component.kube_objects import Kube
from tests.kubeapi import ServerConfig, ServerThread

REPO = Path(__file__).resolve().parents[2]
REFERENCE_PLUGINS = Path("/usr/lib/cni")
SPIDER = "/apis/spiderpool.spidernet.io/v2beta1"
POD_NAMESPACE = "lab"
TIMINGS = ["--leader-lease-duration", "2", "--leader-renew-deadline", "1.4", "--leader-retry-period", "0.3"]


def wait(predicate: Callable[[], Any], what: str, deadline: float = 20.0) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Node:
    name: str
    ns: NetNs
    root: Path
    runtime: CniRuntime
    agent: Service

    @property
    def socket(self) -> Path:
        return self.root / "agent.sock"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"


def node_local(config: dict[str, Any], node: Node) -> dict[str, Any]:
    """The conflist with the node's agent socket, log files and DEL spool added to the spiderpool
    IPAM and coordinator entries (what the defaults under /var and /run give a real node)."""
    out = copy.deepcopy(config)
    spool = str(node.state_dir / "spool")
    for plugin in out.get("plugins") or []:
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "spiderpool":
            ipam["ipam_unix_socket_path"] = str(node.socket)
            ipam["log_file_path"] = str(node.log_dir / "ipam-shim.log")
            ipam["del_spool_dir"] = spool
        if plugin.get("type") == "coordinator":
            plugin["ipam_unix_socket_path"] = str(node.socket)
            plugin["del_spool_dir"] = spool
            plugin["logOptions"] = {"logFile": str(node.log_dir / "coordinator-shim.log")}
    return out


def node_local_keys_only(generated: dict[str, Any], local: dict[str, Any]) -> bool:
    """True when ``local`` differs from ``generated`` only by the keys ``node_local`` adds."""
    stripped = copy.deepcopy(local)
    for plugin in stripped.get("plugins") or []:
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict):
            for key in ("ipam_unix_socket_path", "log_file_path", "del_spool_dir"):
                ipam.pop(key, None)
        if plugin.get("type") == "coordinator":
            for key in ("ipam_unix_socket_path", "del_spool_dir", "logOptions"):
                plugin.pop(key, None)
    return stripped == generated


def attachment(pod: NetNs, name: str, ifname: str) -> RuntimeConf:
    """The attachment as kubelet and Multus describe it to every delegate (CNI_ARGS)."""
    args = (
        ("IgnoreUnknown", "true"),
        ("K8S_POD_NAMESPACE", POD_NAMESPACE),
        ("K8S_POD_NAME", name),
        ("K8S_POD_INFRA_CONTAINER_ID", f"ctr-{name}"),
        ("K8S_POD_UID", f"uid-{name}"),
    )
    return RuntimeConf(f"ctr-{name}", ifname, pod.path, args)


@dataclass
class ClusterLab:
    api: ServerThread
    root: Path
    controller: Service | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    pods: list[NetNs] = field(default_factory=list)
    extra_ns: list[NetNs] = field(default_factory=list)
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def start(cls) -> ClusterLab:
        api = ServerThread(ServerConfig())
        api.start()
        lab = cls(api, Path(tempfile.mkdtemp(prefix="spcl-", dir="/tmp")))
        try:
            kube = lab.kube
            for path in sorted((REPO / "deploy" / "crds").glob("*.yaml")):
                kube.create(
                    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                    yaml.safe_load(path.read_text()),
                )
            kube.namespace(POD_NAMESPACE)
            subprocess.run(
                [str(SCRIPTS_DIR / "spiderpool-install-cni"), "--bin-dir", str(lab.bin_dir)],
                check=True,
                capture_output=True,
                timeout=60,
            )
        except BaseException:
            lab.close()
            raise
        return lab

    @property
    def kube(self) -> Kube:
        return Kube(self.api)

    @property
    def bin_dir(self) -> Path:
        return self.root / "cni-bin"

    @property
    def controller_target(self) -> str:
        return f"unix:{self.root / 'controller.sock'}"

    def _serve(self, name: str, proc: subprocess.Popen[bytes], log: Path, target: str) -> Service:
        service = Service(name, proc, log)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{service.tail()}")
            return grpc_serving(target)

        try:
            wait(ready, f"{name} to serve")
        except BaseException:
            stop_process(proc)
            raise
        return service

    def start_controller(self, *extra: str) -> Service:
        log = self.root / "controller.log"
        argv = [
            str(SCRIPTS_DIR / "spiderpool-controller"),
            "--store", "kubernetes://", "--kubeconfig", str(self.api.kubeconfig_path),
            "--listen", self.controller_target, "--pod-name", "lab-controller",
            "--pod-namespace", "kube-system", "--gc-enabled", "false", "--log-format", "json",
            *TIMINGS, *extra,
        ]  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.controller = self._serve("controller", proc, log, self.controller_target)
        return self.controller

    def add_node(self, name: str, ns: NetNs, labels: dict[str, str] | None = None) -> Node:
        root = self.root / name
        (root / "logs").mkdir(parents=True)
        (root / "state").mkdir()
        labels = {"kubernetes.io/hostname": name, **(labels or {})}
        argv = [
            str(SCRIPTS_DIR / "spiderpool-agent"),
            "--controller", self.controller_target, "--socket", str(root / "agent.sock"),
            "--node", name, "--node-labels", ",".join(f"{k}={v}" for k, v in labels.items()),
            "--state-dir", str(root / "state"), "--coordinator-config-ttl", "0", "--log-format", "json",
        ]  # fmt: skip
        log = root / "agent.log"
        with log.open("ab") as out:
            proc = ns.popen(argv, stdout=out, stderr=subprocess.STDOUT)
        agent = self._serve(f"agent {name}", proc, log, f"unix:{root / 'agent.sock'}")
        runtime = CniRuntime(
            [str(self.bin_dir), str(REFERENCE_PLUGINS)], root / "cni-cache", exec_context=ns.entered
        )
        node = Node(name, ns, root, runtime, agent)
        self.nodes[name] = node
        return node

    def pod(self) -> NetNs:
        pod = NetNs.create("sppod")
        self.pods.append(pod)
        pod.disable_dad()
        return pod

    def serve(self, ns: NetNs, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start a server in ``ns`` that prints ``ready`` once it listens; stopped by ``close``."""
        proc = ns.popen(argv, stdout=subprocess.PIPE)
        self.servers.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == b"ready", f"server in {ns.name} did not start: {line!r}"
        return proc

    # -- the API -----------------------------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object as kubectl create would (path from its apiVersion, kind and namespace)."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        plural = {"ConfigMap": "configmaps"}.get(kind) or f"{kind.lower()}s"
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        namespace = (obj.get("metadata") or {}).get("namespace")
        path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
        return self.kube.create(path, obj)

    def nad(self, name: str, namespace: str = POD_NAMESPACE) -> dict[str, Any]:
        """The NetworkAttachmentDefinition the controller generated (waited for)."""
        found: dict[str, Any] = wait(
            lambda: self.api.get("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition", name, namespace),
            f"NetworkAttachmentDefinition {namespace}/{name}",
        )
        return found

    def coordinator_status(self, phase: str = "Synced") -> dict[str, Any]:
        def status() -> dict[str, Any] | None:
            obj = self.api.get("spiderpool.spidernet.io/v2beta1", "SpiderCoordinator", "default") or {}
            current = dict(obj.get("status") or {})
            return current if current.get("phase") == phase else None

        found: dict[str, Any] = wait(status, f"SpiderCoordinator default {phase}")
        return found

    def pool_records(self, pool: str) -> dict[str, Any]:
        obj = self.api.get("spiderpool.spidernet.io/v2beta1", "SpiderIPPool", pool) or {}
        raw = (obj.get("status") or {}).get("allocatedIPs") or "{}"
        return dict(json.loads(raw) if isinstance(raw, str) else raw)

    # -- the kubelet and Multus stand-in ------------------------------------------------

    def network(self, node: Node, nad_name: str) -> tuple[dict[str, Any], NetworkConfigList]:
        """(the generated conflist, the configuration the node runs: ``node_local`` of it)."""
        generated = json.loads(self.nad(nad_name)["spec"]["config"])
        local = node_local(generated, node)
        assert node_local_keys_only(generated, local)
        return generated, load_config(local)

    def attach(
        self, node: Node, pod: NetNs, name: str, nad_name: str, ifname: str = "eth0"
    ) -> dict[str, Any]:
        """ADD, and on failure DEL, as Multus does with its delegates before failing the sandbox."""
        _, network = self.network(node, nad_name)
        rt = attachment(pod, name, ifname)
        try:
            return node.runtime.add(network, rt)
        except CniPluginError:
            node.runtime.delete(network, rt)
            raise

    def detach(self, node: Node, pod: NetNs, name: str, nad_name: str, ifname: str = "eth0") -> None:
        _, network = self.network(node, nad_name)
        node.runtime.delete(network, attachment(pod, name, ifname))

    def close(self) -> None:
        for proc in self.servers:
            stop_process(proc)
            if proc.stdout is not None:
                proc.stdout.close()
        for node in self.nodes.values():
            stop_process(node.agent.proc)
        if self.controller is not None:
            stop_process(self.controller.proc)
        for ns in (*self.pods, *self.extra_ns):
            ns.delete()
        self.api.stop()
        shutil.rmtree(self.root, ignore_errors=True)
