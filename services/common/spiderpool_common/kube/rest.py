"""A thin JSON client of the Kubernetes REST API, on kubernetes-asyncio's ApiClient.

Owns how the services talk to the API server outside the custom-resource Store: plain
dicts in and out (no typed models: deserialising a pod list into generated classes costs
far more than the request), paths the caller names (``/api/v1/namespaces/ns/pods/p``),
every call with a deadline, and errors translated once into ``KubeError`` carrying the
HTTP code and the ``Status`` reason. Authentication, TLS and the server address come from
the ApiClient's configuration (a kubeconfig or the in-cluster ServiceAccount, see
``config.py``). Patches name their content type explicitly: kubernetes-asyncio's default
for a dict body is JSON patch, which a real API server refuses with 400.

Deadlines use ``asyncio.timeout``, never ``asyncio.wait_for``: on Python 3.11 the latter
loses a cancellation that arrives as the awaited call completes (CPython gh-86296, fixed
in 3.12), and a cancelled informer then went on watching, so a shutdown waited for it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class KubeError(Exception):
    """A failed API call: ``code`` is the HTTP status (0 for transport), ``reason`` the Status reason."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.code == 404

    @property
    def conflict(self) -> bool:
        return self.code == 409

    @property
    def gone(self) -> bool:
        return self.code == 410


def _error(exc: BaseException, what: str) -> KubeError:
    code = getattr(exc, "status", None)
    if isinstance(code, int) and code > 0:
        body = getattr(exc, "body", None)
        status: dict[str, Any] = {}
        if isinstance(body, bytes | str) and body:
            try:
                parsed = json.loads(body)
                status = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                status = {}
        message = str(status.get("message") or getattr(exc, "reason", "") or exc)
        return KubeError(code, str(status.get("reason", "")), f"{what}: {message}")
    if isinstance(exc, TimeoutError):
        return KubeError(0, "Timeout", f"{what}: the API server did not answer in time")
    return KubeError(0, "Unreachable", f"{what}: {exc}")


class KubeRest:
    def __init__(self, api_client: Any, *, timeout_s: float = 10.0) -> None:
        self.api_client = api_client
        self._timeout = timeout_s

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        query = [(k, v) for k, v in (params or {}).items() if v is not None]
        try:
            async with asyncio.timeout(self._timeout + 1):
                result = await self.api_client.call_api(
                    path,
                    method,
                    query_params=query,
                    header_params=headers,
                    body=body,
                    response_types_map={200: "object", 201: "object", 202: "object"},
                    auth_settings=["BearerToken"],
                    _return_http_data_only=True,
                    _request_timeout=self._timeout,
                )
        except Exception as exc:
            raise _error(exc, f"{method} {path}") from exc
        return result

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        out: dict[str, Any] = await self._request("GET", path, params=params)
        return out

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = await self._request("POST", path, body=body)
        return out

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = await self._request("PUT", path, body=body)
        return out

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = await self._request("PATCH", path, body=body, content_type=MERGE_PATCH)
        return out

    async def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = await self._request("DELETE", path, body=body or {})
        return out

    async def watch(
        self, path: str, *, resource_version: str, timeout_s: int = 240, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """The raw events of one watch stream (``{"type", "object"}``); ends when the server
        ends it. A 410 (as a status or an ERROR event) raises ``KubeError`` with code 410."""
        query = {
            **params,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_s),
        }
        try:
            async with asyncio.timeout(self._timeout + 1):
                response = await self.api_client.call_api(
                    path,
                    "GET",
                    query_params=list(query.items()),
                    header_params={"Accept": "application/json"},
                    auth_settings=["BearerToken"],
                    _return_http_data_only=True,
                    _preload_content=False,
                    _request_timeout=timeout_s + 30,
                )
        except Exception as exc:
            raise _error(exc, f"WATCH {path}") from exc
        try:
            while True:
                try:
                    line = await response.content.readline()
                except Exception as exc:
                    raise _error(exc, f"WATCH {path}") from exc
                if not line:
                    return
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise KubeError(
                        int(status.get("code", 0) or 0),
                        str(status.get("reason", "")),
                        f"WATCH {path}: {status.get('message', '')}",
                    )
                yield event
        finally:
            response.release()
