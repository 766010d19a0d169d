"""`python -m tests.kubeapi` (from the repository root): run the test API server until SIGINT/SIGTERM.

Prints the server URL and the kubeconfig path (and writes the in-cluster files with `--in-cluster DIR`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys
from pathlib import Path

from .server import KubeApiServer, ServerConfig


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.kubeapi", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument(
        "--listen-fd",
        type=int,
        action="append",
        default=[],
        metavar="FD",
        help="serve this inherited listening TCP socket instead of binding --host/--port (repeatable; "
        "e.g. sockets made in other network namespaces); the URL names --host and the first one's port",
    )
    p.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    p.add_argument("--kubeconfig", type=Path, help="also write the kubeconfig here")
    p.add_argument(
        "--state-dir", type=Path, help="where certificates and the kubeconfig go (default: a temp dir)"
    )
    p.add_argument("--in-cluster", type=Path, help="write token, ca.crt and namespace into this directory")
    p.add_argument("--history", type=int, default=10_000, help="watch events kept (older RVs get 410)")
    p.add_argument("--rbac", action="store_true", help="enforce RBAC")
    p.add_argument("--token", help="the admin bearer token (default: random)")
    p.add_argument("--no-workload-status", action="store_true", help="do not fake Deployment/Job... status")
    p.add_argument(
        "--service-url",
        action="append",
        default=[],
        metavar="NS/NAME=URL",
        help="where a webhook service is reachable",
    )
    return p.parse_args(argv)


async def _run(args: argparse.Namespace) -> None:
    services = {}
    for spec in args.service_url:
        key, _, url = spec.partition("=")
        ns, _, name = key.partition("/")
        services[(ns, name)] = url
    config = ServerConfig(
        host=args.host,
        port=args.port,
        tls=not args.http,
        state_dir=args.state_dir,
        history_size=args.history,
        rbac_enforce=args.rbac,
        fake_workload_status=not args.no_workload_status,
        service_urls=services,
        sockets=tuple(socket.socket(fileno=fd) for fd in args.listen_fd),
    )
    if args.token:
        config.admin_token = args.token
    server = KubeApiServer(config)
    await server.start()
    info = {"url": server.url, "kubeconfig": str(server.kubeconfig_path)}
    if args.kubeconfig:
        server.write_kubeconfig(args.kubeconfig)
        info["kubeconfig"] = str(args.kubeconfig)
    if args.in_cluster:
        info["env"] = server.write_in_cluster(args.in_cluster)  # type: ignore[assignment]
    print(json.dumps(info), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(_parse(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
