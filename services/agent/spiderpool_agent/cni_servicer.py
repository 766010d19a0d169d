"""The ``spiderpool.agent.v1.CniService`` servicer: protobuf in, handler call, bytes out.

Only translation lives here; the verbs' logic is ``ipam_handlers``. Errors leave through
``translate_errors`` as gRPC statuses carrying the CNI code, which the shims print.

The Coordinator* RPCs are placeholders until the coordinator library lands in
``plugins/coordinator/``: ADD validates the call and passes ``prevResult`` through,
re-rendered in the requested version; DEL/CHECK/GC/STATUS validate and succeed.
"""

from __future__ import annotations

import grpc
from spiderpool.agent.v1 import cni_pb2, cni_pb2_grpc
from spiderpool_cni import codes
from spiderpool_common.errors import CniError
from spiderpool_common.grpc_server import translate_errors

from spiderpool_agent.cni_call import Verb, parse_call
from spiderpool_agent.cni_result import render_converted
from spiderpool_agent.ipam_handlers import IpamHandlers

SERVICE_NAME = cni_pb2.DESCRIPTOR.services_by_name["CniService"].full_name


class CniServicer(cni_pb2_grpc.CniServiceServicer):
    def __init__(self, handlers: IpamHandlers) -> None:
        self._handlers = handlers

    @translate_errors
    async def IpamAdd(
        self, request: cni_pb2.IpamAddRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.IpamAddResponse:
        return cni_pb2.IpamAddResponse(result=await self._handlers.add(request.call))

    @translate_errors
    async def IpamDel(
        self, request: cni_pb2.IpamDelRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.IpamDelResponse:
        return cni_pb2.IpamDelResponse(result=await self._handlers.delete(request.call))

    @translate_errors
    async def IpamCheck(
        self, request: cni_pb2.IpamCheckRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.IpamCheckResponse:
        return cni_pb2.IpamCheckResponse(result=await self._handlers.check(request.call))

    @translate_errors
    async def IpamGc(
        self, request: cni_pb2.IpamGcRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.IpamGcResponse:
        return cni_pb2.IpamGcResponse(result=await self._handlers.gc(request.call))

    @translate_errors
    async def IpamStatus(
        self, request: cni_pb2.IpamStatusRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.IpamStatusResponse:
        return cni_pb2.IpamStatusResponse(result=await self._handlers.status(request.call))

    # -- coordinator placeholders -----------------------------------------------------

    @translate_errors
    async def CoordinatorAdd(
        self, request: cni_pb2.CoordinatorAddRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorAddResponse:
        inv = parse_call(request.call, Verb.ADD, require_ipam=False)
        prev = inv.config.prev_result
        if prev is None:
            raise CniError(
                codes.INVALID_CONFIG,
                "network config: coordinator needs prevResult (chain it after the main CNI)",
            )
        return cni_pb2.CoordinatorAddResponse(result=render_converted(prev, inv.config.cni_version))

    @translate_errors
    async def CoordinatorDel(
        self, request: cni_pb2.CoordinatorDelRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorDelResponse:
        parse_call(request.call, Verb.DEL, require_ipam=False)
        return cni_pb2.CoordinatorDelResponse()

    @translate_errors
    async def CoordinatorCheck(
        self, request: cni_pb2.CoordinatorCheckRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorCheckResponse:
        parse_call(request.call, Verb.CHECK, require_ipam=False)
        return cni_pb2.CoordinatorCheckResponse()

    @translate_errors
    async def CoordinatorGc(
        self, request: cni_pb2.CoordinatorGcRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorGcResponse:
        parse_call(request.call, Verb.GC, require_ipam=False)
        return cni_pb2.CoordinatorGcResponse()

    @translate_errors
    async def CoordinatorStatus(
        self, request: cni_pb2.CoordinatorStatusRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorStatusResponse:
        parse_call(request.call, Verb.STATUS, require_ipam=False)
        return cni_pb2.CoordinatorStatusResponse()
