"""SpiderEndpoint upkeep: one object per pod recording its addresses per interface.

The pool records are the source of truth: they carry pod, UID, container ID, interface,
node and network, so nothing (GC included) depends on the endpoint being written, unlike
upstream's #412 where an IP recorded in a pool without its endpoint leaked invisibly.
The endpoint is the per-pod view for users (``spiderpoolctl get se``): the engine marks a
pod dirty after each durable change, and this writer brings its object in line with what
``describe`` says *at flush time*, coalescing bursts into one write per pod. It runs off
the request path, a short delay after the first mark (``delay_s``, 0.1 s by default), so
an endpoint write never competes with the next allocation for the store, a burst costs
one write per pod, and a pod deleted within the delay costs none. ``flush`` skips the
delay and waits (tests, shutdown); at start every endpoint is marked, which repairs what
a crash left behind. The writer is told what a full listing of the endpoints found
(``learn``): from then on a pod it knows nothing about has no endpoint, and a new pod
costs one create, not a read and a create (a read follows only a conflict, a repair or a
failed write). A write that fails (the API server refused or was away, the leader's fence
closed for a moment) is marked again after a backoff (``retry_s`` doubling up to
``max_retry_s``) until it succeeds or the writer is closed, so a pod's endpoint does not
wait for the engine's next full resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from spiderpool_controller.domain.models import (
    KIND_ENDPOINT,
    EndpointStatus,
    IPAllocationDetail,
    Route,
    new_object,
)
from spiderpool_controller.store.contract import (
    ObjectAlreadyExists,
    ObjectNotFound,
    StaleResourceVersion,
    Store,
)

log = structlog.get_logger(__name__)

RETRIES = 20
PARALLEL_WRITES = 16

EndpointName = tuple[str, str]  # (namespace, name)


@dataclass
class NicAddresses:
    nic: str
    addresses: list[tuple[int, str, str, str | None]]  # (version, ip/len, pool, gateway)
    clean_gateway: bool = False
    routes: list[Route] = field(default_factory=list)

    def detail(self) -> IPAllocationDetail:
        d = IPAllocationDetail(interface=self.nic, clean_gateway=self.clean_gateway, routes=list(self.routes))
        for version, address, pool, gateway in self.addresses:
            if version == 4:
                d.ipv4, d.ipv4_pool, d.ipv4_gateway = address, pool, gateway
            else:
                d.ipv6, d.ipv6_pool, d.ipv6_gateway = address, pool, gateway
        return d


@dataclass
class EndpointView:
    """What the endpoint of one pod should say; ``nics`` empty means it should not exist."""

    uid: str
    node: str
    owner_type: str
    owner_name: str
    nics: list[NicAddresses]

    def status(self) -> EndpointStatus:
        ips = sorted((n.detail() for n in self.nics), key=lambda d: d.interface)
        return EndpointStatus(self.uid, self.node, ips, self.owner_type, self.owner_name)


class EndpointWriter:
    def __init__(
        self,
        store: Store,
        describe: Callable[[EndpointName], EndpointView | None],
        *,
        delay_s: float = 0.1,
        retry_s: float = 0.5,
        max_retry_s: float = 30.0,
    ) -> None:
        self._store = store
        self._describe = describe
        self._delay = delay_s
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._known: dict[EndpointName, tuple[str, bytes]] = {}  # what the store holds, as last seen
        # Once a listing was learned, a name missing from `_known` has no stored endpoint, unless it is
        # here: marked for a re-read, or its last write failed (it may have been done all the same).
        self._learned = False
        self._must_read: set[EndpointName] = set()
        self._failures: dict[EndpointName, int] = {}  # consecutive failed writes, for the backoff
        self._retries: dict[EndpointName, asyncio.TimerHandle] = {}
        self._closed = False
        self._now = asyncio.Event()  # set by flush: write without waiting for the delay
        self._dirty: dict[EndpointName, None] = {}
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def mark(self, names: Iterable[EndpointName], *, reread: bool = False) -> None:
        """``names`` need a look; ``reread``: their stored objects may have changed behind this writer
        (a repair found them different), so read them instead of trusting what was last written."""
        if self._closed:
            return
        for name in names:
            self._dirty[name] = None
            if reread:
                self._distrust(name)
        if self._dirty and (self._task is None or self._task.done()):
            self._idle.clear()
            self._task = asyncio.create_task(self._run(), name="endpoint-writer")

    def _distrust(self, name: EndpointName) -> None:
        """What this writer knows of ``name``'s stored endpoint may be wrong: read it before writing."""
        self._known.pop(name, None)
        self._must_read.add(name)

    def learn(self, objects: Iterable[dict[str, Any]]) -> None:
        """Every stored endpoint, as a full listing found them: names this writer has not written since
        are known by their listed version, and names missing from the listing have no endpoint."""
        for obj in objects:
            meta = obj["metadata"]
            name = (str(meta.get("namespace", "")), str(meta["name"]))
            if name not in self._known:
                self._known[name] = _fingerprint(obj)
        self._learned = True

    async def flush(self) -> None:
        self._now.set()
        await self._idle.wait()

    def close(self) -> None:
        """No more writes: pending retries are dropped (the next leader repairs at its start)."""
        self._closed = True
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        self._dirty.clear()

    def _retry_later(self, name: EndpointName) -> None:
        failures = self._failures[name] = self._failures.get(name, 0) + 1
        if self._closed or name in self._retries:
            return
        delay = min(self._max_retry_s, self._retry_s * 2 ** (failures - 1))

        def again() -> None:
            self._retries.pop(name, None)
            self.mark([name])

        self._retries[name] = asyncio.get_running_loop().call_later(delay, again)

    async def _run(self) -> None:
        sem = asyncio.Semaphore(PARALLEL_WRITES)

        async def one(name: EndpointName) -> None:
            async with sem:
                try:
                    await self._sync(name)
                except Exception as exc:  # keep the view eventually right: try again after a backoff
                    log.warning("endpoint_write_failed", endpoint="/".join(name), error=str(exc))
                    self._distrust(name)  # the write may have been done although it failed here
                    self._retry_later(name)
                else:
                    self._failures.pop(name, None)
                    self._must_read.discard(name)

        try:
            while self._dirty:
                if self._delay > 0 and not self._now.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._delay):
                            await self._now.wait()
                batch = list(self._dirty)
                self._dirty.clear()
                await asyncio.gather(*(one(n) for n in batch))
        finally:
            self._now.clear()
            self._idle.set()

    async def _sync(self, name: EndpointName) -> None:
        ns, pod = name
        for attempt in range(RETRIES):
            view = self._describe(name)
            # What this writer last wrote (or learned from a listing) saves the read before a write
            # (one API call per pod change, not two); a conflict, a repair, a failed write or a pod
            # seen before any listing was learned reads the object instead.
            known = self._known.get(name) if attempt == 0 else None
            obj: dict[str, object] | None = None
            if known is None and (attempt > 0 or not self._learned or name in self._must_read):
                with contextlib.suppress(ObjectNotFound):
                    obj = await self._store.get(KIND_ENDPOINT, pod, ns)
                known = _fingerprint(obj) if obj is not None else None
            try:
                if view is None or not view.nics:
                    self._known.pop(name, None)
                    if known is not None:
                        await self._store.delete(KIND_ENDPOINT, pod, ns, known[0])
                    return
                status = view.status().to_dict()
                digest = _digest(status)
                if known is None:
                    created = await self._store.create(new_object(KIND_ENDPOINT, pod, ns, status=status))
                    if created.get("status") == status:  # no status subresource: one write
                        self._known[name] = _fingerprint(created)
                        return
                    known = _fingerprint(created)
                elif known[1] == digest:
                    return
                body = new_object(KIND_ENDPOINT, pod, ns, status=status)
                body["metadata"]["resourceVersion"] = known[0]
                self._known[name] = _fingerprint(await self._store.update_status(body))
                return
            except (StaleResourceVersion, ObjectAlreadyExists, ObjectNotFound):
                self._known.pop(name, None)
                continue
        raise StaleResourceVersion(f"SpiderEndpoint {ns}/{pod}: too many concurrent changes")


def _digest(status: object) -> bytes:
    return hashlib.blake2b(json.dumps(status, sort_keys=True).encode(), digest_size=16).digest()


def _fingerprint(obj: dict[str, Any]) -> tuple[str, bytes]:
    """(resourceVersion, digest of the status) of a stored endpoint: 150,000 of them cost a few MB."""
    return str(obj["metadata"].get("resourceVersion", "")), _digest(obj.get("status"))
