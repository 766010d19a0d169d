"""The webhook configurations the chart installs are the ones the API server calls, over the chart's TLS.

With ``spiderpoolController.webhook.enabled`` the chart registers a Mutating and a Validating
WebhookConfiguration for upstream's paths on the controller Service (port 5722), whose ``caBundle`` is the
CA of the serving certificate it generated (``tls.method auto``). The test API server resolves the Service
to an HTTPS server started here with the certificate and key from the Secret the chart created (where the
controller mounts them), and verifies it against the ``caBundle`` for the name
``spiderpool-controller.kube-system.svc`` as a real API server does. Writing a SpiderIPPool then calls
that server on the mutating and the validating path; a server with another CA's certificate is refused.
An upgrade keeps the certificates and the bundle.

The server here answers every review with "allowed": the TLS wiring is the subject; tests/chart/test_rbac.py
runs the controller's own admission server from the chart's arguments. The rendered configurations are
also compared with the controller's own table of what it serves (webhook/registration.py).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spiderpool_controller.webhook import registration

from tests.chart.cluster import admin, helm_config, serve_webhooks
from tests.chart.rendered import CHART, NAMESPACE, RELEASE
from tests.chart.value_sets import rendered_value_set
from tests.kubeapi import ServerConfig, ServerThread
from tests.kubeapi.certs import CertificateAuthority

GROUP = "spiderpool.spidernet.io/v2beta1"
VALUES = {"spiderpoolController": {"webhook": {"enabled": True}}}
POOL = {
    "apiVersion": GROUP,
    "kind": "SpiderIPPool",
    "metadata": {"name": "web-v4"},
    "spec": {"subnet": "10.7.0.0/24", "ips": ["10.7.0.10-10.7.0.20"]},
}


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(rbac_enforce=True)) as s:
        yield s


def webhook_secret(srv: ServerThread) -> dict[str, bytes]:
    secret = srv.get("v1", "Secret", "spiderpool-controller-server-certs", NAMESPACE)
    assert secret is not None
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def configurations(srv: ServerThread) -> dict[str, dict[str, Any]]:
    out = {}
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        obj = srv.get("admissionregistration.k8s.io/v1", kind, "spiderpool-controller")
        assert obj is not None, kind
        out[kind] = obj
    return out


def test_the_api_server_calls_the_chart_s_webhooks_over_its_tls(srv: ServerThread, tmp_path: Path) -> None:
    """A SpiderIPPool create is reviewed on upstream's mutating and validating paths by the server holding
    the chart's certificate; the caBundle is that certificate's CA and survives an upgrade."""
    with helm_config(srv) as helm:
        helm.install(str(CHART), RELEASE, VALUES, wait="watcher", timeout=60)
        tls = webhook_secret(srv)
        configs = configurations(srv)
        for obj in configs.values():
            assert {base64.b64decode(w["clientConfig"]["caBundle"]) for w in obj["webhooks"]} == {
                tls["ca.crt"]
            }
            for webhook in obj["webhooks"]:
                assert webhook["clientConfig"]["service"] | {"path": ""} == {
                    "namespace": NAMESPACE,
                    "name": "spiderpool-controller",
                    "port": 5722,
                    "path": "",
                }
        paths = serve_webhooks(srv, tls["tls.crt"], tls["tls.key"], tmp_path / "webhook")
        status, body = admin(srv, "POST", f"/apis/{GROUP}/spiderippools", POOL)
        assert status == 201, body
        assert paths == [
            "/mutate-spiderpool-spidernet-io-v2beta1-spiderippool",
            "/validate-spiderpool-spidernet-io-v2beta1-spiderippool",
        ]
        status, body = admin(srv, "DELETE", f"/apis/{GROUP}/spiderippools/web-v4")
        assert status == 200, body
        assert paths[-1] == "/validate-spiderpool-spidernet-io-v2beta1-spiderippool"  # DELETE is validated

        helm.upgrade(
            str(CHART), RELEASE, VALUES | {"ipam": {"enableIPv6": False}}, wait="watcher", timeout=60
        )
        assert webhook_secret(srv) == tls
        assert (
            configurations(srv)["ValidatingWebhookConfiguration"]["webhooks"]
            == configs["ValidatingWebhookConfiguration"]["webhooks"]
        )
        status, body = admin(srv, "POST", f"/apis/{GROUP}/spiderippools", POOL)
        assert status == 201, body
    assert srv.server.authorizer.take_denied() == []


def test_a_server_without_the_chart_s_certificate_is_refused(srv: ServerThread, tmp_path: Path) -> None:
    """The caBundle is checked: a server with another CA's certificate for the same name fails the write."""
    with helm_config(srv) as helm:
        helm.install(str(CHART), RELEASE, VALUES, wait="watcher", timeout=60)
        other = CertificateAuthority("not-the-charts").issue(("spiderpool-controller.kube-system.svc",))
        paths = serve_webhooks(srv, other.cert_pem, other.key_pem, tmp_path / "impostor")
        status, body = admin(srv, "POST", f"/apis/{GROUP}/spiderippools", POOL)
        assert status >= 400
        assert "failed calling webhook" in body["message"]
        assert paths == []


@pytest.mark.parametrize("name", ["default", "provided-tls", "cert-manager"])
def test_the_rendered_configurations_are_the_controller_s_own_table(name: str) -> None:
    """Names, paths, rules, port, failure policy: what the controller's registration module says it serves."""
    rendered = rendered_value_set(name)
    mutating, validating = registration.webhook_configurations(b"ca", (NAMESPACE, "spiderpool-controller"))
    for expected in (mutating, validating):
        got = rendered.get(expected["kind"], "spiderpool-controller")
        for webhook in got["webhooks"]:
            webhook["clientConfig"].pop("caBundle", None)
        for webhook in expected["webhooks"]:
            webhook["clientConfig"].pop("caBundle")
        assert got["webhooks"] == expected["webhooks"]
        assert got["apiVersion"] == expected["apiVersion"]
