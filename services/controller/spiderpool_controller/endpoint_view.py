"""What a pod's SpiderEndpoint should say, read from the ledger's records.

Owns the mapping from allocation records to upstream's ``WorkloadEndpointStatus``: one
entry per NIC with its addresses, pools, gateways (none when cleaned), the NIC's routes,
and the owner (kind and name) recorded with the allocation. The ``EndpointWriter`` calls
``describe`` at flush time, so the object always reflects the records as they are then.
"""

from __future__ import annotations

from spiderpool_controller.allocation_answer import nic_routes
from spiderpool_controller.endpoint_writer import EndpointName, EndpointView, NicAddresses
from spiderpool_controller.ledger import Ledger


def describe(ledger: Ledger, name: EndpointName) -> EndpointView | None:
    """The view of endpoint ``name``; ``None`` when no identity holds addresses under it."""
    identity = ledger.index.identity_of(name)
    if identity is None or not ledger.index.has_identity(identity):
        return None
    nics: list[NicAddresses] = []
    uid = node = owner_kind = owner_name = ""
    for nic in ledger.index.nics(identity):
        held = ledger.records(identity, nic)
        if not held:
            continue
        first = held[0][2]
        uid, node = first.pod_uid, first.node
        owner_kind = owner_kind or first.owner_kind
        owner_name = owner_name or first.owner_name
        nics.append(
            NicAddresses(
                nic,
                [
                    (
                        state.version,
                        state.address(ip),
                        state.name,
                        None if rec.clean_gateway else state.gateway,
                    )
                    for state, ip, rec in held
                ],
                first.clean_gateway,
                nic_routes(held),
            )
        )
    return EndpointView(uid, node, owner_kind or "Pod", owner_name, nics)
