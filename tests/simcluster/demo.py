"""The cluster demo (`make demo-cluster`, `spiderpool-demo-cluster`, `python -m tests.simcluster`).

Shows the Kubernetes mode without a cluster: the simulated cluster starts (cluster.py), the kubeconfig is
printed with a `KUBECONFIG=... kubectl` hint so any kubectl can watch, then, with kubectl as a user would:
the example pools (demo-v4/-v6, cluster defaults on the shared underlay, deploy/examples) and one pool per
node (`nodeAffinity` on the node's hostname label, the node's own subnet); a Deployment `web` (3 replicas,
default pools) and a StatefulSet `db` (3 members, the node pools named in its pod annotation
`ipam.spidernet.io/ippool`, so each member gets the pool of the node it landed on); `kubectl get pods -o
wide`, `kubectl get sp`, `kubectl get se`, the Lease's holder (the leading controller); pings between pods on
different nodes, on the shared subnet and across the node subnets (routed by the switch). Then it keeps
running until Ctrl-C (or exits with `--exit-after-demo`), and removes everything it made, also on SIGINT or
SIGTERM (the signal becomes an exception; the cleanup runs with further signals deferred). A failed step
ends the run with a message naming it and exit code 1.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from spiderpool_tools.demo import Console, ensure_prerequisites
from spiderpool_tools.netns import NetNs

from .cluster import REPO, ClusterError, SimCluster, SimOptions
from .processes import ProcessError
from .topology import NodeSpec, default_nodes

EXAMPLES = REPO / "deploy" / "examples"
POOL_FILES = ("ippool-demo-v4.yaml", "ippool-demo-v6.yaml")
APP_NAMESPACE = "demo"


class DemoFailure(Exception):
    """A step's result was not what the demo expects; the message says what."""


class Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def node_pool(spec: NodeSpec) -> dict[str, Any]:
    first, _ = spec.subnet.host(10)
    last, _ = spec.subnet.host(60)
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": f"{spec.name}-v4"},
        "spec": {
            "subnet": spec.subnet.v4,
            "ips": [f"{first.split('/')[0]}-{last.split('/')[0]}"],
            "gateway": spec.subnet.gateways[0],
            "nodeAffinity": {"matchLabels": {"kubernetes.io/hostname": spec.name}},
        },
    }


def workloads(nodes: Sequence[NodeSpec]) -> list[dict[str, Any]]:
    container = {"name": "app", "image": "registry.k8s.io/pause:3.10"}
    pools = '{"ipv4": [%s]}' % ", ".join(f'"{n.name}-v4"' for n in nodes)  # noqa: UP031
    web = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": APP_NAMESPACE},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}},
        },
    }
    db = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": APP_NAMESPACE},
        "spec": {
            "replicas": len(nodes),
            "serviceName": "db",
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}, "annotations": {"ipam.spidernet.io/ippool": pools}},
                "spec": {"containers": [container]},
            },
        },
    }
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP_NAMESPACE}}, web, db]


def ping_across_nodes(console: Console, cluster: SimCluster, pods: list[dict[str, Any]]) -> None:
    """Every pod pings every pod on another node, in each address family both have; all must answer."""
    failures = []
    for src in pods:
        netns = NetNs(src["metadata"]["annotations"]["sim.spiderpool.io/netns"])
        families = {":" in entry["ip"] for entry in src["status"]["podIPs"]}
        for dst in pods:
            if dst["spec"]["nodeName"] == src["spec"]["nodeName"]:
                continue
            cells = []
            for entry in [e for e in dst["status"]["podIPs"] if (":" in e["ip"]) in families]:
                ok = netns.ping(entry["ip"], count=1, wait_s=2)
                cells.append(f"{entry['ip']} {'ok' if ok else 'UNREACHABLE'}")
                if not ok:
                    failures.append(f"{src['metadata']['name']} -> {dst['metadata']['name']} {entry['ip']}")
            console.detail(
                f"{src['metadata']['name']} ({src['spec']['nodeName']}) -> {dst['metadata']['name']} "
                f"({dst['spec']['nodeName']}): {', '.join(cells)}"
            )
    if failures:
        raise DemoFailure("no ping reply for " + "; ".join(failures))


def show(console: Console, cluster: SimCluster, *args: str) -> str:
    console.detail(f"$ kubectl {' '.join(args)}")
    out = cluster.kubectl(*args).stdout
    console.detail(out)
    return out


