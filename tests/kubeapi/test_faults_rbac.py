"""Injected faults, the request counter, RBAC enforcement, and running the server as a command."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.rest import ApiException

from .admin import AdminClient
from .conftest import KUBECTL, Http, Kubectl
from .server import ServerConfig, ServerThread
from .test_semantics import WIDGET_CRD

CMS = "/api/v1/namespaces/default/configmaps"


def test_armed_conflicts_answer_409_for_the_next_n_matching_writes(srv: ServerThread, http: Http) -> None:
    srv.faults.conflicts(2, resource="configmaps")
    codes = [http("POST", CMS, {"metadata": {"name": f"c{i}"}})[0] for i in range(3)]
    assert codes == [409, 409, 201]
    _, body, _ = http("GET", "/api/v1/namespaces/default/configmaps")  # reads are not writes
    assert [i["metadata"]["name"] for i in body["items"]] == ["c2"]
    assert srv.faults.count("create", "configmaps") == 3 and srv.faults.count("list", "configmaps") == 1


def test_the_servers_own_error_answers_are_counted_by_status_verb_and_resource(
    srv: ServerThread, http: Http
) -> None:
    """A stale compare-and-swap and a duplicate create count as 409s, a missing object as 404; injected faults
    and successes do not count; resetting the counts clears them."""
    srv.faults.conflicts(1, resource="configmaps")
    assert http("POST", CMS, {"metadata": {"name": "c"}})[0] == 409  # injected
    _, made, _ = http("POST", CMS, {"metadata": {"name": "c"}})
    assert http("POST", CMS, {"metadata": {"name": "c"}})[0] == 409  # exists
    stale = {**made, "data": {"k": "v"}}
    assert http("PUT", f"{CMS}/c", stale)[0] == 200
    assert http("PUT", f"{CMS}/c", stale)[0] == 409  # the resourceVersion moved on
    assert http("GET", f"{CMS}/gone")[0] == 404
    assert srv.faults.errors_answered() == {
        "404 get configmaps": 1,
        "409 create configmaps": 1,
        "409 update configmaps": 1,
    }
    srv.faults.reset_counts()
    assert srv.faults.errors_answered() == {}


def test_armed_errors_and_delays_apply_to_matching_requests(srv: ServerThread, http: Http) -> None:
    srv.faults.errors(1, 503, verb="get", resource="namespaces", name="default")
    code, body, _ = http("GET", "/api/v1/namespaces/default")
    assert code == 503 and body["kind"] == "Status"
    assert http("GET", "/api/v1/namespaces/default")[0] == 200
    srv.faults.write_delay = 0.2
    started = time.monotonic()
    http("POST", CMS, {"metadata": {"name": "slow"}})
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    http("GET", f"{CMS}/slow")
    assert time.monotonic() - started < 0.2


def test_pause_holds_requests_until_resume(srv: ServerThread, http: Http) -> None:
    srv.faults.pause()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(http("GET", "/api/v1/namespaces")[0]))
    t.start()
    time.sleep(0.2)
    assert result == []
    srv.faults.resume()
    t.join(5)
    assert result == [200]


def test_dropping_watches_ends_open_streams_early(srv: ServerThread) -> None:
    api = kubernetes.config.new_client_from_config(config_file=str(srv.kubeconfig_path))
    core = kubernetes.client.CoreV1Api(api)
    done = threading.Event()

    def watch() -> None:
        for _ in kubernetes.watch.Watch().stream(
            core.list_namespaced_config_map, "default", timeout_seconds=30
        ):
            pass
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    deadline = time.monotonic() + 5
    while srv.call(lambda: srv.server.store.watcher_count) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.drop_watches() == 1
    assert done.wait(5)
    api.close()


def test_rbac_enforcement_allows_what_roles_grant_and_records_denials(srv: ServerThread, http: Http) -> None:
    srv.server.authorizer.enforce = True
    token = srv.server.auth.service_account_token("default", "reader")
    role = {
        "metadata": {"name": "cm-reader"},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"], "resourceNames": ["p1"]},
        ],
    }
    binding = {
        "metadata": {"name": "cm-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}],
    }
    assert http("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles", role)[0] == 201
    assert (
        http("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", binding)[0] == 201
    )
    reader = http.as_token(token)
    assert reader("GET", CMS)[0] == 200
    assert reader("GET", "/version")[0] == 200  # bootstrap discovery roles
    code, body, _ = reader("POST", CMS, {"metadata": {"name": "c"}})
    assert code == 403 and body["reason"] == "Forbidden"
    assert body["message"] == (
        'configmaps is forbidden: User "system:serviceaccount:default:reader" cannot create '
        'resource "configmaps" in API group "" in the namespace "default"'
    )
    code, body, _ = reader("GET", "/api/v1/namespaces/kube-system/configmaps/x")
    assert code == 403 and 'configmaps "x" is forbidden' in body["message"]
    assert reader("GET", "/api/v1/namespaces/default/pods/p1")[0] == 403
    assert reader("GET", "/api/v1/nodes")[1]["message"].endswith("at the cluster scope")
    denied = srv.server.authorizer.denied
    assert [(d["verb"], d["resource"]) for d in denied] == [
        ("create", "configmaps"),
        ("get", "configmaps"),
        ("get", "pods"),
        ("list", "nodes"),
    ]
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "namespace": "default",
                "verb": "patch",
                "resource": "pods",
                "subresource": "status",
                "name": "p1",
            }
        },
    }
    code, body, _ = reader("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    assert code == 201 and body["status"]["allowed"] is True
    assert http.as_token("bogus")("GET", "/api")[0] == 401


def test_an_rbac_change_takes_effect_on_the_next_request(srv: ServerThread, http: Http) -> None:
    """Decisions are cached (per user and request attributes) only until a Role, ClusterRole or binding
    changes: a grant and its removal both apply to the very next request, as in the real server."""
    srv.server.authorizer.enforce = True
    reader = http.as_token(srv.server.auth.service_account_token("default", "lister"))
    path = "/api/v1/namespaces/default/secrets"
    assert reader("GET", path)[0] == 403
    role: dict[str, Any] = {
        "metadata": {"name": "secret-lister"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
    }
    binding = {
        "metadata": {"name": "secret-lister"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secret-lister"},
        "subjects": [{"kind": "ServiceAccount", "name": "lister", "namespace": "default"}],
    }
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    assert http("POST", f"{rbac}/clusterroles", role)[0] == 201
    assert reader("GET", path)[0] == 403  # a role alone grants nothing
    assert http("POST", f"{rbac}/namespaces/default/rolebindings", binding)[0] == 201
    assert reader("GET", path)[0] == 200
    role["rules"][0]["verbs"] = ["get"]
    assert http("PUT", f"{rbac}/clusterroles/secret-lister", role)[0] == 200
    assert reader("GET", path)[0] == 403


def test_a_list_or_watch_pinned_to_one_name_is_authorized_as_that_name(srv: ServerThread, http: Http) -> None:
    """As a real API server: ``fieldSelector=metadata.name=X`` lists and watches (alone or among other terms)
    are allowed by a rule with ``resourceNames: [X]``; another name, a negated one, no selector, or a get
    the rule does not grant, is not."""
    srv.server.authorizer.enforce = True
    token = srv.server.auth.service_account_token("default", "one-cm")
    role = {
        "metadata": {"name": "one-cm"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "verbs": ["list", "watch"],
                "resourceNames": ["a"],
            }
        ],
    }
    binding = {
        "metadata": {"name": "one-cm"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-cm"},
        "subjects": [{"kind": "ServiceAccount", "name": "one-cm", "namespace": "default"}],
    }
    assert http("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles", role)[0] == 201
    assert (
        http("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", binding)[0] == 201
    )
    reader = http.as_token(token)
    assert reader("GET", CMS + "?fieldSelector=metadata.name%3Da")[0] == 200
    assert reader("GET", CMS + "?fieldSelector=metadata.name%3D%3Da&watch=true&timeoutSeconds=1")[0] == 200
    assert reader("GET", CMS + "?fieldSelector=metadata.name%3Db")[0] == 403
    assert reader("GET", CMS)[0] == 403
    denied = srv.server.authorizer.take_denied()
    assert [(d["verb"], d["name"]) for d in denied] == [("list", "b"), ("list", "")]
    # The name among other terms still counts; a negated name or a plain get of it does not.
    assert reader("GET", f"{CMS}?fieldSelector=metadata.namespace%3Ddefault,metadata.name%3D%3Da")[0] == 200
    assert reader("GET", f"{CMS}?fieldSelector=metadata.name!%3Da")[0] == 403
    assert reader("GET", f"{CMS}/a")[0] == 403


def test_kubectl_auth_can_i_as_a_service_account(srv: ServerThread, kubectl: Kubectl, tmp_path: Path) -> None:
    srv.server.authorizer.enforce = True
    token = srv.server.auth.service_account_token("default", "sa1")
    kubectl.env["KUBECONFIG"] = str(srv.server.write_kubeconfig(tmp_path / "sa1.kubeconfig", token))
    assert kubectl("auth", "can-i", "list", "pods", ok=False).stdout.strip() == "no"  # protobuf review body
    assert kubectl("auth", "can-i", "create", "selfsubjectaccessreviews").stdout.strip() == "yes"
    denied = kubectl("get", "pods", ok=False).stderr.strip()
    assert denied.startswith(
        'Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:default:sa1"'
    )
    assert 'cannot list resource "pods" in API group "" in the namespace "default"' in denied


def test_in_cluster_files_let_an_in_cluster_client_connect(srv: ServerThread, tmp_path: Path) -> None:
    env = srv.server.write_in_cluster(tmp_path / "sa")
    cfg = kubernetes.client.Configuration()
    loader = kubernetes.config.incluster_config.InClusterConfigLoader(
        token_filename=str(tmp_path / "sa" / "token"),
        cert_filename=str(tmp_path / "sa" / "ca.crt"),
        environ=env,
    )
    loader.load_and_set(cfg)
    with kubernetes.client.ApiClient(cfg) as api:
        names = [n.metadata.name for n in kubernetes.client.CoreV1Api(api).list_namespace().items]
    assert "kube-system" in names
    assert (tmp_path / "sa" / "namespace").read_text() == "default"


def test_the_command_serves_until_sigterm_and_obeys_the_admin_endpoint(tmp_path: Path) -> None:
    tests_dir = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.kubeapi", "--kubeconfig", str(tmp_path / "kubeconfig")],
        cwd=tests_dir,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        kubeconfig = yaml.safe_load((tmp_path / "kubeconfig").read_text())
        token = kubeconfig["users"][0]["user"]["token"]
        ca_pem = base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
        api = kubernetes.config.new_client_from_config(config_file=str(tmp_path / "kubeconfig"))
        admin = AdminClient(info["url"], token, ca_pem=ca_pem)
        admin.add_fault(verb="create", resource="configmaps", status=409, count=1)
        core = kubernetes.client.CoreV1Api(api)
        with pytest.raises(ApiException) as err:
            core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
        assert err.value.status == 409
        core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
        assert admin.counts()["create configmaps"] == 2
        with pytest.raises(ApiException):
            core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
        assert admin.errors() == {"409 create configmaps": 1}  # the injected 409 is not the server's own
        env = {"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "kubeconfig"), "PATH": os.environ["PATH"]}
        out = subprocess.run(
            [KUBECTL, "get", "cm", "c", "-o", "name"], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "configmap/c"
        api.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        if proc.stdout is not None:
            proc.stdout.close()  # not left to garbage collection (a ResourceWarning)


def test_dropping_connections_closes_open_sockets(srv: ServerThread) -> None:
    ca = srv.server.ca_pem
    assert ca is not None
    ctx = ssl.create_default_context(cadata=ca.decode())
    with (
        socket.create_connection(("127.0.0.1", srv.server.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        token = srv.server.config.admin_token
        path = "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=30"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert srv.drop_connections() >= 1
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError, ssl.SSLError):
            while sock.recv(4096):
                pass
        assert time.monotonic() - started < 2


def test_plain_http_server_works_with_kubectl(tmp_path: Path) -> None:
    with ServerThread(ServerConfig(tls=False)) as plain:
        assert plain.url.startswith("http://")
        env = {"HOME": str(tmp_path), "KUBECONFIG": str(plain.kubeconfig_path), "PATH": os.environ["PATH"]}
        out = subprocess.run(
            [KUBECTL, "get", "ns", "-o", "name"], env=env, capture_output=True, text=True, check=True
        )
        assert "namespace/kube-system" in out.stdout.split()


def test_server_side_apply_with_strict_validation_refuses_undeclared_fields(http: Http) -> None:
    http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
    body = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"color": "red", "x": 1},
    }
    code, resp, _ = http(
        "PATCH",
        "/apis/example.com/v1/namespaces/default/widgets/w?fieldManager=t&fieldValidation=Strict",
        body,
        "application/apply-patch+yaml",
    )
    assert code == 400 and resp["message"].endswith(".spec.x: field not declared in schema")


def test_the_write_log_records_accepted_writes_with_their_user_agent_and_nothing_else(
    srv: ServerThread, http: Http
) -> None:
    """Accepted writes are logged with who (user, User-Agent), what, when and the resourceVersion made;
    refused (injected 409), dry-run writes and reads are not; the admin endpoint filters by time and
    User-Agent."""
    before = time.time()
    srv.faults.conflicts(1, resource="configmaps")
    mine = {"User-Agent": "replica-a/1 (a_1)"}
    assert http("POST", CMS, {"metadata": {"name": "w"}}, headers=mine)[0] == 409
    assert http("POST", CMS + "?dryRun=All", {"metadata": {"name": "w"}}, headers=mine)[0] == 201
    code, made, _ = http("POST", CMS, {"metadata": {"name": "w"}}, headers=mine)
    assert code == 201
    http("GET", f"{CMS}/w", headers=mine)
    patch = {"data": {"k": "v"}}
    http("PATCH", f"{CMS}/w", patch, "application/merge-patch+json", headers={"User-Agent": "replica-b/1"})
    ca = srv.server.ca_pem
    admin = AdminClient(srv.url, srv.server.config.admin_token, ca_pem=ca)
    entries = admin.writes(before)
    assert [(e["verb"], e["resource"], e["name"], e["user_agent"]) for e in entries] == [
        ("create", "configmaps", "w", "replica-a/1 (a_1)"),
        ("patch", "configmaps", "w", "replica-b/1"),
    ]
    assert entries[0]["resource_version"] == made["metadata"]["resourceVersion"]
    assert entries[0]["user"] == "kubernetes-admin" and entries[0]["code"] == 201
    assert before <= entries[0]["received"] <= entries[0]["at"] <= entries[1]["received"]
    assert [e["verb"] for e in admin.writes(before, "replica-b")] == ["patch"]
    assert admin.writes(entries[1]["received"] + 1) == []
    admin.clear_writes()
    assert admin.writes() == []
