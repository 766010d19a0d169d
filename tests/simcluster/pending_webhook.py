"""Waiting for the admission webhooks (branch `webhook`) to be served by the controller process.

Not collected (no `test_` prefix): once `spiderpool-controller` serves the webhooks, the harness registers the
webhook configurations (`webhook.registration.webhook_configurations`, the chart's) with a CA of its own,
points the API server's Service `kube-system/spiderpool-controller` at a Service stand-in over the replicas'
webhook ports (service_proxy.py takes `HOST:PORT` backends; `AdminClient.set_service_url`), and this test
moves into test_cluster_ipam.py.
"""

from __future__ import annotations

from tests.simcluster.cluster import SimCluster
from tests.simcluster.test_cluster_ipam import pool


def test_an_invalid_pool_is_refused_by_the_webhook(cluster: SimCluster) -> None:
    """kubectl apply of a pool whose range lies outside its subnet is refused by our admission webhook, naming
    the field; nothing is stored."""
    bad = pool("bad-range", "172.30.0.0/24", "172.31.0.10", "172.31.0.20")
    result = cluster.apply([bad], ok=False)
    assert result.returncode != 0
    assert 'admission webhook "spiderippool.spiderpool.spidernet.io" denied the request' in result.stderr
    assert cluster.pool("bad-range") is None
