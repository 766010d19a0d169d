"""The webhook HTTPS server for real: TLS from files (reloaded), review round trips, bad bodies, health."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from spiderpool_controller.domain import models
from spiderpool_controller.store.contract import Obj
from spiderpool_controller.store.sqlite import SqliteStore
from spiderpool_controller.webhook import WebhookServer
from spiderpool_controller.webhook.registration import KINDS
from spiderpool_controller.webhook.server import parse_listen
from spiderpool_controller.webhook.tls import CertificateError

from tests.kubeapi.certs import CertificateAuthority

POOL_MUTATE = "/mutate-spiderpool-spidernet-io-v2beta1-spiderippool"
POOL_VALIDATE = "/validate-spiderpool-spidernet-io-v2beta1-spiderippool"


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority("webhook-test-ca")


@pytest.fixture
def cert_files(ca: CertificateAuthority, tmp_path: Path) -> tuple[Path, Path]:
    return ca.issue(("first.webhook.svc",), ("127.0.0.1",)).write(tmp_path / "tls", "tls")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    yield s
    await s.close()


@pytest.fixture
async def server(cert_files: tuple[Path, Path], store: SqliteStore) -> AsyncIterator[WebhookServer]:
    cert, key = cert_files
    srv = WebhookServer.from_settings("127.0.0.1:0", str(cert), str(key), store, reload_interval_s=3600)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def client(ca: CertificateAuthority) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that trusts only the test CA (the API server's caBundle check)."""
    ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        yield session


def review(operation: str, obj: Obj | None, old: Obj | None = None, uid: str = "rev-1") -> dict[str, Any]:
    subject = obj if obj is not None else old
    assert subject is not None
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": models.API_GROUP, "version": "v2beta1", "kind": subject["kind"]},
            "resource": {"group": models.API_GROUP, "version": "v2beta1", "resource": "spiderippools"},
            "name": subject["metadata"]["name"],
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin"},
            "object": obj,
            "oldObject": old,
            "dryRun": False,
        },
    }


def pool(**spec: Any) -> Obj:
    base = {"subnet": "10.6.0.0/24", "ips": ["10.6.0.10-10.6.0.20"], "gateway": "10.6.0.1", **spec}
    return models.new_object(models.KIND_IPPOOL, "pool-a", spec=base)


async def post(client: aiohttp.ClientSession, server: WebhookServer, path: str, body: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client.post(
        server.url + path, data=data, headers={"Content-Type": "application/json"}
    ) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if resp.content_type == "application/json" else text)


async def test_every_upstream_path_is_served(server: WebhookServer, client: aiohttp.ClientSession) -> None:
    """Both paths of every kind answer a review, and the health checks answer 200 over verified TLS."""
    for entry in KINDS:
        for path in (entry.mutate_path, entry.validate_path):
            obj = models.new_object(
                entry.kind, "x", "ns" if entry.kind in models.NAMESPACED_KINDS else "", spec={}
            )
            status, body = await post(client, server, path, review("DELETE", None, obj, uid=path))
            assert status == 200 and body["response"]["uid"] == path, (path, body)
    for path in ("/webhook-health-check", "/healthz"):
        async with client.get(server.url + path) as resp:
            assert resp.status == 200


async def test_mutation_answers_a_base64_json_patch(
    server: WebhookServer, client: aiohttp.ClientSession
) -> None:
    """A pool without defaults comes back allowed with a JSONPatch adding them, uid echoed."""
    status, body = await post(client, server, POOL_MUTATE, review("CREATE", pool()))
    assert status == 200 and body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    response = body["response"]
    assert (response["uid"], response["allowed"], response["patchType"]) == ("rev-1", True, "JSONPatch")
    ops = json.loads(base64.b64decode(response["patch"]))
    assert {"op": "add", "path": "/spec/ipVersion", "value": 4} in ops
    assert {"op": "add", "path": "/metadata/finalizers", "value": ["spiderpool.spidernet.io"]} in ops


async def test_denial_carries_the_rule_message(server: WebhookServer, client: aiohttp.ClientSession) -> None:
    """A gateway outside the subnet is denied with status 422 Invalid and the message users see."""
    bad = pool(gateway="10.9.0.1", ipVersion=4)
    status, body = await post(client, server, POOL_VALIDATE, review("CREATE", bad))
    assert status == 200
    response = body["response"]
    assert response["allowed"] is False and response["uid"] == "rev-1"
    assert response["status"]["code"] == 422 and response["status"]["reason"] == "Invalid"
    assert response["status"]["message"] == (
        'SpiderIPPool "pool-a": spec.gateway: 10.9.0.1 is not inside spec.subnet 10.6.0.0/24'
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "malformed AdmissionReview: the body is not JSON: "),
        (b"[]", "malformed AdmissionReview: an AdmissionReview is a JSON object, got list"),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
            "malformed AdmissionReview: request is",
        ),
        (
            {**review("CREATE", pool()), "request": {**review("CREATE", pool())["request"], "uid": None}},
            "malformed AdmissionReview: request.uid must be a non-empty string, got None",
        ),
    ],
)
async def test_malformed_reviews_get_400_and_the_server_keeps_serving(
    server: WebhookServer, client: aiohttp.ClientSession, body: Any, message: str
) -> None:
    """A body that is not an AdmissionReview v1 request gets 400 with the reason; the next review works."""
    status, text = await post(client, server, POOL_VALIDATE, body)
    assert status == 400 and text.startswith(message)
    status, answer = await post(client, server, POOL_VALIDATE, review("CREATE", pool(ipVersion=4)))
    assert status == 200 and answer["response"]["allowed"] is True


