"""The harness cleans up: after close, and after a start that failed, nothing of the cluster is left."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from spiderpool_tools.netns import NetNs, list_netns

from tests.simcluster.cluster import SimCluster, SimOptions, leftovers
from tests.simcluster.processes import ProcessError, sweep_stale
from tests.simcluster.topology import default_nodes

pytestmark = pytest.mark.netns

ONE_NODE = SimOptions(spiderpool=False, nodes=default_nodes(1))


def test_a_closed_cluster_leaves_no_namespace_process_or_file() -> None:
    """With a pod running (its namespace made inside the node), close removes every namespace, process and
    file of the cluster."""
    cluster = SimCluster(ONE_NODE).start()
    try:
        cluster.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "p", "namespace": "default"},
                    "spec": {"containers": [{"name": "c", "image": "pause"}]},
                }
            ]
        )
        pod_netns = cluster.pod_netns(cluster.running_pod("default", "p"))
        assert pod_netns.exists()
        assert {n for n in list_netns() if n.startswith(cluster.netns_prefix)} >= {pod_netns.name}
        pids = [p.pid for p in cluster.processes()] + [host.pid for host in cluster._hosts]
    finally:
        cluster.close()
    assert leftovers(cluster) == []
    assert not pod_netns.exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_start_that_fails_cleans_up_what_it_made() -> None:
    """A start that fails (here: nothing may take time to become ready) raises and leaves nothing behind."""
    cluster = SimCluster(SimOptions(spiderpool=False, nodes=default_nodes(1), ready_timeout_s=0.0))
    with pytest.raises(ProcessError, match="not ready after 0s"):
        cluster.start()
    assert leftovers(cluster) == []


HARNESS = """
import sys, time
from tests.simcluster.cluster import SimCluster, SimOptions
from tests.simcluster.topology import default_nodes
cluster = SimCluster(SimOptions(spiderpool=False, nodes=default_nodes(1))).start()
print(cluster.paths.root, cluster.netns_prefix, flush=True)
time.sleep(600)
"""


def test_a_killed_harness_takes_its_processes_along_and_the_next_start_sweeps_the_rest(
    tmp_path: Path,
) -> None:
    """SIGKILL of the harness kills every process it started (parent-death signal); the namespaces and the
    directory it could not remove are swept by the next harness that starts."""
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", HARNESS], cwd=repo, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    root, prefix = proc.stdout.readline().split()
    proc.kill()
    proc.wait()
    mine = [n for n in list_netns() if n.startswith(f"{prefix}-")]
    assert Path(root).exists() and mine

    def still_running() -> list[object]:  # the node host (sleep) in its namespace dies too, a moment later
        return [*processes_naming(root), *(pid for name in mine for pid in NetNs(name).pids())]

    deadline = time.monotonic() + 20
    while still_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert still_running() == []
    removed = sweep_stale(list_netns(), lambda name: NetNs(name).delete(), Path("/tmp"))
    assert root in removed
    assert not Path(root).exists() and not any(n.startswith(f"{prefix}-") for n in list_netns())


def processes_naming(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = (
                    Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry}: {cmdline}")
    return found
