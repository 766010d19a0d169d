"""What the workload controller stand-ins decide: pods to create and delete, and the status to report.

Owns the pure rules of kube-controller-manager's Deployment, ReplicaSet, StatefulSet and Job controllers, as
far as an IPAM cares (a pod's owner chain, names and lifetimes), so `control_plane.py` only lists, watches and
writes:

- every pod a controller makes carries one `ownerReferences` entry with `controller: true` and
  `blockOwnerDeletion: true`, so the API server's garbage collector deletes it with its owner and the agent
  finds its top controller (Pod -> ReplicaSet -> Deployment, Pod -> StatefulSet, Pod -> Job);
- Deployment: one ReplicaSet per pod template, named `<deployment>-<template hash>` and labelled
  `pod-template-hash`; the current one is scaled to `spec.replicas`, older ones to 0 (a Recreate-like rollout:
  enough to change a template, no surge accounting);
- ReplicaSet: pods named by `generateName` `<rs>-`; extra pods are deleted unscheduled first, then not ready,
  then newest (kube's ranking, shortened);
- StatefulSet: pods `<set>-<ordinal>` with the `statefulset.kubernetes.io/pod-name` and
  `apps.kubernetes.io/pod-index` labels, `hostname` and `subdomain`; a deleted member is re-created under the
  same name (a new UID); scale-down deletes the highest ordinals; `OrderedReady` (the default) creates one
  ordinal at a time once every lower one is ready and deletes one at a time, `Parallel` does all at once;
- Job: pods by `generateName` `<job>-` until `completions` succeeded, at most `parallelism` active; failed
  pods are not retried beyond `backoffLimit` (counted, not timed).

Pods being deleted (`deletionTimestamp` set) count as gone for readiness and as present for names, as
upstream. "Ready" is the pod's Ready condition, which the kubelet stand-in sets once the CNI ADD succeeded.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

POD_TEMPLATE_HASH = "pod-template-hash"
STS_POD_NAME = "statefulset.kubernetes.io/pod-name"
STS_POD_INDEX = "apps.kubernetes.io/pod-index"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
JOB_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = obj.get("metadata") or {}
    return found


def controller_of(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ownerReference with `controller: true`, if any."""
    for ref in meta(pod).get("ownerReferences") or []:
        if ref.get("controller"):
            found: dict[str, Any] = ref
            return found
    return None


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    m = meta(owner)
    return {
        "apiVersion": owner.get("apiVersion", ""),
        "kind": owner.get("kind", ""),
        "name": m.get("name", ""),
        "uid": m.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_ready(pod: Mapping[str, Any]) -> bool:
    if meta(pod).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase", "Pending"))


def replicas(obj: Mapping[str, Any], default: int = 1) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return default if value is None else int(value)


def template_hash(template: Mapping[str, Any]) -> str:
    """A stable short hash of a pod template (label-safe), like kube's `pod-template-hash`."""
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def pod_from_template(
    owner: Mapping[str, Any],
    template: Mapping[str, Any],
    *,
    name: str = "",
    generate_name: str = "",
    labels: Mapping[str, str] | None = None,
    spec_extra: Mapping[str, Any] | None = None,
) -> Obj:
    """A Pod from ``template`` owned by ``owner`` (name or generateName, extra labels and spec keys)."""
    tmeta = template.get("metadata") or {}
    pod_meta: Obj = {
        "namespace": meta(owner).get("namespace", "default"),
        "labels": {**(tmeta.get("labels") or {}), **(labels or {})},
        "ownerReferences": [owner_reference(owner)],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    if name:
        pod_meta["name"] = name
    else:
        pod_meta["generateName"] = generate_name
    spec = copy.deepcopy(template.get("spec") or {})
    spec.update(spec_extra or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


# ---------------------------------------------------------------------------------------------------------
# ReplicaSet


@dataclass(frozen=True)
class Plan:
    """What a controller should do now: pods to create (ready-made objects) and pod names to delete."""

    create: tuple[Obj, ...] = ()
    delete: tuple[str, ...] = ()


def deletion_order(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Which pods go first on scale-down: unscheduled, then not ready, then the newest."""
    newest_first = sorted(pods, key=lambda p: str(meta(p).get("creationTimestamp", "")), reverse=True)
    return sorted(
        newest_first, key=lambda p: (bool((p.get("spec") or {}).get("nodeName")), is_ready(p))
    )  # stable: newest first within each rank


def replicaset_plan(rs: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Plan:
    """Create or delete pods so that ``rs`` owns ``spec.replicas`` live ones."""
    live = [
        p for p in pods if not meta(p).get("deletionTimestamp") and phase(p) not in ("Succeeded", "Failed")
    ]
    want = replicas(rs)
    template = (rs.get("spec") or {}).get("template") or {}
    if len(live) < want:
        pod = pod_from_template(rs, template, generate_name=f"{meta(rs)['name']}-")
        return Plan(create=tuple(copy.deepcopy(pod) for _ in range(want - len(live))))
    if len(live) > want:
        doomed = deletion_order(live)[: len(live) - want]
        return Plan(delete=tuple(meta(p)["name"] for p in doomed))
    return Plan()


def replica_status(obj: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Obj:
    live = [p for p in pods if not meta(p).get("deletionTimestamp")]
    ready = sum(1 for p in live if is_ready(p))
    return {
        "observedGeneration": meta(obj).get("generation", 1),
        "replicas": len(live),
        "readyReplicas": ready,
        "availableReplicas": ready,
    }


# ---------------------------------------------------------------------------------------------------------
# Deployment


@dataclass(frozen=True)
class DeploymentPlan:
    """The ReplicaSet to create (if missing) and the replica counts to set on existing ones."""

    create: Obj | None
    scale: Mapping[str, int]


def deployment_plan(deploy: Mapping[str, Any], replicasets: Sequence[Mapping[str, Any]]) -> DeploymentPlan:
    template = copy.deepcopy((deploy.get("spec") or {}).get("template") or {})
    digest = template_hash(template)
    name = f"{meta(deploy)['name']}-{digest}"
    labels = {**((template.get("metadata") or {}).get("labels") or {}), POD_TEMPLATE_HASH: digest}
    template.setdefault("metadata", {})["labels"] = labels
    want = replicas(deploy)
    scale: dict[str, int] = {}
    current = None
    for rs in replicasets:
        rs_name = meta(rs)["name"]
        target = want if rs_name == name else 0
        if rs_name == name:
            current = rs
        if replicas(rs) != target:
            scale[rs_name] = target
    create = None
    if current is None:
        selector = copy.deepcopy((deploy.get("spec") or {}).get("selector") or {})
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = digest
        create = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": meta(deploy).get("namespace", "default"),
                "labels": labels,
                "ownerReferences": [owner_reference(deploy)],
            },
            "spec": {"replicas": want, "selector": selector, "template": template},
        }
    return DeploymentPlan(create, scale)


def deployment_status(deploy: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], current_rs: str) -> Obj:
    status = replica_status(deploy, pods)
    updated = [p for p in pods if (controller_of(p) or {}).get("name") == current_rs]
    status["updatedReplicas"] = len(updated)
    want = replicas(deploy)
    available = status["availableReplicas"] >= want
    status["conditions"] = [
        {
            "type": "Available",
            "status": "True" if available else "False",
            "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
        }
    ]
    return status


# ---------------------------------------------------------------------------------------------------------
# StatefulSet


def ordinal(sts_name: str, pod_name: str) -> int | None:
    prefix = f"{sts_name}-"
    if not pod_name.startswith(prefix) or not pod_name[len(prefix) :].isdigit():
        return None
    return int(pod_name[len(prefix) :])


def statefulset_pod(sts: Mapping[str, Any], index: int) -> Obj:
    name = f"{meta(sts)['name']}-{index}"
    spec = sts.get("spec") or {}
    extra: dict[str, Any] = {"hostname": name}
    if spec.get("serviceName"):
        extra["subdomain"] = spec["serviceName"]
    return pod_from_template(
        sts,
        spec.get("template") or {},
        name=name,
        labels={STS_POD_NAME: name, STS_POD_INDEX: str(index)},
        spec_extra=extra,
    )


def statefulset_plan(sts: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Plan:
    """Members 0..replicas-1 exist (re-created when deleted); higher ordinals are deleted, highest first."""
    name = meta(sts)["name"]
    by_ordinal = {}
    for pod in pods:
        index = ordinal(name, meta(pod)["name"])
        if index is not None:
            by_ordinal[index] = pod
    want = replicas(sts)
    parallel = (sts.get("spec") or {}).get("podManagementPolicy") == "Parallel"
    extra = sorted((i for i in by_ordinal if i >= want), reverse=True)
    extra = [i for i in extra if not meta(by_ordinal[i]).get("deletionTimestamp")]
    if extra:
        return Plan(delete=tuple(f"{name}-{i}" for i in (extra if parallel else extra[:1])))
    create: list[Obj] = []
    for index in range(want):
        member = by_ordinal.get(index)
        if member is None:
            create.append(statefulset_pod(sts, index))
            if not parallel:
                break
        elif not parallel and not is_ready(member):
            break  # OrderedReady: the next ordinal waits for this one
    return Plan(create=tuple(create))


def statefulset_status(sts: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Obj:
    status = replica_status(sts, pods)
    status["currentReplicas"] = status["updatedReplicas"] = status["replicas"]
    return status


# ---------------------------------------------------------------------------------------------------------
# Job


def job_plan(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Plan:
    spec = job.get("spec") or {}
    completions = int(spec.get("completions") or 1)
    parallelism = int(spec.get("parallelism") or 1)
    backoff_limit = int(spec.get("backoffLimit", 6))
    succeeded = sum(1 for p in pods if phase(p) == "Succeeded")
    failed = sum(1 for p in pods if phase(p) == "Failed")
    active = [
        p for p in pods if phase(p) not in ("Succeeded", "Failed") and not meta(p).get("deletionTimestamp")
    ]
    if succeeded >= completions or failed > backoff_limit:
        return Plan()
    room = min(parallelism, completions - succeeded) - len(active)
    if room <= 0:
        return Plan()
    uid = meta(job).get("uid", "")
    labels = {JOB_NAME_LABELS[0]: meta(job)["name"], JOB_NAME_LABELS[1]: meta(job)["name"]}
    labels |= {JOB_UID_LABELS[0]: uid, JOB_UID_LABELS[1]: uid}
    pod = pod_from_template(
        job, spec.get("template") or {}, generate_name=f"{meta(job)['name']}-", labels=labels
    )
    return Plan(create=tuple(copy.deepcopy(pod) for _ in range(room)))


def job_status(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Obj:
    spec = job.get("spec") or {}
    succeeded = sum(1 for p in pods if phase(p) == "Succeeded")
    failed = sum(1 for p in pods if phase(p) == "Failed")
    active = sum(1 for p in pods if phase(p) not in ("Succeeded", "Failed"))
    status: Obj = {"active": active, "succeeded": succeeded, "failed": failed}
    if succeeded >= int(spec.get("completions") or 1):
        status["conditions"] = [{"type": "Complete", "status": "True", "reason": "CompletionsReached"}]
    return status
