"""Malformed AdmissionReviews: a well-formed answer or a 400, never a 500, and the webhook keeps serving.

Two levels. The decisions (``Admission``, the same object the HTTPS server calls) are fuzzed
in-process with valid objects of every kind whose fields are replaced by arbitrary JSON or
removed, and arbitrary JSON as the object or the old object, for both webhooks of every
kind and every operation: each answer is a ``Verdict`` (allowed, or denied 400, 403 or
422 with a message), never an exception, which the server would answer as a 500. The
HTTPS server itself gets the bodies no API server sends (not JSON, the wrong apiVersion,
no request or uid, an object of another kind, an unreadable oldObject, nesting thousands
deep, a 17 MiB body) and answers each with 400, 413 or a denial, then a valid review.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spiderpool_controller.domain import crd_schema, models
from spiderpool_controller.store.sqlite import SqliteStore
from spiderpool_controller.webhook import WebhookServer
from spiderpool_controller.webhook.admission import Admission
from spiderpool_controller.webhook.review import MalformedReview, Verdict, parse_review, review_response

from tests.badinput.strategies import JSON, mutated
from tests.kubeapi.certs import CertificateAuthority

Obj = dict[str, Any]
BASES: dict[str, Obj] = {
    models.KIND_IPPOOL: models.new_object(
        models.KIND_IPPOOL,
        "pool-a",
        spec={
            "subnet": "10.6.0.0/24",
            "ips": ["10.6.0.10-10.6.0.20"],
            "gateway": "10.6.0.1",
            "routes": [{"dst": "10.7.0.0/16", "gw": "10.6.0.254"}],
            "podAffinity": {"matchLabels": {"app": "web"}},
        },
    )
    | {
        "status": {
            "allocatedIPs": json.dumps({"10.6.0.11": {"pod": "ns/p", "podUid": "u"}}),
            "allocatedIPCount": 1,
        }
    },
    models.KIND_SUBNET: models.new_object(
        models.KIND_SUBNET,
        "subnet-a",
        spec={"subnet": "10.8.0.0/24", "ips": ["10.8.0.10-10.8.0.20"], "gateway": "10.8.0.1"},
    ),
    models.KIND_RESERVED_IP: models.new_object(
        models.KIND_RESERVED_IP, "reserved", spec={"ips": ["10.6.0.30"]}
    ),
    models.KIND_MULTUS_CONFIG: models.new_object(
        models.KIND_MULTUS_CONFIG,
        "smc",
        "kube-system",
        spec={
            "cniType": "macvlan",
            "macvlan": {"master": ["ens192"], "vlanID": 10, "ippools": {"ipv4": ["pool-a"]}},
            "coordinator": {"mode": "underlay", "podMACPrefix": "0a:01", "hijackCIDR": ["10.0.0.0/8"]},
        },
    ),
    models.KIND_COORDINATOR: models.new_object(
        models.KIND_COORDINATOR,
        "default",
        spec={
            "podCIDRType": "auto",
            "podMACPrefix": "0a:01",
            "hijackCIDR": ["169.254.0.0/16"],
            "policyRoutes": [{"dst": "10.0.0.0/8", "gw": "10.6.0.1"}],
        },
    ),
}
DENIAL_CODES = frozenset({400, 403, 422})


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            out += [(*prefix, key), *_paths(item, (*prefix, key))]
    return out


def field_paths(kind: str) -> list[tuple[str, ...]]:
    """Every path of the kind's base object, every spec field of its CRD, and the metadata the rules read."""
    meta = [("metadata", key) for key in ("name", "namespace", "labels", "annotations", "finalizers")]
    spec = [("spec", name) for name in crd_schema.spec_field_names(kind)]
    return sorted({*_paths(BASES[kind]), *spec, *meta, ("metadata", "deletionTimestamp"), ("status",)})


@st.composite
def reviews(draw: st.DrawFn) -> tuple[str, str, Obj]:
    """(kind of the webhook, "mutate" or "validate", the review's request)."""
    kind = draw(st.sampled_from(sorted(BASES)))
    subject = draw(st.sampled_from(sorted(BASES))) if draw(st.integers(0, 9)) == 0 else kind

    def obj() -> Any:
        choice = draw(st.integers(0, 5))
        if choice == 0:
            return draw(JSON)
        if choice == 1:
            return copy.deepcopy(BASES[subject])
        return draw(mutated(BASES[subject], field_paths(subject)))

    request = {
        "uid": "fuzz",
        "operation": draw(st.sampled_from(["CREATE", "UPDATE", "DELETE"])),
        "kind": {"group": models.API_GROUP, "version": "v2beta1", "kind": subject},
        "object": obj(),
        "oldObject": obj(),
        "dryRun": draw(st.booleans()),
    }
    return kind, draw(st.sampled_from(["mutate", "validate"])), request


