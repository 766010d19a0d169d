"""The webhook configurations the chart installs are the ones the API server calls, over the chart's TLS.

With ``spiderpoolController.webhook.enabled`` the chart registers a Mutating and a Validating
WebhookConfiguration for upstream's paths on the controller Service (port 5722), whose ``caBundle`` is the
CA of the serving certificate it generated (``tls.method auto``). The test API server resolves the Service
to an HTTPS server started here with the certificate and key from the Secret the chart created (where the
controller mounts them), and verifies it against the ``caBundle`` for the name
``spiderpool-controller.kube-system.svc`` as a real API server does. Writing a SpiderIPPool then calls
that server on the mutating and the validating path; a server with another CA's certificate is refused.
An upgrade keeps the certificates and the bundle.

The server here answers every review with "allowed": it stands in for the controller's admission server
(branch webhook), which replaces it once it serves on the controller's flags.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.chart.cluster import admin, helm_config
from tests.chart.rendered import CHART, NAMESPACE, RELEASE
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


def serve_webhooks(srv: ServerThread, cert: bytes, key: bytes, directory: Path) -> list[str]:
    """An HTTPS server with ``cert``/``key`` answering every AdmissionReview "allowed"; the controller
    Service resolves to it. Returns the list the request paths are appended to."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(cert)
    (directory / "tls.key").write_bytes(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    paths: list[str] = []

    async def review(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        paths.append(request.path)
        response = {"uid": body["request"]["uid"], "allowed": True}
        return web.json_response(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        )

    async def start() -> int:
        app = web.Application()
        app.router.add_post("/{tail:.*}", review)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        server = site._server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    port = srv.run(start)
    srv.server.admission.service_urls[(NAMESPACE, "spiderpool-controller")] = f"https://127.0.0.1:{port}"
    return paths


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
