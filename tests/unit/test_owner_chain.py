"""A pod's top controller, walked up its controller references over canned API objects."""

from __future__ import annotations

from typing import Any

import pytest
from spiderpool_agent.cni_call import OwnerRef
from spiderpool_agent.owner_chain import controller_of, top_owner

NS = "apps"


def ref(api_version: str, kind: str, name: str, uid: str, *, controller: bool = True) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": controller}


def obj(name: str, uid: str, *owners: dict[str, Any], **spec: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"metadata": {"name": name, "namespace": NS, "uid": uid}}
    if owners:
        out["metadata"]["ownerReferences"] = list(owners)
    if spec:
        out["spec"] = spec
    return out


class Api:
    """Canned objects by path; records each read and whether it asked for a fresh one."""

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects
        self.reads: list[tuple[str, bool]] = []

    async def __call__(self, path: str, *, fresh: bool) -> dict[str, Any] | None:
        self.reads.append((path, fresh))
        return self.objects.get(path)


RS = f"/apis/apps/v1/namespaces/{NS}/replicasets/"
JOB = f"/apis/batch/v1/namespaces/{NS}/jobs/"
STS = f"/apis/apps/v1/namespaces/{NS}/statefulsets/"
VMI = f"/apis/kubevirt.io/v1/namespaces/{NS}/virtualmachineinstances/"


async def test_a_pod_without_a_controller_is_its_own_owner() -> None:
    """No controller reference (a non-controller owner does not count): kind Pod, its name and UID."""
    api = Api({})
    pod = obj("bare", "uid-pod", ref("v1", "ConfigMap", "cm", "uid-cm", controller=False))
    assert await top_owner(pod, api) == OwnerRef("Pod", "bare", "uid-pod", 0, True, "v1")
    assert api.reads == []


async def test_a_deployments_pod_answers_the_deployment_read_through_its_replicaset() -> None:
    """Pod -> ReplicaSet -> Deployment: one read, the Deployment's name and UID from the reference."""
    api = Api({RS + "web-5d9": obj("web-5d9", "uid-rs", ref("apps/v1", "Deployment", "web", "uid-dep"))})
    pod = obj("web-5d9-x", "uid-pod", ref("apps/v1", "ReplicaSet", "web-5d9", "uid-rs"))
    assert await top_owner(pod, api) == OwnerRef("Deployment", "web", "uid-dep", 0, True, "apps/v1")
    assert api.reads == [(RS + "web-5d9", False)]


async def test_a_replicaset_of_another_controller_answers_that_controller() -> None:
    """A ReplicaSet owned by a third-party controller (an Argo Rollout) answers the Rollout."""
    rollout = ref("argoproj.io/v1alpha1", "Rollout", "canary", "uid-ro")
    api = Api({RS + "canary-1": obj("canary-1", "uid-rs", rollout)})
    pod = obj("canary-1-x", "uid-pod", ref("apps/v1", "ReplicaSet", "canary-1", "uid-rs"))
    assert await top_owner(pod, api) == OwnerRef(
        "Rollout", "canary", "uid-ro", 0, True, "argoproj.io/v1alpha1"
    )


async def test_a_standalone_replicaset_is_the_top() -> None:
    """A ReplicaSet with no controller of its own is the top controller."""
    api = Api({RS + "solo": obj("solo", "uid-rs")})
    pod = obj("solo-x", "uid-pod", ref("apps/v1", "ReplicaSet", "solo", "uid-rs"))
    assert await top_owner(pod, api) == OwnerRef("ReplicaSet", "solo", "uid-rs", 0, True, "apps/v1")


async def test_a_gone_or_replaced_intermediate_owner_ends_the_walk_as_not_existing() -> None:
    """The ReplicaSet is gone, or re-created with another UID: the reference, exists False."""
    pod = obj("web-x", "uid-pod", ref("apps/v1", "ReplicaSet", "web-1", "uid-rs"))
    assert await top_owner(pod, Api({})) == OwnerRef("ReplicaSet", "web-1", "uid-rs", 0, False, "apps/v1")
    other = Api({RS + "web-1": obj("web-1", "uid-rs-new", ref("apps/v1", "Deployment", "web", "d"))})
    assert await top_owner(pod, other) == OwnerRef("ReplicaSet", "web-1", "uid-rs", 0, False, "apps/v1")


async def test_a_statefulset_member_answers_its_replicas_and_reads_fresh_when_asked() -> None:
    """The StatefulSet is read for .spec.replicas; ``fresh`` reaches that read (a DEL's)."""
    api = Api({STS + "db": obj("db", "uid-sts", replicas=3)})
    pod = obj("db-1", "uid-pod", ref("apps/v1", "StatefulSet", "db", "uid-sts"))
    assert await top_owner(pod, api) == OwnerRef("StatefulSet", "db", "uid-sts", 3, True, "apps/v1")
    assert await top_owner(pod, api, fresh=True) == OwnerRef(
        "StatefulSet", "db", "uid-sts", 3, True, "apps/v1"
    )
    assert api.reads == [(STS + "db", False), (STS + "db", True)]