class Decisions:
    """``Admission`` over an SQLite store holding a pool and a subnet, on its own event loop."""

    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = SqliteStore(path)
        for kind in (models.KIND_IPPOOL, models.KIND_SUBNET):
            stored = copy.deepcopy(BASES[kind])
            stored["metadata"]["name"] = f"stored-{kind.lower()}"
            self.loop.run_until_complete(self.store.create(stored))
        self.admission = Admission(self.store)

    def decide(self, kind: str, route: str, body: bytes) -> Verdict | None:
        try:
            review = parse_review(body)
        except MalformedReview:
            return None  # the server's 400
        decide = self.admission.mutate if route == "mutate" else self.admission.validate
        verdict: Verdict = self.loop.run_until_complete(decide(kind, review))
        return verdict

    def close(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()


@pytest.fixture(scope="module")
def decisions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Decisions]:
    result = Decisions(tmp_path_factory.mktemp("webhook-fuzz") / "state.db")
    yield result
    result.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(review=reviews())
def test_any_review_gets_a_verdict_never_an_exception(
    decisions: Decisions, review: tuple[str, str, Obj]
) -> None:
    """Mutated and arbitrary objects in any operation get an allowed or a 400/403/422 verdict."""
    kind, route, request = review
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
    verdict = decisions.decide(kind, route, body.encode())
    if verdict is None:
        return
    if not verdict.allowed:
        assert verdict.code in DENIAL_CODES, verdict
        assert verdict.message
    json.dumps(review_response("fuzz", verdict))  # the answer serializes


def test_the_decisions_refuse_what_no_api_server_sends(decisions: Decisions) -> None:
    """An object of another kind than the route's, and an oldObject that is not a stored object,
    are denied 400 with the reason; the failures the fuzzing found are among them."""
    pool = copy.deepcopy(BASES[models.KIND_IPPOOL])

    def review(operation: str, kind: str, obj: Any, old: Any) -> bytes:
        request = {
            "uid": "u",
            "operation": operation,
            "kind": {"group": models.API_GROUP, "version": "v2beta1", "kind": kind},
            "object": obj,
            "oldObject": old,
        }
        return json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
        ).encode()

    cases = [
        # (route kind, route, body, message fragment)
        (
            models.KIND_SUBNET,
            "validate",
            review("CREATE", models.KIND_IPPOOL, pool, None),
            "this webhook serves",
        ),
        (
            models.KIND_IPPOOL,
            "validate",
            review("DELETE", models.KIND_IPPOOL, None, {**pool, "status": {"allocatedIPs": 7}}),
            "oldObject is not a stored SpiderIPPool",
        ),
        (
            models.KIND_IPPOOL,
            "validate",
            review("UPDATE", models.KIND_IPPOOL, pool, {**pool, "spec": ["10.6.0.0/24"]}),
            "oldObject is not a stored SpiderIPPool: spec must be an object",
        ),
        (
            models.KIND_MULTUS_CONFIG,
            "validate",
            review(
                "UPDATE",
                models.KIND_MULTUS_CONFIG,
                BASES[models.KIND_MULTUS_CONFIG],
                {**BASES[models.KIND_MULTUS_CONFIG], "metadata": ["smc"]},
            ),
            "oldObject is not a stored SpiderMultusConfig: metadata must be an object",
        ),
    ]
    cases.append(  # found by atheris: the rules read an oldObject of another kind as its own kind
        (
            models.KIND_IPPOOL,
            "validate",
            review(
                "DELETE",
                models.KIND_IPPOOL,
                None,
                {**BASES[models.KIND_SUBNET], "status": {"allocatedIPCount": "x"}},
            ),
            "oldObject is not a stored SpiderIPPool: its kind is 'SpiderSubnet'",
        )
    )
    for kind, route, body, fragment in cases:
        verdict = decisions.decide(kind, route, body)
        assert verdict is not None and not verdict.allowed and verdict.code == 400, verdict
        assert fragment in verdict.message, verdict.message
    # A CREATE carrying an oldObject is judged as the create it is (an API server sends null).
    smc = copy.deepcopy(BASES[models.KIND_MULTUS_CONFIG])
    verdict = decisions.decide(
        models.KIND_MULTUS_CONFIG, "validate", review("CREATE", models.KIND_MULTUS_CONFIG, smc, 5)
    )
    assert verdict is not None and verdict.allowed, verdict
    # Malformed metadata and cniType of a SpiderMultusConfig are 422 naming the field, not a crash.
    bad_labels = copy.deepcopy(smc)
    bad_labels["metadata"]["labels"] = ["a", 1]
    verdict = decisions.decide(
        models.KIND_MULTUS_CONFIG, "validate", review("CREATE", models.KIND_MULTUS_CONFIG, bad_labels, None)
    )
    assert verdict is not None and verdict.code == 422 and "metadata.labels" in verdict.message, verdict
    bad_type = copy.deepcopy(smc)
    bad_type["spec"]["cniType"] = ["macvlan"]
    verdict = decisions.decide(
        models.KIND_MULTUS_CONFIG, "mutate", review("CREATE", models.KIND_MULTUS_CONFIG, bad_type, None)
    )
    assert verdict is not None and verdict.allowed, verdict  # defaulting leaves it; validation names it
    verdict = decisions.decide(
        models.KIND_MULTUS_CONFIG, "validate", review("CREATE", models.KIND_MULTUS_CONFIG, bad_type, None)
    )
    assert verdict is not None and verdict.code == 422 and "spec.cniType" in verdict.message, verdict


