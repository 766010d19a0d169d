"""The engine this replica runs now, for the servicers and metrics that serve it.

Owns the one fact that differs between the modes at the request boundary: without
Kubernetes the controller always runs its engine; in a cluster only the leader does, from
the moment it wins the Lease until it loses it. Servicers ask the slot for the engine on
every call, so a replica that stepped down answers "not the leader" (code 11, the agent
retries and reaches the new leader through any replica) instead of using a stale engine.
"""

from __future__ import annotations

from typing import Protocol

from spiderpool_common.errors import Unavailable

from spiderpool_controller.ipam_engine import IpamEngine


class NotLeading(Unavailable):
    reason = "NOT_LEADER"


class GarbageCollector(Protocol):
    async def run_once(self) -> object: ...


class EngineSlot:
    def __init__(self, engine: IpamEngine | None = None) -> None:
        self.engine = engine
        self.gc: GarbageCollector | None = None

    def get(self) -> IpamEngine:
        if self.engine is None:
            raise NotLeading("this controller replica is not the leader (or is starting); try again")
        return self.engine