@pytest.mark.parametrize(("spec", "replicas"), [({}, 1), ({"replicas": 0}, 0), ({"replicas": 7}, 7)])
async def test_statefulset_replicas_default_to_one(spec: dict[str, Any], replicas: int) -> None:
    """Unset .spec.replicas is 1 (the API's default); zero stays zero."""
    api = Api({STS + "db": obj("db", "uid-sts", **spec)})
    pod = obj("db-0", "uid-pod", ref("apps/v1", "StatefulSet", "db", "uid-sts"))
    assert (await top_owner(pod, api)).replicas == replicas


async def test_a_deleted_statefulset_answers_not_existing() -> None:
    """Gone, or re-created with another UID: exists False, replicas 0 (the member gives its IP up)."""
    pod = obj("db-0", "uid-pod", ref("apps/v1", "StatefulSet", "db", "uid-sts"))
    assert await top_owner(pod, Api({})) == OwnerRef("StatefulSet", "db", "uid-sts", 0, False, "apps/v1")
    api = Api({STS + "db": obj("db", "uid-other", replicas=2)})
    assert await top_owner(pod, api) == OwnerRef("StatefulSet", "db", "uid-sts", 0, False, "apps/v1")


async def test_a_cronjobs_pod_answers_the_cronjob_and_a_plain_jobs_pod_the_job() -> None:
    """Pod -> Job -> CronJob; a Job nobody controls is the top."""
    api = Api(
        {
            JOB + "nightly-1": obj("nightly-1", "uid-job", ref("batch/v1", "CronJob", "nightly", "uid-cj")),
            JOB + "once": obj("once", "uid-once"),
        }
    )
    cron_pod = obj("nightly-1-x", "uid-p1", ref("batch/v1", "Job", "nightly-1", "uid-job"))
    assert await top_owner(cron_pod, api) == OwnerRef("CronJob", "nightly", "uid-cj", 0, True, "batch/v1")
    job_pod = obj("once-x", "uid-p2", ref("batch/v1", "Job", "once", "uid-once"))
    assert await top_owner(job_pod, api) == OwnerRef("Job", "once", "uid-once", 0, True, "batch/v1")


async def test_daemonsets_and_third_party_controllers_are_taken_as_given_unread() -> None:
    """A DaemonSet or an unknown controller: kind, name and UID from the reference, no read."""
    api = Api({})
    ds_pod = obj("agent-x", "uid-p", ref("apps/v1", "DaemonSet", "agent", "uid-ds"))
    assert await top_owner(ds_pod, api) == OwnerRef("DaemonSet", "agent", "uid-ds", 0, True, "apps/v1")
    custom = obj("w-0", "uid-p", ref("example.com/v1", "Workload", "w", "uid-w"))
    assert await top_owner(custom, api) == OwnerRef("Workload", "w", "uid-w", 0, True, "example.com/v1")
    assert api.reads == []


async def test_a_kubevirt_vm_pod_answers_the_virtual_machine() -> None:
    """virt-launcher pod -> VirtualMachineInstance -> VirtualMachine."""
    vm = ref("kubevirt.io/v1", "VirtualMachine", "vm1", "uid-vm")
    api = Api({VMI + "vm1": obj("vm1", "uid-vmi", vm)})
    pod = obj(
        "virt-launcher-vm1-abc", "uid-p", ref("kubevirt.io/v1", "VirtualMachineInstance", "vm1", "uid-vmi")
    )
    assert await top_owner(pod, api) == OwnerRef("VirtualMachine", "vm1", "uid-vm", 0, True, "kubevirt.io/v1")


async def test_a_loop_of_references_ends() -> None:
    """ReplicaSets pointing at each other end after a bounded number of reads."""
    api = Api(
        {
            RS + "a": obj("a", "uid-a", ref("apps/v1", "ReplicaSet", "b", "uid-b")),
            RS + "b": obj("b", "uid-b", ref("apps/v1", "ReplicaSet", "a", "uid-a")),
        }
    )
    pod = obj("p", "uid-p", ref("apps/v1", "ReplicaSet", "a", "uid-a"))
    owner = await top_owner(pod, api)
    assert owner.kind == "ReplicaSet"
    assert len(api.reads) == 5


async def test_read_errors_pass_through() -> None:
    """An API failure is the caller's to judge (ADD: code 11; DEL: no owner)."""

    async def failing(path: str, *, fresh: bool) -> dict[str, Any] | None:
        raise ConnectionError(path)

    pod = obj("web-x", "uid-p", ref("apps/v1", "ReplicaSet", "web-1", "uid-rs"))
    with pytest.raises(ConnectionError):
        await top_owner(pod, failing)


def test_only_the_controller_reference_counts() -> None:
    """apimachinery's GetControllerOf: the entry with controller true, others ignored."""
    pod = obj("p", "u", ref("v1", "Node", "n", "x", controller=False), ref("apps/v1", "DaemonSet", "ds", "y"))
    found = controller_of(pod)
    assert found is not None
    assert (found.kind, found.name, found.uid) == ("DaemonSet", "ds", "y")
    assert controller_of(obj("p", "u", ref("apps/v1", "DaemonSet", "ds", "y", controller=False))) is None
