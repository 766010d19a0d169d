"""The coordinator's CNI GC: remove the node-side state of attachments the runtime no longer has.

Owns the GC rule (SPEC.md "GC": delete the resources of every attachment not in
``cni.dev/valid-attachments``, assume its netns is gone, continue past errors and report
them all), applied to the records ``host_records`` keeps: only the records of the network
being collected are read, so another network's attachments (even one through the same
veth) and anything the coordinator did not record are never touched. Each collected
record is forgotten only once its objects are gone; a failure keeps it for the next GC.

The work itself is ``api.remove`` (injected, so the rule is tested without netlink).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from spiderpool_coordinator.host_records import HostRecords, HostSide, Record

Remove = Callable[[HostSide], Awaitable[None]]


@dataclass
class GcOutcome:
    """What one GC did: the records removed, the ones kept by the valid list, the failures."""

    removed: list[Record] = field(default_factory=list)
    kept: list[Record] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)  # unreadable record files set aside


async def collect(
    records: HostRecords, network: str, valid: Iterable[tuple[str, str]], remove: Remove
) -> GcOutcome:
    """Remove the node-side state of ``network``'s attachments missing from ``valid``
    ((containerID, ifname) pairs)."""
    keep = set(valid)
    found, corrupt = await asyncio.to_thread(records.network, network)
    outcome = GcOutcome(corrupt=corrupt)
    for record in found:
        if record.attachment in keep:
            outcome.kept.append(record)
            continue
        try:
            await remove(record.side)
        except Exception as exc:  # every failure is reported; the record stays for the next GC
            outcome.errors.append(f"{record.container_id}/{record.ifname}: {exc}")
            continue
        records.remove(record.network, record.container_id, record.ifname)
        outcome.removed.append(record)
    return outcome