class BrokenReader:
    """A store view with a bug: list raises something no rule expects."""

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        raise AssertionError("unused")

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        raise RuntimeError("boom")


async def test_a_crash_in_a_rule_is_a_500_denial_not_a_dead_server(
    cert_files: tuple[Path, Path], client: aiohttp.ClientSession
) -> None:
    """An unexpected exception denies that review with 500 InternalError; the server answers the next one."""
    cert, key = cert_files
    srv = WebhookServer.from_settings("127.0.0.1:0", str(cert), str(key), BrokenReader())
    await srv.start()
    try:
        status, body = await post(client, srv, POOL_VALIDATE, review("CREATE", pool(ipVersion=4)))
        assert status == 200
        assert body["response"]["allowed"] is False and body["response"]["uid"] == "rev-1"
        assert body["response"]["status"]["code"] == 500
        assert (
            body["response"]["status"]["message"]
            == "internal error in the spiderpool webhook: RuntimeError: boom"
        )
        async with client.get(srv.url + "/healthz") as resp:
            assert resp.status == 200
    finally:
        await srv.stop()


# --- TLS -------------------------------------------------------------------------------------


async def served_name(server: WebhookServer, ca: CertificateAuthority) -> str:
    """The DNS name of the certificate a new connection is served (offering h2, as Go clients do)."""
    ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx)
    try:
        tls = writer.get_extra_info("ssl_object")
        assert tls.selected_alpn_protocol() == "http/1.1"  # the server speaks HTTP/1.1 only
        der = tls.getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return str(san.value.get_values_for_type(x509.DNSName)[0])


async def test_changed_certificate_files_serve_new_connections_and_keep_old_ones(
    server: WebhookServer, ca: CertificateAuthority, cert_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """After the files change, new connections get the new certificate; an open connection keeps working."""
    assert await served_name(server, ca) == "first.webhook.svc"
    ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx)  # handshake done: first
    assert server.certificates.check() is False  # unchanged files: nothing to do
    ca.issue(("second.webhook.svc",), ("127.0.0.1",)).write(cert_files[0].parent, "tls")
    assert server.certificates.check() is True
    assert await served_name(server, ca) == "second.webhook.svc"
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: first.webhook.svc\r\nConnection: close\r\n\r\n")
    assert (await reader.read()).startswith(b"HTTP/1.1 200 OK")
    writer.close()


async def test_a_pair_that_does_not_load_keeps_the_previous_certificate(
    server: WebhookServer, ca: CertificateAuthority, cert_files: tuple[Path, Path]
) -> None:
    """A new certificate with the old key (a half-written Secret) is not served; the complete pair then is."""
    cert, key = cert_files
    pair = ca.issue(("second.webhook.svc",), ("127.0.0.1",))
    cert.write_bytes(pair.cert_pem)
    assert server.certificates.check() is False
    assert server.certificates.check() is False  # the same broken pair is not retried until the files change
    assert await served_name(server, ca) == "first.webhook.svc"
    key.write_bytes(pair.key_pem)
    assert server.certificates.check() is True
    assert await served_name(server, ca) == "second.webhook.svc"


async def test_the_server_watches_the_files_on_its_own(
    ca: CertificateAuthority, cert_files: tuple[Path, Path], store: SqliteStore
) -> None:
    """With a short interval the running server picks up a renewed certificate without being asked."""
    cert, key = cert_files
    srv = WebhookServer.from_settings("127.0.0.1:0", str(cert), str(key), store, reload_interval_s=0.02)
    await srv.start()
    try:
        ca.issue(("renewed.webhook.svc",), ("127.0.0.1",)).write(cert.parent, "tls")
        async with asyncio.timeout(10):
            while srv.certificates.reloads == 0:
                await asyncio.sleep(0.02)
        assert await served_name(srv, ca) == "renewed.webhook.svc"
    finally:
        await srv.stop()


async def test_start_fails_clearly_without_a_usable_certificate(tmp_path: Path, store: SqliteStore) -> None:
    """Missing files or a non-PEM certificate stop the start with the file named, nothing bound."""
    missing = WebhookServer.from_settings(
        "127.0.0.1:0", str(tmp_path / "no.crt"), str(tmp_path / "no.key"), store
    )
    with pytest.raises(CertificateError, match=r"cannot read .*no\.crt: No such file or directory"):
        await missing.start()
    (tmp_path / "bad.crt").write_text("not a certificate")
    (tmp_path / "bad.key").write_text("not a key")
    broken = WebhookServer.from_settings(
        "127.0.0.1:0", str(tmp_path / "bad.crt"), str(tmp_path / "bad.key"), store
    )
    with pytest.raises(CertificateError, match=r"cannot load the webhook certificate .*bad\.crt with key"):
        await broken.start()


def test_listen_addresses_are_host_and_port() -> None:
    """HOST:PORT and [v6]:PORT parse; anything else is refused with an example."""
    assert parse_listen("0.0.0.0:5722") == ("0.0.0.0", 5722)
    assert parse_listen("[::]:5722") == ("::", 5722)
    assert parse_listen(":5722") == ("0.0.0.0", 5722)
    for bad in ("5722", "host:", "host:99999", "unix:/x"):
        with pytest.raises(ValueError, match="is not HOST:PORT"):
            parse_listen(bad)
