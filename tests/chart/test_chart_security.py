"""The security-relevant parts of the rendered chart, stated exactly.

RBAC: no wildcard, no Secret or write access to core objects, the Lease and the cleanup's deletions
restricted by name, each ServiceAccount bound to its own role only. Workloads: which pods are privileged
and why, the host paths each one mounts (and nothing else of the host), the netns propagation, read-only
root filesystems and non-root users where the work allows, exec probes on the health service. TLS: the
generated certificates chain to their CA, carry the Service's names, and the usages each side needs; the
containers' TLS flags name files of the mounted Secrets.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.chart.rendered import Container, Rendered, containers, render
from tests.chart.value_sets import value_sets

SERVICE_NAMES = {
    "spiderpool-controller",
    "spiderpool-controller.kube-system",
    "spiderpool-controller.kube-system.svc",
    "spiderpool-controller.kube-system.svc.cluster.local",
}
AGENT = "DaemonSet/spiderpool-agent/spiderpool-agent"
INSTALL = "DaemonSet/spiderpool-agent/install-cni"
CONTROLLER = "Deployment/spiderpool-controller/spiderpool-controller"


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return render({"spiderpoolController": {"webhook": {"enabled": True}}})


def rules(rendered: Rendered, kind: str, name: str) -> list[dict[str, Any]]:
    return [dict(r) for r in rendered.get(kind, name)["rules"]]


def test_no_role_has_a_wildcard_or_reads_secrets(rendered: Rendered) -> None:
    """Every verb, group and resource is named; no role reads Secrets, nor ConfigMaps other than named ones,
    nor writes pods/nodes."""
    for role in [*rendered.kinds("ClusterRole"), *rendered.kinds("Role")]:
        for rule in role["rules"]:
            for field in ("verbs", "apiGroups", "resources"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
            if "" in rule["apiGroups"]:
                assert "secrets" not in rule["resources"], role["metadata"]["name"]
                if "configmaps" in rule["resources"]:
                    assert rule.get("resourceNames") and set(rule["verbs"]) <= {"list", "watch"}, rule
                if {"pods", "nodes", "namespaces"} & set(rule["resources"]):
                    assert set(rule["verbs"]) <= {"get", "list", "watch"}, role["metadata"]["name"]


def test_the_controller_may_do_exactly_what_its_code_does(rendered: Rendered) -> None:
    """CRs through the store, status of the status kinds, reads of pods, nodes and StatefulSets; the six
    builtin workloads and the configured third-party kinds read for auto pools; NADs kept for
    SpiderMultusConfigs; the coordinator's CIDR sources read (its two ConfigMaps by name only); Events
    created; the Lease by name in its namespace only."""
    cr = "spiderpool.spidernet.io"
    read = ["get", "list", "watch"]
    watch_default = {
        "apiGroups": [cr],
        "resources": ["spidercoordinators"],
        "resourceNames": ["default"],
        "verbs": ["watch"],
    }
    watch_subnets = {"apiGroups": [cr], "resources": ["spidersubnets"], "verbs": ["watch"]}
    base = [
        {
            "apiGroups": [cr],
            "resources": ["spiderippools", "spiderreservedips"],
            "verbs": ["get", "list", "watch", "create", "update", "delete"],
        },
        {
            "apiGroups": [cr],
            "resources": ["spidersubnets", "spidercoordinators"],
            "verbs": ["get", "list", "create", "update", "delete"],
        },
        watch_default,
        watch_subnets,
        {
            "apiGroups": [cr],
            "resources": ["spiderendpoints"],
            "verbs": ["get", "list", "create", "update", "delete"],
        },
        {"apiGroups": [cr], "resources": ["spidermultusconfigs"], "verbs": ["list", "watch"]},
        {
            "apiGroups": [cr],
            "resources": ["spiderippools/status", "spidersubnets/status", "spidercoordinators/status"],
            "verbs": ["update"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": read},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["list", "watch"]},
    ]
    workloads = [
        {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "daemonsets"], "verbs": read},
        {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get"]},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": read},
        {"apiGroups": ["apps.kruise.io"], "resources": ["clonesets", "statefulsets"], "verbs": read},
    ]
    rest = [
        {
            "apiGroups": ["k8s.cni.cncf.io"],
            "resources": ["network-attachment-definitions"],
            "verbs": ["get", "list", "watch", "create", "update"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"],
        },
        {"apiGroups": ["crd.projectcalico.org"], "resources": ["ippools"], "verbs": ["list", "watch"]},
        {"apiGroups": ["cilium.io"], "resources": ["ciliumpodippools"], "verbs": ["list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["servicecidrs"], "verbs": ["list", "watch"]},
    ]
    assert rules(rendered, "ClusterRole", "spiderpool-controller") == [*base, *workloads, *rest]
    sources = rendered.get("Role", "spiderpool-controller-cidr-sources")
    assert sources["metadata"]["namespace"] == "kube-system"
    assert sources["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["kubeadm-config", "cilium-config"],
            "verbs": ["list", "watch"],
        }
    ]
    # Without automatic pools no workload is read; without subnets, none is watched either.
    off = render({"ipam": {"spiderSubnet": {"autoPool": {"enable": False}}}})
    assert rules(off, "ClusterRole", "spiderpool-controller") == [*base, *rest]
    no_subnets = render({"ipam": {"spiderSubnet": {"enable": False}}})
    assert rules(no_subnets, "ClusterRole", "spiderpool-controller") == [
        *(rule for rule in base if rule is not watch_subnets),
        *rest,
    ]
    custom = render(
        {
            "ipam": {
                "spiderSubnet": {
                    "autoPool": {
                        "thirdPartyControllers": [{"apiGroup": "example.com", "resources": ["widgets"]}]
                    }
                }
            }
        }
    )
    assert rules(custom, "ClusterRole", "spiderpool-controller")[len(base) + 3] == {
        "apiGroups": ["example.com"],
        "resources": ["widgets"],
        "verbs": read,
    }
    lease = rendered.get("Role", "spiderpool-controller-leader-election")
    assert lease["metadata"]["namespace"] == "kube-system"
    assert lease["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["spiderpool-controller-leases"],
            "verbs": ["get", "update"],
        },
    ]


def test_the_agent_only_reads(rendered: Rendered) -> None:
    """The agent reads pods, namespaces, its Node and owners; it writes nothing through the API."""
    for rule in rules(rendered, "ClusterRole", "spiderpool-agent"):
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
    owners = {
        (r["apiGroups"][0], res)
        for r in rules(rendered, "ClusterRole", "spiderpool-agent")
        for res in r["resources"]
    }
    assert owners == {
        ("", "pods"),
        ("", "namespaces"),
        ("", "nodes"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("batch", "jobs"),
        ("kubevirt.io", "virtualmachineinstances"),
    }


def test_the_hook_jobs_may_only_create_defaults_and_delete_their_own(rendered: Rendered) -> None:
    """Init: create only. Cleanup: list/patch/delete of spiderpool objects, webhook configurations and CRDs
    deleted by name only."""
    assert rules(rendered, "ClusterRole", "spiderpool-init") == [
        {"apiGroups": ["spiderpool.spidernet.io"], "resources": ["spidercoordinators"], "verbs": ["create"]}
    ]
    cleanup = rules(rendered, "ClusterRole", "spiderpool-init-cleanup")
    assert cleanup[0]["verbs"] == ["list", "patch", "delete"]
    assert cleanup[1]["resourceNames"] == ["spiderpool-controller"] and cleanup[1]["verbs"] == ["delete"]
    assert cleanup[2]["resourceNames"] == [
        f"{p}.spiderpool.spidernet.io"
        for p in (
            "spiderippools",
            "spidersubnets",
            "spiderreservedips",
            "spiderendpoints",
            "spidermultusconfigs",
            "spidercoordinators",
        )
    ]
    assert cleanup[2]["verbs"] == ["delete"]


def test_each_service_account_is_bound_to_its_own_role_only(rendered: Rendered) -> None:
    """Binding name = role name = ServiceAccount name (in the release namespace); one subject each."""
    for binding in [*rendered.kinds("ClusterRoleBinding"), *rendered.kinds("RoleBinding")]:
        (subject,) = binding["subjects"]
        account = subject["name"]
        assert subject == {"kind": "ServiceAccount", "name": account, "namespace": "kube-system"}
        role = binding["roleRef"]["name"]
        assert role.removesuffix("-leader-election").removesuffix("-cidr-sources") == account, role
        assert binding["metadata"]["name"] == role
    for workload in rendered.objects:
        if workload["kind"] in ("Deployment", "DaemonSet", "Job"):
            pod = workload["spec"]["template"]["spec"]
            assert pod["serviceAccountName"] in {
                "spiderpool-controller",
                "spiderpool-agent",
                "spiderpool-init",
                "spiderpool-init-cleanup",
            }


def host_paths(c: Container) -> dict[str, tuple[str, str]]:
    return {m.ref: (m.path, m.propagation) for m in c.mounts if m.source == "hostPath"}


def test_the_agent_mounts_exactly_the_host_paths_it_works_on(rendered: Rendered) -> None:
    """Socket dir, state dir and /run/netns (HostToContainer, so later namespaces appear); the init
    container only the CNI bin and Python directories, under /host."""
    got = containers(rendered)
    assert host_paths(got[AGENT]) == {
        "/var/run/spidernet": ("/var/run/spidernet", ""),
        "/var/lib/spiderpool": ("/var/lib/spiderpool", ""),
        "/run/netns": ("/run/netns", "HostToContainer"),
    }
    assert host_paths(got[INSTALL]) == {
        "/opt/cni/bin": ("/host/opt/cni/bin", ""),
        "/opt/spiderpool/python": ("/host/opt/spiderpool/python", ""),
    }
    assert not host_paths(got[CONTROLLER])
    assert not [c for k, c in got.items() if k.startswith("Job/") and host_paths(c)]


def test_only_the_agent_is_privileged(rendered: Rendered) -> None:
    """The agent (netns work) is privileged; everything else drops all capabilities with a read-only root,
    and the controller and the jobs run as a non-root user."""
    for key, c in containers(rendered).items():
        if key == AGENT:
            assert c.security == {"privileged": True}
            assert c.pod["hostNetwork"] is True and c.pod["priorityClassName"] == "system-node-critical"
            continue
        assert c.security.get("privileged") is not True, key
        assert (
            c.security["readOnlyRootFilesystem"] is True and c.security["allowPrivilegeEscalation"] is False
        )
        assert c.security["capabilities"] == {"drop": ["ALL"]}, key
        if key != INSTALL:
            assert c.pod["securityContext"]["runAsNonRoot"] is True, key
            assert c.pod["securityContext"]["runAsUser"] != 0, key


def test_probes_ask_the_health_service(rendered: Rendered) -> None:
    """The agent's probes ask its socket; the controller's its mutual-TLS port with its certificate."""
    got = containers(rendered)
    agent, controller = got[AGENT], got[CONTROLLER]
    assert set(agent.probes) == set(controller.probes) == {"startupProbe", "readinessProbe", "livenessProbe"}
    for probe in agent.probes.values():
        assert probe["exec"]["command"] == [
            "spiderpool-health",
            "--socket=/var/run/spidernet/spiderpool.sock",
        ]
    for probe in controller.probes.values():
        command = probe["exec"]["command"]
        assert command[:2] == ["spiderpool-health", "--address=127.0.0.1:5720"]
        assert "--tls-server-name=spiderpool-controller.kube-system.svc" in command
        assert {
            a.split("=")[1] for a in command if a.startswith("--tls-") and a.endswith((".crt", ".key"))
        } == {
            "/etc/spiderpool/grpc-tls/tls.crt",
            "/etc/spiderpool/grpc-tls/tls.key",
            "/etc/spiderpool/grpc-tls/ca.crt",
        }


def test_the_controller_is_spread_and_protected(rendered: Rendered) -> None:
    """Two replicas, one per node (required anti-affinity), a PDB keeping one, system-cluster-critical."""
    deployment = rendered.get("Deployment", "spiderpool-controller")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    terms = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert [t["topologyKey"] for t in terms] == ["kubernetes.io/hostname"]
    assert terms[0]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    pdb = rendered.get("PodDisruptionBudget", "spiderpool-controller")
    assert pdb["spec"] == {"minAvailable": 1, "selector": deployment["spec"]["selector"]}
    assert pod["priorityClassName"] == "system-cluster-critical"


def certificate(secret: dict[str, Any], key: str = "tls.crt") -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"][key]))


def usages(cert: x509.Certificate) -> set[str]:
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    return {u._name for u in eku}


def names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(san.get_values_for_type(x509.DNSName))


def test_generated_certificates_chain_to_their_ca_with_the_names_and_usages_needed(
    rendered: Rendered,
) -> None:
    """The controller's gRPC and webhook certificates name the Service; every leaf is signed by the CA in its
    Secret; the gRPC CA is shared by controller and agent, the webhook's is another; all are valid now."""
    grpc = rendered.get("Secret", "spiderpool-controller-grpc-tls")
    agent = rendered.get("Secret", "spiderpool-agent-grpc-tls")
    webhook = rendered.get("Secret", "spiderpool-controller-server-certs")
    assert grpc["data"]["ca.crt"] == agent["data"]["ca.crt"] != webhook["data"]["ca.crt"]
    now = datetime.datetime.now(datetime.UTC)
    for secret in (grpc, agent, webhook):
        assert secret["type"] == "kubernetes.io/tls"
        leaf, ca = certificate(secret), certificate(secret, "ca.crt")
        leaf.verify_directly_issued_by(ca)
        assert leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc
    assert names(certificate(grpc)) == SERVICE_NAMES == names(certificate(webhook))
    assert {"serverAuth", "clientAuth"} <= usages(certificate(grpc))  # served, and presented when forwarding
    assert "clientAuth" in usages(certificate(agent))
    assert ExtendedKeyUsageOID.SERVER_AUTH._name in usages(certificate(webhook))


