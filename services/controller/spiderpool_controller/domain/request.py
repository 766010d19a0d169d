"""The domain form of one allocation request (one CNI ADD for one NIC).

Owns the fact that selection and allocation are pure functions of the request and the
pools: the agent gathers everything selection needs (pod identity, labels, annotations,
namespace labels and annotations, node name and labels, the CNI config's default pools,
the pod's top owner) before it asks the controller, so the controller never looks a pod
up to answer an ADD. The gRPC servicer translates ``AllocateRequest`` into this; nothing
here knows about protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class AllocationRequest:
    """Everything the controller needs to choose pools and record an allocation."""

    container_id: str
    ifname: str
    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""  # empty outside Kubernetes; the container ID is the identity then
    node: str = ""
    network: str = ""  # the CNI config's "name", recorded with each allocation (GC scope)
    pod_labels: dict[str, str] = field(default_factory=dict, hash=False)
    pod_annotations: dict[str, str] = field(default_factory=dict, hash=False)
    namespace_labels: dict[str, str] = field(default_factory=dict, hash=False)
    namespace_annotations: dict[str, str] = field(default_factory=dict, hash=False)
    node_labels: dict[str, str] = field(default_factory=dict, hash=False)
    default_ipv4_pools: tuple[str, ...] = ()  # CNI config default_ipv4_ippool
    default_ipv6_pools: tuple[str, ...] = ()  # CNI config default_ipv6_ippool
    clean_gateway: bool = False  # CNI config clean_gateway: no gateway for this NIC
    owner_api_version: str = ""  # the top controller's apiVersion (apps/v1, ...): auto pools
    owner_kind: str = ""  # the pod's top controller: Pod, Deployment, StatefulSet, ...
    owner_name: str = ""
    owner_uid: str = ""
    owner_replicas: int = 0  # StatefulSet .spec.replicas
    owner_exists: bool = False  # whether the owner still exists (StatefulSet IP retention)
    multus_name: str = ""  # the NetworkAttachmentDefinition "ns/name" this NIC came from
    requested_ips: tuple[str, ...] = ()  # addresses asked for on ifname (IP or CIDR), one per family

    @property
    def identity(self) -> str:
        """The owner key of the allocation: pod UID, or the container ID outside Kubernetes."""
        return self.pod_uid or self.container_id

    @property
    def pod_key(self) -> str:
        """Upstream's ``namespace/name`` pod reference, as written into pool records."""
        return f"{self.pod_namespace}/{self.pod_name}"
