"""Wiring of the controller process: store, engine, resource service, gRPC server.

Start order matters for the single-writer rule: the store is opened first (it takes the
store file's exclusive lock), so a second controller on the same store stops before it
touches the first one's socket; then the socket path is claimed (refused if another
process serves it), before the engine starts, and claimed again when the server binds.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import structlog
from spiderpool_common.grpc_server import claim_listen, start_server

from spiderpool_controller.change_feed import NotifyingStore
from spiderpool_controller.domain.validation import ValidationSettings
from spiderpool_controller.grpcapi import ipam_servicer, resource_servicer
from spiderpool_controller.ipam_engine import EngineSettings, IpamEngine
from spiderpool_controller.metrics import ControllerMetrics
from spiderpool_controller.resource_service import ResourceService
from spiderpool_controller.settings import ControllerSettings
from spiderpool_controller.store.contract import Store
from spiderpool_controller.store.factory import open_store
from spiderpool_controller.store.instrumented import InstrumentedStore

log = structlog.get_logger(__name__)

SOCKET_MODE = 0o600  # a unix listen socket: only root (the agent, spiderpoolctl) may connect


@dataclass
class Controller:
    server: grpc.aio.Server
    address: str
    engine: IpamEngine
    store: Store
    metrics: ControllerMetrics

    async def stop(self, grace: float = 5.0) -> None:
        await self.server.stop(grace)
        await self.engine.close()
        await self.store.close()


async def start_controller(
    settings: ControllerSettings, wrap_store: Callable[[Store], Store] | None = None
) -> Controller:
    """Open the store, start the engine and serve gRPC; ``wrap_store`` lets a benchmark
    compose its latency model around the store (the production command never does)."""
    inner = open_store(settings.store)
    store = InstrumentedStore(wrap_store(inner) if wrap_store is not None else inner)
    try:
        claim_listen(settings.listen)  # refuse a served socket before starting anything
    except BaseException:
        await store.close()
        raise
    engine = IpamEngine(
        store,
        EngineSettings(
            required_families=settings.required_families,
            max_allocated_ips=settings.max_allocated_ips,
            conflict_quarantine_s=settings.conflict_quarantine_seconds,
        ),
    )
    await engine.start()
    resources = ResourceService(
        NotifyingStore(store, engine), ValidationSettings(enable_ipv4=True, enable_ipv6=True)
    )

    metrics = ControllerMetrics(engine, store)

    def register(server: grpc.aio.Server) -> list[str]:
        return [
            *ipam_servicer.register(
                server,
                engine,
                metrics,
                ipam_servicer.Detection(
                    ip_conflict=settings.enable_ip_conflict_detection,
                    gateway=settings.enable_gateway_detection,
                ),
            ),
            *resource_servicer.register(server, resources),
        ]

    try:
        server, address = await start_server(settings.listen, register, socket_mode=SOCKET_MODE)
    except BaseException:
        await engine.close()
        await store.close()  # gives the store's lock up: this process will not serve
        raise
    metrics_port = metrics.serve(settings.metrics_listen) if settings.metrics_listen else None
    log.info(
        "controller_serving",
        address=address,
        store=settings.store,
        metrics_port=metrics_port,
        ip_conflict_detection=settings.enable_ip_conflict_detection,
        gateway_detection=settings.enable_gateway_detection,
    )
    return Controller(server, address, engine, store, metrics)


async def run(settings: ControllerSettings) -> None:
    controller = await start_controller(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("controller_stopping")
    await controller.stop()
