"""Controller-less workload status: Deployments, ReplicaSets, StatefulSets, DaemonSets and Jobs look finished.

There are no controllers here (no pods are created), but readiness waits (Helm's `wait="watcher"`, kstatus,
`kubectl rollout status`) read the workload's status. When enabled (the default;
`ServerConfig.fake_workload_status`) the server writes, right after each spec change, the status a healthy
controller would reach: all replicas ready and available with `observedGeneration` current, a Job complete.
Disable it to drive status from a test instead.
"""

from __future__ import annotations

from typing import Any

from .store import Obj, meta


def _cond(ctype: str, reason: str, now: str, message: str = "") -> dict[str, Any]:
    return {
        "type": ctype,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
        "lastUpdateTime": now,
    }


def _replica_status(obj: Obj) -> dict[str, Any]:
    replicas = int((obj.get("spec") or {}).get("replicas", 1))
    return {
        "observedGeneration": meta(obj).get("generation", 1),
        "replicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }


def status_for(key: str, obj: Obj, node_count: int, now: str) -> dict[str, Any] | None:
    """The finished status for a workload of group/resource `key`, or None for other kinds."""
    if key == "apps/deployments":
        st = _replica_status(obj) | {"updatedReplicas": _replica_status(obj)["replicas"]}
        st["conditions"] = [
            _cond("Available", "MinimumReplicasAvailable", now, "Deployment has minimum availability."),
            _cond("Progressing", "NewReplicaSetAvailable", now, "ReplicaSet has successfully progressed."),
        ]
        return st
    if key == "apps/replicasets":
        return _replica_status(obj) | {"fullyLabeledReplicas": _replica_status(obj)["replicas"]}
    if key == "apps/statefulsets":
        st = _replica_status(obj)
        revision = f"{meta(obj).get('name')}-{meta(obj).get('generation', 1)}"
        return st | {
            "currentReplicas": st["replicas"],
            "updatedReplicas": st["replicas"],
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
        }
    if key == "apps/daemonsets":
        gen = meta(obj).get("generation", 1)
        return {
            "observedGeneration": gen,
            "desiredNumberScheduled": node_count,
            "currentNumberScheduled": node_count,
            "numberReady": node_count,
            "numberAvailable": node_count,
            "updatedNumberScheduled": node_count,
            "numberMisscheduled": 0,
        }
    if key == "batch/jobs":
        completions = int((obj.get("spec") or {}).get("completions", 1) or 1)
        return {
            "startTime": now,
            "completionTime": now,
            "succeeded": completions,
            "active": 0,
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": [
                _cond(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    now,
                    "Reached expected number of succeeded pods",
                ),
                _cond("Complete", "CompletionsReached", now, "Reached expected number of succeeded pods"),
            ],
        }
    return None
