"""Wiring of the agent: controller client, release journal, IPAM and coordinator handlers,
the DEL spool, gRPC server.

``Agent`` is what ``main`` runs and what component tests start in-process: ``start``
loads the journal, replays the DEL spool once (before the socket exists, so before the
agent reports ready), serves the CNI service on the unix socket (mode 0600, reflection and
health on) and starts the two replay loops (journal, spool); ``stop`` stops accepting,
drains in-flight calls for the grace period, stops the loops and closes the controller
channel.

With ``pod_source: kubernetes`` the pod facts come from ``KubernetesPodContext``: ``start``
loads the Kubernetes client configuration first (a bad one stops the agent with a message)
and starts its informers without waiting for them, so the CNI service is up at once and
answers STATUS 50 until they have synced (a spooled DEL replayed meanwhile reads its pod
directly); ``stop`` stops them and closes the client.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, Protocol

import grpc
import structlog
from spiderpool.agent.v1 import cni_pb2_grpc
from spiderpool_common.grpc_server import start_server
from spiderpool_common.kube.config import api_client, user_agent
from spiderpool_common.kube.rest import KubeRest
from spiderpool_coordinator.host_records import HostRecords

from spiderpool_agent import netns_probe
from spiderpool_agent.cni_servicer import SERVICE_NAME, CniServicer
from spiderpool_agent.controller_client import GrpcControllerClient
from spiderpool_agent.coordinator_handlers import CoordinatorHandlers
from spiderpool_agent.coordinator_source import CoordinatorSource, ObjectReader
from spiderpool_agent.del_spool import QUARANTINE, DelSpool
from spiderpool_agent.ipam_handlers import ControllerClient, IpamHandlers, release_via
from spiderpool_agent.kube_pod_context import KubernetesPodContext
from spiderpool_agent.metrics import AgentMetrics
from spiderpool_agent.pod_context import CniArgsContext, PodContextSource
from spiderpool_agent.release_journal import ReleaseJournal
from spiderpool_agent.settings import POD_SOURCE_KUBERNETES, AgentSettings

log = structlog.get_logger(__name__)

SOCKET_MODE = 0o600
COORDINATOR_RECORDS = "coordinator"  # under the state directory: what each ADD left on the node


class ControllerBackend(ControllerClient, ObjectReader, Protocol):
    """What the agent needs of the controller: the IPAM calls, object reads (the coordinator's
    configuration) and closing the connection (``GrpcControllerClient``)."""

    async def close(self) -> None: ...


class Agent:
    def __init__(self, settings: AgentSettings, controller: ControllerBackend | None = None) -> None:
        """``controller``: what serves the agent's allocations and object reads instead of the
        controller at ``settings.controller`` (a benchmark's baseline); closed with the agent."""
        self.settings = settings
        self.controller: ControllerBackend = controller or GrpcControllerClient(
            settings.controller,
            timeout=settings.controller_timeout,
            tls=settings.controller_tls,
            server_name=settings.controller_tls_server_name,
        )
        self.journal = ReleaseJournal(
            Path(settings.state_dir),
            release_via(self.controller),
            initial_backoff=settings.replay_initial_backoff,
            max_backoff=settings.replay_max_backoff,
        )
        netns_check = netns_probe.check if settings.check_netns else (lambda _path: True)
        self.kube_context: KubernetesPodContext | None = None
        self._kube_client: Any = None
        context: PodContextSource = CniArgsContext(settings.node_label_map)
        if settings.pod_source == POD_SOURCE_KUBERNETES:
            self.kube_context = KubernetesPodContext(
                settings.node_name,
                cluster_network=settings.cluster_network,
                sync_timeout=settings.kube_sync_timeout,
                lookup_timeout=settings.kube_timeout,
            )
            context = self.kube_context
        self.handlers = IpamHandlers(
            self.controller,
            self.journal,
            settings.node_name,
            netns_exists=netns_check,
            context=context,
        )
        self.coordinator = CoordinatorHandlers(
            CoordinatorSource(self.controller, ttl=settings.coordinator_config_ttl),
            netns_exists=netns_check,
            context=context,
            records=HostRecords(Path(settings.state_dir) / COORDINATOR_RECORDS),
        )
        self.spool = DelSpool(
            Path(settings.del_spool_dir),
            {"ipam": self.handlers.delete, "coordinator": self.coordinator.delete},
            interval=settings.spool_replay_interval,
        )
        self.metrics = AgentMetrics(lambda: len(self.journal.pending()), self._spool_backlog)
        self._server: grpc.aio.Server | None = None
        self.metrics_port: int | None = None  # the bound /metrics port when --metrics-listen is set
        self._replay: asyncio.Task[None] | None = None
        self._spool_loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.kube_context is not None:
            self._kube_client = await api_client(
                self.settings.kubeconfig or None, user_agent("spiderpool-agent", self.settings.node_name)
            )
            await self.kube_context.start(KubeRest(self._kube_client, timeout_s=self.settings.kube_timeout))
        await self.journal.load()
        await asyncio.to_thread(self.spool.prepare)
        spooled = await self.spool.replay_once()
        servicer = CniServicer(
            self.handlers, self.coordinator, settle=self.spool.settle, metrics=self.metrics
        )

        def register(server: grpc.aio.Server) -> list[str]:
            cni_pb2_grpc.add_CniServiceServicer_to_server(servicer, server)
            return [SERVICE_NAME]

        self._server, bound = await start_server(
            "unix:" + self.settings.socket, register, socket_mode=SOCKET_MODE
        )
        self._replay = asyncio.create_task(self.journal.run(), name="release-journal-replay")
        self._spool_loop = asyncio.create_task(self.spool.run(), name="del-spool-replay")
        # A shim that found no socket after the first pass spooled its DEL: replay it now, not a
        # whole interval later.
        self.spool.wake()
        if self.settings.metrics_listen:
            self.metrics_port = self.metrics.serve(self.settings.metrics_listen)
        log.info(
            "agent_started",
            socket=bound,
            controller=self.settings.controller,
            node=self.settings.node_name,
            pod_source=self.settings.pod_source,
            pending_releases=len(self.journal.pending()),
            spooled_dels_replayed=len(spooled.done),
            spooled_dels_pending=len(spooled.kept),
            spool=str(self.spool.directory),
            metrics_port=self.metrics_port,
        )

    def _spool_backlog(self) -> tuple[int, int]:
        quarantine = self.spool.directory / QUARANTINE
        try:
            quarantined = sum(1 for _ in quarantine.iterdir())
        except OSError:
            quarantined = 0
        return len(self.spool.pending()), quarantined

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(self.settings.shutdown_grace)
            self._server = None
        for task in (self._replay, self._spool_loop):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._replay = self._spool_loop = None
        await asyncio.to_thread(self.metrics.close)
        if self.kube_context is not None:
            await self.kube_context.stop()
        if self._kube_client is not None:
            await self._kube_client.close()
            self._kube_client = None
        await self.controller.close()
        log.info("agent_stopped")


async def run_agent(settings: AgentSettings, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set, then shut down gracefully."""
    agent = Agent(settings)
    await agent.start()
    try:
        await stop.wait()
    finally:
        await agent.stop()
