"""Wiring of the SpiderSubnet machinery around one running engine, in either mode.

Owns which parts run and how they hear of each other: the subnet cache (a watch on
SpiderSubnets), the status keeper, the auto pool manager (the engine's ``auto_pools``
hook) and, in a cluster, the builtin workloads' informers. Every change any of them sees
(a subnet, a pool's addresses or records, a workload) wakes the ADDs waiting for a pool.

- Cluster mode: ``cluster_reconciler`` is a leader-only reconciler
  (``ClusterOptions.reconcilers``), started when this replica wins the Lease and cancelled
  when it loses it; its writes go through the fenced store.
- Embedded mode (``start_embedded``): no workload can be watched, so every owner's pool is
  made by its first pod's ADD and sized from ``args.cni.owner`` (``replicas``, or a fixed
  ``ipam.spidernet.io/ippool-ip-number``), resized by later ADDs; the subnet status,
  ownership and deletion work as in a cluster. Pools are not reclaimed when a workload
  goes (nothing tells the controller): ``spiderpoolctl delete ippool`` does it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from spiderpool_controller.auto_pool_manager import AutoPoolManager, AutoPoolSettings
from spiderpool_controller.cluster_mode import LeaderContext, Reconciler
from spiderpool_controller.ipam_engine import IpamEngine
from spiderpool_controller.store.contract import Store
from spiderpool_controller.subnet_cache import SubnetCache
from spiderpool_controller.subnet_keeper import SubnetKeeper
from spiderpool_controller.workload_pools import WorkloadPools


@dataclass
class SubnetMachinery:
    subnets: SubnetCache
    keeper: SubnetKeeper
    manager: AutoPoolManager
    workloads: WorkloadPools | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def subnet_changed(self, name: str) -> None:
        if self.workloads is not None:
            self.workloads.poke(name)
        self.manager.notify()

    def pool_changed(self, name: str) -> None:
        self.keeper.pool_changed(name)
        if self.workloads is not None:
            self.workloads.pool_changed(name)
        self.manager.notify()

    def detach(self, engine: IpamEngine) -> None:
        if engine.auto_pools is self.manager:
            engine.auto_pools = None
        with contextlib.suppress(ValueError):
            engine.pool_listeners.remove(self.pool_changed)

    async def stop(self, engine: IpamEngine) -> None:
        self.detach(engine)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()


def assemble(
    store: Store, engine: IpamEngine, settings: AutoPoolSettings, *, auto_pools: bool = True
) -> SubnetMachinery:
    """Build the parts and hook them into ``engine`` (synchronously: before any ADD runs)."""
    subnets = SubnetCache(store)
    manager = AutoPoolManager(store, engine, subnets, settings)
    machinery: SubnetMachinery

    def subnet_changed(name: str) -> None:
        machinery.subnet_changed(name)

    keeper = SubnetKeeper(store, engine, subnets, on_subnet_changed=subnet_changed)
    machinery = SubnetMachinery(subnets, keeper, manager)
    subnets.add_listener(keeper.subnet_changed)
    engine.pool_listeners.append(machinery.pool_changed)
    if auto_pools:
        engine.auto_pools = manager
    return machinery


def start_embedded(
    store: Store, engine: IpamEngine, settings: AutoPoolSettings, *, auto_pools: bool
) -> SubnetMachinery:
    """The embedded mode's subnet status keeping and (unless disabled) auto pools, as tasks."""
    machinery = assemble(store, engine, settings, auto_pools=auto_pools)
    machinery.tasks = [
        asyncio.create_task(machinery.subnets.run(), name="subnet-cache"),
        asyncio.create_task(machinery.keeper.run(), name="subnet-keeper"),
    ]
    return machinery


def cluster_reconciler(settings: AutoPoolSettings, *, auto_pools: bool = True) -> Reconciler:
    """The leader-only reconciler of ``ClusterOptions.reconcilers``."""

    async def run(ctx: LeaderContext) -> None:
        machinery = assemble(ctx.store, ctx.engine, settings, auto_pools=auto_pools)
        if auto_pools:
            machinery.workloads = WorkloadPools(ctx.rest, machinery.manager)
            machinery.manager.workloads = machinery.workloads
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(machinery.subnets.run(), name="subnet-cache")
                group.create_task(machinery.keeper.run(), name="subnet-keeper")
                if machinery.workloads is not None:
                    group.create_task(machinery.workloads.run(), name="workload-pools")
        finally:
            machinery.detach(ctx.engine)

    return run
