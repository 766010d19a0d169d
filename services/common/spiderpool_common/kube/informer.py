"""An informer: a list+watch cache of one kind of Kubernetes object, with change handlers.

Owns keeping a local copy of what the API server holds for one collection path
(``/api/v1/pods`` with a field selector, ``/api/v1/namespaces``, ...) without polling: one
list, then one watch from the list's resourceVersion, re-opened from the last version seen
whenever the server ends it, and a fresh list whenever the version is too old (410) or the
connection fails (with capped backoff). After a re-list the differences to the cache are
delivered as events, so a handler never misses a deletion that happened while the watch
was down. ``synced`` is set after the first complete list; readers that need an object
the cache may not have yet (created a moment ago) read it from the API directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from spiderpool_common.kube.rest import KubeError, KubeRest

log = structlog.get_logger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[None] | None]


def object_key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or ""
    return f"{namespace}/{meta.get('name', '')}" if namespace else str(meta.get("name", ""))


class Informer:
    def __init__(
        self,
        rest: KubeRest,
        path: str,
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
        handler: Handler | None = None,
        watch_timeout_s: int = 240,
        max_backoff_s: float = 5.0,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """``transform`` (client-go's SetTransform) maps every object before it is cached and
        handed to the handlers: an informer on every pod of a large cluster keeps only the
        fields its owner reads, not whole pods."""
        self._rest = rest
        self._transform = transform
        self.path = path
        self._params = {"fieldSelector": field_selector, "labelSelector": label_selector}
        self._handlers: list[Handler] = [handler] if handler else []
        self._watch_timeout = watch_timeout_s
        self._max_backoff = max_backoff_s
        self.cache: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.relists = 0

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.cache.get(key)

    def items(self) -> list[dict[str, Any]]:
        return list(self.cache.values())

    async def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        for handler in self._handlers:
            try:
                result = handler(kind, obj)
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:  # one bad handler must not stop the informer
                log.warning("informer_handler_failed", path=self.path, event=kind, error=str(exc))

    async def _relist(self) -> None:
        reply = await self._rest.get(self.path, **{k: v for k, v in self._params.items() if v})
        self.relists += 1
        fresh = {}
        for item in reply.get("items") or []:
            fresh[object_key(item)] = self._transform(item) if self._transform else item
        old = self.cache
        self.cache = fresh
        self.resource_version = str((reply.get("metadata") or {}).get("resourceVersion", ""))
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                await self._emit("ADDED", obj)
            elif _rv(before) != _rv(obj):
                await self._emit("MODIFIED", obj)
        for key, obj in old.items():
            if key not in fresh:
                await self._emit("DELETED", obj)
        self.synced.set()

    async def _watch(self) -> None:
        params = {k: v for k, v in self._params.items() if v}
        async for event in self._rest.watch(
            self.path, resource_version=self.resource_version, timeout_s=self._watch_timeout, **params
        ):
            kind = event.get("type")
            obj = event.get("object") or {}
            if self._transform is not None and kind in ("ADDED", "MODIFIED", "DELETED"):
                obj = self._transform(obj)
            version = _rv(obj)
            if version:
                self.resource_version = version
            if kind == "BOOKMARK":
                continue
            key = object_key(obj)
            if kind == "DELETED":
                self.cache.pop(key, None)
            elif kind in ("ADDED", "MODIFIED"):
                self.cache[key] = obj
            else:
                continue
            await self._emit(str(kind), obj)

    async def run(self) -> None:
        """List, then watch forever; re-list on 410 and after failures."""
        backoff = 0.1
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch()
                backoff = 0.1  # the server ended the stream normally: watch on from the last version
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                need_list = True
                if not exc.gone:
                    log.info("informer_retry", path=self.path, error=exc.message, backoff=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
            except Exception as exc:
                need_list = True
                log.warning("informer_failed", path=self.path, error=str(exc), backoff=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)


async def run_until_cancelled(informers: list[Informer]) -> None:
    tasks = [asyncio.create_task(i.run(), name=f"informer {i.path}") for i in informers]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _rv(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))
