"""The cluster benchmark (bench/cluster_alloc.py): its pure checks, the baseline agent's pool choice, the
kubelet's IPAM request, and the whole benchmark end to end in its --quick size (2 nodes, 60 pods, as root:
the simulated cluster's namespaces)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from spiderpool.controller.v1 import ipam_pb2
from spiderpool_common.errors import NotFound

from tests.simcluster.agent_ipam import ipam_request
from tests.simcluster.sandbox import Attachment

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from cas_cluster_agent import pool_for
from cluster_alloc import BENCH, duplicates, ipam_writes, leaked, pool_manifest, record_mismatches, writes_of

SUMMARY_KEYS = [
    "pods", "seconds", "pods_per_s", "writes_per_pod", "duplicates", "leaks", "speedup",
    "baseline_duplicates", "baseline_leaks", "ipam_cpu_ms_per_pod", "cluster_cpu_ms_per_pod",
]  # fmt: skip
QUICK_PODS = 60


def pool_with(records: dict[str, str], count: int | None = None) -> dict[str, Any]:
    allocated = {ip: {"pod": f"ns/{uid}", "podUid": uid} for ip, uid in records.items()}
    return {
        "status": {
            "allocatedIPs": json.dumps(allocated),
            "allocatedIPCount": len(records) if count is None else count,
        }
    }


def test_an_address_held_by_two_pods_counts_once_per_extra_holder() -> None:
    assert duplicates({"a": ["10.0.0.1"], "b": ["10.0.0.2"]}) == 0
    assert duplicates({"a": ["10.0.0.1"], "b": ["10.0.0.1"], "c": ["10.0.0.1"], "d": ["10.0.0.2"]}) == 2


def test_the_pool_records_must_be_exactly_the_pods_addresses() -> None:
    pods = {"uid-a": ["10.0.0.1"], "uid-b": ["10.0.0.2"]}
    assert record_mismatches(pool_with({"10.0.0.1": "uid-a", "10.0.0.2": "uid-b"}), pods) == []
    found = record_mismatches(pool_with({"10.0.0.1": "uid-b", "10.0.0.3": "uid-c"}, count=3), pods)
    assert found == [
        "10.0.0.1 held by pod uid-a but recorded for 'uid-b'",
        "10.0.0.2 held by pod uid-b but recorded for None",
        "10.0.0.3 recorded for uid-c but no pod holds it",
        "allocatedIPCount 3 but 2 records",
    ]


def test_leaks_count_records_or_the_counter_whichever_is_larger() -> None:
    assert leaked({"status": {}}) == 0
    assert leaked(pool_with({"10.0.0.1": "u"})) == 1
    assert leaked(pool_with({}, count=2)) == 2


def test_writes_are_counted_by_verb_and_resource() -> None:
    counts = {
        "create pods": 3,
        "get pods": 9,
        "update spiderippools/status": 2,
        "create spiderendpoints": 4,
        "watch spiderippools": 1,
        "patch pods/status": 5,
    }
    assert writes_of(counts) == 14
    assert ipam_writes(counts) == 6


def test_the_pool_has_exactly_the_requested_number_of_addresses() -> None:
    spec = pool_manifest("p", 1000, 128)["spec"]
    assert spec["ips"] == ["10.128.0.10-10.128.3.241"]  # 10 + 999 = 3 * 256 + 241


def allocate_request(namespace_pool: str = "", cni_default: str = "") -> ipam_pb2.AllocateRequest:
    request = ipam_pb2.AllocateRequest(pod=ipam_pb2.PodRef(namespace="ns", name="p", uid="u"))
    if namespace_pool:
        request.namespace_annotations["ipam.spidernet.io/default-ipv4-ippool"] = json.dumps([namespace_pool])
    if cni_default:
        request.default_ipv4_ippools.append(cni_default)
    return request


def test_the_baseline_agent_takes_the_namespace_pool_then_the_cni_default() -> None:
    assert pool_for(allocate_request("from-ns", "from-cni")) == "from-ns"
    assert pool_for(allocate_request(cni_default="from-cni")) == "from-cni"
    with pytest.raises(NotFound, match="no IPv4 pool for pod ns/p"):
        pool_for(allocate_request())


def test_the_kubelets_ipam_request_is_the_main_plugins_configuration_as_libcni_derives_it() -> None:
    conflist = {
        "cniVersion": "1.0.0",
        "name": "macvlan-eth0",
        "plugins": [
            {
                "type": "macvlan",
                "master": "master0",
                "ipam": {"type": "spiderpool"},
                "capabilities": {"ips": True},
            },
            {"type": "coordinator"},
        ],
    }
    request = ipam_request(
        Attachment("macvlan-eth0", "eth0", conflist, capability_args={"ips": ["10.0.0.5"]})
    )
    assert request is not None
    assert json.loads(request) == {
        "cniVersion": "1.0.0",
        "name": "macvlan-eth0",
        "type": "macvlan",
        "master": "master0",
        "ipam": {"type": "spiderpool"},
        "runtimeConfig": {"ips": ["10.0.0.5"]},
    }
    host_local = {**conflist, "plugins": [{"type": "macvlan", "ipam": {"type": "host-local"}}]}
    assert ipam_request(Attachment("n", "net1", host_local)) is None


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    details = tmp_path_factory.mktemp("bench") / "details.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / "cluster_alloc.py"), "--quick", "--details", str(details)],
        capture_output=True,
        text=True,
        timeout=280,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        check=False,
    )
    return done, json.loads(details.read_text()) if details.exists() else {}


@pytest.mark.netns
@pytest.mark.slow
def test_quick_run_hands_out_each_address_once_leaves_nothing_and_ends_with_the_summary(
    quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    """Both runs give all 60 pods an address with no duplicate; ours matches the pool's records and leaves
    nothing after deleting everything; the last line is the summary with exactly its keys."""
    done, details = quick_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(summary) == SUMMARY_KEYS
    assert summary["pods"] == QUICK_PODS
    assert (summary["duplicates"], summary["leaks"]) == (0, 0)
    for key in ("seconds", "pods_per_s", "writes_per_pod", "speedup", "ipam_cpu_ms_per_pod"):
        assert isinstance(summary[key], float | int) and summary[key] > 0, key
    assert summary["cluster_cpu_ms_per_pod"] > summary["ipam_cpu_ms_per_pod"]
    runs = details["runs"]
    assert [r["label"] for r in runs] == ["spiderpool (group commit)", "baseline (CAS per agent)"]
    ours, base = runs
    assert (ours["pods"], ours["duplicates"], ours["leaks"], ours["errors"]) == (QUICK_PODS, 0, 0, [])
    # The baseline's leftovers are upstream's protocol's (DELs out of retries; its GC reclaims them later).
    assert (base["pods"], base["duplicates"], summary["baseline_duplicates"]) == (QUICK_PODS, 0, 0)
    assert summary["baseline_leaks"] == base["leaks"]


@pytest.mark.netns
@pytest.mark.slow
def test_group_commit_batches_without_conflict_and_the_baselines_counts_agree_with_the_server(
    quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    """Ours: fewer pool status writes than pods and no 409. The baseline: the API server's 409s on the pool's
    status are the agents' conflicts, and every status write it saw is an allocation or a conflict."""
    _, details = quick_run
    ours, base = details["runs"]
    assert ours["conflicts"] == 0
    assert 0 < ours["pool_status_writes"] < QUICK_PODS
    tally = base["agent_tally"]
    assert base["conflicts"] == tally["conflicts"]
    assert base["pool_status_writes"] == tally["writes"] == QUICK_PODS + tally["conflicts"]
