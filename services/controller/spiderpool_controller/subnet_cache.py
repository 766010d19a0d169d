"""The SpiderSubnets as the store has them, kept current by one list and a watch.

Owns the controller's copy of every SpiderSubnet (they are few and small), so the auto
pool manager and the status keeper read a subnet without a request. It works on the Store
contract, so the same code serves the cluster (the fenced Kubernetes store: reads pass the
fence) and the embedded mode (SQLite's watch). A watch that ends is re-opened from the
last version seen; one whose version is too old (410) or that fails is followed by a fresh
list, and the differences are delivered as changes, so no deletion is missed. Writers in
this process put what they wrote (``put``) so their next read sees it before the watch
event arrives; an event older than what is cached is ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from spiderpool_controller.domain.models import KIND_SUBNET
from spiderpool_controller.store.contract import Gone, Store

log = structlog.get_logger(__name__)

Obj = dict[str, Any]
Listener = Callable[[str], None]


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _newer(candidate: str, current: str) -> bool:
    if candidate.isdigit() and current.isdigit():
        return int(candidate) > int(current)
    return candidate != current


class SubnetCache:
    def __init__(self, store: Store, *, max_backoff_s: float = 5.0) -> None:
        self._store = store
        self._max_backoff = max_backoff_s
        self.objects: dict[str, Obj] = {}
        self.synced = asyncio.Event()
        self._listeners: list[Listener] = []
        self.relists = 0

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def get(self, name: str) -> Obj | None:
        return self.objects.get(name)

    def by_cidr(self, cidr: str) -> Obj | None:
        """The subnet of exactly this CIDR (subnets never overlap, so there is at most one)."""
        return next((o for o in self.objects.values() if (o.get("spec") or {}).get("subnet") == cidr), None)

    def put(self, obj: Obj) -> None:
        """Adopt an object this process wrote (newer than the cached one)."""
        name = _name(obj)
        current = self.objects.get(name)
        if current is None or _newer(_rv(obj), _rv(current)):
            self.objects[name] = obj
            self._tell(name)

    def _tell(self, name: str) -> None:
        for listener in self._listeners:
            listener(name)

    async def _relist(self) -> str:
        objects, version = await self._store.list(KIND_SUBNET)
        self.relists += 1
        fresh = {_name(o): o for o in objects}
        old, self.objects = self.objects, fresh
        for name in fresh.keys() | old.keys():
            before, after = old.get(name), fresh.get(name)
            if before is None or after is None or _rv(before) != _rv(after):
                self._tell(name)
        self.synced.set()
        return version

    async def run(self) -> None:
        backoff = 0.1
        version = ""
        while True:
            try:
                if not version:
                    version = await self._relist()
                async for event in self._store.watch(KIND_SUBNET, resource_version=version):
                    version = _rv(event.object) or version
                    name = _name(event.object)
                    if event.type == "DELETED":
                        if self.objects.pop(name, None) is not None:
                            self._tell(name)
                        continue
                    current = self.objects.get(name)
                    if current is None or _newer(_rv(event.object), _rv(current)):
                        self.objects[name] = event.object
                        self._tell(name)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Gone:
                version = ""
            except Exception as exc:
                log.warning("subnet_watch_failed", error=str(exc), backoff=backoff)
                version = ""
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
