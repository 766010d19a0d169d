"""gRPC ``spiderpool.controller.v1.AdminService``: translation between protobuf and ``AdminService``.

Nothing here decides anything: ``admin_service`` gathers and the domain judges; this turns
requests into its calls and its values into messages. Errors leave through
``translate_errors``.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import Message
from spiderpool.controller.v1 import admin_pb2, admin_pb2_grpc, ipam_pb2
from spiderpool_common.errors import InvalidRequest
from spiderpool_common.grpc_server import translate_errors

from spiderpool_controller.admin_service import AdminService, Explanation
from spiderpool_controller.allocation_answer import Address
from spiderpool_controller.domain.consistency import Finding
from spiderpool_controller.grpcapi.ipam_servicer import to_domain
from spiderpool_controller.grpcapi.log_fields import ipam_log_fields

SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name


def _finding(f: Finding) -> admin_pb2.Finding:
    return admin_pb2.Finding(
        kind=f.kind,
        pod=f.pod,
        pod_uid=f.pod_uid,
        container_id=f.container_id,
        interface=f.interface,
        pool=f.pool,
        ip=f.ip,
        detail=f.detail,
        action=f.action,
    )


def _ip_config(a: Address) -> ipam_pb2.IPConfig:
    return ipam_pb2.IPConfig(
        nic=a.nic,
        version=a.version,
        address=a.address,
        gateway=a.gateway or "",
        pool=a.pool,
        vlan=a.vlan,
        clean_gateway=a.clean_gateway,
    )


def _explanation(e: Explanation) -> admin_pb2.ExplainResponse:
    return admin_pb2.ExplainResponse(
        source=e.source,
        pod_source=e.pod_source,
        error=e.error.message if e.error is not None else "",
        error_reason=e.error.reason if e.error is not None else "",
        error_cni_code=e.error.cni_code if e.error is not None else 0,
        nics=[
            admin_pb2.NicExplanation(
                nic=nic.nic,
                clean_gateway=nic.clean_gateway,
                held=[_ip_config(a) for a in nic.held],
                families=[
                    admin_pb2.FamilyExplanation(
                        version=family.version,
                        error=family.error,
                        candidates=[
                            admin_pb2.PoolCandidate(
                                pool=p.pool,
                                kept=p.kept,
                                reason=p.reason,
                                lowest_free=p.next_free,
                                free=p.free,
                                chosen=p.chosen,
                            )
                            for p in family.pools
                        ],
                    )
                    for family in nic.families
                ],
            )
            for nic in e.nics
        ],
    )


def admin_log_fields(request: Message) -> dict[str, str]:
    """The pod an Explain or DescribeEndpoint is about, under the keys IpamService uses."""
    if isinstance(request, admin_pb2.ExplainRequest):
        return ipam_log_fields(request.request)
    if isinstance(request, admin_pb2.DescribeEndpointRequest) and request.name:
        return {"pod": f"{request.namespace or 'default'}/{request.name}"}
    return {}


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    log_fields = staticmethod(admin_log_fields)  # bound to each call's log context by translate_errors

    def __init__(self, service: AdminService) -> None:
        self._service = service

    @translate_errors
    async def Check(
        self, request: admin_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.CheckResponse:
        outcome = await self._service.check()
        return admin_pb2.CheckResponse(
            findings=[_finding(f) for f in outcome.report.findings],
            pools=outcome.pools,
            addresses=outcome.addresses,
            endpoints=outcome.endpoints,
            pods_checked=outcome.pods is not None,
            pods=len(outcome.pods.pods) if outcome.pods is not None else 0,
            skipped_newer=outcome.report.skipped_newer,
        )

    @translate_errors
    async def Explain(
        self, request: admin_pb2.ExplainRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ExplainResponse:
        inner = request.request
        if not inner.ifname:
            raise InvalidRequest("Explain needs the interface (request.ifname)")
        if not (inner.pod.name or inner.pod.uid or inner.pod.container_id):
            raise InvalidRequest("Explain needs the pod (request.pod.namespace and name, or a container ID)")
        return _explanation(await self._service.explain(to_domain(inner)))

    @translate_errors
    async def DescribeEndpoint(
        self, request: admin_pb2.DescribeEndpointRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DescribeEndpointResponse:
        if not request.name:
            raise InvalidRequest("DescribeEndpoint needs the pod's name (and namespace)")
        detail = self._service.describe_endpoint(request.namespace or "default", request.name)
        return admin_pb2.DescribeEndpointResponse(
            namespace=detail.namespace,
            name=detail.name,
            pod_uid=detail.pod_uid,
            owner_kind=detail.owner_kind,
            owner_name=detail.owner_name,
            interfaces=[
                admin_pb2.EndpointInterface(
                    interface=i.interface,
                    identity=i.identity,
                    container_id=i.container_id,
                    network=i.network,
                    node=i.node,
                    clean_gateway=i.clean_gateway,
                    addresses=[
                        admin_pb2.EndpointAddress(
                            version=a.version,
                            address=a.address,
                            pool=a.pool,
                            gateway=a.gateway or "",
                            vlan=a.vlan,
                        )
                        for a in i.addresses
                    ],
                    routes=[ipam_pb2.Route(nic=i.interface, dst=r.dst, gw=r.gw) for r in i.routes],
                )
                for i in detail.interfaces
            ],
        )


def register(server: grpc.aio.Server, service: AdminService) -> list[str]:
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(service), server)
    return [SERVICE_NAME]
