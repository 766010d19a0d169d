"""AdmissionReview v1: requests parsed or refused with a reason, responses as the API server reads them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spiderpool_controller.webhook.review import (
    AdmissionRequest,
    MalformedReview,
    Verdict,
    parse_review,
    review_response,
)

POOL = {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool", "metadata": {"name": "p"}}


def review(**request: Any) -> dict[str, Any]:
    """An AdmissionReview v1 request for a SpiderIPPool CREATE; keywords override request fields."""
    base: dict[str, Any] = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "spiderpool.spidernet.io", "version": "v2beta1", "kind": "SpiderIPPool"},
        "resource": {"group": "spiderpool.spidernet.io", "version": "v2beta1", "resource": "spiderippools"},
        "name": "p",
        "operation": "CREATE",
        "userInfo": {"username": "admin"},
        "object": POOL,
        "oldObject": None,
        "dryRun": False,
    }
    base.update(request)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": base}


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def malformed(raw: bytes) -> str:
    with pytest.raises(MalformedReview) as info:
        parse_review(raw)
    return str(info.value)


def test_a_create_review_is_parsed() -> None:
    """uid, operation, kind, name, object, dryRun and the user are read from the request."""
    req = parse_review(body(review(dryRun=True)))
    assert req == AdmissionRequest(
        uid="705ab4f5-6393-11e8-b7cc-42010a800002",
        operation="CREATE",
        kind="SpiderIPPool",
        group="spiderpool.spidernet.io",
        version="v2beta1",
        name="p",
        object=POOL,
        dry_run=True,
        username="admin",
    )


def test_update_and_delete_reviews_carry_the_old_object() -> None:
    """UPDATE has object and oldObject; DELETE has only oldObject."""
    update = parse_review(body(review(operation="UPDATE", oldObject=POOL)))
    assert update.object == POOL and update.old_object == POOL
    delete = parse_review(body(review(operation="DELETE", object=None, oldObject=POOL)))
    assert delete.object is None and delete.old_object == POOL


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "the body is not JSON: "),
        (b"\xff\xfe", "the body is not JSON: "),
        (body([1, 2]), "an AdmissionReview is a JSON object, got list"),
        (
            body({**review(), "apiVersion": "admission.k8s.io/v1beta1"}),
            "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got "
            "'admission.k8s.io/v1beta1' and 'AdmissionReview' (register the webhook with "
            "admissionReviewVersions: [v1])",
        ),
        (body({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}), "request is required"),
        (body(review(uid="")), "request.uid must be a non-empty string, got ''"),
        (body(review(uid=7)), "request.uid must be a non-empty string, got 7"),
        (body(review(operation="PATCH")), "request.operation must be one of CREATE, UPDATE, DELETE, CONNECT"),
        (body(review(kind="SpiderIPPool")), "request.kind must be an object with group, version and kind"),
        (body(review(object=None)), "request.object is required for a CREATE review"),
        (body(review(object=[1])), "request.object must be an object, got list"),
        (body(review(operation="UPDATE")), "request.oldObject is required for a UPDATE review"),
        (body(review(dryRun="yes")), "request.dryRun must be true or false, got 'yes'"),
    ],
)
def test_malformed_reviews_are_refused_with_the_reason(raw: bytes, message: str) -> None:
    """A body no API server sends raises MalformedReview naming the first problem."""
    assert malformed(raw).startswith(message)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
request_fields = st.dictionaries(
    st.sampled_from(["uid", "kind", "operation", "object", "oldObject", "dryRun", "name", "userInfo"]),
    json_values,
)


@settings(max_examples=200, deadline=None)
@given(request_fields, st.booleans())
def test_no_body_breaks_the_parser(fields: dict[str, Any], wrap: bool) -> None:
    """Any JSON body either parses or raises MalformedReview, never another exception."""
    doc: Any = review(**fields) if wrap else fields
    try:
        parsed = parse_review(body(doc))
    except MalformedReview:
        return
    assert parsed.uid and parsed.operation in ("CREATE", "UPDATE", "DELETE", "CONNECT")


def test_allowed_response_echoes_the_uid_without_patch_or_status() -> None:
    """An allowed review without changes is just uid and allowed."""
    assert review_response("u1", Verdict.allow()) == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "u1", "allowed": True},
    }


def test_patched_response_carries_a_base64_json_patch() -> None:
    """A mutation is a JSONPatch, base64 encoded, with patchType JSONPatch."""
    ops = [{"op": "add", "path": "/metadata/finalizers", "value": ["spiderpool.spidernet.io"]}]
    response = review_response("u2", Verdict.allow(ops, warnings=("w",)))["response"]
    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == ops
    assert response["warnings"] == ["w"] and response["allowed"] is True


def test_denied_response_carries_a_status_the_api_server_prints() -> None:
    """A denial has status message, reason and code, and no details (kubectl would print those instead)."""
    verdict = Verdict.deny(422, "Invalid", 'SpiderIPPool "p": spec.gateway: bad')
    response = review_response("u3", verdict)["response"]
    assert response == {
        "uid": "u3",
        "allowed": False,
        "status": {
            "metadata": {},
            "status": "Failure",
            "message": 'SpiderIPPool "p": spec.gateway: bad',
            "reason": "Invalid",
            "code": 422,
        },
    }
    denied_with_patch = Verdict(False, patch=({"op": "remove", "path": "/x"},))
    assert "patch" not in review_response("u4", denied_with_patch)["response"]
