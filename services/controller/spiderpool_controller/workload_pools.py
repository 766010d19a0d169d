"""The builtin workloads' auto pools in a cluster: informers, a work queue, reclaim.

Owns upstream's application controller (pkg/applicationcontroller) for the
six kinds it knows: informers on Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs
and CronJobs feed a de-duplicated queue of workloads whose pod template names a
SpiderSubnet; a few workers reconcile each (``AutoPoolManager.ensure`` per NIC and family,
sized from the replicas of ``domain.subnet_pools``), so the pools exist before the pods
do. Thirty workloads created at once are thirty queue entries and thirty pool creations,
serialised per subnet in memory (upstream #1056, where they raced on the subnet's status
and failed for two minutes).

- A change is queued only when what the pools depend on changed (UID, the template's four
  subnet annotations, replicas, hostNetwork, being a top controller); a status update of
  the Deployment costs nothing.
- Deletion: the informer's DELETED event reclaims the workload's pools (those labelled
  ``ippool-reclaim: "true"`` with its UID); at start, once the informers have listed,
  the pools of builtin workloads that no longer exist (confirmed by a direct read) are
  reclaimed too, for deletions that happened while no leader ran.
- A reconcile that cannot finish (its subnet does not exist yet, or is short of addresses,
  or a shrink waits for pods to release addresses) parks the workload on that subnet and
  pool; it is queued again when one of them changes. A failed API call is retried after
  a backoff.
- ``settle`` is the allocation path's way in: a pod's ADD for a workload that is queued or
  not seen yet reconciles it first (reading it directly when the informer has not seen it
  yet, once per ADD), so a pod that races its workload's watch event still gets its pool.
- Third-party controllers' pools are made by the allocation path; this module reclaims
  them (upstream's ``monitorThirdController``): an informer on each third-party kind that
  owns an auto pool reports its deletions, and when such a pool has no allocation left
  (after a deletion, after a release, and every ``third_party_resync_s``) the owner named by
  its labels is read (its resource guessed from the kind, as upstream's
  ``UnsafeGuessKindToResource``); gone or re-created, the pool is deleted. Decision: a 404
  counts as "gone" only when the owner's collection exists, so a wrong guess of the
  resource name (or a CRD no longer served) never deletes a pool that is in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from spiderpool_common.errors import InvalidAnnotation, InvalidRequest, SpiderpoolError, Unavailable
from spiderpool_common.kube.informer import Informer
from spiderpool_common.kube.rest import KubeError, KubeRest

from spiderpool_controller.auto_pool_manager import AutoPoolManager, WantedPool
from spiderpool_controller.domain import auto_pools
from spiderpool_controller.domain.auto_pools import AppRef
from spiderpool_controller.domain.subnet_annotations import (
    POD_IPPOOL_IP_NUMBER,
    POD_IPPOOL_RECLAIM,
    POD_SUBNET,
    POD_SUBNETS,
    parse_subnet_config,
)
from spiderpool_controller.domain.subnet_pools import (
    host_network,
    is_top_controller,
    pod_template_annotations,
    workload_replicas,
)

log = structlog.get_logger(__name__)

Obj = dict[str, Any]
_PLURALS = {
    "Deployment": "deployments",
    "ReplicaSet": "replicasets",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
    "Job": "jobs",
    "CronJob": "cronjobs",
}
_SUBNET_KEYS = (POD_SUBNET, POD_SUBNETS, POD_IPPOOL_IP_NUMBER, POD_IPPOOL_RECLAIM)


@dataclass(frozen=True)
class AppKey:
    kind: str
    namespace: str
    name: str


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _uid(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("uid", ""))


def _plural(kind: str) -> str:
    """The resource of a kind, guessed as upstream (apimachinery's UnsafeGuessKindToResource)."""
    lower = kind.lower()
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s"


def _root(api_version: str) -> str:
    return f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"


def object_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    """The REST path of a namespaced object, its resource guessed from the kind."""
    return f"{_root(api_version)}/namespaces/{namespace}/{_plural(kind)}/{name}"


def collection_path(api_version: str, kind: str) -> str:
    """The REST path of every namespace's objects of a kind (an informer's list and watch)."""
    return f"{_root(api_version)}/{_plural(kind)}"


def _describe(key: AppKey) -> str:
    return f"{key.namespace}/{key.name}"


def _reclaimable_third_party(labels: Mapping[str, str]) -> bool:
    app = auto_pools.owner_of_pool(labels)
    return app is not None and not app.builtin and labels.get(auto_pools.LABEL_RECLAIM) == "true"


def fingerprint(kind: str, obj: Mapping[str, Any]) -> str:
    """What a workload's pools depend on; equal fingerprints need no reconcile."""
    annotations = pod_template_annotations(kind, obj)
    return json.dumps(
        [
            _uid(obj),
            {k: annotations[k] for k in _SUBNET_KEYS if k in annotations},
            workload_replicas(kind, obj),
            host_network(kind, obj),
            is_top_controller(kind, obj),
        ],
        sort_keys=True,
    )


class WorkloadPools:
    def __init__(
        self,
        rest: KubeRest,
        manager: AutoPoolManager,
        *,
        workers: int = 4,
        retry_s: float = 1.0,
        third_party_resync_s: float = 300.0,
        watch_timeout_s: int = 240,
    ) -> None:
        self._rest = rest
        self._manager = manager
        self._workers = workers
        self._retry = retry_s
        self._resync = third_party_resync_s
        self.informers = {
            kind: Informer(
                rest,
                f"/apis/{auto_pools.BUILTIN_KINDS[kind]}/{plural}",
                handler=self._handler(kind),
                watch_timeout_s=watch_timeout_s,
            )
            for kind, plural in _PLURALS.items()
        }
        self._queue: asyncio.Queue[AppKey] = asyncio.Queue()
        self._queued: set[AppKey] = set()
        self._locks: dict[AppKey, asyncio.Lock] = {}
        self._done: dict[AppKey, str] = {}  # the fingerprint last reconciled
        self._gone: dict[AppKey, set[str]] = {}  # UIDs seen deleted, to reclaim
        self._parked: dict[str, set[AppKey]] = {}  # subnet or pool name -> workloads waiting on it
        self._third_party: asyncio.Queue[str] = asyncio.Queue()
        self._third_party_queued: set[str] = set()
        self.third_party_informers: dict[str, Informer] = {}
        self._watch_timeout = watch_timeout_s
        self._tasks: list[asyncio.Task[None]] = []
        self.reconciles = 0

    # -- events --------------------------------------------------------------------------
    def _handler(self, kind: str) -> Any:
        def handle(event: str, obj: Obj) -> None:
            key = AppKey(kind, str(_meta(obj).get("namespace", "")), str(_meta(obj).get("name", "")))
            if event == "DELETED":
                self._gone.setdefault(key, set()).add(_uid(obj))
                self._enqueue(key)
            elif self._done.get(key) != fingerprint(kind, obj):
                self._enqueue(key)
            self._manager.notify()

        return handle

    def _enqueue(self, key: AppKey) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def poke(self, name: str) -> None:
        """A subnet or pool of this name changed: queue the workloads parked on it."""
        for key in self._parked.pop(name, set()):
            self._enqueue(key)

    def pool_changed(self, pool: str) -> None:
        """The engine's pool listener: parked workloads, and third-party pools left empty."""
        self.poke(pool)
        state = self._manager.pool_states().get(pool)
        if state is None or state.pool.terminating or not _reclaimable_third_party(state.pool.meta.labels):
            return
        self._watch_third_party(state.pool.meta.labels)
        if not state.allocated:
            self._check_third_party(pool)

    def _watch_third_party(self, labels: Mapping[str, str]) -> None:
        """Watch the kind of a third-party owner (once per kind), for its deletions."""
        app = auto_pools.owner_of_pool(labels)
        if app is None or not app.api_version or not self._tasks:
            return  # no apiVersion (an agent that did not send it): nothing to watch
        path = collection_path(app.api_version, app.kind)
        if path in self.third_party_informers:
            return
        informer = Informer(
            self._rest, path, handler=self._third_party_event, watch_timeout_s=self._watch_timeout
        )
        self.third_party_informers[path] = informer
        self._tasks.append(asyncio.create_task(informer.run(), name=f"informer {path}"))

    def _third_party_event(self, event: str, obj: Obj) -> None:
        if event != "DELETED":
            return
        uid = _uid(obj)
        for name, state in self._manager.pool_states().items():
            if state.pool.meta.labels.get(auto_pools.LABEL_APP_UID) == uid:
                self._check_third_party(name)

    def _park(self, key: AppKey, names: set[str]) -> None:
        for name in names:
            self._parked.setdefault(name, set()).add(key)

    # -- reconcile -----------------------------------------------------------------------
    def _lock(self, key: AppKey) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _read(self, key: AppKey) -> Obj | None:
        path = object_path(auto_pools.BUILTIN_KINDS[key.kind], key.kind, key.namespace, key.name)
        try:
            return await self._rest.get(path)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise Unavailable(f"reading {key.kind} {key.namespace}/{key.name}: {exc.message}") from exc

    async def reconcile(self, key: AppKey, *, read: bool = False) -> None:
        """Bring the workload's auto pools to what its object asks for; raises what stops it."""
        async with self._lock(key):
            self._queued.discard(key)
            self.reconciles += 1
            obj = self.informers[key.kind].get(f"{key.namespace}/{key.name}")
            if obj is None and read:
                obj = await self._read(key)
            gone = self._gone.pop(key, set())
            if obj is not None:
                gone.discard(_uid(obj))
            for uid in sorted(gone):
                await self._manager.reclaim(uid, f"{key.kind} {key.namespace}/{key.name} was deleted")
            if obj is None:
                self._done.pop(key, None)
                if read:
                    raise Unavailable(f"{key.kind} {key.namespace}/{key.name} does not exist")
                return
            await self._apply(key, obj)

    async def _apply(self, key: AppKey, obj: Obj) -> None:
        done = fingerprint(key.kind, obj)
        annotations = pod_template_annotations(key.kind, obj)
        config = parse_subnet_config(annotations, self._manager.settings.default_flexible_ips)
        if config is None or not is_top_controller(key.kind, obj) or host_network(key.kind, obj):
            self._done[key] = done
            return
        app = AppRef(auto_pools.BUILTIN_KINDS[key.kind], key.kind, key.namespace, key.name, _uid(obj))
        desired = config.ip_number.desired(workload_replicas(key.kind, obj))
        families = self._manager.settings.families
        waiting: set[str] = set()
        try:
            for item in config.items:
                for version in item.families:
                    if families and version not in families:
                        continue
                    subnet = item.for_family(version)
                    ensured = await self._manager.ensure(
                        WantedPool(
                            subnet, app, item.nic, version, desired, config.reclaim, config.ip_number.text
                        )
                    )
                    if ensured.short:
                        waiting |= {subnet, ensured.pool}
        except Unavailable:
            self._park(key, set(config.subnet_names()))
            raise
        if waiting:
            self._park(key, waiting)  # a short pool: again when the subnet or the pool changes
        self._done[key] = done

    async def settle(self, app: AppRef, *, read_if_unknown: bool) -> None:
        """The allocation path: reconcile ``app`` first when it is queued or not seen yet."""
        key = AppKey(app.kind, app.namespace, app.name)
        cached = self.informers[key.kind].get(f"{key.namespace}/{key.name}")
        unknown = cached is None or _uid(cached) != app.uid
        if key not in self._queued and not unknown and key in self._done:
            return
        await self.reconcile(key, read=unknown and read_if_unknown)

    # -- the loops -----------------------------------------------------------------------
    async def _worker(self) -> None:
        await self._manager.subnets.synced.wait()  # a subnet not listed yet is not missing
        while True:
            key = await self._queue.get()
            if key not in self._queued:
                continue  # reconciled meanwhile by an ADD
            try:
                await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except (InvalidAnnotation, InvalidRequest) as exc:
                log.warning("workload_pools_refused", kind=key.kind, workload=_describe(key), error=str(exc))
            except Unavailable as exc:
                log.info("workload_pools_waiting", kind=key.kind, workload=_describe(key), reason=str(exc))
            except (SpiderpoolError, KubeError, OSError) as exc:
                log.warning("workload_pools_failed", kind=key.kind, workload=_describe(key), error=str(exc))
                asyncio.get_running_loop().call_later(self._retry, self._enqueue, key)
            finally:
                self._manager.notify()

    async def _reclaim_orphans(self) -> None:
        """Pools of builtin workloads that are gone (deleted while no leader watched)."""
        for informer in self.informers.values():
            await informer.synced.wait()
        try:
            await self._reclaim_gone_workloads()
        except SpiderpoolError as exc:  # the DELETED events and the next leader try again
            log.warning("orphan_pool_reclaim_failed", error=str(exc))

    async def _reclaim_gone_workloads(self) -> None:
        for state in list(self._manager.pool_states().values()):
            labels = state.pool.meta.labels
            app = auto_pools.owner_of_pool(labels)
            reclaim = labels.get(auto_pools.LABEL_RECLAIM) == "true"
            if app is None or not app.builtin or state.pool.terminating or not reclaim:
                continue
            key = AppKey(app.kind, app.namespace, app.name)
            cached = self.informers[app.kind].get(f"{app.namespace}/{app.name}")
            if cached is not None and _uid(cached) == app.uid:
                continue
            try:
                current = await self._read(key)
            except Unavailable as exc:
                log.warning("orphan_pool_check_failed", pool=state.name, error=str(exc))
                continue
            if current is None or _uid(current) != app.uid:
                await self._manager.reclaim(app.uid, f"{app.describe()} no longer exists")

    def _check_third_party(self, pool: str) -> None:
        if pool not in self._third_party_queued:
            self._third_party_queued.add(pool)
            self._third_party.put_nowait(pool)

    async def _third_party_checker(self) -> None:
        while True:
            pool = await self._third_party.get()
            self._third_party_queued.discard(pool)
            state = self._manager.pool_states().get(pool)
            if state is None or state.allocated or state.pool.terminating:
                continue
            app = auto_pools.owner_of_pool(state.pool.meta.labels)
            if app is None or not app.api_version:
                continue
            try:
                current = await self._read_owner(app)
            except KubeError as exc:
                log.info("third_party_owner_unknown", pool=pool, owner=app.describe(), error=exc.message)
                continue
            if current is None or _uid(current) != app.uid:
                with contextlib.suppress(SpiderpoolError):
                    await self._manager.delete_pool(pool, f"its owner {app.describe()} no longer exists")

    async def _read_owner(self, app: AppRef) -> Obj | None:
        """A third-party owner, None when it does not exist. A 404 for the object is believed
        only when its collection answers: a resource the guess got wrong (or a CRD not served)
        raises instead, so no pool is deleted over a name guessed from the kind."""
        path = object_path(app.api_version, app.kind, app.namespace, app.name)
        try:
            return await self._rest.get(path)
        except KubeError as exc:
            if not exc.not_found:
                raise
        await self._rest.get(path.rsplit("/", 1)[0], limit=1)  # raises 404 for an unknown resource
        return None

    async def _third_party_resync(self) -> None:
        while True:
            for name, state in list(self._manager.pool_states().items()):
                if _reclaimable_third_party(state.pool.meta.labels) and not state.pool.terminating:
                    self._watch_third_party(state.pool.meta.labels)
                    if not state.allocated:
                        self._check_third_party(name)
            await asyncio.sleep(self._resync)

    async def run(self) -> None:
        tasks = self._tasks  # third-party informers join it while running
        tasks += [asyncio.create_task(i.run(), name=f"informer {i.path}") for i in self.informers.values()]
        tasks += [asyncio.create_task(self._worker(), name="workload-pools") for _ in range(self._workers)]
        tasks.append(asyncio.create_task(self._reclaim_orphans(), name="orphan-auto-pools"))
        tasks.append(asyncio.create_task(self._third_party_checker(), name="third-party-pools"))
        tasks.append(asyncio.create_task(self._third_party_resync(), name="third-party-resync"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            tasks.clear()
