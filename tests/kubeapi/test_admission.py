"""Registered admission webhooks are called as a real server calls them (HTTPS, AdmissionReview v1)."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import yaml

from .certs import CertificateAuthority
from .conftest import TESTDATA, Http, Kubectl, start_webhook
from .server import ServerThread
from .test_semantics import WIDGET_CRD, WIDGETS, widget

CONFIGS = "/apis/admissionregistration.k8s.io/v1"


def _config(kind: str, name: str, client: dict[str, Any], **hook: Any) -> dict[str, Any]:
    rules = hook.pop(
        "rules",
        [
            {
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": ["example.com"],
                "apiVersions": ["*"],
                "resources": ["widgets"],
            }
        ],
    )
    webhook = {
        "name": name,
        "clientConfig": client,
        "rules": rules,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        **hook,
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": [webhook],
    }


def _register(http: Http, kind: str, body: dict[str, Any]) -> None:
    plural = kind.lower() + "s"
    code, resp, _ = http("POST", f"{CONFIGS}/{plural}", body)
    assert code == 201, resp


def test_mutating_then_schema_then_validating_with_service_resolution_and_ca_check(
    srv: ServerThread, http: Http
) -> None:
    http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
    patch = [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]
    mutator = start_webhook(
        srv,
        lambda req: {
            "patchType": "JSONPatch",
            "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
        },
        service=("webhooks", "mutator"),
    )
    validator = start_webhook(srv, lambda req: {}, service=("webhooks", "validator"))
    _register(
        http,
        "MutatingWebhookConfiguration",
        _config(
            "MutatingWebhookConfiguration",
            "mutate.example.com",
            {
                "service": {"namespace": "webhooks", "name": "mutator", "path": "/mutate"},
                "caBundle": mutator.ca_bundle,
            },
        ),
    )
    _register(
        http,
        "ValidatingWebhookConfiguration",
        _config(
            "ValidatingWebhookConfiguration",
            "validate.example.com",
            {
                "service": {"namespace": "webhooks", "name": "validator", "path": "/validate"},
                "caBundle": validator.ca_bundle,
            },
        ),
    )
    code, body, _ = http("POST", WIDGETS, widget("w"))
    assert code == 201 and body["metadata"]["labels"] == {"mutated": "yes"}
    request = validator.reviews[0]["request"]
    assert request["operation"] == "CREATE" and request["oldObject"] is None and request["dryRun"] is False
    assert request["object"]["metadata"]["labels"] == {"mutated": "yes"}  # after the mutating webhook
    assert request["object"]["spec"]["size"] == 3  # after schema defaulting
    assert request["userInfo"]["username"] == "kubernetes-admin"
    assert request["kind"] == {"group": "example.com", "version": "v1", "kind": "Widget"}
    assert request["resource"] == {"group": "example.com", "version": "v1", "resource": "widgets"}
    http("PATCH", f"{WIDGETS}/w?dryRun=All", {"spec": {"size": 4}}, "application/merge-patch+json")
    update = validator.reviews[-1]["request"]
    assert update["operation"] == "UPDATE" and update["dryRun"] is True
    assert update["oldObject"]["spec"]["size"] == 3 and update["object"]["spec"]["size"] == 4


def test_kubectl_apply_refused_by_a_webhook_prints_the_denial(
    srv: ServerThread, http: Http, kubectl: Kubectl
) -> None:
    hook = start_webhook(srv, lambda req: {"allowed": False, "status": {"message": "pools need a gateway"}})
    kubectl("apply", "-f", str(TESTDATA / "spiderippool-crd.yaml"))
    rules = [
        {
            "operations": ["CREATE"],
            "apiGroups": ["spiderpool.spidernet.io"],
            "apiVersions": ["v2beta1"],
            "resources": ["spiderippools"],
        }
    ]
    _register(
        http,
        "ValidatingWebhookConfiguration",
        _config(
            "ValidatingWebhookConfiguration",
            "pools.spiderpool.spidernet.io",
            {"url": hook.url + "/validate", "caBundle": hook.ca_bundle},
            rules=rules,
        ),
    )
    proc = kubectl("apply", "-f", str(TESTDATA / "pool-a.yaml"), ok=False)
    assert proc.returncode == 1
    assert (
        'admission webhook "pools.spiderpool.spidernet.io" denied the request: pools need a gateway'
        in proc.stderr
    )
    assert srv.get("spiderpool.spidernet.io/v2beta1", "SpiderIPPool", "pool-a") is None


def test_failure_policy_decides_when_the_webhook_cannot_be_called(srv: ServerThread, http: Http) -> None:
    http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
    hook = start_webhook(srv, lambda req: {})
    other_ca = base64.b64encode(CertificateAuthority().cert_pem).decode()
    _register(
        http,
        "ValidatingWebhookConfiguration",
        _config(
            "ValidatingWebhookConfiguration",
            "ignored.example.com",
            {"service": {"namespace": "nowhere", "name": "missing"}},
            failurePolicy="Ignore",
        ),
    )
    code, _, _ = http("POST", WIDGETS, widget("a"))
    assert code == 201
    _register(
        http,
        "ValidatingWebhookConfiguration",
        _config(
            "ValidatingWebhookConfiguration",
            "failing.example.com",
            {"url": hook.url + "/x", "caBundle": other_ca},
        ),
    )
    code, body, _ = http("POST", WIDGETS, widget("b"))
    assert code == 500 and body["reason"] == "InternalError"
    assert body["message"].startswith(
        'Internal error occurred: failed calling webhook "failing.example.com": '
        f'failed to call webhook: Post "{hook.url}/x": '
    )
    assert "CERTIFICATE_VERIFY_FAILED" in body["message"]  # the caBundle does not certify the webhook
    assert hook.reviews == []


def test_webhook_timeout_fails_the_request(srv: ServerThread, http: Http) -> None:
    http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)

    async def slow(req: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(1.6)
        return {}

    hook = start_webhook(srv, slow)
    _register(
        http,
        "ValidatingWebhookConfiguration",
        _config(
            "ValidatingWebhookConfiguration",
            "slow.example.com",
            {"url": hook.url, "caBundle": hook.ca_bundle},
            timeoutSeconds=1,
        ),
    )
    started = time.monotonic()
    code, body, _ = http("POST", WIDGETS, widget("w"))
    assert code == 500 and "context deadline exceeded" in body["message"]
    assert time.monotonic() - started < 2.5


def test_rules_selectors_and_delete_reviews(srv: ServerThread, http: Http) -> None:
    http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
    http("POST", "/api/v1/namespaces", {"metadata": {"name": "skip", "labels": {"webhooks": "off"}}})
    hook = start_webhook(srv, lambda req: {})
    rules = [
        {
            "operations": ["DELETE"],
            "apiGroups": ["example.com"],
            "apiVersions": ["v1"],
            "resources": ["widgets"],
        },
        {"operations": ["UPDATE"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["widgets/status"]},
    ]
    _register(
        http,
        "ValidatingWebhookConfiguration",
        _config(
            "ValidatingWebhookConfiguration",
            "sel.example.com",
            {"url": hook.url, "caBundle": hook.ca_bundle},
            rules=rules,
            namespaceSelector={
                "matchExpressions": [{"key": "webhooks", "operator": "NotIn", "values": ["off"]}]
            },
            objectSelector={"matchLabels": {"watched": "true"}},
        ),
    )
    watched = {**widget("w"), "metadata": {"name": "w", "labels": {"watched": "true"}}}
    http("POST", WIDGETS, watched)
    http("POST", WIDGETS, widget("other"))
    http("POST", "/apis/example.com/v1/namespaces/skip/widgets", watched)
    assert hook.reviews == []  # CREATE is not in the rules
    http("PATCH", f"{WIDGETS}/w", {"spec": {"size": 2}}, "application/merge-patch+json")  # main resource: no
    http("PATCH", f"{WIDGETS}/w/status", {"status": {"ready": True}}, "application/merge-patch+json")
    http("DELETE", f"{WIDGETS}/other")  # objectSelector: no
    http("DELETE", "/apis/example.com/v1/namespaces/skip/widgets/w")  # namespaceSelector: no
    http("DELETE", f"{WIDGETS}/w")
    seen = [(r["request"]["operation"], r["request"].get("subResource", "")) for r in hook.reviews]
    assert seen == [("UPDATE", "status"), ("DELETE", "")]
    delete = hook.reviews[1]["request"]
    assert delete["object"] is None and delete["oldObject"]["metadata"]["name"] == "w"
    assert yaml.safe_dump(delete)  # plain JSON types only


def test_a_write_made_while_another_was_in_admission_makes_that_one_conflict(
    srv: ServerThread, http: Http
) -> None:
    """Storage compares the resourceVersion it admitted: an update held by a webhook while another
    update lands gets 409 (it was a lost update, overwriting the other), and a delete held while the
    object goes gets 404 (it was a 500: KeyError)."""
    http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
    armed, entered, release = threading.Event(), threading.Event(), threading.Event()

    async def hold(req: dict[str, Any]) -> dict[str, Any]:
        if armed.is_set():  # the next review after arming waits for the release
            armed.clear()
            entered.set()
            while not release.is_set():
                await asyncio.sleep(0.01)
        return {}

    def held(method: str, path: str, body: Any, meanwhile: Callable[[], None]) -> tuple[int, Any]:
        entered.clear()
        release.clear()
        armed.set()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(http, method, path, body)
            assert entered.wait(10)
            meanwhile()
            release.set()
            code, out, _ = pending.result(10)
        return code, out

    hook = start_webhook(srv, hold)
    rules = [
        {
            "operations": ["UPDATE", "DELETE"],
            "apiGroups": ["example.com"],
            "apiVersions": ["*"],
            "resources": ["widgets"],
        }
    ]
    config = _config(
        "ValidatingWebhookConfiguration",
        "hold.example.com",
        {"url": hook.url, "caBundle": hook.ca_bundle},
        rules=rules,
    )
    _register(http, "ValidatingWebhookConfiguration", config)
    code, created, _ = http("POST", WIDGETS, widget("w"))
    assert code == 201, created
    labelled = {**created, "metadata": {**created["metadata"], "labels": {"held": "yes"}}}

    def blue() -> None:
        code, body, _ = http("PUT", f"{WIDGETS}/w", {**created, "spec": {"color": "blue"}})
        assert code == 200, body

    code, body = held("PUT", f"{WIDGETS}/w", labelled, blue)
    assert code == 409 and body["reason"] == "Conflict", body
    _, stored, _ = http("GET", f"{WIDGETS}/w")
    assert stored["spec"]["color"] == "blue" and "labels" not in stored["metadata"]

    def gone() -> None:
        srv.call(
            srv.server.store.remove,
            "example.com/widgets",
            {"metadata": {"namespace": "default", "name": "w"}},
        )

    code, body = held("DELETE", f"{WIDGETS}/w", None, gone)
    assert code == 404, body
