"""The HTTP(S) server: routing, content negotiation, watch streams, and the wiring of every other module.

`KubeApiServer` is an asyncio object (`await start()`, `await stop()`); `ServerThread` runs one on a
background event loop for synchronous tests. Each request is authenticated (bearer token), counted and checked
against the injected faults (pause, delay, errors), authorized (RBAC when enforced), then routed: discovery,
OpenAPI and `/version` here; resources to `rest.Api`; watches are streamed from `store.Store` here, with
resourceVersion replay, synthetic ADDED events for "0"/absent, the 410 ERROR event, bookmarks,
`sendInitialEvents` and `timeoutSeconds`; `/_kubeapi/...` is the admin endpoint (`admin.py`). Query booleans
parse like the Go server (anything but `0`, `f`, `false` in any case is true: kubernetes-asyncio sends
`watch=True`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import socket
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from . import admin, discovery, openapi, protobuf, tables
from .admission import Admission
from .certs import CertificateAuthority
from .errors import MODIFIED, ApiError, bad_request, conflict
from .faults import WRITE_VERBS, Faults
from .kinds import Registry, ResourceType
from .kubeconfig import write_in_cluster, write_kubeconfig
from .multus import NAD_CRD
from .rbac import Attributes, Authenticator, Authorizer, User, bootstrap_objects
from .rest import Api, Ctx, Result
from .selectors import exact_name
from .store import Event, Obj, Store, TooOld, meta
from .write_log import WriteEntry, WriteLog

T = TypeVar("T")
log = logging.getLogger(__name__)
TABLE_CT = "application/json;as=Table;v=v1;g=meta.k8s.io"
JSON_CT = "application/json"
NOT_FOUND = "the server could not find the requested resource"


def go_bool(value: str | None) -> bool:
    """The API server's query boolean: absent, `0`, `f`, `false` (any case) are false, anything else true."""
    if value is None:
        return False
    return value.lower() not in ("0", "f", "false")


