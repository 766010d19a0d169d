"""kubectl-like apply, get, list and delete of the spiderpool objects over the Store.

Owns what a user's write means (upstream's pkg/ippoolmanager, pkg/subnetmanager,
pkg/reservedipmanager webhooks), whatever keeps the state:

- ``apply`` has ``kubectl apply`` semantics: create when absent, else replace the spec,
  labels and annotations of the stored object, after the same defaulting and validation
  upstream's webhooks run (``domain/validation.py``), immutable fields included. It is a
  compare-and-swap read-modify-write, retried when the IPAM engine wrote the object in
  between, so an update is always validated against the allocations it replaces.
- ``status`` is the IPAM engine's: apply never writes it, except the IP counts a new or
  changed pool or subnet needs (``totalIPCount`` = |ips - excludeIPs - reserved IPs|), which
  it sets through ``update_status`` keeping everything else.
- ``delete`` of a pool or subnet that still has allocations only marks it (the finalizer
  keeps it until the IPAM engine has released the last IP and removes the finalizer); an
  idle one loses the finalizer here and disappears at once. With ``validate_deletes`` on,
  such a delete is refused instead (``validation.validate_delete``, as the webhook does).

Writes through this service are serialised by one lock, so the cross-object rules
(overlapping subnets, pools sharing IPs) are checked against a state no other apply changes
meanwhile; the controller is the only writer of specs.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import structlog
from spiderpool_common.errors import Conflict, InvalidRequest

from spiderpool_controller.domain import models, validation
from spiderpool_controller.domain.validation import ValidationSettings
from spiderpool_controller.store.contract import (
    Obj,
    ObjectAlreadyExists,
    ObjectNotFound,
    StaleResourceVersion,
    Store,
)

log = structlog.get_logger(__name__)

KNOWN_KINDS = frozenset(models.KIND_ALIASES.values()) | {models.KIND_MULTUS_CONFIG}
DEFAULT_ATTEMPTS = 16
Objs = list[Obj]  # module-level: inside the class `list` names the method


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _describe(kind: str, name: str, namespace: str = "") -> str:
    return f'{kind} "{namespace}/{name}"' if namespace else f'{kind} "{name}"'


class ResourceService:
    """Apply/get/list/delete with validation; see the module docstring."""

    def __init__(
        self, store: Store, settings: ValidationSettings | None = None, *, attempts: int = DEFAULT_ATTEMPTS
    ) -> None:
        self._store = store
        self._settings = settings or ValidationSettings()
        self._attempts = attempts
        self._lock = asyncio.Lock()

    # reads ----------------------------------------------------------------------------
    def _scope(self, kind: str, namespace: str | None) -> str | None:
        if kind not in KNOWN_KINDS:
            raise InvalidRequest(f"unknown kind {kind!r}; known: {', '.join(sorted(KNOWN_KINDS))}")
        return namespace if kind in models.NAMESPACED_KINDS else ""

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        """The stored object; ``ObjectNotFound`` names the kind and name."""
        scope = self._scope(kind, namespace) or ""
        if kind in models.NAMESPACED_KINDS and not scope:
            raise InvalidRequest(f"{kind} is namespaced: give the namespace of {name!r}")
        try:
            return await self._store.get(kind, name, scope)
        except ObjectNotFound:
            raise ObjectNotFound(f"{_describe(kind, name, scope)} not found") from None

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[Objs, str]:
        """Objects of ``kind`` (all namespaces when ``namespace`` is None or empty) and the list's version."""
        scope = self._scope(kind, namespace or None)
        return await self._store.list(kind, scope or None, label_selector or None)

    # apply ----------------------------------------------------------------------------
    async def apply(self, obj: Obj) -> tuple[Obj, bool, bool]:
        """Create or update from a manifest; return (stored object, created, unchanged)."""
        desired = validation.default_object(obj)
        validation.validate_create(desired, (), self._settings)  # shape and own fields, before any read
        kind, name = desired["kind"], desired["metadata"]["name"]
        namespace = str(desired["metadata"].get("namespace") or "")
        async with self._lock:
            for _ in range(self._attempts):
                try:
                    existing: Obj | None = await self._store.get(kind, name, namespace)
                except ObjectNotFound:
                    existing = None
                try:
                    if existing is None:
                        return await self._create(desired), True, False
                    return await self._update(existing, desired)
                except (StaleResourceVersion, ObjectAlreadyExists):
                    continue  # written meanwhile (e.g. the IPAM engine's status): read again
            raise Conflict(f"{_describe(kind, name, namespace)} kept changing during apply; try again")

    async def _peers(self, kind: str) -> Objs:
        """The stored objects the rules of ``kind`` compare against (``validation.peer_kinds``)."""
        out: Objs = []
        for peer_kind in validation.peer_kinds(kind):
            objs, _ = await self._store.list(peer_kind)
            out += objs
        return out

    async def _create(self, desired: Obj) -> Obj:
        kind = desired["kind"]
        validation.validate_create(desired, await self._peers(kind), self._settings)
        stored = await self._store.create(desired)
        log.info("object_created", kind=kind, name=desired["metadata"]["name"])
        if kind in validation.POOL_LIKE_KINDS:
            stored = await self._refresh_counts(stored)
        elif kind == models.KIND_RESERVED_IP:
            await self._refresh_all_pool_counts()
        return stored

    async def _update(self, existing: Obj, desired: Obj) -> tuple[Obj, bool, bool]:
        kind, name = desired["kind"], desired["metadata"]["name"]
        old_meta, new_meta = _meta(existing), desired["metadata"]
        if old_meta.get("deletionTimestamp"):
            raise Conflict(f"{_describe(kind, name)} is being deleted; apply it again once it is gone")
        merged = copy.deepcopy(existing)
        merged["spec"] = desired["spec"]
        meta = merged["metadata"]
        for key in ("labels", "annotations"):
            if (old_meta.get(key) or {}) != (new_meta.get(key) or {}):
                meta[key] = dict(new_meta.get(key) or {})
        finalizers = list(old_meta.get("finalizers") or [])
        finalizers += [f for f in new_meta.get("finalizers") or [] if f not in finalizers]
        if finalizers != list(old_meta.get("finalizers") or []):
            meta["finalizers"] = finalizers
        if merged == existing:
            return existing, False, True
        validation.validate_update(existing, merged, await self._peers(kind), self._settings)
        stored = await self._store.update(merged)
        log.info("object_updated", kind=kind, name=name)
        if kind in validation.POOL_LIKE_KINDS:
            stored = await self._refresh_counts(stored)
        elif kind == models.KIND_RESERVED_IP:
            await self._refresh_all_pool_counts()
        return stored, False, False

    # status counts --------------------------------------------------------------------
    async def _reserved(self, kind: str) -> Objs:
        if kind != models.KIND_IPPOOL:
            return []
        objs, _ = await self._store.list(models.KIND_RESERVED_IP)
        return objs

    async def _refresh_counts(self, obj: Obj, reserved: Objs | None = None) -> Obj:
        """Set ``totalIPCount`` (and a missing ``allocatedIPCount``), keeping the rest of status."""
        kind, name = obj["kind"], _meta(obj)["name"]
        if reserved is None:
            reserved = await self._reserved(kind)
        current = obj
        for _ in range(self._attempts):
            status = dict(current.get("status") or {})
            wanted = {**status, "totalIPCount": validation.total_ip_count(current, reserved)}
            wanted.setdefault("allocatedIPCount", 0)
            if wanted == status:
                return current
            try:
                return await self._store.update_status({**current, "status": wanted})
            except StaleResourceVersion:
                try:
                    current = await self._store.get(kind, name)
                except ObjectNotFound:
                    return current
        raise Conflict(f"{_describe(kind, name)} kept changing while its IP count was updated; apply again")

    async def _refresh_all_pool_counts(self) -> None:
        reserved = await self._reserved(models.KIND_IPPOOL)
        pools, _ = await self._store.list(models.KIND_IPPOOL)
        for pool in pools:
            await self._refresh_counts(pool, reserved)

    # delete ---------------------------------------------------------------------------
    async def delete(self, kind: str, name: str, namespace: str = "") -> Obj:
        """Delete; a pool or subnet with allocations stays, marked, until the IPAM engine frees it.

        Returns the object as last seen: with ``deletionTimestamp`` when it is kept.
        """
        async with self._lock:
            existing = await self.get(kind, name, namespace)
            validation.validate_delete(existing, self._settings)
            scope = _meta(existing).get("namespace") or ""
            try:
                marked = await self._store.delete(kind, name, scope)
            except ObjectNotFound:
                raise ObjectNotFound(f"{_describe(kind, name, scope)} not found") from None
            result = existing
            if (
                marked is not None
                and _meta(marked).get("deletionTimestamp")
                and _meta(marked).get("finalizers")
            ):
                result = marked
                if kind in validation.POOL_LIKE_KINDS:
                    result = await self._finalize_if_idle(marked)
            log.info("object_deleted", kind=kind, name=name, namespace=scope)
            if kind == models.KIND_RESERVED_IP:
                await self._refresh_all_pool_counts()
            return result

    async def _finalize_if_idle(self, obj: Obj) -> Obj:
        """Drop our finalizer from a marked pool or subnet that has nothing allocated.

        The IPAM engine may finalize it first (it watches terminating pools); a pool found
        gone is returned without finalizers, as the store last had it.
        """
        kind, name = obj["kind"], _meta(obj)["name"]
        current = obj
        for _ in range(self._attempts):
            finalizers = list(_meta(current).get("finalizers") or [])
            if models.FINALIZER not in finalizers or validation.has_allocations(current):
                return current
            released = copy.deepcopy(current)
            released["metadata"]["finalizers"] = [f for f in finalizers if f != models.FINALIZER]
            try:
                return await self._store.update(released)
            except StaleResourceVersion:
                pass
            except ObjectNotFound:
                return released
            try:
                current = await self._store.get(kind, name)
            except ObjectNotFound:
                return released
        return current
