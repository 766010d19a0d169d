"""Errors as the real API server reports them: a `Status` body with reason, code and details.

Every refusal in this package is an `ApiError`; the server turns it into the JSON `Status` that kubectl and
the client libraries render verbatim (kubectl prints a Status's message as is), so the messages
follow the real server's
wording.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class Cause:
    """One entry of `details.causes` (a field path and what is wrong with it)."""

    reason: str
    message: str
    field: str = ""

    def as_json(self) -> dict[str, str]:
        out = {"reason": self.reason, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


@dataclass
class ApiError(Exception):
    """A request the server refuses; `status()` is the body it answers with."""

    code: int
    message: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    causes: list[Cause] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = REASONS.get(self.code, "Unknown")
        super().__init__(self.message)

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details = dict(self.details)
        if self.causes:
            details["causes"] = [c.as_json() for c in self.causes]
        if details:
            body["details"] = details
        return body


def qualified(plural: str, group: str) -> str:
    """`spiderippools.spiderpool.spidernet.io`, or `pods` for the core group, as messages name a resource."""
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        f'{qualified(plural, group)} "{name}" not found',
        details={"name": name, "group": group, "kind": plural},
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'{qualified(plural, group)} "{name}" already exists',
        reason="AlreadyExists",
        details={"name": name, "group": group, "kind": plural},
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
        reason="Conflict",
        details={"name": name, "group": group, "kind": plural},
    )


MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
    """422 `Invalid`: `Kind.group "name" is invalid: [field: msg, ...]` with one cause per problem."""
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    listing = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    qualified_kind = f"{kind}.{group}" if group else kind
    return ApiError(
        422,
        f'{qualified_kind} "{name}" is invalid: {listing}',
        reason="Invalid",
        details={"name": name, "group": group, "kind": kind},
        causes=causes,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)
