"""The chart installed into the test API server with Helm, and its containers run against it.

``helm_config(srv, tmp)`` is Helm (helm-python-sdk, in-process, the default ``secret`` release storage)
on the server's admin kubeconfig. ``release_rendered(helm)`` is what the release holds (its manifest and
its hooks' manifests, as Helm rendered them with the cluster's lookups). ``run_container`` runs one of
those containers' command as a process against the server, as its pod's ServiceAccount: the volumes are
materialized from the release (Secrets as the cluster holds them), the downward API's values given, and
``--kubeconfig`` carries the ServiceAccount's token (it stands in for the in-cluster token mount).
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import helm_python
from aiohttp import web

from tests.chart.rendered import NAMESPACE, RELEASE, Rendered, containers, helm_home, parse_manifests
from tests.kubeapi import ServerThread

BIN = Path(sys.executable).parent


@contextmanager
def helm_config(srv: ServerThread, namespace: str = NAMESPACE) -> Iterator[helm_python.Config]:
    helm_home()
    with helm_python.Config(kubeconfig_path=str(srv.kubeconfig_path), namespace=namespace) as cfg:
        yield cfg
    os.environ.pop("KUBECONFIG", None)


def release_rendered(helm: helm_python.Config, name: str = RELEASE) -> Rendered:
    """The objects of the release's current revision, hooks included."""
    everything = helm.get_all(name)
    texts = [everything["summary"]["manifest"], *(h["manifest"] for h in everything.get("hooks") or [])]
    return Rendered(parse_manifests(texts), {})


def hook_phases(helm: helm_python.Config, name: str = RELEASE) -> dict[str, str]:
    return {
        h["name"]: (h.get("last_run") or {}).get("phase", "") for h in helm.get_all(name).get("hooks") or []
    }


def service_account_kubeconfig(srv: ServerThread, path: Path, namespace: str, account: str) -> Path:
    token = srv.call(srv.server.auth.service_account_token, namespace, account)
    path.parent.mkdir(parents=True, exist_ok=True)
    return srv.server.write_kubeconfig(path, token, namespace)


def cluster_secrets(srv: ServerThread, rendered: Rendered, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The Secrets the release's pods mount, as the cluster holds them."""
    out: dict[str, Any] = {}
    for container in containers(rendered).values():
        for mount in container.mounts:
            if mount.source == "secret":
                secret = srv.get("v1", "Secret", mount.ref, namespace)
                if secret is not None:
                    out[mount.ref] = secret
    return out


def run_container(
    srv: ServerThread,
    rendered: Rendered,
    key: str,
    tmp: Path,
    *,
    field_values: Mapping[str, str] = {},
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run container ``key`` of the release to completion, as its pod's ServiceAccount."""
    container = containers(rendered)[key]
    account = container.pod.get("serviceAccountName", "default")
    run = container.materialize(
        rendered, tmp, field_values=field_values, secrets=cluster_secrets(srv, rendered)
    )
    kubeconfig = service_account_kubeconfig(srv, tmp / "kubeconfig", NAMESPACE, account)
    argv = [str(BIN / run.argv[0]), *run.argv[1:], f"--kubeconfig={kubeconfig}"]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp), **run.env}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def admin(srv: ServerThread, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request as the cluster's administrator (what ``kubectl`` would send); returns status and body."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(srv.url + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {srv.server.config.admin_token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    ctx = ssl.create_default_context(cadata=(srv.server.ca_pem or b"").decode())
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


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
