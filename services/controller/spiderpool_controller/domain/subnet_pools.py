"""SpiderSubnet arithmetic: free addresses, pool sizes, resizes, the subnet's status.

Owns the numbers of upstream's subnet manager (pkg/subnetmanager and
pkg/applicationcontroller), as pure functions over ``IPSet`` so a /8 subnet costs what a
/24 does (upstream #3541):

- a workload's replicas: Deployment, ReplicaSet and StatefulSet ``.spec.replicas`` (1 when
  absent, as the API server defaults it), DaemonSet ``.status.desiredNumberScheduled``,
  Job (and a CronJob's job template) ``completions`` if set, else ``parallelism``, else 1
  (0 counts as 1); a ReplicaSet run by a Deployment and a Job run by a CronJob are not top
  controllers (their owner's pools serve them), nor is a hostNetwork workload served;
- free addresses of a subnet = its ``ips - excludeIPs`` minus every address any pool of the
  same CIDR holds (auto, manual or orphan alike: pools sharing a subnet never share an
  address) minus the SpiderReservedIPs;
- a resize: growing takes the lowest free addresses (upstream takes ``freeIPs[:n]``), and a
  subnet short of addresses gives what it has: the pool is as large as it can be now and
  grows again when the subnet frees more (the shortfall is reported). Shrinking removes
  only unallocated addresses, the highest first. Decision: upstream removes the lowest
  unallocated ones; the engine hands out the lowest free address, so removing from the
  top keeps the addresses the next pods get and keeps the pool in few ranges. A shrink
  that allocations block goes as far as it can and finishes when pods release;
- the subnet's status: ``controlledIPPools`` (``{"<pool>": {"ips": [...], "application":
  "<app key>"}}``, the application only for auto pools), ``totalIPCount`` (``ips -
  excludeIPs``) and ``allocatedIPCount`` (addresses handed to its pools). Decision: the
  pools are the truth and the status is derived from them after every change, where
  upstream writes the subnet's status first as a reservation and repairs it after a crash
  between the two writes; here the leader is the only writer of both and its in-memory
  view serialises the choices, so there is nothing to repair.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from spiderpool_controller.domain import auto_pools
from spiderpool_controller.domain.auto_pools import AppRef
from spiderpool_controller.domain.ipset import IPSet
from spiderpool_controller.domain.models import API_VERSION, FINALIZER, KIND_IPPOOL, KIND_SUBNET
from spiderpool_controller.domain.subnet_annotations import POD_IPPOOL_IP_NUMBER
from spiderpool_controller.domain.validation import cidr_label_value

Obj = dict[str, Any]

# The kinds whose replicas and pod template this module reads.
_REPLICA_KINDS = frozenset({"Deployment", "ReplicaSet", "StatefulSet"})
_JOB_KINDS = frozenset({"Job", "CronJob"})


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def job_pods(parallelism: int | None, completions: int | None) -> int:
    """Upstream ``CalculateJobPodNum``: completions if set, else parallelism, else 1; 0 is 1."""
    chosen = completions if completions is not None else parallelism
    if chosen is None or chosen <= 0:
        return 1
    return chosen


def _job_spec(kind: str, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    if kind == "CronJob":
        template = _spec(obj).get("jobTemplate")
        return _spec(template) if isinstance(template, Mapping) else {}
    return _spec(obj)


def workload_replicas(kind: str, obj: Mapping[str, Any]) -> int:
    """How many pods the workload wants (the base of a flexible pool size)."""
    if kind in _REPLICA_KINDS:
        replicas = _int(_spec(obj).get("replicas"))
        return 1 if replicas is None else max(replicas, 0)
    if kind == "DaemonSet":
        status = obj.get("status")
        desired = _int(status.get("desiredNumberScheduled")) if isinstance(status, Mapping) else None
        return max(desired or 0, 0)
    if kind in _JOB_KINDS:
        spec = _job_spec(kind, obj)
        return job_pods(_int(spec.get("parallelism")), _int(spec.get("completions")))
    return 0


def _pod_template(kind: str, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = _job_spec(kind, obj) if kind == "CronJob" else _spec(obj)
    template = spec.get("template")
    return template if isinstance(template, Mapping) else {}


def pod_template_annotations(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    meta = _pod_template(kind, obj).get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(annotations, Mapping):
        return {}
    return {str(k): str(v) for k, v in annotations.items()}


def host_network(kind: str, obj: Mapping[str, Any]) -> bool:
    """A hostNetwork workload's pods get no IPAM (upstream skips them)."""
    return _spec(_pod_template(kind, obj)).get("hostNetwork") is True


