"""The command lines of the project's programs in the simulated cluster: the one place the chart must match.

Everything a chart's manifests will have to render is built here and nowhere else, from `ClusterPaths`
(where the simulated cluster keeps sockets and files) and the replica or node at hand:

- spiderpool-controller (Deployment, 2 replicas): `--store kubernetes://` through the kubeconfig (in a
  cluster: the ServiceAccount), gRPC on the replica's own unix socket (a pod's port), advertised to the other
  replica for forwarding, the pod name as the Lease identity (downward API), the Lease in `kube-system`, the
  admission webhooks on the replica's webhook port with the Service's certificate; tests add short
  leader-election timings (`--leader-lease-duration` ...);
- spiderpool-agent (DaemonSet): the controller Service's address, the API (`--pod-source kubernetes`,
  kubeconfig), the node's name from `SPIDERPOOL_NODE_NAME` (downward API `spec.nodeName`), the Multus
  cluster network; socket, state and spool directories are the production defaults, which each node's own
  filesystem view provides (node_host.py);
- spiderpool-install-cni (the agent's init container): the shims into the node's CNI bin directory;
- the webhook configurations the chart registers come from `webhook.registration` (cluster.py applies them).

Differences from a chart, by necessity: the controllers' gRPC is a unix socket per replica behind a Service
stand-in (a path reaches every node's network namespace) where a chart has TCP with mutual TLS; the
kubeconfig stands for the ServiceAccount.

The stand-ins (kubelet, control plane, service proxies) are test programs: their command lines are here too
so the harness has a single table of what runs where.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(sys.executable).parent  # the virtualenv's bin: the console scripts
PYTHON = sys.executable
CLUSTER_NETWORK = "macvlan-eth0"  # the default network's name (the conflist in each node's net.d)
LEASE_NAMESPACE = "kube-system"
SERVICE = ("kube-system", "spiderpool-controller")  # the controllers' Service (gRPC and webhooks)
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

    @property
    def webhook_cert(self) -> Path:
        return self.root / "webhook" / "tls.crt"

    @property
    def webhook_key(self) -> Path:
        return self.root / "webhook" / "tls.key"

    def node_root(self, node: str) -> Path:
        return self.root / "nodes" / node

    def cni_conf_dir(self, node: str) -> Path:
        return self.node_root(node) / "etc" / "cni" / "net.d"

    def cni_bin_dir(self, node: str) -> Path:
        return self.node_root(node) / "opt" / "cni" / "bin"


REFERENCE_PLUGINS = "/usr/lib/cni"  # Debian's containernetworking-plugins (macvlan)


def controller_name(index: int) -> str:
    return f"spiderpool-controller-{index}"


def controller(
    paths: ClusterPaths, index: int, webhook_port: int, log_level: str = "info", extra: Sequence[str] = ()
) -> list[str]:
    """The controller replica ``index``: the Kubernetes store through the kubeconfig, gRPC on its own unix
    socket (advertised to the other replica for forwarding), its pod name as the Lease identity, the
    webhooks on 127.0.0.1:``webhook_port`` with the cluster's webhook certificate; ``extra`` (e.g. short
    leader-election timings for tests) last."""
    socket = f"unix:{paths.controller_socket(index)}"
    return [
        str(SCRIPTS / "spiderpool-controller"),
        "--store", "kubernetes://",
        "--kubeconfig", str(paths.kubeconfig),
        "--listen", socket,
        "--advertise", socket,
        "--pod-name", controller_name(index),
        "--pod-namespace", LEASE_NAMESPACE,
        "--webhook-listen", f"127.0.0.1:{webhook_port}",
        "--webhook-cert-file", str(paths.webhook_cert),
        "--webhook-key-file", str(paths.webhook_key),
        "--log-level", log_level,
        "--log-format", "json",
        *extra,
    ]  # fmt: skip


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


def service_proxy(name: str, paths: ClusterPaths, listen: str, backends: Sequence[str]) -> list[str]:
    """A Service stand-in: ``listen`` spliced to ``backends``, its ready file named ``name``."""
    args = [
        PYTHON, "-m", "tests.simcluster.service_proxy",
        "--listen", listen,
        "--ready-file", str(paths.ready / name),
    ]  # fmt: skip
    for backend in backends:
        args += ["--backend", backend]
    return args


def api_server(paths: ClusterPaths, fds: list[int], history: int, webhook_service: str) -> list[str]:
    """The test API server on the inherited sockets; the controllers' Service for webhook calls at
    ``webhook_service`` (an https URL)."""
    args = [
        PYTHON, "-m", "tests.kubeapi",
        "--state-dir", str(paths.api_dir),
        "--kubeconfig", str(paths.kubeconfig),
        "--no-workload-status",
        "--history", str(history),
        "--service-url", f"{SERVICE[0]}/{SERVICE[1]}={webhook_service}",
    ]  # fmt: skip
    for fd in fds:
        args += ["--listen-fd", str(fd)]
    return args