def run_demo(
    opts: argparse.Namespace, console: Console, clusters: list[SimCluster], hold: Callable[[SimCluster], None]
) -> None:
    """Every step; the cluster is put in ``clusters`` the moment it exists (the caller closes it)."""
    with console.step("Checking prerequisites"):
        ensure_prerequisites(console, install=not opts.no_install)
    nodes = default_nodes(opts.nodes)
    cluster = SimCluster(SimOptions(nodes=nodes, keep_workdir=opts.keep_workdir))
    clusters.append(cluster)
    with console.step(
        f"Starting the simulated cluster: test API server, 2 controllers, {len(nodes)} nodes "
        "(agent + kubelet each), scheduler and workload controllers"
    ):
        cluster.start()
        console.detail(f"work directory: {cluster.paths.root}")
        console.detail(f"kubeconfig: {cluster.paths.kubeconfig}")
        console.detail(f"try: KUBECONFIG={cluster.paths.kubeconfig} kubectl get pods -A -o wide")
        console.detail(f"started in {cluster.startup_s:.1f}s; leader: {cluster.leader() or '(electing)'}")
    with console.step("The nodes"):
        show(console, cluster, "get", "nodes", "-o", "wide", "-L", "spiderpool.test/rack")
    with console.step("Pools with kubectl: the example defaults and one node-affine pool per node"):
        for name in POOL_FILES:
            console.detail(cluster.kubectl("apply", "-f", str(EXAMPLES / name)).stdout.strip())
        console.detail(cluster.apply([node_pool(n) for n in nodes]).stdout.strip())
        show(console, cluster, "get", "sp")
    with console.step("A Deployment (default pools) and a StatefulSet (node pools by annotation)"):
        console.detail(cluster.apply(workloads(nodes)).stdout.strip())
        names = [f"db-{i}" for i in range(len(nodes))]
        cluster.wait(lambda: len(running_pods(cluster)) == 3 + len(nodes), "every pod to run", 120)
        for name in names:
            pod = cluster.running_pod(APP_NAMESPACE, name)
            index = int(pod["spec"]["nodeName"].removeprefix("node"))
            ip = pod["status"]["podIPs"][0]["ip"]
            if not ip.startswith(f"172.32.{index}."):
                raise DemoFailure(f"{name} runs on {pod['spec']['nodeName']} but got {ip}")
        show(console, cluster, "get", "pods", "-n", APP_NAMESPACE, "-o", "wide")
        show(console, cluster, "get", "sp")
        show(console, cluster, "get", "se", "-n", APP_NAMESPACE)
        lease = ["get", "lease", "-n", "kube-system", "spiderpool-controller-leases"]
        console.detail(f"$ kubectl {' '.join(lease)} -o jsonpath='{{.spec.holderIdentity}}'")
        holder = cluster.kubectl(*lease, "-o", "jsonpath={.spec.holderIdentity}").stdout
        console.detail(f"leader: {holder}")
    with console.step("Ping between pods on different nodes"):
        ping_across_nodes(console, cluster, running_pods(cluster))
    hold(cluster)


def running_pods(cluster: SimCluster) -> list[dict[str, Any]]:
    pods = cluster.api.pods(APP_NAMESPACE)
    return [
        p for p in pods if (p.get("status") or {}).get("phase") == "Running" and p["status"].get("podIPs")
    ]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spiderpool-demo-cluster", description=__doc__.splitlines()[0])
    p.add_argument("--exit-after-demo", action="store_true", help="clean up and exit instead of waiting")
    p.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument("--keep-workdir", action="store_true", help="keep the work directory (logs)")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing Debian packages")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    if opts.nodes < 2:
        print(
            "spiderpool-demo-cluster: --nodes must be at least 2 (pods on different nodes ping)",
            file=sys.stderr,
        )
        return 2
    console = Console()
    deferred: list[int] = []

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signum)

    def defer(signum: int, _frame: FrameType | None) -> None:
        deferred.append(signum)

    def hold(cluster: SimCluster) -> None:
        if opts.exit_after_demo:
            return
        console.say()
        console.say("The cluster keeps running; point any kubectl at it, e.g.:")
        console.say(f"  KUBECONFIG={cluster.paths.kubeconfig} kubectl get pods -A -o wide")
        console.say(f"  KUBECONFIG={cluster.paths.kubeconfig} kubectl get sp,se -A")
        console.say("Press Ctrl-C to stop it and clean up.")
        while True:
            time.sleep(3600)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    clusters: list[SimCluster] = []
    try:
        try:
            run_demo(opts, console, clusters, hold)
        finally:
            for sig in previous:
                signal.signal(sig, defer)
            if clusters:
                console.say("[--] Cleaning up: processes, namespaces, work directory")
                clusters[0].close()
                console.say("      ok")
    except Interrupted as exc:
        console.say(f"Interrupted by {exc}: cleaned up.")
        return 0 if exc.signum == signal.SIGINT else 128 + exc.signum
    except (DemoFailure, ClusterError, ProcessError, OSError, TimeoutError) as exc:
        console.say(f"Demo FAILED: {exc}")
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if deferred:
        return 128 + deferred[0]
    console.say("Demo finished: every step succeeded and everything it made is gone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
