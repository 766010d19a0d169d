"""The pod status the kubelet stand-in writes: the cluster network's IPs, Running and ready, or why not."""

from __future__ import annotations

from tests.simcluster import pod_status

POD = {"spec": {"containers": [{"name": "c", "image": "pause"}, {"name": "d", "image": "x"}]}}


def test_pod_ips_are_the_results_addresses_ipv4_first_without_prefix() -> None:
    """podIPs come from the default interface's result, IPv4 before IPv6."""
    result = {"ips": [{"address": "fd00::5/64"}, {"address": "172.30.0.5/24"}]}
    assert pod_status.pod_ips(result) == ["172.30.0.5", "fd00::5"]


def test_running_status_reports_ips_and_every_container_ready() -> None:
    """Running: podIP/podIPs, hostIPs, Ready true, one running ready status per container."""
    status = pod_status.running(POD, ["172.30.0.5", "fd00::5"], ["172.30.0.2"], "abc", "2026-01-01T00:00:00Z")
    assert status["phase"] == "Running"
    assert (status["podIP"], status["podIPs"]) == ("172.30.0.5", [{"ip": "172.30.0.5"}, {"ip": "fd00::5"}])
    assert status["hostIPs"] == [{"ip": "172.30.0.2"}]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert [(c["name"], c["ready"], "running" in c["state"]) for c in status["containerStatuses"]] == [
        ("c", True, True),
        ("d", True, True),
    ]


def test_pending_status_carries_the_sandbox_error() -> None:
    """A failed sandbox leaves the pod Pending, not ready, the CNI error in PodReadyToStartContainers."""
    status = pod_status.pending(POD, ["172.30.0.2"], "plugin failed: code 100", "2026-01-01T00:00:00Z")
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Pending"
    assert conditions["PodReadyToStartContainers"]["status"] == "False"
    assert conditions["PodReadyToStartContainers"]["message"] == "plugin failed: code 100"
    assert conditions["Ready"]["status"] == "False"
    assert "podIPs" not in status


def test_succeeded_status_is_terminated_and_not_ready() -> None:
    """A finished pod is Succeeded with terminated containers."""
    status = pod_status.succeeded(POD, "2026-01-01T00:00:00Z")
    assert status["phase"] == "Succeeded"
    assert all("terminated" in c["state"] and not c["ready"] for c in status["containerStatuses"])
