"""Keeps the engine's pools and reserved addresses in step with writes made by others.

In a cluster, pools are created, changed and deleted with kubectl (through the API server
and the webhooks), not through the controller: the leader watches SpiderIPPool and
SpiderReservedIP through the Store contract and hands each change to the engine, which
adopts spec and metadata and keeps its own allocation records (it is their only writer).
A watch that fails or whose version is gone (410) is followed by a fresh list, reconciled
as a whole (pools the list no longer has are dropped). The embedded mode needs none of
this: its only writer of pools is the in-process resource service (``change_feed``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from spiderpool_controller.domain.models import KIND_IPPOOL, KIND_RESERVED_IP
from spiderpool_controller.ipam_engine import IpamEngine
from spiderpool_controller.store.contract import Gone, Store

log = structlog.get_logger(__name__)


class PoolWatcher:
    def __init__(self, store: Store, engine: IpamEngine, *, max_backoff_s: float = 5.0) -> None:
        self._store = store
        self._engine = engine
        self._max_backoff = max_backoff_s
        self.relists = 0

    async def _relist_pools(self) -> str:
        pools, version = await self._store.list(KIND_IPPOOL)
        self.relists += 1
        listed = {p["metadata"]["name"] for p in pools}
        for name in list(self._engine.pool_states()):
            if name not in listed:
                await self._engine.pool_deleted(name)
        for obj in pools:
            await self._engine.pool_changed(obj)
        return version

    async def _pool_event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            await self._engine.pool_deleted(obj["metadata"]["name"])
        else:
            await self._engine.pool_changed(obj)

    async def _run_kind(self, kind: str) -> None:
        backoff = 0.1
        version = ""
        while True:
            try:
                if not version:
                    if kind == KIND_IPPOOL:
                        version = await self._relist_pools()
                    else:
                        _, version = await self._store.list(kind)
                        await self._engine.reserved_changed()
                async for event in self._store.watch(kind, resource_version=version):
                    version = str(event.object.get("metadata", {}).get("resourceVersion", version))
                    if kind == KIND_IPPOOL:
                        await self._pool_event(event.type, event.object)
                    else:
                        await self._engine.reserved_changed()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Gone:
                version = ""  # too old: list again
            except Exception as exc:
                log.warning("pool_watch_failed", kind=kind, error=str(exc), backoff=backoff)
                version = ""
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def run(self) -> None:
        await asyncio.gather(self._run_kind(KIND_IPPOOL), self._run_kind(KIND_RESERVED_IP))
