"""Kubernetes API errors to the Store contract's errors: the one place that translation lives.

The API server answers a failed request with a ``Status`` body (``reason``, ``code``,
``message``, ``details.causes``); kubernetes-asyncio raises ``ApiException`` carrying it,
and aiohttp raises its own errors for transport failures. Mapping:

- 404 ``NotFound`` -> ``ObjectNotFound``;
- 409 ``AlreadyExists`` -> ``ObjectAlreadyExists``; 409 ``Conflict`` (stale
  resourceVersion, failed precondition) -> ``StaleResourceVersion``;
- 410 ``Expired``/``Gone`` -> ``Gone`` (a watch or list from a compacted resourceVersion);
- 400 ``BadRequest`` -> ``InvalidRequest``; 422 ``Invalid`` -> ``InvalidObject`` (an invalid
  request too) naming the causes;
- 401/403 -> ``StoreForbidden``: a configuration problem (RBAC), not retried silently;
- 429, 5xx, timeouts and connection failures -> ``StoreUnavailable`` (the caller may retry).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from spiderpool_common.errors import InvalidObject, InvalidRequest, SpiderpoolError

from spiderpool_controller.store.contract import (
    Gone,
    ObjectAlreadyExists,
    ObjectNotFound,
    StaleResourceVersion,
    StoreUnavailable,
)


class StoreForbidden(SpiderpoolError):
    """The API server refused the credentials or the permission (401/403)."""

    reason = "STORE_FORBIDDEN"


def status_body(exc: Any) -> dict[str, Any]:
    """The ``Status`` object of an ``ApiException`` ({} when the body is not one)."""
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _causes(status: dict[str, Any]) -> str:
    causes = (status.get("details") or {}).get("causes") or []
    parts = []
    for cause in causes:
        if isinstance(cause, dict):
            field = cause.get("field", "")
            message = cause.get("message", "")
            parts.append(f"{field}: {message}" if field else str(message))
    return "; ".join(parts)


def translate(exc: BaseException, what: str) -> SpiderpoolError:
    """The Store error for a failed API call about ``what`` (e.g. ``SpiderIPPool pool-a``)."""
    status_code = getattr(exc, "status", None)
    if isinstance(status_code, int) and status_code > 0:
        status = status_body(exc)
        reason = str(status.get("reason", ""))
        message = str(status.get("message", "")) or str(getattr(exc, "reason", "")) or str(exc)
        if status_code == 404:
            return ObjectNotFound(f"{what} not found")
        if status_code == 409:
            if reason == "AlreadyExists":
                return ObjectAlreadyExists(f"{what} already exists")
            return StaleResourceVersion(f"{what}: {message}")
        if status_code == 410:
            return Gone(f"{what}: {message}")
        if status_code == 400:
            return InvalidRequest(f"{what}: {message}")
        if status_code == 422:
            return InvalidObject(f"{what}: {message}", details=_causes(status))
        if status_code in (401, 403):
            return StoreForbidden(f"{what}: the API server refused the request ({status_code}): {message}")
        return StoreUnavailable(f"{what}: API server answered {status_code}: {message}")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return StoreUnavailable(f"{what}: the API server did not answer in time")
    return StoreUnavailable(f"{what}: API server unreachable: {exc}")
