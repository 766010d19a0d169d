"""A pod's top controller, found by walking ``controller: true`` ownerReferences up.

Owns the rules upstream Spiderpool applies to learn a pod's workload (its
``GetPodTopController``; reference spiderpool.md 3.5 step 2), with the answer in the shape
the controller takes (``OwnerRef``: kind, name, uid, replicas, exists, and the reference's
apiVersion, which SpiderSubnet auto pools are labelled with):

- no controller reference: the pod itself (``Pod``, its name and UID);
- ``ReplicaSet`` is read: owned by a Deployment, the top is that ``Deployment``; by
  another controller (an Argo Rollout, say), that one; by nobody, the ReplicaSet;
- ``Job`` is read the same way, so a CronJob's pod answers ``CronJob``;
- ``StatefulSet`` is read for ``.spec.replicas`` (1 when unset, as the API defaults it): a
  member keeps its address while the set exists and its ordinal is below that number;
- KubeVirt's ``VirtualMachineInstance`` is read, its ``VirtualMachine`` is the top;
- anything else (``DaemonSet``, ``Deployment`` or ``CronJob`` met directly, a third-party
  controller) is taken as the reference gives it (kind, name, uid), unread.

An object that is gone, or whose UID differs from the reference (deleted and re-created
under the same name), ends the walk there with ``exists=False``: the reference names
what the pod belonged to. Reads go through the injected ``Reader`` (None: not found;
anything else it raises passes through), so the walk is tested against canned objects;
``fresh`` is passed for the StatefulSet read, which a DEL wants current.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from spiderpool_agent.cni_call import OwnerRef

APPS = "apps/v1"
BATCH = "batch/v1"
KUBEVIRT = "kubevirt.io/v1"
MAX_DEPTH = 5  # pod -> ReplicaSet -> Deployment is two steps; a loop of references ends here

# The intermediate kinds the walk reads to go further up: (apiVersion, kind) -> collection.
_READ_THROUGH = {
    (APPS, "ReplicaSet"): "/apis/apps/v1/namespaces/{ns}/replicasets/{name}",
    (BATCH, "Job"): "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
    (
        KUBEVIRT,
        "VirtualMachineInstance",
    ): "/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/{name}",
}
_STATEFULSET = (APPS, "StatefulSet")
_STATEFULSET_PATH = "/apis/apps/v1/namespaces/{ns}/statefulsets/{name}"


class Reader(Protocol):
    async def __call__(self, path: str, *, fresh: bool) -> dict[str, Any] | None:
        """The object at ``path``, or None when it does not exist."""
        ...


@dataclass(frozen=True)
class Reference:
    """One ``ownerReferences`` entry."""

    api_version: str
    kind: str
    name: str
    uid: str


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def controller_of(obj: Mapping[str, Any]) -> Reference | None:
    """The ``controller: true`` owner reference of ``obj`` (apimachinery's GetControllerOf)."""
    for ref in _meta(obj).get("ownerReferences") or ():
        if isinstance(ref, dict) and ref.get("controller") is True and ref.get("kind") and ref.get("name"):
            return Reference(
                str(ref.get("apiVersion", "")), str(ref["kind"]), str(ref["name"]), str(ref.get("uid", ""))
            )
    return None


def _uid(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("uid", ""))


def _same(obj: Mapping[str, Any] | None, ref: Reference) -> bool:
    """Whether ``obj`` is the object ``ref`` points at (present, and the UID agrees when given)."""
    return obj is not None and (not ref.uid or _uid(obj) == ref.uid)


def _replicas(obj: Mapping[str, Any]) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    if value is None:
        return 1  # the API server defaults .spec.replicas to 1
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


async def top_owner(pod: Mapping[str, Any], read: Reader, *, fresh: bool = False) -> OwnerRef:
    """The pod's top controller; reads intermediate objects through ``read``."""
    meta = _meta(pod)
    namespace = str(meta.get("namespace", ""))
    ref = controller_of(pod)
    if ref is None:
        return OwnerRef("Pod", str(meta.get("name", "")), str(meta.get("uid", "")), 0, True, "v1")
    for _ in range(MAX_DEPTH):
        key = (ref.api_version, ref.kind)
        if key == _STATEFULSET:
            obj = await read(_STATEFULSET_PATH.format(ns=namespace, name=ref.name), fresh=fresh)
            if not _same(obj, ref):
                return OwnerRef(ref.kind, ref.name, ref.uid, 0, False, ref.api_version)
            assert obj is not None
            uid = ref.uid or str(_meta(obj).get("uid", ""))
            return OwnerRef(ref.kind, ref.name, uid, _replicas(obj), True, ref.api_version)
        path = _READ_THROUGH.get(key)
        if path is None:
            return OwnerRef(ref.kind, ref.name, ref.uid, 0, True, ref.api_version)
        obj = await read(path.format(ns=namespace, name=ref.name), fresh=False)
        if not _same(obj, ref):
            return OwnerRef(ref.kind, ref.name, ref.uid, 0, False, ref.api_version)
        assert obj is not None
        parent = controller_of(obj)
        if parent is None:
            return OwnerRef(ref.kind, ref.name, ref.uid or _uid(obj), 0, True, ref.api_version)
        ref = parent
    return OwnerRef(ref.kind, ref.name, ref.uid, 0, True, ref.api_version)
