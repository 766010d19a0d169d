"""A small synchronous client of the simulated cluster's API server, for the harness, the tests and the demo.

Standard library only (http.client over TLS with the kubeconfig's CA and token, one keep-alive connection
per thread, reconnecting when the server closed it): the tests are synchronous, and reading a pod or a pool
while waiting on a condition should not need an event loop. Plain dicts in and out; a failed call raises
`ApiError` with the HTTP status and the Status message. Writes in tests go through kubectl, as a user's
would; this client reads, and writes only what kubectl cannot express simply (merge patches of status,
deletes with options).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404


class SyncApi:
    def __init__(self, url: str, token: str, ca_pem: bytes | None) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 443
        self.tls = parsed.scheme == "https"
        self.token = token
        self._ctx = ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem else None
        self._local = threading.local()

    @classmethod
    def from_kubeconfig(cls, path: Path) -> SyncApi:
        config = yaml.safe_load(path.read_text())
        cluster = config["clusters"][0]["cluster"]
        ca = cluster.get("certificate-authority-data")
        return cls(
            cluster["server"], config["users"][0]["user"]["token"], base64.b64decode(ca) if ca else None
        )

    def close(self) -> None:
        """Close this thread's connection (a later request opens a new one)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self.tls:
                conn = http.client.HTTPSConnection(self.host, self.port, context=self._ctx, timeout=30)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self._local.conn = conn
        return conn

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", **query: Any
    ) -> Any:
        if query:
            path += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, ConnectionError, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        parsed = json.loads(raw) if raw else None
        if resp.status >= 400:
            message = parsed.get("message", "") if isinstance(parsed, dict) else raw.decode(errors="replace")
            raise ApiError(resp.status, f"{method} {path}: {message}")
        return parsed

    def get(self, path: str, **query: Any) -> Obj:
        found: Obj = self.request("GET", path, **query)
        return found

    def get_or_none(self, path: str) -> Obj | None:
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def items(self, path: str, **query: Any) -> list[Obj]:
        found: list[Obj] = self.get(path, **query).get("items") or []
        return found

    def create(self, path: str, body: Obj) -> Obj:
        made: Obj = self.request("POST", path, body)
        return made

    def merge_patch(self, path: str, body: Obj) -> Obj:
        patched: Obj = self.request("PATCH", path, body, "application/merge-patch+json")
        return patched

    def delete(self, path: str, **options: Any) -> None:
        self.request("DELETE", path, options or None)

    # conveniences

    def pod(self, namespace: str, name: str) -> Obj | None:
        return self.get_or_none(f"/api/v1/namespaces/{namespace}/pods/{name}")

    def pods(self, namespace: str | None = None, **query: Any) -> list[Obj]:
        path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
        return self.items(path, **query)
