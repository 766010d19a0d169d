"""IP garbage collection in a cluster: pod tracing plus a periodic full scan (leader only).

Owns *when* records are judged and *how safely* a verdict is acted on; the judgement is
``domain.gc_policy``. Triggers, as upstream (pkg/gcmanager): the pod informer's events
(a deleted pod, a finished one, a terminating one at its deadline, re-checked then), a
full scan of every record every ``interval_s`` (600 s by default), and ``run_once`` on
demand (``spiderpoolctl gc``). Safety rules that upstream learned the hard way:

- a record is judged only when it is not newer than the pod data (the engine's take/rebind
  number is read *before* the pods; a record with a higher number is skipped: #3778);
- a "gone" or "re-created" verdict from the informer's cache is confirmed by a direct read
  of the pod before anything is released (the cache can lag behind a pod created a moment
  ago);
- the release names the record's container ID, so a sandbox that took the allocation over
  since the judgement keeps it (the engine frees nothing on behalf of another sandbox);
- pods are compared by UID, never by name alone.

It also removes SpiderEndpoints whose pod is gone and that hold no address (upstream #4916).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from spiderpool_common.kube.informer import Informer
from spiderpool_common.kube.rest import KubeError, KubeRest

from spiderpool_controller.domain.gc_policy import GcSettings, PodFacts, StatefulSetFacts, next_check, verdict
from spiderpool_controller.domain.models import KIND_ENDPOINT
from spiderpool_controller.ipam_engine import HeldEntry, IpamEngine
from spiderpool_controller.store.contract import Store

log = structlog.get_logger(__name__)


@dataclass
class GcReport:
    judged: int = 0
    released: int = 0
    skipped_newer: int = 0
    errors: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def pod_facts(pod: dict[str, Any]) -> PodFacts:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ips = tuple(str(p.get("ip", "")) for p in status.get("podIPs") or () if isinstance(p, dict))
    return PodFacts(
        uid=str(meta.get("uid", "")),
        phase=str(status.get("phase", "Pending")),
        deletion_timestamp=parse_time(meta.get("deletionTimestamp")),
        node=str((pod.get("spec") or {}).get("nodeName", "")),
        pod_ips=ips,
    )


_POD_META = ("name", "namespace", "uid", "resourceVersion", "deletionTimestamp", "ownerReferences")


def gc_pod_view(pod: dict[str, Any]) -> dict[str, Any]:
    """What the collector keeps of a pod (``pod_facts``' inputs and the pod's name): a cache of
    every pod of a 150,000-pod cluster holds a tenth of their bytes (no annotations, containers,
    volumes or conditions)."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return {
        "metadata": {k: meta[k] for k in _POD_META if k in meta},
        "spec": {"nodeName": (pod.get("spec") or {}).get("nodeName", "")},
        "status": {k: status[k] for k in ("phase", "podIPs") if k in status},
    }


