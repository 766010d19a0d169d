"""The coordinator's base configuration: the SpiderCoordinator ``default``, briefly cached.

Owns where the coordinator's cluster-wide settings come from (upstream's pkg/coordinatormanager and
cmd/coordinator/cmd/cni_types.go): the
controller's SpiderCoordinator named ``default`` (spec, and the status CIDRs the controller
discovers), read through the ResourceService and cached for ``ttl`` seconds so a burst of
pods costs one read. Two decisions, documented here:

* No ``default`` object (the embedded mode before anyone applied one; upstream's
  spiderpool-init always creates it): the coordinator runs with upstream's defaults
  (mode auto, tunePodRoutes true, hostRuleTable 500, podRPFilter 0, vethMTU 1500, no
  CIDRs), and a debug log says so. Failing every pod for a missing optional object would
  make the coordinator unusable out of the box.
* A ``default`` whose status says ``NotReady`` fails ADD with code 11 naming the reason,
  as upstream's ADD fails ("spidercoordinator: default no ready"); its CIDRs are not
  trustworthy. An object without a phase (nothing discovers CIDRs in the embedded mode)
  is used as it is.

DEL must work while the controller is away: ``for_del`` falls back to the last object
read, then to the defaults, instead of failing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from spiderpool_cni import codes
from spiderpool_common.errors import CniError, SpiderpoolError
from spiderpool_coordinator.config import CoordinatorConfig, from_spider_coordinator
from spiderpool_coordinator.errors import CoordinatorError

log = structlog.get_logger(__name__)

KIND = "SpiderCoordinator"
NAME = "default"
PHASE_NOT_READY = "NotReady"
DEFAULT_TTL = 2.0  # seconds


class ObjectReader(Protocol):
    """Reads one controller object; ``None`` when it does not exist (``GrpcControllerClient``)."""

    async def get_object(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None: ...


def base_config(obj: dict[str, Any] | None, *, require_ready: bool = True) -> CoordinatorConfig:
    """The ``CoordinatorConfig`` a SpiderCoordinator object gives (upstream defaults for None)."""
    if obj is None:
        log.debug("spidercoordinator_missing_using_defaults", name=NAME)
        return CoordinatorConfig()
    status = obj.get("status") or {}
    if require_ready and status.get("phase") == PHASE_NOT_READY:
        reason = status.get("reason") or "no reason given"
        raise CniError(codes.TRY_AGAIN_LATER, f"SpiderCoordinator {NAME} is not ready: {reason}")
    return from_spider_coordinator(obj)


class CoordinatorSource:
    """The SpiderCoordinator ``default`` object from the controller, cached for ``ttl`` seconds."""

    def __init__(
        self, reader: ObjectReader, *, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._reader = reader
        self._ttl = ttl
        self._clock = clock
        self._lock = asyncio.Lock()
        self._cached: tuple[float, dict[str, Any] | None] | None = None

    def _fresh(self) -> tuple[bool, dict[str, Any] | None]:
        if self._cached is None:
            return False, None
        at, obj = self._cached
        return self._clock() - at < self._ttl, obj

    async def fetch(self) -> dict[str, Any] | None:
        """The object (None: it does not exist); a controller error propagates."""
        fresh, obj = self._fresh()
        if fresh:
            return obj
        async with self._lock:  # one read for a burst of calls
            fresh, obj = self._fresh()
            if fresh:
                return obj
            obj = await self._reader.get_object(KIND, NAME)
            self._cached = (self._clock(), obj)
            return obj

    async def for_add(self) -> CoordinatorConfig:
        """The base configuration for ADD and CHECK; fails when unreadable or not ready."""
        return base_config(await self.fetch())

    async def for_del(self) -> CoordinatorConfig:
        """The base configuration for DEL: never fails (last object read, else the defaults)."""
        try:
            obj = await self.fetch()
        except SpiderpoolError as exc:
            obj = self._cached[1] if self._cached is not None else None
            log.warning("spidercoordinator_unreadable_for_del", error=str(exc), cached=obj is not None)
        try:
            return base_config(obj, require_ready=False)
        except CoordinatorError as exc:  # a stored object the library refuses: DEL still cleans up
            log.warning("spidercoordinator_invalid_for_del", error=str(exc))
            return CoordinatorConfig()
