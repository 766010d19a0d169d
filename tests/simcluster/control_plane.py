"""The scheduler and workload controller stand-ins: `python -m tests.simcluster.control_plane --kubeconfig K`.

One process in the root namespace playing kube-scheduler and the parts of kube-controller-manager the
simulated cluster needs, all through the API with informers (spiderpool_common.kube), the decisions in
scheduling.py and workload_rules.py:

- scheduler: every pod without `spec.nodeName` (and `spec.schedulerName` default or absent) is bound to a
  feasible node, round robin. The test API server has no `pods/binding` subresource, so binding is a merge
  patch of `spec.nodeName` (the real server allows the field only through binding; the effect is the same);
  a pod no node fits stays Pending with a `PodScheduled` False condition, retried when nodes change;
- Deployment -> ReplicaSet -> Pods, StatefulSet -> Pods, Job -> Pods, each with its status written back
  (the server runs with `--no-workload-status`, so readiness waits see these).

Each controller is a work queue keyed by its object (namespace/name) with one worker per kind: an event on an
owned pod queues the owner. Creations are followed until the informer has seen them ("expectations"), so a
burst of events never creates a replica twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from spiderpool_common.kube.config import api_client
from spiderpool_common.kube.informer import Informer, object_key
from spiderpool_common.kube.rest import KubeError, KubeRest

from . import scheduling
from . import workload_rules as rules

log = logging.getLogger("control-plane")

Obj = dict[str, Any]
OWNER_KINDS = {"ReplicaSet": "replicasets", "StatefulSet": "statefulsets", "Job": "jobs"}
EXPECTATION_TTL = 30.0


class WorkQueue:
    """Keys to reconcile; a key queued while it is being handled is handled again afterwards."""

    def __init__(self, name: str, handle: Callable[[str], Awaitable[None]], workers: int = 2) -> None:
        self.name = name
        self._handle = handle
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self._workers = workers

    def add(self, key: str) -> None:
        if key in self._busy:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_later(self, key: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, key)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._busy.add(key)
            try:
                await self._handle(key)
            except KubeError as exc:
                log.info("%s %s: %s (retrying)", self.name, key, exc)
                self.add_later(key, 0.5)
            except Exception:
                log.exception("%s %s failed", self.name, key)
                self.add_later(key, 1.0)
            finally:
                self._busy.discard(key)
                if key in self._again:
                    self._again.discard(key)
                    self.add(key)

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self._workers)))


def split_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


class Expectations:
    """Pods a controller created or deleted that its informer does not show so yet (per owner key)."""

    def __init__(self) -> None:
        self._creating: dict[str, dict[str, float]] = {}
        self._deleting: dict[str, dict[str, float]] = {}

    def expect_created(self, owner: str, pod_name: str) -> None:
        self._creating.setdefault(owner, {})[pod_name] = time.monotonic()

    def expect_deleted(self, owner: str, pod_name: str) -> None:
        self._deleting.setdefault(owner, {})[pod_name] = time.monotonic()

    def observed(self, owner: str, pod_name: str, deleted: bool) -> None:
        self._creating.get(owner, {}).pop(pod_name, None)
        if deleted:
            self._deleting.get(owner, {}).pop(pod_name, None)

    @staticmethod
    def _fresh(entries: dict[str, float]) -> set[str]:
        cutoff = time.monotonic() - EXPECTATION_TTL
        for name in [n for n, t in entries.items() if t < cutoff]:
            del entries[name]
        return set(entries)

    def creating(self, owner: str) -> set[str]:
        return self._fresh(self._creating.get(owner, {}))

    def deleting(self, owner: str) -> set[str]:
        return self._fresh(self._deleting.get(owner, {}))


class ControlPlane:
    def __init__(self, rest: KubeRest, ready_file: Path | None = None) -> None:
        self.rest = rest
        self.ready_file = ready_file
        self.nodes = Informer(rest, "/api/v1/nodes", handler=self._on_node)
        self.pods = Informer(rest, "/api/v1/pods", handler=self._on_pod)
        self.informers = {
            "deployments": Informer(
                rest, "/apis/apps/v1/deployments", handler=self._owner_event("deployments")
            ),
            "replicasets": Informer(rest, "/apis/apps/v1/replicasets", handler=self._on_replicaset),
            "statefulsets": Informer(
                rest, "/apis/apps/v1/statefulsets", handler=self._owner_event("statefulsets")
            ),
            "jobs": Informer(rest, "/apis/batch/v1/jobs", handler=self._owner_event("jobs")),
        }
        self.queues = {
            "scheduler": WorkQueue("scheduler", self.schedule, workers=1),
            "deployments": WorkQueue("deployment", self.sync_deployment),
            "replicasets": WorkQueue("replicaset", self.sync_replicaset),
            "statefulsets": WorkQueue("statefulset", self.sync_statefulset),
            "jobs": WorkQueue("job", self.sync_job),
        }
        self.expectations = Expectations()
        self.round_robin = scheduling.RoundRobin()
        self._unschedulable: set[str] = set()
        self._by_owner: dict[str, set[str]] = {}  # controller UID -> pod keys (namespace/name)
        self._assumed: dict[str, str] = {}  # pod key -> node it was bound to, until the informer shows it

    # --- event routing ------------------------------------------------------------------------------------

    def _owner_event(self, kind: str) -> Callable[[str, Obj], None]:
        def handler(_event: str, obj: Obj) -> None:
            self.queues[kind].add(object_key(obj))

        return handler

    def _on_replicaset(self, event: str, rs: Obj) -> None:
        self.queues["replicasets"].add(object_key(rs))
        owner = rules.controller_of(rs)
        if owner and owner.get("kind") == "Deployment":
            self.queues["deployments"].add(f"{rules.meta(rs)['namespace']}/{owner['name']}")

    def _on_node(self, _event: str, _node: Obj) -> None:
        for key in list(self._unschedulable):
            self.queues["scheduler"].add(key)

    def _on_pod(self, event: str, pod: Obj) -> None:
        meta = rules.meta(pod)
        key = object_key(pod)
        if event == "DELETED" or (pod.get("spec") or {}).get("nodeName"):
            self._assumed.pop(key, None)
        owner_uid = (rules.controller_of(pod) or {}).get("uid", "")
        if owner_uid:
            if event == "DELETED":
                self._by_owner.get(owner_uid, set()).discard(key)
            else:
                self._by_owner.setdefault(owner_uid, set()).add(key)
        if event != "DELETED" and not (pod.get("spec") or {}).get("nodeName"):
            self.queues["scheduler"].add(key)
        owner = rules.controller_of(pod)
        if owner and owner.get("kind") in OWNER_KINDS:
            owner_key = f"{meta.get('namespace')}/{owner['name']}"
            self.expectations.observed(
                f"{owner['kind']}/{owner_key}", meta.get("name", ""), event == "DELETED"
            )
            self.queues[OWNER_KINDS[owner["kind"]]].add(owner_key)

    def owned_pods(self, owner: Obj) -> list[Obj]:
        """The pods whose controller reference names ``owner`` (by UID), from the informer's cache."""
        uid = str(rules.meta(owner).get("uid", ""))
        found = [self.pods.get(key) for key in sorted(self._by_owner.get(uid, ()))]
        return [p for p in found if p is not None and (rules.controller_of(p) or {}).get("uid") == uid]

    def _peers(self, pod: Obj) -> dict[str, int]:
        """How many pods of ``pod``'s workload (same controller UID) each node runs."""
        uid = (rules.controller_of(pod) or {}).get("uid", "")
        counts: dict[str, int] = {}
        for key in self._by_owner.get(uid, ()) if uid else ():
            other = self.pods.get(key)
            node = ((other or {}).get("spec") or {}).get("nodeName") or self._assumed.get(key)
            if node:
                counts[node] = counts.get(node, 0) + 1
        return counts

    # --- scheduler ----------------------------------------------------------------------------------------

    async def schedule(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or (pod.get("spec") or {}).get("nodeName") or rules.meta(pod).get("deletionTimestamp"):
            self._unschedulable.discard(key)
            return
        if (pod.get("spec") or {}).get("schedulerName", "default-scheduler") != "default-scheduler":
            return
        nodes = [scheduling.node_info(n) for n in self.nodes.items()]
        node = self.round_robin.pick(pod, nodes, self._peers(pod))
        namespace, name = split_key(key)
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        if node is None:
            self._unschedulable.add(key)
            condition = {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": f"0/{len(nodes)} nodes are available: no node matches the pod's node selection",
            }
            with contextlib.suppress(KubeError):
                await self.rest.merge_patch(path + "/status", {"status": {"conditions": [condition]}})
            return
        self._unschedulable.discard(key)
        self._assumed[key] = node  # until the informer shows the binding (kube-scheduler's "assume")
        try:
            await self.rest.merge_patch(path, {"spec": {"nodeName": node}})
        except KubeError as exc:
            if not exc.not_found:
                raise

    # --- workloads ----------------------------------------------------------------------------------------

    async def _create_pods(self, owner_kind: str, owner_key: str, pods: Sequence[Obj]) -> None:
        namespace, _ = split_key(owner_key)
        for pod in pods:
            try:
                made = await self.rest.create(f"/api/v1/namespaces/{namespace}/pods", pod)
            except KubeError as exc:
                if exc.conflict:
                    continue  # a StatefulSet member whose predecessor is not gone yet: the next event retries
                raise
            made_name = rules.meta(made)["name"]
            if self.pods.get(f"{namespace}/{made_name}") is None:  # its event may have come first
                self.expectations.expect_created(f"{owner_kind}/{owner_key}", made_name)

    async def _delete_pods(self, owner_kind: str, owner_key: str, names: Sequence[str]) -> None:
        namespace, _ = split_key(owner_key)
        for name in names:
            with contextlib.suppress(KubeError):
                await self.rest.delete(f"/api/v1/namespaces/{namespace}/pods/{name}")
                if self.pods.get(f"{namespace}/{name}") is not None:  # its event may have come first
                    self.expectations.expect_deleted(f"{owner_kind}/{owner_key}", name)

    def settled_pods(self, owner_kind: str, owner_key: str, owner: Obj) -> list[Obj] | None:
        """The owner's pods as a decision may see them: None while a creation is not observed yet."""
        key = f"{owner_kind}/{owner_key}"
        if self.expectations.creating(key):
            return None
        deleting = self.expectations.deleting(key)
        return [p for p in self.owned_pods(owner) if rules.meta(p).get("name") not in deleting]

    async def _write_status(self, path: str, current: Obj, status: Obj) -> None:
        old = current.get("status") or {}
        if any(old.get(k) != v for k, v in status.items()):
            with contextlib.suppress(KubeError):
                await self.rest.merge_patch(path + "/status", {"status": status})

    async def sync_replicaset(self, key: str) -> None:
        rs = self.informers["replicasets"].get(key)
        if rs is None or rules.meta(rs).get("deletionTimestamp"):
            return
        settled = self.settled_pods("ReplicaSet", key, rs)
        if settled is not None:
            plan = rules.replicaset_plan(rs, settled)
            await self._create_pods("ReplicaSet", key, plan.create)
            await self._delete_pods("ReplicaSet", key, plan.delete)
        pods = self.owned_pods(rs)
        namespace, name = split_key(key)
        await self._write_status(
            f"/apis/apps/v1/namespaces/{namespace}/replicasets/{name}", rs, rules.replica_status(rs, pods)
        )

    async def sync_deployment(self, key: str) -> None:
        deploy = self.informers["deployments"].get(key)
        if deploy is None or rules.meta(deploy).get("deletionTimestamp"):
            return
        namespace, name = split_key(key)
        uid = rules.meta(deploy).get("uid")
        owned = [
            rs
            for rs in self.informers["replicasets"].items()
            if rules.meta(rs).get("namespace") == namespace
            and (rules.controller_of(rs) or {}).get("uid") == uid
        ]
        plan = rules.deployment_plan(deploy, owned)
        base = f"/apis/apps/v1/namespaces/{namespace}/replicasets"
        if plan.create is not None:
            try:
                await self.rest.create(base, plan.create)
            except KubeError as exc:
                if not exc.conflict:
                    raise
        for rs_name, count in plan.scale.items():
            await self.rest.merge_patch(f"{base}/{rs_name}", {"spec": {"replicas": count}})
        current = f"{name}-{rules.template_hash((deploy.get('spec') or {}).get('template') or {})}"
        pods = [p for rs in owned for p in self.owned_pods(rs)]
        await self._write_status(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
            deploy,
            rules.deployment_status(deploy, pods, current),
        )

    async def sync_statefulset(self, key: str) -> None:
        sts = self.informers["statefulsets"].get(key)
        if sts is None or rules.meta(sts).get("deletionTimestamp"):
            return
        settled = self.settled_pods("StatefulSet", key, sts)
        if settled is not None:
            plan = rules.statefulset_plan(sts, settled)
            await self._create_pods("StatefulSet", key, plan.create)
            await self._delete_pods("StatefulSet", key, plan.delete)
        pods = self.owned_pods(sts)
        namespace, name = split_key(key)
        await self._write_status(
            f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
            sts,
            rules.statefulset_status(sts, pods),
        )

    async def sync_job(self, key: str) -> None:
        job = self.informers["jobs"].get(key)
        if job is None or rules.meta(job).get("deletionTimestamp"):
            return
        settled = self.settled_pods("Job", key, job)
        if settled is not None:
            await self._create_pods("Job", key, rules.job_plan(job, settled).create)
        pods = self.owned_pods(job)
        namespace, name = split_key(key)
        await self._write_status(
            f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}", job, rules.job_status(job, pods)
        )

    # --- run ----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        informers = [self.nodes, self.pods, *self.informers.values()]
        tasks = [asyncio.create_task(i.run(), name=f"informer {i.path}") for i in informers]
        try:
            for informer in informers:
                await informer.synced.wait()
            log.info("control plane ready")
            if self.ready_file is not None:
                self.ready_file.parent.mkdir(parents=True, exist_ok=True)
                self.ready_file.write_text(str(os.getpid()))
            tasks += [asyncio.create_task(q.run(), name=f"queue {q.name}") for q in self.queues.values()]
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def amain(kubeconfig: str, ready_file: Path | None) -> None:
    client = await api_client(kubeconfig)
    task = asyncio.create_task(ControlPlane(KubeRest(client), ready_file).run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tests.simcluster.control_plane", description=__doc__.splitlines()[0]
    )
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--ready-file", type=Path, help="written once every informer has synced")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    asyncio.run(amain(args.kubeconfig, args.ready_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
