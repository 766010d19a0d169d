"""The workload controller stand-ins' decisions: ReplicaSet, Deployment, StatefulSet and Job pods, status."""

from __future__ import annotations

from typing import Any

from tests.simcluster import workload_rules as rules

TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}


def owner(kind: str, name: str, replicas: int | None = 3, **spec: Any) -> dict[str, Any]:
    api = "batch/v1" if kind == "Job" else "apps/v1"
    body: dict[str, Any] = {"template": TEMPLATE, **spec}
    if replicas is not None:
        body["replicas"] = replicas
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "uid": f"{name}-uid"},
        "spec": body,
    }


def pod(
    name: str, ready: bool = True, node: str = "node1", created: str = "2026-01-01T00:00:00Z", **status: Any
) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"nodeName": node},
        "status": {"phase": status.get("phase", "Running"), "conditions": conditions},
    }


def test_replicaset_creates_the_missing_pods_owned_by_it() -> None:
    """Pods come from the template with generateName and one controller ownerReference."""
    plan = rules.replicaset_plan(owner("ReplicaSet", "web-abc"), [pod("web-abc-1")])
    assert len(plan.create) == 2 and plan.delete == ()
    made = plan.create[0]
    assert made["metadata"]["generateName"] == "web-abc-"
    assert made["metadata"]["labels"] == {"app": "web"}
    assert made["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "web-abc-uid",
         "controller": True, "blockOwnerDeletion": True}
    ]  # fmt: skip


def test_replicaset_deletes_unscheduled_then_unready_then_newest() -> None:
    """Scale-down picks the pods kube would pick first."""
    pods = [
        pod("old-ready", created="2026-01-01T00:00:00Z"),
        pod("new-ready", created="2026-01-02T00:00:00Z"),
        pod("unready", ready=False),
        pod("unscheduled", node=""),
    ]
    assert rules.replicaset_plan(owner("ReplicaSet", "rs", 1), pods).delete == (
        "unscheduled",
        "unready",
        "new-ready",
    )


def test_deployment_makes_one_replicaset_per_template_and_scales_old_ones_down() -> None:
    """The current template's ReplicaSet is created with the pod-template-hash; others go to zero."""
    deploy = owner("Deployment", "web", 4, selector={"matchLabels": {"app": "web"}})
    plan = rules.deployment_plan(deploy, [])
    assert plan.create is not None
    digest = rules.template_hash(TEMPLATE)
    assert plan.create["metadata"]["name"] == f"web-{digest}"
    assert plan.create["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": digest}
    assert plan.create["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == digest
    old = {"metadata": {"name": "web-old"}, "spec": {"replicas": 4}}
    current = {"metadata": {"name": f"web-{digest}"}, "spec": {"replicas": 1}}
    again = rules.deployment_plan(deploy, [old, current])
    assert again.create is None and again.scale == {"web-old": 0, f"web-{digest}": 4}


def test_statefulset_ordered_ready_creates_one_member_at_a_time() -> None:
    """OrderedReady: member n+1 waits until member n is ready; names are <set>-<ordinal>."""
    sts = owner("StatefulSet", "db", 3, serviceName="db")
    first = rules.statefulset_plan(sts, [])
    assert [p["metadata"]["name"] for p in first.create] == ["db-0"]
    made = first.create[0]
    assert made["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-0"
    assert made["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "0"
    assert (made["spec"]["hostname"], made["spec"]["subdomain"]) == ("db-0", "db")
    assert rules.statefulset_plan(sts, [pod("db-0", ready=False)]).create == ()
    assert [p["metadata"]["name"] for p in rules.statefulset_plan(sts, [pod("db-0")]).create] == ["db-1"]


def test_statefulset_recreates_a_deleted_member_under_its_name() -> None:
    """A missing ordinal below replicas is created again with the same name."""
    plan = rules.statefulset_plan(owner("StatefulSet", "db", 3), [pod("db-0"), pod("db-2")])
    assert [p["metadata"]["name"] for p in plan.create] == ["db-1"]


def test_statefulset_scale_down_deletes_the_highest_ordinal_first() -> None:
    """OrderedReady removes one member at a time, highest first; Parallel removes all extras."""
    pods = [pod(f"db-{i}") for i in range(4)]
    assert rules.statefulset_plan(owner("StatefulSet", "db", 1), pods).delete == ("db-3",)
    parallel = owner("StatefulSet", "db", 1, podManagementPolicy="Parallel")
    assert rules.statefulset_plan(parallel, pods).delete == ("db-3", "db-2", "db-1")


def test_job_runs_parallelism_pods_until_completions_succeeded() -> None:
    """A Job keeps at most `parallelism` pods active and stops once `completions` succeeded."""
    job = owner("Job", "batch", None, completions=3, parallelism=2)
    assert len(rules.job_plan(job, []).create) == 2
    made = rules.job_plan(job, []).create[0]
    assert made["metadata"]["labels"]["job-name"] == "batch"
    assert len(rules.job_plan(job, [pod("a", phase="Succeeded"), pod("b")]).create) == 1
    done = [pod(n, phase="Succeeded") for n in "abc"]
    assert rules.job_plan(job, done).create == ()
    assert rules.job_status(job, done)["conditions"][0]["type"] == "Complete"


def test_replica_status_counts_ready_pods() -> None:
    """replicas counts live pods, readyReplicas and availableReplicas the ready ones."""
    status = rules.replica_status(owner("ReplicaSet", "rs"), [pod("a"), pod("b", ready=False)])
    assert (status["replicas"], status["readyReplicas"], status["availableReplicas"]) == (2, 1, 1)
