"""The admin endpoint (`/_kubeapi/...`) and its client: faults, counters, watches, RBAC from other processes.

Only `system:masters` users (the kubeconfig's admin token) may call it. Routes (JSON in and out):

    GET    /_kubeapi/counts                 request counter {"create pods": 3, ...}; DELETE resets both
    GET    /_kubeapi/errors                 error answers {"409 update spiderippools/status": 2, ...}
    GET    /_kubeapi/faults                 armed rules; POST arms one (fields of faults.Rule); DELETE clears
    all
    POST   /_kubeapi/write-delay            {"seconds": 0.01}: delay every write
    POST   /_kubeapi/pause | /resume        hold every API request until resumed
    POST   /_kubeapi/drop-watches           end every open watch stream
    POST   /_kubeapi/drop-connections       abort every open connection
    POST   /_kubeapi/compact                forget the watch history (older resourceVersions get 410)
    GET    /_kubeapi/writes?since=T&userAgent=S   accepted writes (write_log.py); DELETE clears them
    GET    /_kubeapi/denied                 requests RBAC denied; DELETE clears the record
    POST   /_kubeapi/rbac                   {"enforce": true}
    POST   /_kubeapi/tokens                 {"serviceAccount": "ns/name"} or {"user": "u", "groups": [...]}
    POST   /_kubeapi/service-urls           {"namespace": "ns", "name": "svc", "url":
    "https://127.0.0.1:8443"}
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .errors import ApiError
from .faults import Rule

if TYPE_CHECKING:
    from .server import KubeApiServer

PREFIX = "/_kubeapi/"


def _ok(body: Any = None) -> web.Response:
    return web.json_response(body if body is not None else {"ok": True})


async def handle(server: KubeApiServer, request: web.Request) -> web.Response:
    route = request.path[len(PREFIX) :].strip("/")
    method = request.method
    body: dict[str, Any] = {}
    if method in ("POST", "PUT") and request.can_read_body:
        body = await request.json()
    faults = server.faults
    if route == "counts":
        if method == "DELETE":
            faults.reset_counts()
        return _ok(faults.counts())
    if route == "errors" and method == "GET":
        return _ok(faults.errors_answered())
    if route == "faults":
        if method == "POST":
            faults.add(Rule(**body))
        elif method == "DELETE":
            faults.clear()
        return _ok(faults.rules())
    if route == "write-delay" and method == "POST":
        faults.write_delay = float(body.get("seconds", 0))
        return _ok()
    if route in ("pause", "resume") and method == "POST":
        faults.pause() if route == "pause" else faults.resume()
        return _ok()
    if route == "drop-watches" and method == "POST":
        return _ok({"dropped": server.drop_watches()})
    if route == "drop-connections" and method == "POST":
        return _ok({"dropped": server.drop_connections()})
    if route == "compact" and method == "POST":
        server.compact()
        return _ok()
    if route == "writes":
        if method == "DELETE":
            server.writes.clear()
            return _ok()
        since = float(request.query.get("since", "0") or 0)
        return _ok(server.writes.entries(since, request.query.get("userAgent", "")))
    if route == "denied":
        return _ok(server.authorizer.take_denied() if method == "DELETE" else list(server.authorizer.denied))
    if route == "rbac" and method == "POST":
        server.authorizer.enforce = bool(body.get("enforce"))
        return _ok()
    if route == "tokens" and method == "POST":
        if body.get("serviceAccount"):
            ns, _, name = str(body["serviceAccount"]).partition("/")
            return _ok({"token": server.auth.service_account_token(ns, name)})
        return _ok({"token": server.auth.user_token(str(body.get("user", "")), body.get("groups") or [])})
    if route == "service-urls" and method == "POST":
        server.admission.service_urls[(body["namespace"], body["name"])] = body["url"]
        return _ok()
    raise ApiError(404, f"no admin route {method} {request.path}")


class AdminClient:
    """Synchronous client of the admin endpoint (stdlib only), for tests, benchmarks and other processes."""

    def __init__(self, url: str, token: str, ca_pem: bytes | None = None) -> None:
        self._url = url.rstrip("/")
        self._token = token
        self._ctx = ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem else None

    def _call(self, method: str, route: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self._url + PREFIX + route, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, context=self._ctx, timeout=30) as resp:
            return json.loads(resp.read())

    def counts(self) -> dict[str, int]:
        return self._call("GET", "counts")  # type: ignore[no-any-return]

    def reset_counts(self) -> None:
        self._call("DELETE", "counts")

    def errors(self) -> dict[str, int]:
        """The error answers the server gave by itself, by status, verb and resource."""
        return self._call("GET", "errors")  # type: ignore[no-any-return]

    def add_fault(self, **rule: Any) -> None:
        self._call("POST", "faults", rule)

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def write_delay(self, seconds: float) -> None:
        self._call("POST", "write-delay", {"seconds": seconds})

    def pause(self) -> None:
        self._call("POST", "pause", {})

    def resume(self) -> None:
        self._call("POST", "resume", {})

    def drop_watches(self) -> int:
        return int(self._call("POST", "drop-watches", {})["dropped"])

    def drop_connections(self) -> int:
        return int(self._call("POST", "drop-connections", {})["dropped"])

    def compact(self) -> None:
        self._call("POST", "compact", {})

    def writes(self, since: float = 0.0, user_agent: str = "") -> list[dict[str, Any]]:
        """Accepted writes received at or after ``since`` (time.time()) by a User-Agent containing
        ``user_agent``, oldest first."""
        query = urllib.parse.urlencode({"since": repr(since), "userAgent": user_agent})
        return self._call("GET", f"writes?{query}")  # type: ignore[no-any-return]

    def clear_writes(self) -> None:
        self._call("DELETE", "writes")

    def denied(self) -> list[dict[str, Any]]:
        return self._call("GET", "denied")  # type: ignore[no-any-return]

    def enforce_rbac(self, enforce: bool = True) -> None:
        self._call("POST", "rbac", {"enforce": enforce})

    def service_account_token(self, namespace: str, name: str) -> str:
        return str(self._call("POST", "tokens", {"serviceAccount": f"{namespace}/{name}"})["token"])

    def set_service_url(self, namespace: str, name: str, url: str) -> None:
        self._call("POST", "service-urls", {"namespace": namespace, "name": name, "url": url})