def controller_kind(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(apiVersion, kind) of the object's ``controller: true`` owner reference, if any."""
    meta = obj.get("metadata")
    for ref in (meta.get("ownerReferences") if isinstance(meta, Mapping) else None) or ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return str(ref.get("apiVersion", "")), str(ref.get("kind", ""))
    return None


def is_top_controller(kind: str, obj: Mapping[str, Any]) -> bool:
    """False for a Deployment's ReplicaSet and a CronJob's Job: their owner's pools serve them."""
    owner = controller_kind(obj)
    if kind == "ReplicaSet":
        return owner != ("apps/v1", "Deployment")
    if kind == "Job":
        return owner != ("batch/v1", "CronJob")
    return True


# ---------------------------------------------------------------------------------------
# addresses


def usable(obj: Mapping[str, Any], version: int) -> IPSet:
    """``spec.ips - spec.excludeIPs`` of a pool or subnet manifest."""
    spec = _spec(obj)
    return IPSet.parse(spec.get("ips") or [], version) - IPSet.parse(spec.get("excludeIPs") or [], version)


def subnet_free(subnet_ips: IPSet, held_by_pools: Iterable[IPSet], reserved: IPSet) -> IPSet:
    """The subnet's addresses no pool of its CIDR holds and no SpiderReservedIP names."""
    free = subnet_ips - reserved
    for held in held_by_pools:
        free = free - held
    return free


def lowest(ips: IPSet, n: int) -> IPSet:
    """The ``n`` lowest members (all of them when there are fewer)."""
    out: list[tuple[int, int]] = []
    left = n
    for lo, hi in ips.intervals:
        if left <= 0:
            break
        take = min(hi - lo + 1, left)
        out.append((lo, lo + take - 1))
        left -= take
    return IPSet(ips.version, tuple(out))


def highest(ips: IPSet, n: int) -> IPSet:
    """The ``n`` highest members (all of them when there are fewer)."""
    out: list[tuple[int, int]] = []
    left = n
    for lo, hi in reversed(ips.intervals):
        if left <= 0:
            break
        take = min(hi - lo + 1, left)
        out.append((hi - take + 1, hi))
        left -= take
    return IPSet.from_intervals(ips.version, out)


@dataclass(frozen=True)
class Resize:
    """How a pool of ``current`` addresses gets to its desired size."""

    add: IPSet
    remove: IPSet
    short: int  # addresses the subnet could not give (growth) or allocations block (shrink)

    @property
    def changes(self) -> bool:
        return bool(self.add) or bool(self.remove)

    def apply(self, current: IPSet) -> IPSet:
        return (current | self.add) - self.remove


def plan_resize(current: IPSet, allocated: IPSet, free: IPSet, desired: int) -> Resize:
    """Grow with the lowest free addresses, or shrink by the highest unallocated ones."""
    size = current.count()
    empty = IPSet.empty(current.version)
    if desired > size:
        add = lowest(free, desired - size)
        return Resize(add, empty, desired - size - add.count())
    if desired < size:
        remove = highest(current - allocated, size - desired)
        return Resize(empty, remove, size - desired - remove.count())
    return Resize(empty, empty, 0)


# ---------------------------------------------------------------------------------------
# manifests


def owner_reference(subnet: Mapping[str, Any]) -> dict[str, Any]:
    """The controller reference a SpiderSubnet sets on the pools it owns."""
    meta = subnet.get("metadata") or {}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_SUBNET,
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controlled_by(pool: Mapping[str, Any], subnet: Mapping[str, Any]) -> bool:
    """Whether ``pool`` carries ``subnet`` as its controller reference (by UID)."""
    meta = pool.get("metadata") or {}
    uid = (subnet.get("metadata") or {}).get("uid", "")
    return any(
        isinstance(ref, Mapping) and ref.get("controller") is True and ref.get("uid") == uid
        for ref in meta.get("ownerReferences") or ()
    )


def subnet_version(subnet: Mapping[str, Any]) -> int:
    spec = _spec(subnet)
    version = _int(spec.get("ipVersion"))
    if version in (4, 6):
        return int(version)
    return 6 if ":" in str(spec.get("subnet", "")) else 4


def auto_pool_manifest(
    subnet: Mapping[str, Any], app: AppRef, *, nic: str, reclaim: bool, ip_number: str, ips: IPSet
) -> Obj:
    """A new auto pool of ``app`` for (``nic``, the subnet's family), holding ``ips``."""
    meta = subnet.get("metadata") or {}
    spec = _spec(subnet)
    version = subnet_version(subnet)
    cidr = str(spec.get("subnet", ""))
    pool_spec: dict[str, Any] = {
        "ipVersion": version,
        "subnet": cidr,
        "ips": ips.to_ranges(),
        "podAffinity": auto_pools.auto_pool_affinity(app),
        "default": False,
        "disable": False,
    }
    if spec.get("gateway") is not None:
        pool_spec["gateway"] = spec["gateway"]
    if spec.get("routes"):
        pool_spec["routes"] = [dict(r) for r in spec["routes"]]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_IPPOOL,
        "metadata": {
            "name": auto_pools.auto_pool_name(app.name, version, nic, app.uid),
            "labels": auto_pools.auto_pool_labels(
                app,
                subnet_name=str(meta.get("name", "")),
                cidr_label=cidr_label_value(cidr),
                nic=nic,
                version=version,
                reclaim=reclaim,
            ),
            "annotations": {POD_IPPOOL_IP_NUMBER: ip_number},
            "finalizers": [FINALIZER],
            "ownerReferences": [owner_reference(subnet)],
        },
        "spec": pool_spec,
    }


