"""A Service for the controller replicas: `python -m tests.simcluster.service_proxy --listen A --backend B
...`.

In a cluster the agents reach the controllers through a Service (`spiderpool-controller`), which kube-proxy
turns into a per-connection choice among the ready endpoints; a replica that is gone stops receiving new
connections. This process plays that part for the simulated cluster: it listens on unix socket paths
(reachable from every node's namespace: paths cross network namespaces) or on 127.0.0.1 ports (the API
server's calls to the webhooks), and splices every accepted connection to one backend, round robin, skipping
a backend that refuses the connection (a killed replica). A paused (SIGSTOPped) replica still accepts
connections, as a stalled pod does until its readiness probe fails: that case is the callers' deadline to
handle. It also serves listening sockets it inherits (`--listen-fd`): the harness makes them inside each
node's network namespace, where the node's /etc/hosts sends the Service's name.

Addresses are `unix:/path` or `HOST:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("service-proxy")
CONNECT_TIMEOUT_S = 1.0


async def _open(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.startswith("unix:"):
        return await asyncio.open_unix_connection(address[len("unix:") :])
    host, _, port = address.rpartition(":")
    return await asyncio.open_connection(host.strip("[]"), int(port))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class ServiceProxy:
    def __init__(self, backends: Sequence[str]) -> None:
        self.backends = list(backends)
        self._next = 0

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.backends)):
            backend = self.backends[self._next % len(self.backends)]
            self._next += 1
            try:
                return await asyncio.wait_for(_open(backend), CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError):
                continue
        return None

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream = await self.connect()
        if upstream is None:
            log.warning("no backend accepts a connection")
            client_w.close()
            return
        up_r, up_w = upstream
        await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))

    async def serve(
        self, listens: Sequence[str], ready_file: Path | None = None, fds: Sequence[int] = ()
    ) -> None:
        servers = [await asyncio.start_server(self.handle, sock=socket.socket(fileno=fd)) for fd in fds]
        for address in listens:
            if address.startswith("unix:"):
                path = Path(address[len("unix:") :])
                path.unlink(missing_ok=True)
                servers.append(await asyncio.start_unix_server(self.handle, str(path)))
            else:
                host, _, port = address.rpartition(":")
                servers.append(await asyncio.start_server(self.handle, host, int(port)))
        if ready_file is not None:
            ready_file.parent.mkdir(parents=True, exist_ok=True)
            ready_file.write_text(str(os.getpid()))
        try:
            await asyncio.Event().wait()
        finally:
            for server in servers:
                server.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tests.simcluster.service_proxy", description=__doc__.splitlines()[0]
    )
    p.add_argument("--listen", action="append", default=[], help="unix:/path or HOST:PORT (repeatable)")
    p.add_argument(
        "--listen-fd",
        type=int,
        action="append",
        default=[],
        metavar="FD",
        help="also serve this inherited listening TCP socket (repeatable; e.g. made in a node's namespace)",
    )
    p.add_argument("--backend", action="append", required=True, help="unix:/path or HOST:PORT (repeatable)")
    p.add_argument("--ready-file", type=Path, help="written once every listener is open")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )

    async def run() -> None:
        task = asyncio.create_task(
            ServiceProxy(args.backend).serve(args.listen, args.ready_file, args.listen_fd)
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
