"""The engine this replica runs now, for the servicers and metrics that serve it.

Owns the one fact that differs between the modes at the request boundary: without
Kubernetes the controller always runs its engine; in a cluster only the leader does, from
the moment it wins the Lease until it loses it. Servicers ask the slot for the engine on
every call, so a replica that stepped down answers "not the leader" (code 11, the agent
retries and reaches the new leader through any replica) instead of using a stale engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from spiderpool_common.errors import Unavailable

from spiderpool_controller.ipam_engine import IpamEngine


class NotLeading(Unavailable):
    reason = "NOT_LEADER"


class GarbageCollector(Protocol):
    async def run_once(self) -> object: ...


class EngineSlot:
    """Holds the engine of the moment; ``watch`` callbacks hear every engine put in (and
    ``None`` when it is taken out), e.g. the metrics that attach to each new engine."""

    def __init__(self, engine: IpamEngine | None = None) -> None:
        self._engine = engine
        self._watchers: list[Callable[[IpamEngine | None], None]] = []
        self.gc: GarbageCollector | None = None

    @property
    def engine(self) -> IpamEngine | None:
        return self._engine

    @engine.setter
    def engine(self, engine: IpamEngine | None) -> None:
        self._engine = engine
        for watcher in self._watchers:
            watcher(engine)

    def watch(self, watcher: Callable[[IpamEngine | None], None]) -> None:
        """Call ``watcher`` with the current engine now and with every later one."""
        self._watchers.append(watcher)
        watcher(self._engine)

    def get(self) -> IpamEngine:
        if self.engine is None:
            raise NotLeading("this controller replica is not the leader (or is starting); try again")
        return self.engine
