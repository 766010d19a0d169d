"""Command lines and places of the simulated cluster; the project's programs come from the chart.

The controller replicas and the agents are not built here: they start exactly as the rendered Helm chart
says (chart_deployment.py, from tests/chart/rendered.py). What stays here is `ClusterPaths` (where one
simulated cluster keeps its files), the names the chart and the harness share, the shims' installation into
each node's CNI bin directory (the agent's init container; not the chart's: that one copies the image's
interpreter bundle to the host's /opt/spiderpool/python, which the nodes here share with the machine, so the
shims run on this machine's interpreter instead), and the command lines of the test programs that
stand in for the rest of a cluster (kubelet, control plane, Service proxies, the API server), so the harness
has a single table of what runs where.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(sys.executable).parent  # the virtualenv's bin: the console scripts
PYTHON = sys.executable
CLUSTER_NETWORK = "macvlan-eth0"  # the default network's name (the conflist in each node's net.d)
SERVICE = ("kube-system", "spiderpool-controller")  # the controllers' Service (gRPC and webhooks)
DEFAULT_CONFLIST = "10-macvlan.conflist"


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
    def chart(self) -> Path:
        """Where the chart's volumes (settings, certificates) are materialized, per program."""
        return self.root / "chart"

    def kubeconfig_of(self, account: str) -> Path:
        """A ServiceAccount's kubeconfig (its token: the in-cluster token mount's stand-in)."""
        return self.root / "accounts" / f"{account}.kubeconfig"

    def node_root(self, node: str) -> Path:
        return self.root / "nodes" / node

    def cni_conf_dir(self, node: str) -> Path:
        return self.node_root(node) / "etc" / "cni" / "net.d"

    def cni_bin_dir(self, node: str) -> Path:
        return self.node_root(node) / "opt" / "cni" / "bin"


REFERENCE_PLUGINS = "/usr/lib/cni"  # Debian's containernetworking-plugins (macvlan)


def controller_name(index: int) -> str:
    return f"spiderpool-controller-{index}"


def install_cni(paths: ClusterPaths, node: str) -> list[str]:
    return [str(SCRIPTS / "spiderpool-install-cni"), "--bin-dir", str(paths.cni_bin_dir(node))]


def kubelet(
    paths: ClusterPaths,
    node: str,
    netns_prefix: str,
    host_ips: tuple[str, ...],
    labels: str,
    parallel: int,
    extra: Sequence[str] = (),
) -> list[str]:
    """The kubelet stand-in of ``node``; ``extra`` (e.g. ``--cni agent``) last."""
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
    return [*args, *extra]


def control_plane(paths: ClusterPaths) -> list[str]:
    return [
        PYTHON, "-m", "tests.simcluster.control_plane",
        "--kubeconfig", str(paths.kubeconfig),
        "--ready-file", str(paths.ready / "control-plane"),
    ]  # fmt: skip


def service_proxy(
    name: str, paths: ClusterPaths, listen: str, backends: Sequence[str], fds: Sequence[int] = ()
) -> list[str]:
    """A Service stand-in: ``listen`` (and the inherited listening sockets ``fds``) spliced to ``backends``,
    its ready file named ``name``."""
    args = [
        PYTHON, "-m", "tests.simcluster.service_proxy",
        "--listen", listen,
        "--ready-file", str(paths.ready / name),
    ]  # fmt: skip
    for backend in backends:
        args += ["--backend", backend]
    for fd in fds:
        args += ["--listen-fd", str(fd)]
    return args


def api_server(
    paths: ClusterPaths, fds: list[int], history: int, webhook_service: str, rbac: bool = False
) -> list[str]:
    """The test API server on the inherited sockets; the controllers' Service for webhook calls at
    ``webhook_service`` (an https URL); ``rbac``: every request checked against the stored roles."""
    args = [
        PYTHON, "-m", "tests.kubeapi",
        "--state-dir", str(paths.api_dir),
        "--kubeconfig", str(paths.kubeconfig),
        "--no-workload-status",
        "--history", str(history),
        "--service-url", f"{SERVICE[0]}/{SERVICE[1]}={webhook_service}",
    ]  # fmt: skip
    if rbac:
        args.append("--rbac")
    for fd in fds:
        args += ["--listen-fd", str(fd)]
    return args
