"""The Store contract on the Kubernetes API: the project's custom resources through kubernetes-asyncio.

Owns the mapping from the contract's operations to the API server's REST calls for the
``spiderpool.spidernet.io/v2beta1`` kinds. The API server itself provides the contract's
semantics (that is why the contract follows it): ``resourceVersion`` compare-and-swap with
409, the status subresource, finalizers and ``deletionTimestamp``, ``generateName``, label
selectors, watches with 410. Decisions:

- ``update_status`` writes the status subresource for kinds whose CRD declares one, and
  replaces the whole object (keeping what it holds) for the others.
- ``delete`` with a ``resource_version`` sends it as a precondition (409 on mismatch).
- ``watch`` re-opens its stream from the last seen resourceVersion whenever the server
  ends it (timeouts, bookmarks keep the version current), and raises ``Gone`` on 410, so a
  caller re-lists exactly as with the SQLite store.
- Every call has a deadline (``request_timeout_s``); errors leave through
  ``kubernetes_errors.translate``.
- The client configuration is loaded on first use: a kubeconfig file when one is given,
  in-cluster configuration otherwise (the controller's ServiceAccount).

A pool's status is one object: at upstream's cap of 5,000 allocation records per pool
(``--max-allocated-ips``) the ``allocatedIPs`` map stays below the API server's 1.5 MiB
request limit (about 260 bytes per record with this project's fields: ~1.3 MB); the cap
is enforced before a record is added, so a write never grows past it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from spiderpool_common.errors import InvalidRequest
from spiderpool_common.kube.config import api_client

from spiderpool_controller.domain import crd_schema
from spiderpool_controller.domain.models import (
    API_GROUP,
    KIND_COORDINATOR,
    KIND_ENDPOINT,
    KIND_IPPOOL,
    KIND_MULTUS_CONFIG,
    KIND_RESERVED_IP,
    KIND_SUBNET,
)
from spiderpool_controller.store.contract import Gone, Obj, StaleResourceVersion, StoreUnavailable, WatchEvent
from spiderpool_controller.store.kubernetes_errors import translate

VERSION = "v2beta1"
UNCONDITIONAL_RETRIES = 16
T = TypeVar("T")


@dataclass(frozen=True)
class Resource:
    plural: str
    namespaced: bool
    status_subresource: bool


RESOURCES: dict[str, Resource] = {
    kind: Resource(res.plural, namespaced=res.namespaced, status_subresource=res.status_subresource)
    for kind, res in ((k, crd_schema.resource(k)) for k in (
        KIND_IPPOOL, KIND_SUBNET, KIND_RESERVED_IP, KIND_ENDPOINT, KIND_MULTUS_CONFIG, KIND_COORDINATOR
    ))
}  # fmt: skip


def resource_of(kind: str) -> Resource:
    found = RESOURCES.get(kind)
    if found is None:
        raise ValueError(f"kind {kind!r} is not a spiderpool custom resource")
    return found


class KubernetesStore:
    """The Store contract over ``CustomObjectsApi``; one client per store."""

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        api_client: Any = None,
        request_timeout_s: float = 10.0,
        watch_timeout_s: int = 240,
    ) -> None:
        self._kubeconfig = kubeconfig
        self._client = api_client
        self._owns_client = api_client is None
        self._api: Any = None
        self._lock = asyncio.Lock()
        self._timeout = request_timeout_s
        self._watch_timeout = watch_timeout_s
        self._last_rv = ""  # the newest resourceVersion this store has seen (watch "from now")

    async def custom_objects(self) -> Any:
        """The ``CustomObjectsApi``, configured on first use."""
        if self._api is None:
            async with self._lock:
                if self._api is None:
                    from kubernetes_asyncio import client  # noqa: PLC0415 (heavy)

                    if self._client is None:
                        self._client = await api_client(self._kubeconfig)
                    self._api = client.CustomObjectsApi(self._client)
        return self._api

    async def _call(self, what: str, make: Callable[[Any], Awaitable[T]]) -> T:
        api = await self.custom_objects()
        try:
            async with asyncio.timeout(self._timeout):  # not wait_for: it can lose a cancellation (3.11)
                result = await make(api)
        except Exception as exc:
            raise translate(exc, what) from exc
        if isinstance(result, dict):
            self._seen(str((result.get("metadata") or {}).get("resourceVersion", "")))
        return result

    def _seen(self, version: str) -> None:
        if version.isdigit() and (not self._last_rv.isdigit() or int(version) > int(self._last_rv)):
            self._last_rv = version

    # -- reads ------------------------------------------------------------------------
    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        res = resource_of(kind)
        what = f"{kind} {_qualified(namespace, name)}"
        if res.namespaced:
            return await self._call(
                what,
                lambda api: api.get_namespaced_custom_object(API_GROUP, VERSION, namespace, res.plural, name),
            )
        return await self._call(
            what, lambda api: api.get_cluster_custom_object(API_GROUP, VERSION, res.plural, name)
        )

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        res = resource_of(kind)
        kwargs: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
        if res.namespaced and namespace:
            reply = await self._call(
                f"{kind} list",
                lambda api: api.list_namespaced_custom_object(
                    API_GROUP, VERSION, namespace, res.plural, **kwargs
                ),
            )
        else:
            reply = await self._call(
                f"{kind} list",
                lambda api: api.list_cluster_custom_object(API_GROUP, VERSION, res.plural, **kwargs),
            )
        items = list(reply.get("items") or [])
        for item in items:  # a list's items carry no apiVersion/kind
            item.setdefault("apiVersion", f"{API_GROUP}/{VERSION}")
            item.setdefault("kind", kind)
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        version = str((reply.get("metadata") or {}).get("resourceVersion", ""))
        self._seen(version)
        return items, version

    # -- writes -----------------------------------------------------------------------
    async def create(self, obj: Obj) -> Obj:
        kind, res, namespace, name = _identify(obj, need_name=False)
        meta = obj.get("metadata") or {}
        if not name and not meta.get("generateName"):
            raise InvalidRequest(f"{kind}: metadata.name or metadata.generateName is required")
        if meta.get("resourceVersion"):
            raise InvalidRequest(f"{kind} {name}: resourceVersion must not be set on objects to be created")
        what = f"{kind} {_qualified(namespace, name or obj['metadata'].get('generateName', '') + '*')}"
        body = _with_api_version(obj)
        if res.namespaced:
            return await self._call(
                what,
                lambda api: api.create_namespaced_custom_object(
                    API_GROUP, VERSION, namespace, res.plural, body
                ),
            )
        return await self._call(
            what, lambda api: api.create_cluster_custom_object(API_GROUP, VERSION, res.plural, body)
        )

    async def update(self, obj: Obj) -> Obj:
        if not obj["metadata"].get("resourceVersion"):
            return await self._unconditional(obj, self.update)
        kind, res, namespace, name = _identify(obj)
        body = _with_api_version(obj)
        if not res.status_subresource:
            # Without a status subresource the main write would take the caller's status:
            # keep the stored one, as the contract says update never changes status.
            current = await self.get(kind, name, namespace)
            body = {**body, "status": current.get("status")} if "status" in current else _without_status(body)
        return await self._replace(kind, res, namespace, name, body, status=False)

    async def update_status(self, obj: Obj) -> Obj:
        if not obj["metadata"].get("resourceVersion"):
            return await self._unconditional(obj, self.update_status)
        kind, res, namespace, name = _identify(obj)
        if res.status_subresource:
            return await self._replace(kind, res, namespace, name, _with_api_version(obj), status=True)
        current = await self.get(kind, name, namespace)
        rv = obj["metadata"].get("resourceVersion")
        body = {**current, "status": obj.get("status")}
        body["metadata"] = {**current["metadata"], **({"resourceVersion": rv} if rv else {})}
        return await self._replace(kind, res, namespace, name, body, status=False)

    async def _unconditional(self, obj: Obj, write: Callable[[Obj], Awaitable[Obj]]) -> Obj:
        """A write without a resourceVersion: the API server refuses those for custom
        resources, so read the current version and write with it, again on a conflict."""
        kind, _, namespace, name = _identify(obj)
        for _ in range(UNCONDITIONAL_RETRIES):
            current = await self.get(kind, name, namespace)
            uid = obj["metadata"].get("uid")
            if uid and uid != current["metadata"].get("uid"):
                raise StaleResourceVersion(
                    f"{kind} {_qualified(namespace, name)}: uid {uid} names an earlier incarnation"
                )
            meta = {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}
            try:
                return await write({**obj, "metadata": meta})
            except StaleResourceVersion:
                continue
        raise StaleResourceVersion(f"{kind} {_qualified(namespace, name)}: too many concurrent changes")

    async def _replace(
        self, kind: str, res: Resource, namespace: str, name: str, body: Obj, *, status: bool
    ) -> Obj:
        what = f"{kind} {_qualified(namespace, name)}" + (" status" if status else "")
        suffix = "_status" if status else ""
        if res.namespaced:
            method = f"replace_namespaced_custom_object{suffix}"
            return await self._call(
                what,
                lambda api: getattr(api, method)(API_GROUP, VERSION, namespace, res.plural, name, body),
            )
        method = f"replace_cluster_custom_object{suffix}"
        return await self._call(
            what, lambda api: getattr(api, method)(API_GROUP, VERSION, res.plural, name, body)
        )

    async def delete(
        self, kind: str, name: str, namespace: str = "", resource_version: str | None = None
    ) -> Obj | None:
        res = resource_of(kind)
        what = f"{kind} {_qualified(namespace, name)}"
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if resource_version:
            options["preconditions"] = {"resourceVersion": resource_version}
        prefix = f"/apis/{API_GROUP}/{VERSION}" + (f"/namespaces/{namespace}" if res.namespaced else "")
        path = f"{prefix}/{res.plural}/{name}"
        # The generated delete maps only 200 to a body; 202 (finalizers remain) carries the
        # marked object too.
        out = await self._call(
            what,
            lambda api: api.api_client.call_api(
                path,
                "DELETE",
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=options,
                response_types_map={200: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=self._timeout,
            ),
        )
        if isinstance(out, dict) and out.get("kind") != "Status" and out.get("metadata"):
            return out  # the last state, or the object marked for deletion (finalizers remain)
        return None

    # -- watch ------------------------------------------------------------------------
    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Events after ``resource_version``; "" means after every write this store has seen
        (captured now, when the watch is opened), or after a fresh list if it has seen none."""
        return self._watch(kind, namespace, resource_version or self._last_rv, label_selector)

    async def _watch(
        self, kind: str, namespace: str | None, resource_version: str, label_selector: str | None
    ) -> AsyncIterator[WatchEvent]:
        from kubernetes_asyncio import watch  # noqa: PLC0415

        res = resource_of(kind)
        api = await self.custom_objects()
        rv = resource_version
        if not rv:  # nothing seen yet: the list's version, so no existing object is replayed
            _, rv = await self.list(kind, namespace, label_selector)
        while True:
            kwargs: dict[str, Any] = {
                "resource_version": rv,
                "allow_watch_bookmarks": True,
                "timeout_seconds": self._watch_timeout,
            }
            if label_selector:
                kwargs["label_selector"] = label_selector
            stream = watch.Watch()
            if res.namespaced and namespace:
                events = stream.stream(
                    api.list_namespaced_custom_object, API_GROUP, VERSION, namespace, res.plural, **kwargs
                )
            else:
                events = stream.stream(
                    api.list_cluster_custom_object, API_GROUP, VERSION, res.plural, **kwargs
                )
            try:
                async for event in events:
                    obj = event.get("raw_object") or event.get("object")
                    kind_of_event = event.get("type")
                    if not isinstance(obj, dict):
                        continue
                    rv = str((obj.get("metadata") or {}).get("resourceVersion", rv))
                    if kind_of_event in ("ADDED", "MODIFIED", "DELETED"):
                        yield WatchEvent(kind_of_event, obj)
            except Exception as exc:
                error = translate(exc, f"{kind} watch")
                if isinstance(error, Gone):
                    raise error from exc
                if isinstance(error, StoreUnavailable):
                    await asyncio.sleep(0.5)  # the API server is away: try again from rv
                    continue
                raise error from exc
            finally:
                with contextlib.suppress(Exception):
                    await stream.close()

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.close()
        self._client = None
        self._api = None


def _qualified(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _identify(obj: Obj, *, need_name: bool = True) -> tuple[str, Resource, str, str]:
    kind = str(obj.get("kind", ""))
    res = resource_of(kind)
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    if res.namespaced and not namespace:
        raise ValueError(f"{kind} {name}: metadata.namespace is required")
    if need_name and not name:
        raise ValueError(f"{kind}: metadata.name is required")
    return kind, res, namespace, name


def _with_api_version(obj: Obj) -> Obj:
    return {**obj, "apiVersion": obj.get("apiVersion") or f"{API_GROUP}/{VERSION}"}


def _without_status(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k != "status"}
