"""The Store contract: how the controller reaches state, whatever keeps it.

Two implementations pass one shared contract suite (tests/component/test_store_contract.py):
SQLite (the embedded default, ``store/sqlite.py``) and Kubernetes (CRDs via
kubernetes-asyncio). Semantics follow the Kubernetes API server, because that is the
harder of the two and the controller must not care which it talks to:

- objects are manifest dicts (``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``);
- ``metadata.resourceVersion`` is an opaque string, changed by every write; writes that
  carry one are compare-and-swap and raise ``StaleResourceVersion`` (HTTP 409) on mismatch;
  a write without one is unconditional;
- ``update`` changes everything but ``status``; ``update_status`` changes only ``status``
  (the status subresource); ``create`` drops ``status`` for kinds whose CRD declares a status
  subresource and keeps it for the others (a SpiderEndpoint is created with its status in
  one write), as the API server does;
- ``delete`` of an object with finalizers only sets ``metadata.deletionTimestamp``; the
  object disappears once an update leaves its finalizers empty;
- ``create`` fills ``uid``, ``resourceVersion``, ``creationTimestamp`` and, for a
  ``generateName``, the name;
- ``watch`` yields ADDED/MODIFIED/DELETED events after a resourceVersion (a list's), and
  raises ``Gone`` (HTTP 410) when that version is older than the retained history.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from spiderpool_common.errors import AlreadyExists, Category, Conflict, NotFound, SpiderpoolError, Unavailable

from spiderpool_controller.domain.crd_schema import resource

Obj = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]


class ObjectNotFound(NotFound):
    reason = "OBJECT_NOT_FOUND"


class ObjectAlreadyExists(AlreadyExists):
    reason = "OBJECT_ALREADY_EXISTS"


class StaleResourceVersion(Conflict):
    """HTTP 409: the object changed since the caller read it."""

    category = Category.STALE
    reason = "STALE_RESOURCE_VERSION"


class Gone(SpiderpoolError):
    """HTTP 410: the requested resourceVersion is older than the retained history."""

    category = Category.EXPIRED
    reason = "GONE"


class StoreUnavailable(Unavailable):
    """The backing store cannot answer now (disk error, locked file, API server down)."""

    reason = "STORE_UNAVAILABLE"


@dataclass(frozen=True)
class WatchEvent:
    type: EventType
    object: Obj


class Store(Protocol):
    """The operations the controller may perform on state. All are coroutines."""

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        """Return the object or raise ``ObjectNotFound``."""
        ...

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        """Return matching objects (sorted by namespace, name) and the list's resourceVersion.

        ``namespace=None`` lists every namespace; ``label_selector`` uses Kubernetes syntax
        (``a=b,c!=d,e in (x,y),!f,g``)."""
        ...

    async def create(self, obj: Obj) -> Obj:
        """Create; raise ``ObjectAlreadyExists`` if the name is taken. Returns the stored object."""
        ...

    async def update(self, obj: Obj) -> Obj:
        """Replace metadata and spec (never status); CAS when resourceVersion is set."""
        ...

    async def update_status(self, obj: Obj) -> Obj:
        """Replace status only; CAS when resourceVersion is set."""
        ...

    async def delete(
        self, kind: str, name: str, namespace: str = "", resource_version: str | None = None
    ) -> Obj | None:
        """Delete, or mark for deletion when finalizers remain (returns the marked object)."""
        ...

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Stream changes after ``resource_version`` ("" = from now)."""
        ...

    async def close(self) -> None: ...


def has_status_subresource(kind: str) -> bool:
    """Whether the kind's CRD declares the status subresource (unknown kinds: assume it does)."""
    try:
        return resource(kind).status_subresource
    except KeyError:
        return True
