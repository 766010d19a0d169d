"""``spiderpool-agent``: parse flags, configure logging, serve until SIGTERM/SIGINT.

Exit codes: 0 stopped by a signal, 1 could not start (one line on stderr: the socket is
served by another process, the state directory is unusable), 2 bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from spiderpool_common.addresses import DEFAULT_CONTROLLER
from spiderpool_common.errors import SpiderpoolError
from spiderpool_common.kube.config import KubeConfigError
from spiderpool_common.logging import configure_logging

from spiderpool_agent.del_spool import SpoolError
from spiderpool_agent.server import run_agent
from spiderpool_agent.settings import DEFAULT_SOCKET, DEFAULT_STATE_DIR, load_settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spiderpool-agent",
        description="Spiderpool node agent: the CNI service for the spiderpool and coordinator plugins.",
    )
    p.add_argument(
        "--controller", help=f"controller address, unix:PATH or HOST:PORT (default {DEFAULT_CONTROLLER})"
    )
    p.add_argument("--socket", help=f"unix socket of the CNI service (default {DEFAULT_SOCKET})")
    p.add_argument("--node", help="this node's name (default: SPIDERPOOL_NODE_NAME or the host name)")
    p.add_argument(
        "--node-labels",
        dest="node_labels",
        help="this node's labels for pools' nodeAffinity, k=v,k2=v2 (default none)",
    )
    p.add_argument(
        "--state-dir", dest="state_dir", help=f"durable state directory (default {DEFAULT_STATE_DIR})"
    )
    p.add_argument(
        "--spool-dir",
        dest="spool_dir",
        help="where the shims spool DELs made while the agent is away (default STATE_DIR/spool; "
        "the CNI config's del_spool_dir must name the same directory)",
    )
    p.add_argument(
        "--spool-replay-interval",
        dest="spool_replay_interval",
        help="seconds between replays of the DEL spool (default 10; also at start, before serving)",
    )
    p.add_argument(
        "--pod-source",
        dest="pod_source",
        help="where an ADD's pod facts come from: cni-args (the network config's args.cni, "
        "the default) or kubernetes (the API server; for an agent in a cluster)",
    )
    p.add_argument(
        "--kubeconfig",
        help="pod source kubernetes: a kubeconfig file (default: the in-cluster ServiceAccount)",
    )
    p.add_argument(
        "--cluster-network",
        dest="cluster_network",
        help="the Multus cluster network ([namespace/]name) of eth0 when a pod names no "
        "default network (default: MULTUS_CLUSTER_NETWORK, else none)",
    )
    p.add_argument(
        "--kube-timeout", dest="kube_timeout", help="seconds one Kubernetes API read may take (default 5)"
    )
    p.add_argument(
        "--kube-sync-timeout",
        dest="kube_sync_timeout",
        help="seconds an ADD waits for the first Kubernetes cache sync before code 11 (default 10)",
    )
    tls = p.add_argument_group("mutual TLS to a controller on HOST:PORT (all three files, or none)")
    for flag, what in (
        ("cert-file", "PEM certificate of this agent"),
        ("key-file", "PEM private key"),
        ("ca-file", "PEM CA of the controller's certificate"),
        ("server-name", "the name the controller's certificate carries"),
    ):
        tls.add_argument(
            f"--controller-tls-{flag}", dest=f"controller_tls_{flag.replace('-', '_')}", help=what
        )
    p.add_argument(
        "--metrics-listen",
        dest="metrics_listen",
        help="HOST:PORT to serve Prometheus /metrics on (default: off; upstream's agent uses 5711)",
    )
    p.add_argument("--config", help="optional YAML file of settings (flags and SPIDERPOOL_* env win)")
    p.add_argument("--log-level", dest="log_level", help="debug, info, warning, error (default info)")
    p.add_argument("--log-format", dest="log_format", help="json or console (default json)")
    p.add_argument(
        "--coordinator-config-ttl",
        dest="coordinator_config_ttl",
        help="seconds a read of the SpiderCoordinator 'default' is reused (default 2; 0: every call)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k != "config"}
    try:
        settings = load_settings(flags, config_file=args.config)
    except (OSError, ValueError) as exc:
        print(f"spiderpool-agent: {exc}", file=sys.stderr)
        return 2
    state_dir = Path(settings.state_dir)
    if state_dir.exists() and not state_dir.is_dir():
        print(f"spiderpool-agent: setting state_dir: {state_dir} is not a directory", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_agent(settings, stop)

    try:
        asyncio.run(serve())
    except (SpoolError, KubeConfigError) as exc:
        # An unsafe spool directory, or no usable Kubernetes client configuration: refuse to
        # start, saying which and why.
        print(f"spiderpool-agent: {exc}", file=sys.stderr)
        return 2
    except (OSError, SpiderpoolError) as exc:  # the socket is taken, the state dir unusable
        print(f"spiderpool-agent: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