def test_tls_flags_name_files_of_the_mounted_secrets(rendered: Rendered) -> None:
    """Controller and agent read their certificate, key and CA from their own gRPC Secret, the controller's
    webhook files from the webhook Secret; Secrets are mounted read-only with restrictive modes."""
    got = containers(rendered)
    wiring = {
        CONTROLLER: ("--tls-", "spiderpool-controller-grpc-tls"),
        AGENT: ("--controller-tls-", "spiderpool-agent-grpc-tls"),
    }
    for key, (prefix, secret) in wiring.items():
        c = got[key]
        mount = c.mount("/etc/spiderpool/grpc-tls")
        assert (mount.source, mount.ref, mount.read_only) == ("secret", secret, True)
        assert mount.mode is not None and mount.mode & 0o077 in (0, 0o040)
        flags = c.flags()
        for what, file in (("cert-file", "tls.crt"), ("key-file", "tls.key"), ("ca-file", "ca.crt")):
            assert flags[f"{prefix}{what}"] == f"/etc/spiderpool/grpc-tls/{file}"
        assert flags[f"{prefix}server-name"] == "spiderpool-controller.kube-system.svc"
    webhook = got[CONTROLLER].mount("/etc/spiderpool/webhook-tls")
    assert (webhook.ref, webhook.read_only) == ("spiderpool-controller-server-certs", True)
    assert got[CONTROLLER].flags()["--webhook-cert-file"] == "/etc/spiderpool/webhook-tls/tls.crt"


