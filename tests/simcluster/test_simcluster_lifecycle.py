"""The harness cleans up: after close, and after a start that failed, nothing of the cluster is left."""

from __future__ import annotations

import os

import pytest
from spiderpool_tools.netns import list_netns

from tests.simcluster.cluster import SimCluster, SimOptions, leftovers
from tests.simcluster.processes import ProcessError
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
