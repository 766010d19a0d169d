"""The ``spiderpool.agent.v1.CniService`` servicer: protobuf in, handler call, bytes out.

Only translation lives here; the verbs' logic is ``ipam_handlers`` (the spiderpool IPAM
plugin) and ``coordinator_handlers`` (the coordinator plugin). Errors leave through
``translate_errors`` as gRPC statuses carrying the CNI code, which the shims print.

One ordering rule is applied here because it spans both plugins: before an ADD, ``settle``
(``del_spool.DelSpool.settle``) replays the DELs the shims spooled for that attachment.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from spiderpool.agent.v1 import cni_pb2, cni_pb2_grpc
from spiderpool_common.grpc_server import translate_errors

from spiderpool_agent.cni_call import RawCall
from spiderpool_agent.coordinator_handlers import CoordinatorHandlers
from spiderpool_agent.ipam_handlers import IpamHandlers

SERVICE_NAME = cni_pb2.DESCRIPTOR.services_by_name["CniService"].full_name


Settle = Callable[[str, RawCall], Awaitable[None]]


async def _nothing_spooled(_plugin: str, _call: RawCall) -> None:
    return None


class CniServicer(cni_pb2_grpc.CniServiceServicer):
    def __init__(
        self, handlers: IpamHandlers, coordinator: CoordinatorHandlers, *, settle: Settle = _nothing_spooled
    ) -> None:
        self._handlers = handlers
        self._coordinator = coordinator
        self._settle = settle

    @translate_errors
    async def IpamAdd(
        self, request: cni_pb2.IpamAddRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.IpamAddResponse:
        await self._settle("ipam", request.call)
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

    # -- coordinator ------------------------------------------------------------------

    @translate_errors
    async def CoordinatorAdd(
        self, request: cni_pb2.CoordinatorAddRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorAddResponse:
        await self._settle("coordinator", request.call)
        return cni_pb2.CoordinatorAddResponse(result=await self._coordinator.add(request.call))

    @translate_errors
    async def CoordinatorDel(
        self, request: cni_pb2.CoordinatorDelRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorDelResponse:
        return cni_pb2.CoordinatorDelResponse(result=await self._coordinator.delete(request.call))

    @translate_errors
    async def CoordinatorCheck(
        self, request: cni_pb2.CoordinatorCheckRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorCheckResponse:
        return cni_pb2.CoordinatorCheckResponse(result=await self._coordinator.check(request.call))

    @translate_errors
    async def CoordinatorGc(
        self, request: cni_pb2.CoordinatorGcRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorGcResponse:
        return cni_pb2.CoordinatorGcResponse(result=await self._coordinator.gc(request.call))

    @translate_errors
    async def CoordinatorStatus(
        self, request: cni_pb2.CoordinatorStatusRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorStatusResponse:
        return cni_pb2.CoordinatorStatusResponse(result=await self._coordinator.status(request.call))