def node_ready(node: dict[str, Any] | None) -> bool:
    if node is None:
        return False
    for cond in (node.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


class IpGarbageCollector:
    def __init__(
        self,
        engine: IpamEngine,
        rest: KubeRest,
        store: Store,
        *,
        settings: GcSettings | None = None,
        interval_s: float = 600.0,
        trace_delay_s: float = 1.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._rest = rest
        self._store = store
        self.settings = settings or GcSettings()
        self._interval = interval_s
        self._trace_delay = trace_delay_s
        self._now = now
        self.pods = Informer(rest, "/api/v1/pods", handler=self._pod_event, transform=gc_pod_view)
        self.nodes = Informer(rest, "/api/v1/nodes")
        self.statefulsets = Informer(rest, "/apis/apps/v1/statefulsets")
        self._pending: dict[str, asyncio.TimerHandle] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self.total = GcReport()
        self.failures = 0  # scans and pod traces that raised (spiderpool_ip_gc_failure_counts)
        self._lock = asyncio.Lock()

    # -- facts --------------------------------------------------------------------------
    def statefulset(self, namespace: str, name: str) -> StatefulSetFacts:
        """The StatefulSet as the informer sees it (``exists=False`` when it has none)."""
        obj = self.statefulsets.get(f"{namespace}/{name}")
        if obj is None:
            return StatefulSetFacts(exists=False)
        replicas = (obj.get("spec") or {}).get("replicas")
        return StatefulSetFacts(exists=True, replicas=1 if replicas is None else int(replicas))

    def _sts(self, entry: HeldEntry) -> StatefulSetFacts | None:
        rec = entry.record
        if rec.owner_kind != "StatefulSet" or not rec.owner_name or "/" not in rec.pod:
            return None
        return self.statefulset(rec.pod.split("/", 1)[0], rec.owner_name)

    async def _read_pod(self, pod_key: str) -> dict[str, Any] | None:
        namespace, name = pod_key.split("/", 1)
        try:
            return await self._rest.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    # -- judging ------------------------------------------------------------------------
    async def judge(self, entries: list[HeldEntry], mark: int, report: GcReport) -> None:
        """Judge records not newer than ``mark``; release the ones the policy and a direct
        read agree have no pod that needs them."""
        by_attachment: dict[tuple[str, str], HeldEntry] = {}
        for entry in entries:
            if entry.sequence > mark:
                report.skipped_newer += 1
                continue
            by_attachment.setdefault((entry.record.identity, entry.record.interface), entry)
        now = self._now()
        for entry in by_attachment.values():
            rec = entry.record
            report.judged += 1
            cached = self.pods.get(rec.pod)
            facts = pod_facts(cached) if cached is not None else None
            ready = node_ready(self.nodes.get(facts.node if facts else rec.node))
            why = verdict(rec, facts, now=now, node_ready=ready, sts=self._sts(entry), settings=self.settings)
            if why is None:
                if facts is not None and (at := next_check(facts, self.settings)) is not None:
                    self._schedule(rec.pod, max(0.0, (at - now).total_seconds()))
                continue
            if facts is None or facts.uid != rec.pod_uid:
                fresh = await self._read_pod(rec.pod)  # the cache may lag: ask the API
                facts = pod_facts(fresh) if fresh is not None else None
                why = verdict(
                    rec, facts, now=now, node_ready=ready, sts=self._sts(entry), settings=self.settings
                )
                if why is None:
                    continue
            outcome = await self._engine.release(
                rec.identity, rec.interface, container_id=rec.container_id, pod_key=rec.pod, force=True
            )
            if outcome.released:
                report.released += len(outcome.released)
                report.reasons[why] = report.reasons.get(why, 0) + len(outcome.released)
                log.info(
                    "ip_gc_released",
                    pod=rec.pod,
                    pod_uid=rec.pod_uid,
                    ifname=rec.interface,
                    reason=why,
                    ips=[a.address for a in outcome.released],
                )

    async def run_once(self) -> GcReport:
        """A full scan of every record now."""
        async with self._lock:
            report = GcReport()
            mark = self._engine.allocation_sequence()
            await self.judge(self._engine.held_records(), mark, report)
            await self._remove_orphan_endpoints()
            self._count(report)
            log.info(
                "ip_gc_scan_done",
                judged=report.judged,
                released=report.released,
                skipped=report.skipped_newer,
            )
            return report

    async def _check_pod(self, pod_key: str) -> None:
        async with self._lock:
            report = GcReport()
            mark = self._engine.allocation_sequence()
            await self.judge(self._engine.held_records(pod_key), mark, report)
            self._count(report)

    def _count(self, report: GcReport) -> None:
        self.total.judged += report.judged
        self.total.released += report.released
        self.total.skipped_newer += report.skipped_newer
        for reason, n in report.reasons.items():
            self.total.reasons[reason] = self.total.reasons.get(reason, 0) + n

    async def _remove_orphan_endpoints(self) -> None:
        """SpiderEndpoints of pods that are gone and hold no address (upstream #4916)."""
        objects, _ = await self._store.list(KIND_ENDPOINT)
        held_pods = {e.record.pod for e in self._engine.held_records()}
        for obj in objects:
            meta = obj["metadata"]
            key = f"{meta.get('namespace', '')}/{meta['name']}"
            if key in held_pods or self.pods.get(key) is not None:
                continue
            with contextlib.suppress(Exception):
                await self._store.delete(KIND_ENDPOINT, meta["name"], meta.get("namespace", ""))
                log.info("orphan_endpoint_removed", endpoint=key)

    # -- tracing ------------------------------------------------------------------------
    def _schedule(self, pod_key: str, delay: float) -> None:
        if pod_key in self._pending:
            return
        loop = asyncio.get_running_loop()
        self._pending[pod_key] = loop.call_later(delay, self._due, pod_key)

    def _due(self, pod_key: str) -> None:
        self._pending.pop(pod_key, None)
        self._queue.put_nowait(pod_key)

    def _pod_event(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        facts = pod_facts(pod)
        if kind == "DELETED" or facts.phase in ("Succeeded", "Failed"):
            self._schedule(key, self._trace_delay)
        elif (at := next_check(facts, self.settings)) is not None:
            self._schedule(key, max(0.0, (at - self._now()).total_seconds()))

    async def _trace(self) -> None:
        while True:
            pod_key = await self._queue.get()
            try:
                await self._check_pod(pod_key)
            except Exception as exc:  # the periodic scan catches up
                self.failures += 1
                log.warning("ip_gc_trace_failed", pod=pod_key, error=str(exc))

    async def _periodic(self) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started) % self._interval))
            try:
                await self.run_once()
            except Exception as exc:
                self.failures += 1
                log.warning("ip_gc_scan_failed", error=str(exc))

    async def run(self) -> None:
        """Informers, the tracer and the periodic scan, until cancelled."""
        tasks = [
            asyncio.create_task(i.run(), name=f"gc informer {i.path}")
            for i in (self.pods, self.nodes, self.statefulsets)
        ]
        try:
            await asyncio.gather(
                self.pods.synced.wait(), self.nodes.synced.wait(), self.statefulsets.synced.wait()
            )
            tasks.append(asyncio.create_task(self._trace(), name="gc tracer"))
            if self.settings.enabled:
                tasks.append(asyncio.create_task(self._periodic(), name="gc scan"))
            await asyncio.gather(*tasks)
        finally:
            for handle in self._pending.values():
                handle.cancel()
            self._pending.clear()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
