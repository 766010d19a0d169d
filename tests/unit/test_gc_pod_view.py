"""The garbage collector caches every pod of the cluster: what it keeps of one is enough to judge it
and a small part of the pod."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from spiderpool_controller.ip_gc import gc_pod_view, pod_facts


def realistic_pod(phase: str, deleting: bool, ips: list[str], node: str) -> dict[str, Any]:
    """A Deployment's pod as the API server returns it (annotations, containers, volumes, conditions)."""
    meta: dict[str, Any] = {
        "name": "web-7d4b9c6f5-x2x9z",
        "namespace": "shop",
        "uid": "0b5c7e0e-2f4a-4b8e-9a53-2f1c6a0f9d11",
        "resourceVersion": "912345",
        "generateName": "web-7d4b9c6f5-",
        "labels": {"app": "web", "pod-template-hash": "7d4b9c6f5", "tier": "frontend"},
        "annotations": {
            "k8s.v1.cni.cncf.io/networks": '[{"name":"macvlan-net1","interface":"net1"}]',
            "k8s.v1.cni.cncf.io/network-status": json.dumps([{"name": "n", "ips": ips, "default": True}] * 2),
            "ipam.spidernet.io/ippools": '[{"interface":"eth0","ipv4":["v4-pool"]}]',
        },
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c6f5", "uid": "r1"}
        ],
        "managedFields": [
            {"manager": "kube-controller-manager", "fieldsV1": {"f:metadata": {"f:labels": {}}}}
        ]
        * 3,
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T10:00:00Z"
    container = {
        "name": "web",
        "image": "registry.example.com/shop/web:1.2.3",
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "env": [{"name": f"VAR_{i}", "value": f"value-{i}"} for i in range(10)],
        "volumeMounts": [
            {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
        ],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "nodeName": node,
            "containers": [container, {**container, "name": "sidecar"}],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {}}]}}],
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}
            ],
        },
        "status": {
            "phase": phase,
            "podIPs": [{"ip": ip} for ip in ips],
            "conditions": [{"type": t, "status": "True"} for t in ("Initialized", "Ready", "PodScheduled")],
            "containerStatuses": [
                {"name": "web", "ready": True, "restartCount": 0, "image": container["image"]}
            ],
        },
    }


@given(
    phase=st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Unknown"]),
    deleting=st.booleans(),
    ips=st.lists(st.sampled_from(["10.0.0.7", "fd00::7", "10.0.1.9"]), max_size=2, unique=True),
    node=st.sampled_from(["", "node-1"]),
)
def test_the_view_judges_a_pod_as_the_whole_pod_does(
    phase: str, deleting: bool, ips: list[str], node: str
) -> None:
    """pod_facts of the kept view equal pod_facts of the pod, and the view keeps the name, the
    namespace, the owner and the resourceVersion the informer resumes from."""
    pod = realistic_pod(phase, deleting, ips, node)
    view = gc_pod_view(pod)
    assert pod_facts(view) == pod_facts(pod)
    for key in ("name", "namespace", "uid", "resourceVersion", "ownerReferences"):
        assert view["metadata"][key] == pod["metadata"][key]


def test_the_view_is_a_small_part_of_a_pod() -> None:
    """Under a sixth of a typical pod's JSON bytes."""
    pod = realistic_pod("Running", False, ["10.0.0.7", "fd00::7"], "node-1")
    assert len(json.dumps(gc_pod_view(pod))) * 6 < len(json.dumps(pod))
