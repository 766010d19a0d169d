"""Wiring of the controller process: store, engine, resource service, gRPC server.

Embedded mode: start order matters for the single-writer rule: the store is opened first
(it takes the store file's exclusive lock), so a second controller on the same store
stops before it touches the first one's socket; then the socket path is claimed (refused
if another process serves it), before the engine starts, and claimed again when the
server binds.

Cluster mode (``--store kubernetes://``): the single writer is whoever holds the Lease
(``cluster_mode.ClusterController``); every replica serves gRPC at once, a standby
forwarding IPAM calls to the leader (``grpcapi.leader_forwarding``), with mutual TLS when
the certificate files are given.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import structlog
from spiderpool_common.channels import open_channel
from spiderpool_common.grpc_server import claim_listen, start_server
from spiderpool_common.tls import ReloadingServerCredentials, TlsFiles

from spiderpool_controller.admin_service import AdminService
from spiderpool_controller.auto_pool_manager import AutoPoolSettings
from spiderpool_controller.change_feed import NotifyingStore
from spiderpool_controller.cluster_facts import ApiFacts
from spiderpool_controller.cluster_mode import ClusterController, ClusterOptions, LeaderContext, Reconciler
from spiderpool_controller.coordinator_reconciler import CoordinatorReconciler
from spiderpool_controller.domain.gc_policy import GcSettings
from spiderpool_controller.engine_slot import EngineSlot
from spiderpool_controller.grpcapi import admin_servicer, ipam_servicer, resource_servicer
from spiderpool_controller.grpcapi.leader_forwarding import LeaderForwarding
from spiderpool_controller.ipam_engine import EngineSettings, IpamEngine
from spiderpool_controller.leader import LeaseTiming
from spiderpool_controller.metrics import ControllerMetrics
from spiderpool_controller.multus_reconciler import MultusConfigReconciler
from spiderpool_controller.resource_service import ResourceService
from spiderpool_controller.settings import ControllerSettings
from spiderpool_controller.store.contract import Store
from spiderpool_controller.store.factory import open_store
from spiderpool_controller.store.fenced import FencedStore
from spiderpool_controller.store.instrumented import InstrumentedStore
from spiderpool_controller.subnet_reconciler import SubnetMachinery, cluster_reconciler, start_embedded
from spiderpool_controller.webhook import WebhookServer
from spiderpool_controller.webhook.nad_owners import KubeNadOwners

log = structlog.get_logger(__name__)

SOCKET_MODE = 0o600  # a unix listen socket: only root (the agent, spiderpoolctl) may connect


@dataclass
class Controller:
    server: grpc.aio.Server
    address: str
    slot: EngineSlot
    store: Store
    metrics: ControllerMetrics
    cluster: ClusterController | None = None
    forwarding: LeaderForwarding | None = None
    subnets: SubnetMachinery | None = None  # embedded mode: subnet status and auto pools
    webhook: WebhookServer | None = None

    @property
    def engine(self) -> IpamEngine:
        return self.slot.get()

    async def stop(self, grace: float = 5.0) -> None:
        await self.server.stop(grace)
        if self.subnets is not None and self.slot.engine is not None:
            await self.subnets.stop(self.slot.engine)
        if self.webhook is not None:
            await self.webhook.stop()
        await self.metrics.close()
        if self.cluster is not None:
            await self.cluster.stop()
        elif self.slot.engine is not None:
            await self.slot.engine.close()
        if self.forwarding is not None:
            await self.forwarding.close()
        await self.store.close()


def _detection(settings: ControllerSettings) -> ipam_servicer.Detection:
    return ipam_servicer.Detection(
        ip_conflict=settings.enable_ip_conflict_detection, gateway=settings.enable_gateway_detection
    )


def _engine_settings(settings: ControllerSettings) -> EngineSettings:
    return EngineSettings(
        required_families=settings.required_families,
        max_allocated_ips=settings.max_allocated_ips,
        conflict_quarantine_s=settings.conflict_quarantine_seconds,
        ip_reuse_delay_s=settings.ip_reuse_delay_seconds,
        spider_subnet=settings.enable_spider_subnet,
    )


def _auto_pool_settings(settings: ControllerSettings) -> AutoPoolSettings:
    return AutoPoolSettings(
        default_flexible_ips=settings.auto_pool_default_flexible_ips,
        wait_s=settings.auto_pool_wait_seconds,
        families=settings.required_families,
    )


def _tls(settings: ControllerSettings) -> TlsFiles | None:
    files = settings.tls_files
    return TlsFiles(*files).validate() if files is not None else None


async def start_controller(
    settings: ControllerSettings, wrap_store: Callable[[Store], Store] | None = None
) -> Controller:
    """Open the store, start the engine and serve gRPC; ``wrap_store`` lets a benchmark
    compose its latency model around the store (the production command never does)."""
    if settings.cluster_mode:
        return await start_cluster_controller(settings)
    inner = open_store(settings.store)
    store = InstrumentedStore(wrap_store(inner) if wrap_store is not None else inner)
    try:
        claim_listen(settings.listen)  # refuse a served socket before starting anything
    except BaseException:
        await store.close()
        raise
    engine = IpamEngine(store, _engine_settings(settings))
    await engine.start()
    subnets = (
        start_embedded(store, engine, _auto_pool_settings(settings), auto_pools=settings.auto_pools)
        if settings.enable_spider_subnet
        else None
    )
    resources = ResourceService(NotifyingStore(store, engine), settings.validation)

    slot = EngineSlot(engine)
    metrics = ControllerMetrics(slot, store, objects=store)
    admin = AdminService(slot, store)

    def register(server: grpc.aio.Server) -> list[str]:
        return [
            *ipam_servicer.register(server, slot, metrics, _detection(settings)),
            *resource_servicer.register(server, resources),
            *admin_servicer.register(server, admin),
        ]

    tls = _tls(settings)
    credentials = ReloadingServerCredentials(tls).credentials() if tls is not None else None
    try:
        server, address = await start_server(
            settings.listen, register, socket_mode=SOCKET_MODE, credentials=credentials
        )
    except BaseException:
        if subnets is not None:
            await subnets.stop(engine)
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
    return Controller(server, address, slot, store, metrics, subnets=subnets)


def leader_reconcilers(settings: ControllerSettings) -> tuple[tuple[str, Reconciler], ...]:
    """The leader-only loops beside the pool watcher and GC: Multus configs, coordinator CIDRs,
    and (with the SpiderSubnet feature) subnet status and the workloads' auto pools."""

    async def multus_configs(ctx: LeaderContext) -> None:
        await MultusConfigReconciler(ctx.rest).run()

    async def coordinator_cidrs(ctx: LeaderContext) -> None:
        await CoordinatorReconciler(
            ctx.rest,
            ctx.store,
            cni_config_dir=settings.cni_config_dir or None,
            cilium_configmap=settings.cilium_configmap_namespace_name,
        ).run()

    loops: tuple[tuple[str, Reconciler], ...] = (
        ("multus-configs", multus_configs),
        ("coordinator-cidrs", coordinator_cidrs),
    )
    if settings.enable_spider_subnet:
        subnets = cluster_reconciler(_auto_pool_settings(settings), auto_pools=settings.auto_pools)
        loops += (("subnets", subnets),)
    return loops