def adoption(pool: Mapping[str, Any], subnet: Mapping[str, Any]) -> Obj | None:
    """The pool as the subnet of its CIDR adopts it, or None when nothing changes.

    Upstream's subnet controller makes itself the controller of every pool of its CIDR,
    labels it ``owner-spider-subnet`` and gives it the subnet's gateway and routes when the
    pool sets none (an explicitly empty routes list stays empty). A pool owned by another
    controller is left alone.
    """
    meta = dict(pool.get("metadata") or {})
    name = str((subnet.get("metadata") or {}).get("name", ""))
    refs = [r for r in meta.get("ownerReferences") or () if isinstance(r, Mapping)]
    if any(r.get("controller") is True for r in refs) and not controlled_by(pool, subnet):
        return None
    labels = dict(meta.get("labels") or {})
    spec = dict(_spec(pool))
    subnet_spec = _spec(subnet)
    changed = False
    if not controlled_by(pool, subnet):
        refs.append(owner_reference(subnet))
        changed = True
    if labels.get(auto_pools.LABEL_OWNER_SUBNET) != name:
        labels[auto_pools.LABEL_OWNER_SUBNET] = name
        changed = True
    if spec.get("gateway") is None and subnet_spec.get("gateway") is not None:
        spec["gateway"] = subnet_spec["gateway"]
        changed = True
    if "routes" not in spec and subnet_spec.get("routes"):
        spec["routes"] = [dict(r) for r in subnet_spec["routes"]]
        changed = True
    if not changed:
        return None
    meta["ownerReferences"] = refs
    meta["labels"] = labels
    return {**pool, "metadata": meta, "spec": spec}


@dataclass(frozen=True)
class ControlledPool:
    name: str
    ips: IPSet  # the pool's usable addresses inside the subnet
    application: str = ""  # the app key, for auto pools


def subnet_status(subnet: Mapping[str, Any], pools: Iterable[ControlledPool]) -> dict[str, Any]:
    """The status a subnet should carry given the pools it controls (upstream's shape)."""
    version = subnet_version(subnet)
    controlled: dict[str, Any] = {}
    allocated = 0
    for pool in sorted(pools, key=lambda p: p.name):
        entry: dict[str, Any] = {"ips": pool.ips.to_ranges()}
        if pool.application:
            entry["application"] = pool.application
        controlled[pool.name] = entry
        allocated += pool.ips.count()
    status: dict[str, Any] = {
        "totalIPCount": usable(subnet, version).count(),
        "allocatedIPCount": allocated,
    }
    if controlled:
        status["controlledIPPools"] = json.dumps(controlled, separators=(",", ":"))
    return status
