"""The pod status the kubelet stand-in writes, as the kubelet would (pure).

Owns the shape of `status` after sandbox creation: `podIP`/`podIPs` are the cluster network's (eth0's)
addresses, IPv4 first then IPv6, without prefix length (the kubelet takes them from the CRI's sandbox
status, which reports the default interface only); `hostIP`/`hostIPs` the node's; `phase: Running` with the
`PodReadyToStartContainers`, `Initialized`, `Ready`, `ContainersReady` and `PodScheduled` conditions true
and a running status per container, so `kubectl get pods` shows READY `n/n` and `Running`. A sandbox that
cannot be created leaves the pod `Pending` with `PodReadyToStartContainers` false and the CNI error as its
message, which is where `kubectl describe` would show it. A finished pod (restartPolicy Never/OnFailure, see
kubelet) is `Succeeded` with terminated containers and not ready.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

Obj = dict[str, Any]


def pod_ips(result: Mapping[str, Any]) -> list[str]:
    """The addresses of a CNI result without prefix length, IPv4 first (the kubelet's podIPs order)."""
    ips = [str(ip["address"]).split("/", 1)[0] for ip in result.get("ips") or [] if ip.get("address")]
    return sorted(ips, key=lambda ip: ipaddress.ip_address(ip).version)


def _conditions(now: str, ready: bool, sandbox_ready: bool, message: str = "") -> list[Obj]:
    def cond(ctype: str, ok: bool, reason: str = "") -> Obj:
        out: Obj = {"type": ctype, "status": "True" if ok else "False", "lastTransitionTime": now}
        if not ok and reason:
            out["reason"] = reason
        if not ok and message:
            out["message"] = message
        return out

    return [
        cond("PodReadyToStartContainers", sandbox_ready, "FailedCreatePodSandBox"),
        cond("Initialized", True),
        cond("Ready", ready, "ContainersNotReady"),
        cond("ContainersReady", ready, "ContainersNotReady"),
        cond("PodScheduled", True),
    ]


def _containers(pod: Mapping[str, Any], state: Obj, ready: bool, container_id: str) -> list[Obj]:
    out = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        status: Obj = {
            "name": container.get("name", ""),
            "image": container.get("image", ""),
            "imageID": "",
            "ready": ready,
            "started": ready,
            "restartCount": 0,
            "state": state,
        }
        if container_id:
            status["containerID"] = f"sim://{container_id}"
        out.append(status)
    return out


def running(
    pod: Mapping[str, Any], ips: Sequence[str], host_ips: Sequence[str], sandbox_id: str, now: str
) -> Obj:
    status: Obj = {
        "phase": "Running",
        "conditions": _conditions(now, ready=True, sandbox_ready=True),
        "hostIP": host_ips[0] if host_ips else "",
        "hostIPs": [{"ip": ip} for ip in host_ips],
        "podIP": ips[0] if ips else "",
        "podIPs": [{"ip": ip} for ip in ips],
        "startTime": (pod.get("status") or {}).get("startTime") or now,
        "containerStatuses": _containers(pod, {"running": {"startedAt": now}}, True, sandbox_id),
    }
    return status


def pending(pod: Mapping[str, Any], host_ips: Sequence[str], message: str, now: str) -> Obj:
    return {
        "phase": "Pending",
        "conditions": _conditions(now, ready=False, sandbox_ready=False, message=message),
        "hostIP": host_ips[0] if host_ips else "",
        "hostIPs": [{"ip": ip} for ip in host_ips],
        "startTime": (pod.get("status") or {}).get("startTime") or now,
        "containerStatuses": _containers(
            pod, {"waiting": {"reason": "ContainerCreating"}}, False, container_id=""
        ),
    }


def succeeded(pod: Mapping[str, Any], now: str) -> Obj:
    terminated = {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": now}}
    return {
        "phase": "Succeeded",
        "conditions": _conditions(now, ready=False, sandbox_ready=False),
        "containerStatuses": _containers(pod, terminated, False, container_id=""),
    }
