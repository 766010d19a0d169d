"""A Store whose writes pass a gate first: the leader's fencing in a cluster.

Owns the rule that only the current leader writes: ``WriteFence``, the one gate every write a
cluster's controller makes passes (this Store's, and ``fenced_rest.FencedRest``'s for what the
reconcilers write outside it). Every write checks
``may_write()`` immediately before it is handed to the inner store and raises ``NotLeader``
(code 11: the agent retries, and reaches the new leader) when the gate is closed; reads and
watches pass through. ``leader.LeaderElector.may_write`` closes the gate once the Lease
could not be renewed within the renew deadline, before any other replica may take it.

The same gate is checked again at the last moment, as the request leaves the HTTP client
(``spiderpool_common.kube.write_fence``, installed on the cluster's client): a process
frozen between the first check and the send finds the gate closed when it resumes and sends
nothing. A write that fails while the gate is closed is reported as ``NotLeader`` whatever
the client made of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from spiderpool_common.errors import Unavailable
from spiderpool_common.kube.write_fence import gated

from spiderpool_controller.store.contract import Obj, Store, WatchEvent

T = TypeVar("T")


class NotLeader(Unavailable):
    reason = "NOT_LEADER"


class WriteFence:
    """The gate around one write: checked before it is handed on and again as it leaves the client."""

    def __init__(self, may_write: Callable[[], bool]) -> None:
        self.may_write = may_write

    async def write(self, what: str, write: Callable[[], Awaitable[T]]) -> T:
        """``write()`` while the gate is open; ``NotLeader`` when it is closed or closes meanwhile."""
        if not self.may_write():
            raise NotLeader(f"{what}: this controller replica is not the leader; try again")
        try:
            with gated(self.may_write):
                return await write()
        except NotLeader:
            raise
        except Exception as exc:
            if not self.may_write():
                raise NotLeader(f"{what}: this controller replica is not the leader; try again") from exc
            raise


class FencedStore:
    def __init__(self, inner: Store, may_write: Callable[[], bool]) -> None:
        self.inner = inner
        self.fence = WriteFence(may_write)

    async def _write(self, what: str, write: Callable[[], Awaitable[T]]) -> T:
        return await self.fence.write(what, write)

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        return await self.inner.get(kind, name, namespace)

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        return await self.inner.list(kind, namespace, label_selector)

    async def create(self, obj: Obj) -> Obj:
        return await self._write(f"create {obj.get('kind')}", lambda: self.inner.create(obj))

    async def update(self, obj: Obj) -> Obj:
        return await self._write(f"update {obj.get('kind')}", lambda: self.inner.update(obj))

    async def update_status(self, obj: Obj) -> Obj:
        return await self._write(f"update {obj.get('kind')} status", lambda: self.inner.update_status(obj))

    async def delete(
        self, kind: str, name: str, namespace: str = "", resource_version: str | None = None
    ) -> Obj | None:
        return await self._write(
            f"delete {kind}", lambda: self.inner.delete(kind, name, namespace, resource_version)
        )

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        return self.inner.watch(kind, namespace, resource_version, label_selector)

    async def close(self) -> None:
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