# -- the HTTPS server -------------------------------------------------------------------

POOL_VALIDATE = "/validate-spiderpool-spidernet-io-v2beta1-spiderippool"
POOL_MUTATE = "/mutate-spiderpool-spidernet-io-v2beta1-spiderippool"


@pytest.fixture
async def https(tmp_path: Path) -> AsyncIterator[tuple[WebhookServer, aiohttp.ClientSession]]:
    ca = CertificateAuthority("bad-input-ca")
    cert, key = ca.issue(("webhook.svc",), ("127.0.0.1",)).write(tmp_path / "tls", "tls")
    store = SqliteStore(tmp_path / "state.db")
    server = WebhookServer.from_settings("127.0.0.1:0", str(cert), str(key), store, reload_interval_s=3600)
    await server.start()
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as client:
            yield server, client
    finally:
        await server.stop()
        await store.close()


def _review(**request: Any) -> Obj:
    base = {
        "uid": "u-1",
        "operation": "CREATE",
        "kind": {"group": models.API_GROUP, "version": "v2beta1", "kind": models.KIND_IPPOOL},
        "object": copy.deepcopy(BASES[models.KIND_IPPOOL]),
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {**base, **request}}


HTTP_CASES: list[tuple[str, bytes, int, str]] = [
    # (name, body, HTTP status, fragment of the text or of the denial's message)
    ("not JSON", b"\x00\xffgarbage", 400, "the body is not JSON"),
    ("JSON array", b"[]", 400, "an AdmissionReview is a JSON object"),
    (
        "wrong apiVersion",
        json.dumps({**_review(), "apiVersion": "admission.k8s.io/v1beta1"}).encode(),
        400,
        "expected apiVersion admission.k8s.io/v1",
    ),
    (
        "no request",
        json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
        400,
        "request is required",
    ),
    ("no uid", json.dumps(_review(uid=None)).encode(), 400, "request.uid must be a non-empty string"),
    (
        "unknown operation",
        json.dumps(_review(operation="PATCH")).encode(),
        400,
        "request.operation must be one of",
    ),
    (
        "object not an object",
        json.dumps(_review(object=[1, 2])).encode(),
        400,
        "request.object must be an object",
    ),
    ("nested 5,000 deep", b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "nested too deeply"),
    ("nested 150 deep", b'{"a":' + b"[" * 150 + b"]" * 150 + b"}", 400, "nested more than 100 levels"),
    (
        "object of another kind",
        json.dumps(_review(kind={"group": "", "version": "v1", "kind": "Pod"})).encode(),
        200,
        "this webhook serves spiderpool.spidernet.io SpiderIPPool; the review is for core Pod",
    ),
    (
        "unreadable oldObject",
        json.dumps(
            _review(
                operation="DELETE", object=None, oldObject={**BASES[models.KIND_IPPOOL], "status": "broken"}
            )
        ).encode(),
        200,
        "oldObject is not a stored SpiderIPPool",
    ),
    ("17 MiB body", b'{"pad": "' + b"x" * (17 << 20) + b'"}', 413, ""),
]


async def test_malformed_bodies_get_400_413_or_a_denial_and_the_server_keeps_serving(
    https: tuple[WebhookServer, aiohttp.ClientSession],
) -> None:
    """Each body no API server sends gets 400 with the reason, 413 for one over the size limit, or a
    200 denial (400 BadRequest) for a well-formed review of the wrong thing; never 500. A valid
    review is answered afterwards."""
    server, client = https
    for name, body, status, fragment in HTTP_CASES:
        for path in (POOL_VALIDATE, POOL_MUTATE):
            data = io.BytesIO(body)  # aiohttp warns about sending a large bytes body directly
            async with client.post(
                server.url + path, data=data, headers={"Content-Type": "application/json"}
            ) as resp:
                text = await resp.text()
                assert resp.status == status, (name, path, resp.status, text[:300])
                if status == 200:
                    answer = json.loads(text)["response"]
                    assert answer["allowed"] is False and answer["status"]["code"] == 400, (name, answer)
                    assert fragment in answer["status"]["message"], (name, answer)
                else:
                    assert fragment in text, (name, text[:300])
                assert "Traceback" not in text
    async with client.post(server.url + POOL_MUTATE, json=_review()) as resp:
        answer = (await resp.json())["response"]
    assert resp.status == 200 and answer["allowed"] is True and answer["uid"] == "u-1"
