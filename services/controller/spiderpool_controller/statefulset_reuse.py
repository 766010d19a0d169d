"""StatefulSet (and KubeVirt) members get their own addresses back across re-creation.

Upstream keeps a member's IPs while its replica is valid (``domain.statefulset``) and hands
them to the re-created pod, which has a new UID and a new sandbox (reference: upstream
pkg/ipam/allocate.go, issues #2526, #3778). The records are found by ``namespace/name``
and interface and re-bound to the new pod's identity, durably, before the ADD answers.
If the pod's pool selection no longer allows a held pool (its annotation now names
another pool: upstream #3543), or the member now asks for another address (the CNI ``ips``
capability, ``IP=``), the old addresses are released and the pod allocates anew: that is
how an operator moves a workload to another pool or address.

Any other pod re-created under the same ``namespace/name`` with a new UID is a new pod: its
predecessor's records (a DEL that never came, e.g. its node died) are released when the new
pod allocates, so an annotation that now names another pool moves the pod and frees the
old address at once rather than at the next GC scan, which would free it anyway (the pod
the records name is gone: Kubernetes keeps one pod per name at a time). Only records with
a pod UID are judged so (outside Kubernetes the name alone identifies nobody).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import structlog

from spiderpool_controller.attachment_index import Held
from spiderpool_controller.domain.models import AllocationRecord
from spiderpool_controller.domain.pool_selection import NicCandidates
from spiderpool_controller.domain.request import AllocationRequest
from spiderpool_controller.ledger import Ledger, group

log = structlog.get_logger(__name__)

# Owners whose members keep their addresses across pod re-creation (upstream: StatefulSet,
# and KubeVirt VMs, whose kind names vary by how the owner was resolved).
STATEFUL_KINDS = frozenset({"StatefulSet", "VirtualMachine", "VirtualMachineInstance"})


async def reuse(
    ledger: Ledger,
    req: AllocationRequest,
    candidates: list[NicCandidates],
    new_record: Callable[[AllocationRecord, int], AllocationRecord],
    release: Callable[[list[Held]], Awaitable[None]],
    *,
    requested: Mapping[int, int] | None = None,
) -> bool:
    """Re-bind the member's addresses on ``req.ifname`` to ``req``; False when none are kept.

    ``requested`` maps a family to the address the member asks for now; ``new_record``
    builds the re-bound record from the old one and its address.
    """
    held = ledger.index.held_by_pod(req.pod_key, req.ifname)
    if not held:
        return False
    allowed = {n for c in candidates if c.nic == req.ifname for n in (*c.ipv4, *c.ipv6)}
    if any(h.pool not in allowed for h in held):
        log.info("statefulset_pool_changed", pod=req.pod_key, nic=req.ifname)
        await release(held)
        return False
    by_family = {ledger.pools[h.pool].version: h.ip for h in held}
    if any(by_family.get(version) != ip for version, ip in (requested or {}).items()):
        log.info("statefulset_requested_ip_changed", pod=req.pod_key, nic=req.ifname)
        await release(held)
        return False
    changes = []
    for h in held:
        old = ledger.pools[h.pool].allocated[h.ip]
        changes.append((h.pool, ledger.rebind(h.pool, h.ip, new_record(old, h.ip))))
    await ledger.commit(group(changes))
    log.info("statefulset_ip_reused", pod=req.pod_key, nic=req.ifname)
    return True


async def release_predecessors(
    ledger: Ledger,
    req: AllocationRequest,
    candidates: list[NicCandidates],
    release: Callable[[list[Held]], Awaitable[None]],
) -> list[Held]:
    """Release what an earlier pod of the same name (another UID) holds on the NICs this ADD
    allocates; return what was released."""
    if not (req.pod_name and req.pod_uid):
        return []
    stale: list[Held] = []
    for cand in candidates:
        for h in ledger.index.held_by_pod(req.pod_key, cand.nic):
            rec = ledger.record(h)
            if rec is not None and rec.pod_uid and rec.pod_uid != req.pod_uid:
                stale.append(h)
    if stale:
        log.info("previous_pod_released", pod=req.pod_key, uid=req.pod_uid, count=len(stale))
        await release(stale)
    return stale
