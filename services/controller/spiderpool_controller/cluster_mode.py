"""The controller in a cluster: leader election decides whether this replica runs the engine.

Owns the life cycle around the engine in the Kubernetes mode. Every replica serves gRPC
(a standby forwards IPAM calls to the leader) and the webhooks; only the leader, from the
moment it wins the Lease, builds the engine on the Kubernetes store behind the write fence
(``FencedStore`` gated by ``LeaderElector.may_write``), loads every pool, and runs the
reconcilers: the pool watcher (pools and reserved IPs written with kubectl), IP garbage
collection and ``ClusterOptions.reconcilers``. Their writes outside the Store
(NetworkAttachmentDefinitions, Events) go through the same gate (``LeaderContext.rest``, a
``FencedRest``), and the gate is checked again as each write leaves the HTTP client
(``write_fence``, installed on the one client every part shares): the Lease is the only
thing the leader writes unfenced. When it loses the Lease it drops all of that (the next
leader loads the state afresh from the API server, where every acknowledged allocation is).
A replica that shuts down gracefully gives the Lease up so that a standby takes over within
a retry period.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog
from spiderpool_common.kube import write_fence
from spiderpool_common.kube.config import api_client, user_agent
from spiderpool_common.kube.rest import KubeRest

from spiderpool_controller.domain.gc_policy import GcSettings
from spiderpool_controller.engine_slot import EngineSlot
from spiderpool_controller.fenced_rest import FencedRest
from spiderpool_controller.ip_gc import IpGarbageCollector
from spiderpool_controller.ipam_engine import EngineSettings, IpamEngine
from spiderpool_controller.leader import LeaderElector, LeaseTiming
from spiderpool_controller.pool_watcher import PoolWatcher
from spiderpool_controller.store.contract import Store
from spiderpool_controller.store.fenced import FencedStore
from spiderpool_controller.store.instrumented import InstrumentedStore
from spiderpool_controller.store.kubernetes import KubernetesStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LeaderContext:
    """What a reconciler gets while this replica leads (it is cancelled when leadership ends)."""

    engine: IpamEngine
    rest: KubeRest  # the API server, plain JSON (core and other resources), fenced like the store
    store: Store  # the spiderpool custom resources, fenced: writes only while leading


Reconciler = Callable[[LeaderContext], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ClusterOptions:
    identity: str  # unique per replica (pod name + a random suffix)
    advertise: str  # HOST:PORT where agents and standbys reach this replica's gRPC
    lease_namespace: str
    lease_name: str = "spiderpool-controller-leases"  # upstream's Lease name
    kubeconfig: str | None = None  # None: in-cluster configuration
    timing: LeaseTiming = field(default_factory=LeaseTiming)
    engine: EngineSettings = field(default_factory=EngineSettings)
    gc: GcSettings = field(default_factory=GcSettings)
    gc_interval_s: float = 600.0
    # Leader-only loops besides the pool watcher and GC (Multus configs, subnets, ...).
    reconcilers: tuple[tuple[str, Reconciler], ...] = ()


class ClusterController:
    def __init__(self, options: ClusterOptions, slot: EngineSlot) -> None:
        self.options = options
        self.slot = slot
        self.client: Any = None
        self.rest: KubeRest | None = None
        self.elector: LeaderElector | None = None
        self.stores: list[InstrumentedStore] = []
        # Every replica's view of the objects (webhooks, admin, metrics); written only through
        # FencedStore(resource_store, may_write) (spiderpoolctl's writes, forwarded to the leader).
        self.resource_store: KubernetesStore | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._elector_task: asyncio.Task[None] | None = None
        self.leader_changes = 0

    async def start(self) -> None:
        self.client = await api_client(
            self.options.kubeconfig, user_agent("spiderpool-controller", self.options.identity)
        )
        write_fence.install(self.client)  # the fenced store's gate, checked again as each write leaves
        self.rest = KubeRest(self.client)
        self.resource_store = KubernetesStore(api_client=self.client)
        self.elector = LeaderElector(
            self.rest,
            namespace=self.options.lease_namespace,
            name=self.options.lease_name,
            identity=self.options.identity,
            address=self.options.advertise,
            timing=self.options.timing,
        )
        self._elector_task = asyncio.create_task(
            self.elector.run(self._lead, self._step_down), name="leader-election"
        )
        log.info("cluster_mode_started", identity=self.options.identity, lease=self.options.lease_name)

    def may_write(self) -> bool:
        """The write fence's gate: this replica holds the Lease and renewed it in time."""
        return self.elector is not None and self.elector.may_write()

    def is_leader(self) -> bool:
        return self.elector is not None and self.elector.may_write() and self.slot.engine is not None

    def leader_target(self) -> str:
        if self.elector is None or self.elector.leader_identity == self.options.identity:
            return ""
        return self.elector.leader_address

    async def _lead(self) -> None:
        """Won the Lease: start the engine (retrying while the lease holds) and the reconcilers."""
        assert self.elector is not None and self.rest is not None
        elector = self.elector
        store = InstrumentedStore(FencedStore(KubernetesStore(api_client=self.client), elector.may_write))
        rest = FencedRest(self.client, elector.may_write)
        self.stores = [store]
        engine = IpamEngine(store, self.options.engine)
        backoff = 0.2
        while True:
            try:
                await engine.start()
                break
            except Exception as exc:  # the API server failed us: try again while we lead
                log.warning("engine_start_failed", error=str(exc), backoff=backoff)
                await engine.close()
                if not elector.may_write():
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                engine = IpamEngine(store, self.options.engine)
        gc = IpGarbageCollector(
            engine, rest, store, settings=self.options.gc, interval_s=self.options.gc_interval_s
        )
        context = LeaderContext(engine, rest, store)
        self._tasks = [
            asyncio.create_task(PoolWatcher(store, engine).run(), name="pool-watcher"),
            asyncio.create_task(gc.run(), name="ip-gc"),
            *(asyncio.create_task(run(context), name=name) for name, run in self.options.reconcilers),
        ]
        engine.statefulsets = gc.statefulset
        self.slot.gc = gc
        self.slot.engine = engine
        self.leader_changes += 1
        log.info("leading", identity=self.options.identity, pools=len(engine.pool_states()))

    async def _step_down(self) -> None:
        engine, self.slot.engine, self.slot.gc = self.slot.engine, None, None
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if engine is not None:
            with contextlib.suppress(Exception):  # writes fail now: the next leader reloads
                async with asyncio.timeout(2.0):
                    await engine.close()
        log.warning("stepped_down", identity=self.options.identity)

    async def stop(self) -> None:
        if self.elector is not None:
            await self._step_down()
            await self.elector.release()
        if self._elector_task is not None:
            self._elector_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._elector_task
        if self.client is not None:
            await self.client.close()
