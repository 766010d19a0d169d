"""The command lines of the project's programs in the simulated cluster: the one place the Helm chart must
match.

Everything a chart's manifests will have to render is built here and nowhere else, from `ClusterPaths`
(where the simulated cluster keeps sockets and files) and the replica or node at hand:

- spiderpool-controller (Deployment, 2 replicas): the Kubernetes store through the kubeconfig (in a cluster:
  the ServiceAccount), gRPC on the replica's own unix socket (a pod's port), its identity and the address
  standbys forward to (the downward API's pod name and IP), the Lease in `kube-system`, and short lease
  timings for the tests (`SPIDERPOOL_*` environment, as a chart's `env:` would set them);
- spiderpool-agent (DaemonSet): the controller Service's address, the API (`--pod-source kubernetes`,
  kubeconfig), the node's name from `SPIDERPOOL_NODE_NAME` (downward API `spec.nodeName`), the Multus
  cluster network; socket, state and spool directories are the production defaults, which each node's own
  filesystem view provides (node_host.py);
- spiderpool-install-cni (the agent's init container): the shims into the node's CNI bin directory.

The stand-ins (kubelet, control plane, service proxy) are test programs: their command lines are here too so
the harness has a single table of what runs where.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(sys.executable).parent  # the virtualenv's bin: the console scripts
PYTHON = sys.executable
CLUSTER_NETWORK = "macvlan-eth0"  # the default network's name (the conflist in each node's net.d)
LEASE_NAMESPACE = "kube-system"
DEFAULT_CONFLIST = "10-macvlan.conflist"
AGENT_SOCKET = "/var/run/spidernet/spiderpool.sock"  # the agent's default, inside each node's view


@dataclass(frozen=True)
class ClusterPaths:
    """Where one simulated cluster keeps its sockets and files (all under ``root``, a short /tmp path)."""

    root: Path

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def api_dir(self) -> Path:
        return self.root / "api"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def ready(self) -> Path:
        return self.root / "ready"

    @property
    def controller_service(self) -> Path:
        """The controllers' Service: what agents dial."""
        return self.root / "controller.sock"

    def controller_socket(self, index: int) -> Path:
        return self.root / f"controller-{index}.sock"

    def node_root(self, node: str) -> Path:
        return self.root / "nodes" / node

    def cni_conf_dir(self, node: str) -> Path:
        return self.node_root(node) / "etc" / "cni" / "net.d"

    def cni_bin_dir(self, node: str) -> Path:
        return self.node_root(node) / "opt" / "cni" / "bin"


REFERENCE_PLUGINS = "/usr/lib/cni"  # Debian's containernetworking-plugins (macvlan)


def controller_name(index: int) -> str:
    return f"spiderpool-controller-{index}"


@functools.cache
def controller_has_cluster_mode() -> bool:
    """Whether ``spiderpool-controller`` offers its cluster mode flags yet (``--kubeconfig``)."""
    proc = subprocess.run(
        [str(SCRIPTS / "spiderpool-controller"), "--help"], capture_output=True, text=True, check=False
    )
    return "--kubeconfig" in proc.stdout


def controller(paths: ClusterPaths, index: int, log_level: str = "info") -> tuple[list[str], dict[str, str]]:
    """The controller replica ``index``: arguments and extra environment. Until the command has its cluster
    mode, controller_preview.py wires the same library code (the one line to drop then is marked)."""
    socket = paths.controller_socket(index)
    env = {
        "SPIDERPOOL_POD_NAME": controller_name(index),
        "SPIDERPOOL_POD_NAMESPACE": LEASE_NAMESPACE,
    }
    if not controller_has_cluster_mode():  # interim: drop with controller_preview.py
        args = [
            PYTHON, "-m", "tests.simcluster.controller_preview",
            "--kubeconfig", str(paths.kubeconfig),
            "--listen", f"unix:{socket}",
            "--identity", controller_name(index),
            "--lease-namespace", LEASE_NAMESPACE,
            "--log-level", log_level,
        ]  # fmt: skip
        return args, env
    args = [
        str(SCRIPTS / "spiderpool-controller"),
        "--store", "kubernetes://",
        "--kubeconfig", str(paths.kubeconfig),
        "--listen", f"unix:{socket}",
        "--log-level", log_level,
        "--log-format", "json",
    ]  # fmt: skip
    return args, {**env, "SPIDERPOOL_ADVERTISE": f"unix:{socket}"}


def agent(paths: ClusterPaths, node: str, log_level: str = "info") -> tuple[list[str], dict[str, str]]:
    """The agent of ``node`` (run inside the node: default socket, state and spool paths)."""
    args = [
        str(SCRIPTS / "spiderpool-agent"),
        "--controller", f"unix:{paths.controller_service}",
        "--pod-source", "kubernetes",
        "--kubeconfig", str(paths.kubeconfig),
        "--cluster-network", CLUSTER_NETWORK,
        "--log-level", log_level,
        "--log-format", "json",
    ]  # fmt: skip
    return args, {"SPIDERPOOL_NODE_NAME": node}


def install_cni(paths: ClusterPaths, node: str) -> list[str]:
    return [str(SCRIPTS / "spiderpool-install-cni"), "--bin-dir", str(paths.cni_bin_dir(node))]


def kubelet(
    paths: ClusterPaths, node: str, netns_prefix: str, host_ips: tuple[str, ...], labels: str, parallel: int
) -> list[str]:
    args = [
        PYTHON, "-m", "tests.simcluster.kubelet",
        "--node", node,
        "--kubeconfig", str(paths.kubeconfig),
        "--cni-conf-dir", str(paths.cni_conf_dir(node)),
        "--cni-bin-dir", str(paths.cni_bin_dir(node)),
        "--cni-bin-dir", REFERENCE_PLUGINS,
        "--netns-prefix", netns_prefix,
        "--labels", labels,
        "--max-parallel", str(parallel),
        "--ready-file", str(paths.ready / f"kubelet-{node}"),
    ]  # fmt: skip
    for ip in host_ips:
        args += ["--host-ip", ip]
    return args


def control_plane(paths: ClusterPaths) -> list[str]:
    return [
        PYTHON, "-m", "tests.simcluster.control_plane",
        "--kubeconfig", str(paths.kubeconfig),
        "--ready-file", str(paths.ready / "control-plane"),
    ]  # fmt: skip


def service_proxy(paths: ClusterPaths, replicas: int) -> list[str]:
    args = [
        PYTHON, "-m", "tests.simcluster.service_proxy",
        "--listen", f"unix:{paths.controller_service}",
        "--ready-file", str(paths.ready / "controller-service"),
    ]  # fmt: skip
    for index in range(replicas):
        args += ["--backend", f"unix:{paths.controller_socket(index)}"]
    return args


def api_server(paths: ClusterPaths, fds: list[int], history: int) -> list[str]:
    args = [
        PYTHON, "-m", "tests.kubeapi",
        "--state-dir", str(paths.api_dir),
        "--kubeconfig", str(paths.kubeconfig),
        "--no-workload-status",
        "--history", str(history),
    ]  # fmt: skip
    for fd in fds:
        args += ["--listen-fd", str(fd)]
    return args
