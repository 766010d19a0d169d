"""Where each attachment's addresses are: the engine's in-memory index over pool records.

Owns the lookups the engine needs on every request without scanning pools: by attachment
(identity, interface) for idempotent ADD, DEL and CHECK; by pod ``namespace/name`` and
interface for StatefulSet members whose UID changes across re-creation; the NICs of an
identity; and which identity an endpoint object currently describes. It is rebuilt from
the pool records at start, so it is never persisted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from spiderpool_controller.domain.models import AllocationRecord
from spiderpool_controller.domain.object_names import endpoint_name
from spiderpool_controller.endpoint_writer import EndpointName

AttachmentKey = tuple[str, str]  # (identity, interface)


@dataclass(frozen=True)
class Held:
    """One address an attachment holds: the pool and the address as an integer."""

    pool: str
    ip: int


class AttachmentIndex:
    def __init__(self) -> None:
        self._by_attachment: dict[AttachmentKey, list[Held]] = defaultdict(list)
        self._by_pod: dict[tuple[str, str], list[Held]] = defaultdict(list)  # (ns/name, nic)
        self._nics: dict[str, set[str]] = defaultdict(set)  # identity -> its NICs
        self._endpoint_of: dict[EndpointName, str] = {}  # endpoint -> identity holding it

    def add(self, pool: str, ip: int, rec: AllocationRecord) -> None:
        self._by_attachment[(rec.identity, rec.interface)].append(Held(pool, ip))
        self._nics[rec.identity].add(rec.interface)
        self._endpoint_of[endpoint_name(rec.pod, rec.identity)] = rec.identity
        if rec.pod:
            self._by_pod[(rec.pod, rec.interface)].append(Held(pool, ip))

    def remove(self, pool: str, ip: int, rec: AllocationRecord) -> None:
        for index, key in (
            (self._by_attachment, (rec.identity, rec.interface)),
            (self._by_pod, (rec.pod, rec.interface)),
        ):
            held = index.get(key)
            if not held:
                continue
            held[:] = [h for h in held if not (h.pool == pool and h.ip == ip)]
            if not held:
                del index[key]
        if (rec.identity, rec.interface) not in self._by_attachment:
            nics = self._nics.get(rec.identity)
            if nics is not None:
                nics.discard(rec.interface)
                if not nics:
                    del self._nics[rec.identity]

    def held(self, identity: str, nic: str) -> list[Held]:
        return list(self._by_attachment.get((identity, nic), ()))

    def held_by_pod(self, pod_key: str, nic: str) -> list[Held]:
        return list(self._by_pod.get((pod_key, nic), ()))

    def __contains__(self, key: AttachmentKey) -> bool:
        return key in self._by_attachment

    def nics(self, identity: str) -> list[str]:
        return sorted(self._nics.get(identity, ()))

    def has_identity(self, identity: str) -> bool:
        return identity in self._nics

    def identity_of(self, endpoint: EndpointName) -> str | None:
        return self._endpoint_of.get(endpoint)

    def endpoints(self) -> list[EndpointName]:
        return list(self._endpoint_of)

    def identities(self) -> list[str]:
        return list(self._nics)
