"""How clients find the server: a kubeconfig file (token auth) and the in-cluster shape.

`write_kubeconfig()` writes one cluster/user/context named `kubeapi`; `write_in_cluster()` writes the
service-account directory (`token`, `ca.crt`, `namespace`) and returns the `KUBERNETES_SERVICE_HOST`/`PORT`
environment, so a program using in-cluster configuration can be pointed at the server (client libraries read
the directory from a fixed path, so tests pass it through their own settings or patch the path).
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml


def kubeconfig(
    server: str, token: str, ca_pem: bytes | None, namespace: str = "default"
) -> dict[str, object]:
    cluster: dict[str, object] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubeapi", "cluster": cluster}],
        "users": [{"name": "kubeapi", "user": {"token": token}}],
        "contexts": [
            {"name": "kubeapi", "context": {"cluster": "kubeapi", "user": "kubeapi", "namespace": namespace}}
        ],
        "current-context": "kubeapi",
        "preferences": {},
    }


def write_kubeconfig(
    path: Path, server: str, token: str, ca_pem: bytes | None, namespace: str = "default"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomically: a process waiting for the file (the simulated cluster's harness) never reads half of it.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(yaml.safe_dump(kubeconfig(server, token, ca_pem, namespace), sort_keys=False))
    partial.replace(path)
    path.chmod(0o600)
    return path


def write_in_cluster(
    directory: Path, host: str, port: int, token: str, ca_pem: bytes | None, namespace: str = "default"
) -> dict[str, str]:
    """The service-account files; returns the environment an in-cluster client reads."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token)
    (directory / "namespace").write_text(namespace)
    if ca_pem is not None:
        (directory / "ca.crt").write_bytes(ca_pem)
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port)}