async def start_cluster_controller(settings: ControllerSettings) -> Controller:
    """Every replica: gRPC (forwarding to the leader while standing by) and the election."""
    slot = EngineSlot()
    suffix = secrets.token_hex(4)
    identity = f"{settings.pod_name or socket.gethostname()}_{suffix}"
    tls = _tls(settings)
    options = ClusterOptions(
        identity=identity,
        advertise=settings.advertise or settings.listen,
        lease_namespace=settings.pod_namespace,
        lease_name=settings.leader_lease_name,
        kubeconfig=settings.kubeconfig or None,
        timing=LeaseTiming(
            settings.leader_lease_duration, settings.leader_renew_deadline, settings.leader_retry_period
        ),
        engine=_engine_settings(settings),
        gc=GcSettings(
            enabled=settings.gc_enabled,
            terminating_on_ready_node=settings.gc_terminating_pod_on_ready_node,
            terminating_on_not_ready_node=settings.gc_terminating_pod_on_not_ready_node,
            running_with_empty_pod_ips=settings.gc_running_pod_on_empty_pod_ips,
            additional_grace_s=settings.gc_additional_grace_seconds,
        ),
        gc_interval_s=settings.gc_interval_seconds,
        reconcilers=leader_reconcilers(settings),
    )
    claim_listen(settings.listen)
    cluster = ClusterController(options, slot)
    await cluster.start()
    assert cluster.resource_store is not None
    # spiderpoolctl's writes (status counts and finalizers included) are the leader's, fenced.
    resources = ResourceService(FencedStore(cluster.resource_store, cluster.may_write), settings.validation)
    metrics = ControllerMetrics(
        slot,
        lambda: cluster.stores,
        leader_changes=lambda: cluster.leader_changes,
        objects=cluster.resource_store,
    )
    facts = ApiFacts(slot, lambda: cluster.rest)
    admin = AdminService(slot, cluster.resource_store, cluster=lambda: facts)
    forwarding = LeaderForwarding(
        cluster.is_leader,
        cluster.leader_target,
        lambda target: open_channel(target, tls, settings.tls_server_name),
    )

    def register(server: grpc.aio.Server) -> list[str]:
        return [
            *ipam_servicer.register(server, slot, metrics, _detection(settings)),
            *resource_servicer.register(server, resources),
            *admin_servicer.register(server, admin),
        ]

    credentials = ReloadingServerCredentials(tls).credentials() if tls is not None else None
    try:
        server, address = await start_server(
            settings.listen,
            register,
            socket_mode=SOCKET_MODE,
            credentials=credentials,
            interceptors=[forwarding],
        )
    except BaseException:
        await cluster.stop()
        raise
    webhook = None
    if settings.webhook_listen:
        assert cluster.rest is not None
        webhook = WebhookServer.from_settings(
            settings.webhook_listen,
            settings.webhook_cert_file,
            settings.webhook_key_file,
            cluster.resource_store,
            settings.validation,
            nad_owners=KubeNadOwners(cluster.rest),
        )
        try:
            await webhook.start()
        except BaseException:
            await server.stop(0)
            await cluster.stop()
            raise
    metrics_port = metrics.serve(settings.metrics_listen) if settings.metrics_listen else None
    log.info(
        "controller_serving",
        address=address,
        store=settings.store,
        identity=identity,
        metrics_port=metrics_port,
        webhook=webhook.url if webhook is not None else None,
    )
    store = cluster.resource_store
    return Controller(
        server, address, slot, store, metrics, cluster=cluster, forwarding=forwarding, webhook=webhook
    )


async def run(settings: ControllerSettings) -> None:
    controller = await start_controller(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("controller_stopping")
    await controller.stop()
