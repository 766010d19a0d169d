"""AdmissionReview v1 in and out: the wire format between the API server and our webhooks.

Owns the translation only. ``parse_review`` turns a request body into an ``AdmissionRequest``
or raises ``MalformedReview`` (the server answers it with HTTP 400 and the message: a body no
API server sends, so nothing to allow or deny), among them a body nested deeper than
``bounded_json.MAX_DEPTH`` (the rules copy and walk objects recursively).
``review_response`` turns a ``Verdict`` into the response document: the request's ``uid``
echoed, ``allowed``, a JSONPatch as base64 with ``patchType: JSONPatch`` for a mutation,
``warnings`` (kubectl prints each as ``Warning: ...``), and on denial a ``status`` shaped
like a ``metav1.Status`` whose ``message`` the API server prints after ``admission webhook
"<name>" denied the request:`` (reference
kubernetes-api.md), so the message is the one line a user needs.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from spiderpool_common import bounded_json

from spiderpool_controller.webhook.json_patch import Op

Obj = dict[str, Any]
API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")


class MalformedReview(ValueError):
    """The body is not an AdmissionReview v1 request; the message says what is wrong."""


@dataclass(frozen=True)
class AdmissionRequest:
    """The fields of ``request`` the webhooks read."""

    uid: str
    operation: str
    kind: str  # request.kind.kind, e.g. SpiderIPPool
    group: str
    version: str
    name: str = ""
    namespace: str = ""
    sub_resource: str = ""
    object: Obj | None = None
    old_object: Obj | None = None
    dry_run: bool = False
    username: str = ""


@dataclass(frozen=True)
class Verdict:
    """What a webhook decided: allowed (maybe with a patch) or denied with a status."""

    allowed: bool
    patch: tuple[Op, ...] = ()
    warnings: tuple[str, ...] = ()
    code: int = 200
    reason: str = ""
    message: str = ""

    @classmethod
    def allow(cls, patch: list[Op] | tuple[Op, ...] = (), warnings: tuple[str, ...] = ()) -> Verdict:
        return cls(True, tuple(patch), warnings)

    @classmethod
    def deny(cls, code: int, reason: str, message: str, *, warnings: tuple[str, ...] = ()) -> Verdict:
        return cls(False, (), warnings, code, reason, message)


def _str_field(data: Obj, key: str, where: str, *, required: bool) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise MalformedReview(f"{where}.{key} must be a non-empty string, got {value!r}")
    return value


def _object_field(request: Obj, key: str, operation: str, *, required: bool) -> Obj | None:
    value = request.get(key)
    if value is None:
        if required:
            raise MalformedReview(f"request.{key} is required for a {operation} review")
        return None
    if not isinstance(value, dict):
        raise MalformedReview(f"request.{key} must be an object, got {type(value).__name__}")
    return value


def parse_review(body: bytes) -> AdmissionRequest:
    """Decode an AdmissionReview v1 request; raise ``MalformedReview`` naming the first problem."""
    try:
        review = bounded_json.loads(body)
    except bounded_json.JsonError as exc:
        raise MalformedReview(f"the body is refused: {exc}; no spiderpool object nests so deep") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedReview(f"the body is not JSON: {exc}") from None
    if not isinstance(review, dict):
        raise MalformedReview(f"an AdmissionReview is a JSON object, got {type(review).__name__}")
    if review.get("apiVersion") != API_VERSION or review.get("kind") != KIND:
        raise MalformedReview(
            f"expected apiVersion {API_VERSION} and kind {KIND}, got {review.get('apiVersion')!r} and "
            f"{review.get('kind')!r} (register the webhook with admissionReviewVersions: [v1])"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("request is required and must be an object")
    uid = _str_field(request, "uid", "request", required=True)
    operation = _str_field(request, "operation", "request", required=True)
    if operation not in OPERATIONS:
        raise MalformedReview(f"request.operation must be one of {', '.join(OPERATIONS)}, got {operation!r}")
    gvk = request.get("kind")
    if not isinstance(gvk, dict):
        raise MalformedReview("request.kind must be an object with group, version and kind")
    dry_run = request.get("dryRun", False)
    if dry_run is None:
        dry_run = False
    if not isinstance(dry_run, bool):
        raise MalformedReview(f"request.dryRun must be true or false, got {dry_run!r}")
    user = request.get("userInfo")
    username = user.get("username", "") if isinstance(user, dict) else ""
    return AdmissionRequest(
        uid=uid,
        operation=operation,
        kind=_str_field(gvk, "kind", "request.kind", required=True),
        group=_str_field(gvk, "group", "request.kind", required=False),
        version=_str_field(gvk, "version", "request.kind", required=True),
        name=_str_field(request, "name", "request", required=False),
        namespace=_str_field(request, "namespace", "request", required=False),
        sub_resource=_str_field(request, "subResource", "request", required=False),
        # Only what the operation has (an API server sends object null on DELETE and oldObject
        # null on CREATE): anything else there is ignored, never judged as an update.
        object=(
            _object_field(request, "object", operation, required=True)
            if operation in ("CREATE", "UPDATE")
            else None
        ),
        old_object=(
            _object_field(request, "oldObject", operation, required=True)
            if operation in ("UPDATE", "DELETE")
            else None
        ),
        dry_run=dry_run,
        username=str(username or ""),
    )


def review_response(uid: str, verdict: Verdict) -> Obj:
    """The AdmissionReview v1 response document for ``verdict``."""
    response: Obj = {"uid": uid, "allowed": verdict.allowed}
    if verdict.allowed and verdict.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(list(verdict.patch)).encode()).decode()
    if verdict.warnings:
        response["warnings"] = list(verdict.warnings)
    if not verdict.allowed:
        # No ``details``: kubectl prints an Invalid status with details as "The request is
        # invalid: <causes>", dropping the API server's "admission webhook ... denied" line.
        response["status"] = {
            "metadata": {},
            "status": "Failure",
            "message": verdict.message,
            "reason": verdict.reason,
            "code": verdict.code,
        }
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}