@dataclass
class ServerConfig:
    """How to run the server. Every field has a test-friendly default."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    tls: bool = True
    state_dir: Path | None = None  # kubeconfig, certificates, in-cluster files; a temporary directory if None
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    history_size: int = 10_000  # watch events kept; older resourceVersions get 410 Expired
    fake_workload_status: bool = True  # see workloads.py
    rbac_enforce: bool = False
    service_urls: dict[tuple[str, str], str] = field(
        default_factory=dict
    )  # (ns, service) -> base URL (webhooks)
    install_multus_crd: bool = True  # NetworkAttachmentDefinition served as an installed CRD, as with Multus
    bookmark_interval: float = 30.0
    max_watch_seconds: float = (
        1800.0  # a watch without timeoutSeconds ends after this (the real one: 30-60 min)
    )
    version: tuple[int, int, int] = (
        1,
        37,
        1,
    )  # /version: minor follows the pinned kubectl (skew warning otherwise)
    # Already-listening TCP sockets to serve instead of binding host:port, e.g. sockets made inside other
    # network namespaces (a socket stays in the namespace it was created in), so that clients there reach
    # this server at the same address; `python -m tests.kubeapi --listen-fd FD` passes inherited ones. The
    # URL and the kubeconfig name `host` and the first socket's port; the certificate is for `host`.
    sockets: tuple[socket.socket, ...] = ()


@dataclass(frozen=True)
class Route:
    rt: ResourceType
    namespace: str
    name: str
    subresource: str


class KubeApiServer:
    """An in-memory Kubernetes API server on a real socket. See the package docstring for what it models."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.store = Store(self.config.history_size)
        self.registry = Registry()
        self.faults = Faults()
        self.writes = WriteLog()
        self.auth = Authenticator()
        self.auth.add(
            self.config.admin_token, User("kubernetes-admin", ("system:masters", "system:authenticated"))
        )
        self.authorizer = Authorizer(self.store.view)
        self.authorizer.enforce = self.config.rbac_enforce
        self.store.listeners.append(self._on_rbac_change)
        self.admission = Admission(
            lambda plural: self.store.view(f"admissionregistration.k8s.io/{plural}"),
            self._namespace_labels,
            self.config.service_urls,
        )
        self.api = Api(self.store, self.registry, self.admission, self.config.fake_workload_status)
        self.ca = CertificateAuthority() if self.config.tls else None
        self._own_state_dir = self.config.state_dir is None
        self.state_dir = self.config.state_dir or Path(tempfile.mkdtemp(prefix="kubeapi-"))
        self._runner: web.AppRunner | None = None
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self._seed()

    def _on_rbac_change(self, ev: Event) -> None:
        if ev.key.startswith("rbac.authorization.k8s.io/"):
            self.authorizer.invalidate()

    def _namespace_labels(self, namespace: str) -> dict[str, str]:
        return self.api.namespace_labels(namespace)

    # --- lifecycle ------------------------------------------------------------------------------------------

    def _seed(self) -> None:
        ns_rt = self.registry.get("", "v1", "namespaces")
        assert ns_rt is not None
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.api.seed(
                ns_rt, {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}}
            )
        for obj in bootstrap_objects():
            rt = self.registry.by_kind(obj["apiVersion"], obj["kind"])
            assert rt is not None
            self.api.seed(rt, obj)
        if self.config.install_multus_crd:
            crd_rt = self.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            assert crd_rt is not None
            self.api.seed(crd_rt, NAD_CRD)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.store.accept_watches()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        ssl_ctx = None
        if self.ca is not None:
            ssl_ctx = self.ca.server_pair((self.config.host,)).server_context(self.state_dir / "pki")
            (self.state_dir / "pki" / "ca.crt").write_bytes(self.ca.cert_pem)
        if self.config.sockets:
            for sock in self.config.sockets:
                await web.SockSite(self._runner, sock, ssl_context=ssl_ctx).start()
            self.port = self.config.sockets[0].getsockname()[1]
        else:
            site = web.TCPSite(
                self._runner, self.config.host, self.config.port, ssl_context=ssl_ctx, reuse_address=True
            )
            await site.start()
            server = site._server
            assert server is not None
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]
        write_kubeconfig(self.kubeconfig_path, self.url, self.config.admin_token, self.ca_pem)

    async def stop(self) -> None:
        self.store.close_watchers(for_good=True)
        await self.admission.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        # A closed transport releases its socket in a callback on a later loop iteration: run
        # those now, or a caller that closes its loop next leaves the sockets to garbage collection.
        for _ in range(3):
            await asyncio.sleep(0)
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"{'https' if self.ca else 'http'}://{host}:{self.port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def ca_pem(self) -> bytes | None:
        return self.ca.cert_pem if self.ca else None

    def write_kubeconfig(self, path: Path, token: str | None = None, namespace: str = "default") -> Path:
        """A kubeconfig for this server (admin by default; pass a ServiceAccount's token to act as it)."""
        return write_kubeconfig(path, self.url, token or self.config.admin_token, self.ca_pem, namespace)

    def write_in_cluster(
        self, directory: Path, token: str | None = None, namespace: str = "default"
    ) -> dict[str, str]:
        """The in-cluster files (token, ca.crt, namespace); returns KUBERNETES_SERVICE_HOST/PORT."""
        return write_in_cluster(
            directory, self.config.host, self.port, token or self.config.admin_token, self.ca_pem, namespace
        )

    # --- runtime controls (call on the server's loop; ServerThread wraps them) -----------------------------

    def drop_watches(self) -> int:
        """End every open watch stream now (clients see the stream close); returns how many."""
        return self.store.close_watchers()

    def drop_connections(self) -> int:
        """Abort every open client connection (watches and keep-alive ones); returns how many."""
        self.store.close_watchers()
        transports = [t for t in list(self._transports) if not t.is_closing()]
        for t in transports:
            t.abort()  # type: ignore[attr-defined]
        return len(transports)

    def compact(self) -> None:
        """Forget the watch history: a watch from any earlier resourceVersion now gets 410 Expired."""
        self.store.compact()

    # --- request handling ----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            self._transports.add(request.transport)
        try:
            if request.path.startswith(admin.PREFIX):
                user = self.auth.authenticate(request.headers.get("Authorization"))
                if "system:masters" not in user.groups:
                    raise ApiError(403, "forbidden: the admin endpoint needs a system:masters user")
                return await admin.handle(self, request)
            return await self._serve(request)
        except ApiError as exc:
            return _json(exc.code, exc.status(), exc.headers)
        except (web.HTTPException, ConnectionResetError):
            raise
        except Exception as exc:  # a bug here must still answer like a server, and be visible in the test log
            log.exception("kubeapi: unhandled error on %s %s", request.method, request.path)
            err = ApiError(500, f"Internal error occurred: {type(exc).__name__}: {exc}")
            return _json(500, err.status())

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        received = time.time()
        user = self.auth.authenticate(request.headers.get("Authorization"))
        while self.faults.paused:
            await asyncio.sleep(0.01)
        route = self._route(request.path)
        query = {k: request.query.getone(k) for k in request.query}
        if route is None:
            verb = request.method.lower()
            self._inject(verb, request.path, "", "")
            self.authorizer.check(Attributes(user, verb, path=request.path))
            return await self._non_resource(request)
        verb = _verb(request.method, route, go_bool(query.get("watch")))
        resource = f"{route.rt.plural}/{route.subresource}" if route.subresource else route.rt.plural
        decision = self.faults.decide(verb, resource, route.namespace, route.name)
        if decision.delay:
            await asyncio.sleep(decision.delay)
        if decision.status:
            raise _injected(decision.status, decision.message, route)
        name = route.name
        if not name and verb in ("list", "watch"):
            name = exact_name(query.get("fieldSelector"))
        self.authorizer.check(
            Attributes(user, verb, route.rt.group, route.rt.plural, route.subresource, route.namespace, name)
        )
        ctx = Ctx(
            route.rt,
            route.namespace,
            route.name,
            route.subresource,
            query,
            user,
            request.headers.get("User-Agent", ""),
        )
        try:
            return await self._resource(request, ctx, verb, received)
        except ApiError as exc:
            self.faults.count_error(verb, resource, exc.code)
            raise

    def _inject(self, verb: str, path: str, namespace: str, name: str) -> None:
        decision = self.faults.decide(verb, path, namespace, name)
        if decision.status:
            raise ApiError(decision.status, decision.message or "injected fault")

    def _route(self, path: str) -> Route | None:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if not rest:
            return None
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            nested = self.registry.get(group, version, rest[2])
            if nested is not None and nested.namespaced:
                namespace, rest = rest[1], rest[2:]
        rt = self.registry.get(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise ApiError(404, NOT_FOUND, details={})
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and (sub != "status" or not rt.status):
            raise ApiError(404, NOT_FOUND, details={})
        return Route(rt, namespace, name, sub)

    async def _non_resource(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        accept = request.headers.get("Accept", "")
        if request.method != "GET":
            raise ApiError(405, "the server does not allow this method on the requested resource")
        if path == "/version":
            return _json(200, self._version())
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path in ("/api", "/apis"):
            agg = discovery.wants_aggregated(accept)
            if agg in ("v2", "v2beta1"):
                body = discovery.aggregated(self.registry, path == "/api", agg)
                ct = f"application/json;g=apidiscovery.k8s.io;v={agg};as=APIGroupDiscoveryList"
                return _json(200, body, content_type=ct)
            return _json(
                200, discovery.api_versions() if path == "/api" else discovery.api_group_list(self.registry)
            )
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 2:
            group = discovery.api_group(self.registry, parts[1])
            if group is not None:
                return _json(200, group)
        if (parts[0] == "apis" and len(parts) == 3) or parts == ["api", "v1"]:
            group_name, version = ("", "v1") if parts[0] == "api" else (parts[1], parts[2])
            resources = discovery.api_resource_list(self.registry, group_name, version)
            if resources is not None:
                return _json(200, resources)
        if path == "/openapi/v2":
            return web.Response(
                body=openapi.v2_stub(self._git_version()), content_type=openapi.V2_CONTENT_TYPE
            )
        if path == "/openapi/v3":
            return _json(200, openapi.index(self.registry))
        if path.startswith("/openapi/v3/"):
            doc = openapi.gv_document(self.registry, path[len("/openapi/v3/") :], self._git_version())
            if doc is not None:
                return _json(200, doc)
        raise ApiError(404, NOT_FOUND, details={})

    def _git_version(self) -> str:
        major, minor, patch = self.config.version
        return f"v{major}.{minor}.{patch}"

    def _version(self) -> dict[str, str]:
        major, minor, _ = self.config.version
        return {
            "major": str(major),
            "minor": str(minor),
            "gitVersion": self._git_version() + "-kubeapi",
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.25.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    async def _resource(
        self, request: web.Request, ctx: Ctx, verb: str, received: float = 0.0
    ) -> web.StreamResponse:
        table = _wants_table(request.headers.get("Accept", ""))
        include = ctx.query.get("includeObject", "Metadata")
        rt = ctx.rt
        if rt.key == "authorization.k8s.io/selfsubjectaccessreviews":
            return _json(201, self._access_review(ctx, await _body(request)))
        if verb == "get":
            obj = self.api.get(ctx)
            if table:
                return _json(
                    200, tables.table(rt, [obj], meta(obj)["resourceVersion"], include), content_type=TABLE_CT
                )
            return _json(200, obj)
        if verb == "list":
            items, rv, cont, remaining = self.api.list_page(ctx)
            if table:
                body = tables.table(rt, items, rv, include, cont, remaining)
                return _json(200, body, content_type=TABLE_CT)
            md: dict[str, Any] = {"resourceVersion": rv}
            if cont:
                md["continue"] = cont
                md["remainingItemCount"] = remaining
            return _json(
                200, {"kind": rt.list_kind, "apiVersion": rt.group_version, "metadata": md, "items": items}
            )
        if verb == "watch":
            return await self._watch(request, ctx, table, include)
        result: Result
        if verb == "create":
            result = await self.api.create(ctx, await _body(request))
        elif verb == "update":
            result = await self.api.update(ctx, await _body(request))
        elif verb == "patch":
            result = await self.api.patch(ctx, await request.read(), request.headers.get("Content-Type", ""))
        elif verb == "delete":
            result = await self.api.delete(ctx, await _delete_options(request))
        elif verb == "deletecollection":
            result = await self.api.delete_collection(ctx, await _delete_options(request))
        else:
            raise ApiError(405, "the server does not allow this method on the requested resource")
        if verb in WRITE_VERBS and not ctx.dry_run:
            written = result.body.get("metadata") or {}
            self.writes.record(
                WriteEntry(
                    received, time.time(), verb,
                    f"{rt.plural}/{ctx.subresource}" if ctx.subresource else rt.plural,
                    ctx.namespace, ctx.name or str(written.get("name", "")), ctx.user.name, ctx.user_agent,
                    result.status, str(written.get("resourceVersion", "")),
                )
            )  # fmt: skip
        headers = [("Warning", "299 - " + json.dumps(w)) for w in result.warnings]
        return _json(result.status, result.body, headers=headers)

    def _access_review(self, ctx: Ctx, body: Any) -> Obj:
        spec = (body or {}).get("spec") or {}
        ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if ra:
            attrs = Attributes(
                ctx.user,
                ra.get("verb", ""),
                ra.get("group", ""),
                ra.get("resource", ""),
                ra.get("subresource", ""),
                ra.get("namespace", ""),
                ra.get("name", ""),
            )
        elif nra:
            attrs = Attributes(ctx.user, nra.get("verb", ""), path=nra.get("path", ""))
        else:
            raise bad_request("exactly one of nonResourceAttributes or resourceAttributes must be specified")
        allowed = not self.authorizer.enforce or self.authorizer.allowed(attrs)
        status = {"allowed": allowed}
        if allowed and self.authorizer.enforce:
            status["reason"] = "RBAC: allowed"  # type: ignore[assignment]
        return {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        }

    # --- watch ---------------------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, ctx: Ctx, table: bool, include: str) -> web.StreamResponse:
        q = ctx.query
        rt = ctx.rt
        send_initial = go_bool(q.get("sendInitialEvents"))
        bookmarks = go_bool(q.get("allowWatchBookmarks"))
        if send_initial and q.get("resourceVersionMatch") != "NotOlderThan":
            raise ApiError(
                422,
                'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                reason="Invalid",
            )
        match = self.api.matcher(ctx)
        rv = q.get("resourceVersion", "")
        since = None if rv in ("", "0") or send_initial else _int_rv(rv)
        initial = [] if since is not None else [o for o in self.store.view(rt.key) if match(o)]
        try:
            watcher, backlog = self.store.watch(rt.key, since, lambda ev: _translate(ev, match) is not None)
        except TooOld as exc:
            return await self._expired(request, table, exc)
        start_rv = self.store.revision
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else self.config.max_watch_seconds
        deadline = time.monotonic() + timeout
        resp = web.StreamResponse(
            status=200,
            headers={"Content-Type": TABLE_CT if table else JSON_CT, "Cache-Control": "no-cache, private"},
        )
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)

            def encode(ev_type: str, obj: Obj) -> bytes:
                if ev_type not in ("ERROR", "BOOKMARK"):
                    obj = self.api.present(rt, dict(obj))  # a stored object is shared: never changed
                    if table:
                        obj = tables.table(rt, [obj], meta(obj).get("resourceVersion", ""), include)
                return json.dumps({"type": ev_type, "object": obj}, separators=(",", ":")).encode() + b"\n"

            def line(ev_type: str, obj: Obj, ev: Event | None = None) -> bytes:
                if ev is None or table:
                    return encode(ev_type, obj)
                key = f"{rt.group_version} {ev_type}"  # a watch at another served version differs
                encoded = ev.encoded.get(key)
                if encoded is None:
                    encoded = ev.encoded[key] = encode(ev_type, obj)
                return encoded

            async def send(ev_type: str, obj: Obj, ev: Event | None = None) -> None:
                await resp.write(line(ev_type, obj, ev))

            def bookmark(rv_now: int, initial_end: bool = False) -> Obj:
                md: Obj = {"resourceVersion": str(rv_now)}
                if initial_end:
                    md["annotations"] = {"k8s.io/initial-events-end": "true"}
                return {"kind": rt.kind, "apiVersion": rt.group_version, "metadata": md}

            for obj in initial:
                await send("ADDED", obj)
            if send_initial:
                await send("BOOKMARK", bookmark(start_rv, initial_end=True))
            for ev in backlog:
                translated = _translate(ev, match)
                if translated:
                    await send(*translated, ev=ev)
            last_bookmark = time.monotonic()
            ended = False
            while not ended:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                wait = min(remaining, self.config.bookmark_interval) if bookmarks else remaining
                try:
                    async with asyncio.timeout(wait):
                        first = await watcher.queue.get()
                except TimeoutError:
                    if bookmarks and time.monotonic() - last_bookmark >= self.config.bookmark_interval:
                        await send("BOOKMARK", bookmark(self.store.revision))
                        last_bookmark = time.monotonic()
                    continue
                # every event queued meanwhile goes out in one write (one TLS record, one send)
                batch = [first]
                while not watcher.queue.empty():
                    batch.append(watcher.queue.get_nowait())
                lines = []
                for ev_or_none in batch:
                    if ev_or_none is None:
                        ended = True
                        break
                    if since is not None and ev_or_none.rv <= since:
                        continue  # a watch from a future resourceVersion starts after it
                    translated = _translate(ev_or_none, match)
                    if translated:
                        lines.append(line(*translated, ev=ev_or_none))
                if lines:
                    await resp.write(b"".join(lines))
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.unwatch(watcher)
        return resp

    async def _expired(self, request: web.Request, table: bool, exc: TooOld) -> web.StreamResponse:
        status = ApiError(
            410, f"too old resource version: {exc.requested} ({exc.oldest})", reason="Expired"
        ).status()
        resp = web.StreamResponse(status=200, headers={"Content-Type": TABLE_CT if table else JSON_CT})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
        await resp.write_eof()
        return resp


def _translate(ev: Event, match: Callable[[Obj], bool]) -> tuple[str, Obj] | None:
    """A store event as this watcher sees it: objects moving in or out of the selection are ADDED/DELETED."""
    new_ok = match(ev.obj)
    old_ok = ev.old is not None and match(ev.old)
    if ev.type == "ADDED":
        return ("ADDED", ev.obj) if new_ok else None
    if ev.type == "DELETED":
        return ("DELETED", ev.obj) if (old_ok or new_ok) else None
    if new_ok and old_ok:
        return "MODIFIED", ev.obj
    if new_ok:
        return "ADDED", ev.obj
    if old_ok:
        return "DELETED", ev.obj
    return None


def _int_rv(rv: str) -> int:
    try:
        return int(rv)
    except ValueError:
        raise bad_request(f'invalid resource version "{rv}"') from None


def _verb(method: str, route: Route, watch: bool) -> str:
    named = bool(route.name)
    verbs = {
        ("GET", True): "get",
        ("GET", False): "watch" if watch else "list",
        ("POST", False): "create",
        ("PUT", True): "update",
        ("PATCH", True): "patch",
        ("DELETE", True): "delete",
        ("DELETE", False): "deletecollection",
    }
    verb = verbs.get((method, named))
    if verb is None or (route.rt.stored is False and verb != "create") or verb not in route.rt.verbs:
        raise ApiError(
            405,
            "the server does not allow this method on the requested resource",
            details={"group": route.rt.group, "kind": route.rt.plural},
        )
    return verb


def _wants_table(accept: str) -> bool:
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def _injected(status: int, message: str, route: Route) -> ApiError:
    if status == 409:
        return conflict(route.rt.plural, route.rt.group, route.name, message or MODIFIED)
    return ApiError(status, message or "Internal error occurred: injected fault")


def _json(
    status: int,
    body: Any,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    content_type: str = JSON_CT,
) -> web.Response:
    resp = web.Response(status=status, body=json.dumps(body, separators=(",", ":")).encode())
    resp.headers["Content-Type"] = content_type
    for k, v in headers.items() if isinstance(headers, dict) else headers or []:
        resp.headers.add(k, v)
    return resp


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    ct = request.headers.get("Content-Type", JSON_CT).split(";", 1)[0].strip().lower()
    if ct == protobuf.CONTENT_TYPE:
        return protobuf.decode(raw)
    try:
        if ct in ("application/yaml", "application/apply-patch+yaml"):
            return yaml.safe_load(raw)
        if ct in (JSON_CT, ""):
            return json.loads(raw or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the body of the request could not be decoded: {exc}") from exc
    raise ApiError(
        415,
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json, application/yaml, {protobuf.CONTENT_TYPE}",
    )


async def _delete_options(request: web.Request) -> Obj:
    raw = await request.read()
    ct = request.headers.get("Content-Type", JSON_CT).split(";", 1)[0].strip().lower()
    if not raw or ct == protobuf.CONTENT_TYPE:
        return {}  # protobuf DeleteOptions (Helm's uninstall) carry nothing this server needs
    try:
        opts = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"the body of the request could not be decoded: {exc}") from exc
    return opts if isinstance(opts, dict) else {}


class ServerThread:
    """A `KubeApiServer` on its own event loop in a background thread, for synchronous tests and tools.

    `with ServerThread() as srv:` starts it; `srv.call(fn, *args)` runs a function on the server's loop (use
    it
    for anything touching the store), `srv.run(coro_fn, *args)` awaits a coroutine function there;
    `srv.faults`
    is thread-safe as is.
    """

    def __init__(self, config: ServerConfig | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kubeapi", daemon=True)
        self.server: KubeApiServer = self._make_server(config)
        # Coroutine functions run on the loop at stop, before the server's: helpers that serve on
        # this loop (a test's webhook) close their sockets here, not at garbage collection.
        self.on_stop: list[Callable[[], Coroutine[Any, Any, None]]] = []

    def _make_server(self, config: ServerConfig | None) -> KubeApiServer:
        """Build the server on its own loop (its asyncio objects belong there)."""
        self._thread.start()

        async def make() -> KubeApiServer:
            return KubeApiServer(config)

        return asyncio.run_coroutine_threadsafe(make(), self._loop).result()

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.run(self.server.start)

    def stop(self) -> None:
        if not self._loop.is_closed():
            for cleanup in reversed(self.on_stop):
                self.run(cleanup)
            self.run(self.server.stop)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 60) -> T:
        async def wrapper() -> T:
            return fn(*args)

        return self.run(wrapper, timeout=timeout)

    # conveniences

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def kubeconfig_path(self) -> Path:
        return self.server.kubeconfig_path

    @property
    def faults(self) -> Faults:
        return self.server.faults

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj | None:
        """The stored object (any version of its resource), or None."""
        rt = self.server.registry.by_kind(api_version, kind)
        if rt is None:
            raise KeyError(f"{kind} {api_version} is not served")
        return self.call(self.server.store.get, rt.key, namespace if rt.namespaced else "", name)

    def drop_watches(self) -> int:
        return self.call(self.server.drop_watches)

    def drop_connections(self) -> int:
        return self.call(self.server.drop_connections)

    def compact(self) -> None:
        self.call(self.server.compact)
