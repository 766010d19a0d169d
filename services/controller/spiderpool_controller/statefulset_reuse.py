"""StatefulSet (and KubeVirt) members get their own addresses back across re-creation.

Upstream keeps a member's IPs while its replica is valid (``domain.statefulset``) and hands
them to the re-created pod, which has a new UID and a new sandbox (reference: upstream
pkg/ipam/allocate.go, issues #2526, #3778). The records are found by ``namespace/name``
and interface and re-bound to the new pod's identity, durably, before the ADD answers.
If the pod's pool selection no longer allows a held pool (its annotation now names
another pool: upstream #3543), the old addresses are released and the pod allocates anew.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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
    new_record: Callable[[AllocationRecord], AllocationRecord],
    release: Callable[[list[Held]], Awaitable[None]],
) -> bool:
    """Re-bind the member's addresses on ``req.ifname`` to ``req``; False when none are kept."""
    held = ledger.index.held_by_pod(req.pod_key, req.ifname)
    if not held:
        return False
    allowed = {n for c in candidates if c.nic == req.ifname for n in (*c.ipv4, *c.ipv6)}
    if any(h.pool not in allowed for h in held):
        log.info("statefulset_pool_changed", pod=req.pod_key, nic=req.ifname)
        await release(held)
        return False
    changes = []
    for h in held:
        old = ledger.pools[h.pool].allocated[h.ip]
        changes.append((h.pool, ledger.rebind(h.pool, h.ip, new_record(old))))
    await ledger.commit(group(changes))
    log.info("statefulset_ip_reused", pod=req.pod_key, nic=req.ifname)
    return True
