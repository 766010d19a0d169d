"""gRPC ``spiderpool.controller.v1.IpamService``: translation between protobuf and the engine.

Nothing here decides anything: requests become ``AllocationRequest``/engine calls, engine
results become messages, and errors leave through ``translate_errors``. Two settings ride
along without entering the engine: the detection switches are stamped on every allocated
IP (``Detection``), and a release after a failed detection is a forced release unless the
allocation belongs to a StatefulSet member (``stateful_owner``), upstream's
isReleaseConflictIPs rule (upstream's pkg/ipam/allocate.go).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc
from spiderpool_common.errors import InvalidRequest, SpiderpoolError
from spiderpool_common.grpc_server import translate_errors

from spiderpool_controller.domain.request import (
    AllocationRequest,
    attachment_bounds_problem,
    unlisted_bounds_problem,
)
from spiderpool_controller.engine_slot import EngineSlot
from spiderpool_controller.grpcapi.log_fields import ipam_log_fields
from spiderpool_controller.ipam_engine import Address, IpamEngine
from spiderpool_controller.metrics import ControllerMetrics
from spiderpool_controller.statefulset_reuse import STATEFUL_KINDS


@dataclass(frozen=True)
class Detection:
    """The controller's detection switches, carried to the agent on every allocated IP."""

    ip_conflict: bool = False
    gateway: bool = False


def _ip_config(a: Address, detection: Detection | None = None) -> ipam_pb2.IPConfig:
    detection = detection or Detection()
    return ipam_pb2.IPConfig(
        nic=a.nic,
        version=a.version,
        address=a.address,
        gateway=a.gateway or "",
        pool=a.pool,
        vlan=a.vlan,
        clean_gateway=a.clean_gateway,
        detect_ip_conflict=detection.ip_conflict,
        detect_gateway=detection.gateway,
    )


def stateful_owner(engine: IpamEngine, request: ipam_pb2.ReleaseRequest) -> bool:
    """Whether the released attachment belongs to a StatefulSet (or KubeVirt) member."""
    kind = request.owner.kind or engine.owner_kind(_identity(request.pod), request.ifname)
    return kind in STATEFUL_KINDS


def _identity(pod: ipam_pb2.PodRef) -> str:
    return pod.uid or pod.container_id


def _check_attachment(
    pod: ipam_pb2.PodRef, ifname: str, owner: ipam_pb2.Owner | None = None, conflicting: Iterable[str] = ()
) -> None:
    problem = attachment_bounds_problem(
        pod_namespace=pod.namespace,
        pod_name=pod.name,
        pod_uid=pod.uid,
        container_id=pod.container_id,
        ifname=ifname,
        owner_kind=owner.kind if owner is not None else "",
        owner_name=owner.name if owner is not None else "",
        conflicting_ips=conflicting,
    )
    if problem:
        raise InvalidRequest(problem)


def to_domain(req: ipam_pb2.AllocateRequest) -> AllocationRequest:
    pod = req.pod
    return AllocationRequest(
        container_id=pod.container_id,
        ifname=req.ifname,
        pod_namespace=pod.namespace,
        pod_name=pod.name,
        pod_uid=pod.uid,
        node=pod.node,
        network=req.network,
        pod_labels=dict(req.pod_labels),
        pod_annotations=dict(req.pod_annotations),
        namespace_labels=dict(req.namespace_labels),
        namespace_annotations=dict(req.namespace_annotations),
        node_labels=dict(req.node_labels),
        default_ipv4_pools=tuple(req.default_ipv4_ippools),
        default_ipv6_pools=tuple(req.default_ipv6_ippools),
        clean_gateway=req.clean_gateway,
        owner_api_version=req.owner.api_version,
        owner_kind=req.owner.kind,
        owner_name=req.owner.name,
        owner_uid=req.owner.uid,
        owner_replicas=req.owner.replicas,
        owner_exists=req.owner.exists,
        multus_name=req.multus_name,
        requested_ips=tuple(req.requested_ips),
    )