def test_cert_manager_issues_what_auto_would_generate() -> None:
    """tls.method certmanager: a CA of the chart's own issues the same Secrets with the same names and usages,
    and the webhook configurations get their bundle injected from the webhook Certificate."""
    rendered = render(value_sets()["cert-manager"])
    certs = {c["metadata"]["name"]: c["spec"] for c in rendered.kinds("Certificate")}
    assert certs["spiderpool-controller-ca"]["isCA"] is True
    assert certs["spiderpool-controller-grpc-tls"]["usages"] == [
        "digital signature",
        "key encipherment",
        "server auth",
        "client auth",
    ]
    assert set(certs["spiderpool-controller-grpc-tls"]["dnsNames"]) == SERVICE_NAMES
    assert certs["spiderpool-agent-grpc-tls"]["usages"][-1] == "client auth"
    assert certs["spiderpool-controller-webhook"]["secretName"] == "spiderpool-controller-server-certs"
    for name in (
        "spiderpool-controller-grpc-tls",
        "spiderpool-agent-grpc-tls",
        "spiderpool-controller-webhook",
    ):
        assert certs[name]["issuerRef"]["name"] == "spiderpool-controller-ca"
    assert not rendered.kinds("Secret")
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        config = rendered.get(kind, "spiderpool-controller")
        assert config["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": "kube-system/spiderpool-controller-webhook"
        }
        assert all("caBundle" not in w["clientConfig"] for w in config["webhooks"])


def test_provided_tls_uses_the_users_material() -> None:
    """tls.method provided: the webhook Secret holds the user's PEM files, the gRPC Secrets are the user's."""
    values = value_sets()["provided-tls"]
    rendered = render(values)
    provided = values["spiderpoolController"]["tls"]["provided"]
    secret = rendered.get("Secret", "spiderpool-controller-server-certs")
    assert base64.b64decode(secret["data"]["tls.crt"]).decode() == provided["tlsCert"]
    bundle = rendered.get("ValidatingWebhookConfiguration", "spiderpool-controller")["webhooks"][0]
    assert base64.b64decode(bundle["clientConfig"]["caBundle"]).decode() == provided["tlsCa"]
    assert [s["metadata"]["name"] for s in rendered.kinds("Secret")] == ["spiderpool-controller-server-certs"]
    got = containers(rendered)
    assert got[CONTROLLER].mount("/etc/spiderpool/grpc-tls").ref == "my-controller-grpc"
    assert got[AGENT].mount("/etc/spiderpool/grpc-tls").ref == "my-agent-grpc"
