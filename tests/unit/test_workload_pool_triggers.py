"""What makes the workload controller act: fingerprints of workloads and the owners' REST paths."""

from __future__ import annotations

import copy
from typing import Any

from spiderpool_controller.workload_pools import collection_path, fingerprint, object_path


def deployment(**template_annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "resourceVersion": "5"},
        "spec": {"replicas": 2, "template": {"metadata": {"annotations": dict(template_annotations)}}},
        "status": {"readyReplicas": 1},
    }


def test_the_fingerprint_moves_with_what_pools_depend_on_only() -> None:
    """Replicas, the four subnet annotations, the UID and hostNetwork change it; status, other
    annotations and the resourceVersion do not (a Deployment's status update costs nothing)."""
    base = deployment(**{"ipam.spidernet.io/subnet": '{"ipv4": ["s"]}'})
    same = copy.deepcopy(base)
    same["status"] = {"readyReplicas": 2}
    same["metadata"]["resourceVersion"] = "9"
    same["spec"]["template"]["metadata"]["annotations"]["unrelated"] = "x"
    assert fingerprint("Deployment", same) == fingerprint("Deployment", base)
    template = ("spec", "template")
    annotations = (*template, "metadata", "annotations")
    for path, value in (
        (("spec", "replicas"), 3),
        (("metadata", "uid"), "u-2"),
        ((*annotations, "ipam.spidernet.io/ippool-ip-number"), "2"),
        ((*annotations, "ipam.spidernet.io/ippool-reclaim"), "false"),
        ((*template, "spec"), {"hostNetwork": True}),
    ):
        other = copy.deepcopy(base)
        put(other, path, value)
        assert fingerprint("Deployment", other) != fingerprint("Deployment", base), path


def put(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def test_owner_paths_guess_the_resource_from_the_kind_as_upstream() -> None:
    """CloneSet -> clonesets, Policy -> policies, Ingress -> ingresses; a core version is /api/v1."""
    assert (
        object_path("apps.kruise.io/v1alpha1", "CloneSet", "ns", "c")
        == "/apis/apps.kruise.io/v1alpha1/namespaces/ns/clonesets/c"
    )
    assert collection_path("example.com/v1", "Policy") == "/apis/example.com/v1/policies"
    assert collection_path("example.com/v1", "Ingress") == "/apis/example.com/v1/ingresses"
    assert object_path("v1", "Thing", "ns", "t") == "/api/v1/namespaces/ns/things/t"
