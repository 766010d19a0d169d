"""Tells the IPAM engine about object writes made by the resource service, in-process.

The resource service (spiderpoolctl apply/delete) and the engine share one process and one
store; wrapping the resource service's store means the engine sees a new or changed pool
before the apply is answered, so an ADD right after ``apply`` finds it (read your writes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from spiderpool_controller.domain.models import KIND_IPPOOL, KIND_RESERVED_IP
from spiderpool_controller.ipam_engine import IpamEngine
from spiderpool_controller.store.contract import Obj, Store, WatchEvent


class NotifyingStore:
    """A Store that forwards to ``inner`` and reports pool and reserved-IP writes."""

    def __init__(self, inner: Store, engine: IpamEngine) -> None:
        self._inner = inner
        self._engine = engine

    async def _changed(self, obj: Obj) -> None:
        kind = obj.get("kind")
        if kind == KIND_IPPOOL:
            await self._engine.pool_changed(obj)
        elif kind == KIND_RESERVED_IP:
            await self._engine.reserved_changed()

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        return await self._inner.get(kind, name, namespace)

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        return await self._inner.list(kind, namespace, label_selector)

    async def create(self, obj: Obj) -> Obj:
        out = await self._inner.create(obj)
        await self._changed(out)
        return out

    async def update(self, obj: Obj) -> Obj:
        out = await self._inner.update(obj)
        await self._changed(out)
        return out

    async def update_status(self, obj: Obj) -> Obj:
        out = await self._inner.update_status(obj)
        await self._changed(out)
        return out

    async def delete(
        self, kind: str, name: str, namespace: str = "", resource_version: str | None = None
    ) -> Obj | None:
        out = await self._inner.delete(kind, name, namespace, resource_version)
        if kind == KIND_IPPOOL:
            if out is not None and out.get("metadata", {}).get("deletionTimestamp"):
                await self._engine.pool_changed(out)
            else:
                await self._engine.pool_deleted(name)
        elif kind == KIND_RESERVED_IP:
            await self._engine.reserved_changed()
        return out

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        return self._inner.watch(kind, namespace, resource_version, label_selector)

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