class IpamServicer(ipam_pb2_grpc.IpamServiceServicer):
    log_fields = staticmethod(ipam_log_fields)  # bound to each call's log context by translate_errors

    def __init__(
        self,
        engine: IpamEngine | EngineSlot,
        metrics: ControllerMetrics | None = None,
        detection: Detection | None = None,
    ) -> None:
        self._slot = engine if isinstance(engine, EngineSlot) else EngineSlot(engine)
        self._metrics = metrics
        self._detection = detection or Detection()

    @property
    def _engine(self) -> IpamEngine:
        return self._slot.get()

    @translate_errors
    async def Allocate(
        self, request: ipam_pb2.AllocateRequest, context: grpc.aio.ServicerContext
    ) -> ipam_pb2.AllocateResponse:
        started = time.perf_counter()
        try:
            result = await self._engine.allocate(to_domain(request))
        except SpiderpoolError as err:
            if self._metrics is not None:
                self._metrics.allocation_failures.labels(reason=err.reason).inc()
            raise
        if self._metrics is not None:
            self._metrics.allocations.inc()
            self._metrics.allocation_seconds.observe(time.perf_counter() - started)
        return ipam_pb2.AllocateResponse(
            ips=[_ip_config(a, self._detection) for a in result.ips],
            routes=[ipam_pb2.Route(nic=nic, dst=r.dst, gw=r.gw) for nic, r in result.routes],
        )

    @translate_errors
    async def Release(
        self, request: ipam_pb2.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> ipam_pb2.ReleaseResponse:
        identity = _identity(request.pod)
        if not identity or not request.ifname:
            raise InvalidRequest("Release needs pod.uid or pod.container_id, and ifname")
        _check_attachment(request.pod, request.ifname, request.owner, request.conflicting_ips)
        pod_key = f"{request.pod.namespace}/{request.pod.name}" if request.pod.name else ""
        force = request.force
        if request.detection_failed:
            if stateful_owner(self._engine, request):
                return ipam_pb2.ReleaseResponse(kept=True)
            force = True
        started = time.perf_counter()
        try:
            outcome = await self._engine.release(
                identity,
                request.ifname,
                container_id=request.pod.container_id,
                pod_key=pod_key,
                owner_kind=request.owner.kind,
                owner_name=request.owner.name,
                owner_replicas=request.owner.replicas,
                owner_exists=request.owner.exists,
                force=force,
                conflicting=list(request.conflicting_ips),
            )
        except SpiderpoolError as err:
            if self._metrics is not None:
                self._metrics.release_failures.labels(reason=err.reason).inc()
            raise
        if self._metrics is not None:
            self._metrics.releases.inc()
            self._metrics.release_seconds.observe(time.perf_counter() - started)
        return ipam_pb2.ReleaseResponse(
            released=[_ip_config(a) for a in outcome.released],
            kept=outcome.kept,
            holder_container_id=outcome.holder,
        )

    @translate_errors
    async def GetEndpoint(
        self, request: ipam_pb2.GetEndpointRequest, context: grpc.aio.ServicerContext
    ) -> ipam_pb2.GetEndpointResponse:
        identity = _identity(request.pod)
        if not identity:
            raise InvalidRequest("GetEndpoint needs pod.uid or pod.container_id")
        _check_attachment(request.pod, request.ifname)
        if request.ifname:
            found = {request.ifname: self._engine.lookup(identity, request.ifname)}
        else:
            found = self._engine.attachments_of(identity)
        addresses = [a for nic in sorted(found) for a in found[nic]]
        first = addresses[0] if request.ifname and addresses else None
        return ipam_pb2.GetEndpointResponse(
            ips=[_ip_config(a) for a in addresses],
            network=first.network if first else "",
            container_id=first.container_id if first else "",
        )

    @translate_errors
    async def ReleaseUnlisted(
        self, request: ipam_pb2.ReleaseUnlistedRequest, context: grpc.aio.ServicerContext
    ) -> ipam_pb2.ReleaseUnlistedResponse:
        if not request.network:
            raise InvalidRequest("ReleaseUnlisted needs the network name")
        valid = {(a.container_id, a.ifname) for a in request.valid}
        problem = unlisted_bounds_problem(request.node, request.network, valid)
        if problem:
            raise InvalidRequest(problem)
        released, errors = await self._engine.release_unlisted(request.node, request.network, valid)
        return ipam_pb2.ReleaseUnlistedResponse(released=[_ip_config(a) for a in released], errors=errors)

    @translate_errors
    async def CheckCapacity(
        self, request: ipam_pb2.CheckCapacityRequest, context: grpc.aio.ServicerContext
    ) -> ipam_pb2.CheckCapacityResponse:
        ready, reason = self._engine.check_capacity(
            list(request.default_ipv4_ippools), list(request.default_ipv6_ippools)
        )
        return ipam_pb2.CheckCapacityResponse(ready=ready, reason=reason)

    @translate_errors
    async def GarbageCollect(
        self, request: ipam_pb2.GarbageCollectRequest, context: grpc.aio.ServicerContext
    ) -> ipam_pb2.GarbageCollectResponse:
        self._slot.get()  # only the leader collects
        gc = self._slot.gc
        if gc is None:
            raise InvalidRequest(
                "garbage collection needs the Kubernetes mode: without a pod API there is nothing to judge "
                "allocations against (the container runtime's CNI GC collects them)"
            )
        report: Any = await gc.run_once()
        return ipam_pb2.GarbageCollectResponse(
            judged=report.judged,
            released=report.released,
            skipped_newer=report.skipped_newer,
            reasons=dict(report.reasons),
        )


def register(
    server: grpc.aio.Server,
    engine: IpamEngine | EngineSlot,
    metrics: ControllerMetrics | None = None,
    detection: Detection | None = None,
) -> list[str]:
    ipam_pb2_grpc.add_IpamServiceServicer_to_server(IpamServicer(engine, metrics, detection), server)
    return [ipam_pb2.DESCRIPTOR.services_by_name["IpamService"].full_name]
