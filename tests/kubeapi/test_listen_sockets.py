"""The server on sockets its caller made (e.g. in other network namespaces), in-process and as a command."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

from .conftest import KUBECTL
from .server import ServerConfig, ServerThread


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def _version(port: int, ca_pem: bytes, token: str) -> dict[str, str]:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    req = urllib.request.Request(f"https://127.0.0.1:{port}/version")
    req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        body: dict[str, str] = json.loads(resp.read())
    return body


def test_given_sockets_are_served_and_the_url_names_the_first(tmp_path: Path) -> None:
    """Every socket handed in answers (TLS for the configured host) and the kubeconfig points at the first."""
    first, second = _listening(), _listening()
    ports = (first.getsockname()[1], second.getsockname()[1])
    with ServerThread(ServerConfig(sockets=(first, second))) as srv:
        assert srv.url == f"https://127.0.0.1:{ports[0]}"
        ca, token = srv.server.ca_pem, srv.server.config.admin_token
        assert ca is not None
        assert _version(ports[1], ca, token)["gitVersion"].endswith("-kubeapi")
        env = {"HOME": str(tmp_path), "KUBECONFIG": str(srv.kubeconfig_path), "PATH": os.environ["PATH"]}
        out = subprocess.run(
            [KUBECTL, "get", "ns", "default", "-o", "name"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == "namespace/default"


def test_the_command_serves_inherited_listening_sockets(tmp_path: Path) -> None:
    """`--listen-fd` makes the command serve a socket its parent bound, at the port the parent chose."""
    sock = _listening()
    port = sock.getsockname()[1]
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.kubeapi",
            "--listen-fd",
            str(sock.fileno()),
            "--state-dir",
            str(tmp_path),
        ],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=(sock.fileno(),),
    )
    sock.close()
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["url"] == f"https://127.0.0.1:{port}"
        token = yaml.safe_load(Path(info["kubeconfig"]).read_text())["users"][0]["user"]["token"]
        assert _version(port, (tmp_path / "pki" / "ca.crt").read_bytes(), token)["major"] == "1"
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
