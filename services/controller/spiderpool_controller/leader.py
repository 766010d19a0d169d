"""Leader election on a ``coordination.k8s.io/v1`` Lease, with write fencing.

Owns who among the controller replicas is the single writer. The algorithm is client-go's
(``tools/leaderelection``), which upstream Spiderpool uses with the same timings (lease
duration 15 s, renew deadline 10 s, retry period 2 s):

- a candidate reads the Lease every retry period; it takes the Lease when it is free or
  when the holder's record has not changed for a whole lease duration *by the candidate's
  own clock* (``observed``: no clock synchronisation between replicas is assumed);
- the holder renews every retry period with compare-and-swap on the Lease's
  resourceVersion, so two candidates can never both win the same round.

Fencing: ``may_write()`` is true only while the holder's last successful renewal is less
than the renew deadline old, by a monotonic clock that keeps running while the process is
paused (SIGSTOP). Since the renew deadline is shorter than the lease duration, a holder
that cannot renew stops writing at least ``duration - renew_deadline`` (5 s) before any
candidate may take the Lease. Every write of IPAM state passes this gate before it is
handed to the client (``FencedStore``) and again as its bytes leave the HTTP client
(``spiderpool_common.kube.write_fence``); what remains is a write already handed to the
socket when the process froze, which reaches the API server during the freeze, before the
Lease can change hands.

The Lease carries the holder's gRPC address in an annotation, so a standby can forward an
agent's request to the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from spiderpool_common.kube.rest import KubeError, KubeRest

log = structlog.get_logger(__name__)

ADDRESS_ANNOTATION = "spiderpool.spidernet.io/leader-address"


@dataclass(frozen=True)
class LeaseTiming:
    duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def validate(self) -> LeaseTiming:
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.duration_s:
            raise ValueError(
                "leader election timings must satisfy 0 < retry period < renew deadline < lease duration "
                f"(got {self.retry_period_s}, {self.renew_deadline_s}, {self.duration_s})"
            )
        return self


def micro_time(now: datetime | None = None) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        rest: KubeRest,
        *,
        namespace: str,
        name: str,
        identity: str,
        address: str,
        timing: LeaseTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rest = rest
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.address = address
        self.timing = (timing or LeaseTiming()).validate()
        self._clock = clock
        self._holding = False
        self._renewed_at = float("-inf")
        self._observed_spec: dict[str, Any] | None = None
        self._observed_at = float("-inf")
        self.leader_identity = ""
        self.leader_address = ""
        self.transitions = 0  # times this replica became leader
        self.changed = asyncio.Event()  # set whenever the known leader changes

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    def may_write(self) -> bool:
        """True while this replica holds the Lease and renewed it within the renew deadline."""
        return self._holding and self._clock() - self._renewed_at < self.timing.renew_deadline_s

    @property
    def is_leader(self) -> bool:
        return self.may_write()

    # -- one round ----------------------------------------------------------------------
    def _observe(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        if spec != self._observed_spec:
            self._observed_spec = dict(spec)
            self._observed_at = self._clock()
        holder = str(spec.get("holderIdentity") or "")
        address = str(((lease.get("metadata") or {}).get("annotations") or {}).get(ADDRESS_ANNOTATION, ""))
        if (holder, address) != (self.leader_identity, self.leader_address):
            self.leader_identity, self.leader_address = holder, address if holder else ""
            self.changed.set()

    def _spec(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = micro_time()
        prev = previous or {}
        taking_over = prev.get("holderIdentity") != self.identity
        transitions = int(prev.get("leaseTransitions") or 0) + (1 if taking_over and prev else 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.timing.duration_s)),
            "acquireTime": now if taking_over else prev.get("acquireTime", now),
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        try:
            lease = await self._rest.get(self.path)
        except KubeError as exc:
            if not exc.not_found:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "annotations": {ADDRESS_ANNOTATION: self.address},
                },
                "spec": self._spec(None),
            }
            try:
                created = await self._rest.create(
                    f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases", body
                )
            except KubeError as again:
                if again.conflict:
                    return False  # another candidate created it first
                raise
            self._observe(created)
            return True
        self._observe(lease)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        expired = self._clock() - self._observed_at >= self.timing.duration_s
        if holder and holder != self.identity and not expired:
            return False
        meta = dict(lease.get("metadata") or {})
        meta["annotations"] = {**(meta.get("annotations") or {}), ADDRESS_ANNOTATION: self.address}
        body = {**lease, "metadata": meta, "spec": self._spec(spec)}
        try:
            written = await self._rest.replace(self.path, body)
        except KubeError as exc:
            if exc.conflict:
                return False
            raise
        self._observe(written)
        return True

    # -- the loop -----------------------------------------------------------------------
    async def run(
        self,
        on_started_leading: Callable[[], Awaitable[None]],
        on_stopped_leading: Callable[[], Awaitable[None]],
    ) -> None:
        """Campaign and lead until cancelled; the callbacks run in this task."""
        t = self.timing
        try:
            while True:
                attempt_started = self._clock()
                try:
                    async with asyncio.timeout(t.retry_period_s * 2):
                        won = await self.try_acquire_or_renew()
                except (KubeError, TimeoutError) as exc:
                    log.info("lease_round_failed", lease=self.name, error=str(exc))
                    won = False
                if won:
                    self._renewed_at = attempt_started  # the renewal counts from when it was sent
                    if not self._holding:
                        self._holding = True
                        self.transitions += 1
                        log.info("leader_elected", lease=self.name, identity=self.identity)
                        await on_started_leading()
                if self._holding and not self.may_write():
                    self._holding = False
                    log.warning("leadership_lost", lease=self.name, identity=self.identity)
                    await on_stopped_leading()
                delay = t.retry_period_s if self._holding else t.retry_period_s * (1 + random.random() * 0.2)  # noqa: S311 (jitter)
                await asyncio.sleep(max(0.0, delay - (self._clock() - attempt_started)))
        finally:
            if self._holding:
                self._holding = False
                with contextlib.suppress(Exception):
                    await on_stopped_leading()

    async def release(self) -> None:
        """Give the Lease up (graceful shutdown) so a standby need not wait for it to expire."""
        if not self._holding:
            return
        self._holding = False
        with contextlib.suppress(KubeError, TimeoutError):
            async with asyncio.timeout(self.timing.retry_period_s):
                lease = await self._rest.get(self.path)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
                async with asyncio.timeout(2.0):
                    await self._rest.replace(self.path, {**lease, "spec": spec})
                log.info("lease_released", lease=self.name, identity=self.identity)
