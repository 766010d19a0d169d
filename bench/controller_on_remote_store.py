#!/usr/bin/env python3
"""The real controller (``start_controller``: engine, group commit, gRPC) on the bench store
server instead of a file of its own, for the allocation benchmark's group-commit side.

``start_controller`` opens the store its settings name and hands it to ``wrap_store``; here
the wrapper puts a ``RemoteStore`` in its place (the controller's ``InstrumentedStore`` still
wraps whatever comes back), and the file it opened (``--unused-db``, never written) is
closed at once. Everything else is the production wiring: same engine, same gRPC server,
logging as the command configures it (JSON, info) into ``--log``.

Prints one JSON line ``{"event": "controller_serving", "address": ...}`` when serving; stops
on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from remote_store import RemoteStore
from spiderpool_common.logging import configure_logging
from spiderpool_controller.server import start_controller
from spiderpool_controller.settings import ControllerSettings
from spiderpool_controller.store.contract import Store


async def run(args: argparse.Namespace) -> None:
    remote = await RemoteStore.connect(args.store_socket)
    closing: list[asyncio.Task[None]] = []

    def use_remote(unused: Store) -> Store:
        closing.append(asyncio.get_running_loop().create_task(unused.close()))
        return remote

    settings = ControllerSettings(
        store=f"sqlite:///{args.unused_db.resolve()}",
        listen=f"unix:{args.listen}",
        log_level="info",
        ip_reuse_delay_seconds=args.ip_reuse_delay_seconds,
    )
    controller = await start_controller(settings, wrap_store=use_remote)
    await asyncio.gather(*closing)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"event": "controller_serving", "address": controller.address}), flush=True)
    await stop.wait()
    await controller.stop()  # drains the engine, then closes the RemoteStore


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--store-socket", required=True, type=Path, help="the bench store server's socket")
    p.add_argument("--listen", required=True, type=Path, help="unix socket to serve gRPC on")
    p.add_argument(
        "--unused-db", required=True, type=Path, help="the file start_controller opens and we close"
    )
    p.add_argument("--log", required=True, type=Path, help="the controller's log file")
    p.add_argument(
        "--ip-reuse-delay-seconds", type=float, default=0.0, help="the controller's setting of that name"
    )
    args = p.parse_args(argv)
    with args.log.open("a") as log:
        configure_logging("info", "json", stream=log)
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
