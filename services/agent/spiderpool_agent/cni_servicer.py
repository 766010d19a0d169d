"""The ``spiderpool.agent.v1.CniService`` servicer: protobuf in, handler call, bytes out.

Only translation lives here; the verbs' logic is ``ipam_handlers`` (the spiderpool IPAM
plugin) and ``coordinator_handlers`` (the coordinator plugin). Errors leave through
``translate_errors`` as gRPC statuses carrying the CNI code, which the shims print, and
every verb's log lines carry ``call_log_fields``: the pod (``K8S_POD_NAMESPACE/NAME`` from
``CNI_ARGS``), the container ID, the interface and the network (the config's ``name``).

One ordering rule is applied here because it spans both plugins: before an ADD, ``settle``
(``del_spool.DelSpool.settle``) replays the DELs the shims spooled for that attachment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import grpc
from spiderpool.agent.v1 import cni_pb2, cni_pb2_grpc
from spiderpool_common import bounded_json
from spiderpool_common.grpc_server import translate_errors

from spiderpool_agent.cni_call import RawCall
from spiderpool_agent.coordinator_handlers import CoordinatorHandlers
from spiderpool_agent.ipam_handlers import IpamHandlers
from spiderpool_agent.metrics import AgentMetrics

SERVICE_NAME = cni_pb2.DESCRIPTOR.services_by_name["CniService"].full_name


Settle = Callable[[str, RawCall], Awaitable[None]]


async def _nothing_spooled(_plugin: str, _call: RawCall) -> None:
    return None


class _HasCall(Protocol):
    @property
    def call(self) -> cni_pb2.CniCall: ...


def call_log_fields(call: cni_pb2.CniCall) -> dict[str, str]:
    """The log keys of one CNI call, read leniently: the call is validated later, by the handler."""
    namespace = name = ""
    for item in call.args.split(";"):
        if item.startswith("K8S_POD_NAMESPACE="):
            namespace = item[len("K8S_POD_NAMESPACE=") :]
        elif item.startswith("K8S_POD_NAME="):
            name = item[len("K8S_POD_NAME=") :]
    return {
        "pod": f"{namespace}/{name}" if namespace and name else "",
        "container_id": call.container_id,
        "ifname": call.ifname,
        "network": _network_name(call.config),
    }


def _network_name(config: bytes) -> str:
    try:
        obj = bounded_json.loads(config)
    except ValueError:  # not JSON, not UTF-8 (UnicodeDecodeError is a ValueError), or nested too deep
        return ""
    name = obj.get("name") if isinstance(obj, dict) else None
    return name if isinstance(name, str) else ""


@asynccontextmanager
async def _unobserved(_plugin: str, _verb: str) -> AsyncIterator[None]:
    yield


class CniServicer(cni_pb2_grpc.CniServiceServicer):
    def __init__(
        self,
        handlers: IpamHandlers,
        coordinator: CoordinatorHandlers,
        *,
        settle: Settle = _nothing_spooled,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self._handlers = handlers
        self._coordinator = coordinator
        self._settle = settle
        self._observe: Callable[[str, str], AbstractAsyncContextManager[None]] = (
            metrics.observe if metrics is not None else _unobserved
        )

    def log_fields(self, request: _HasCall) -> Mapping[str, str]:
        """What ``translate_errors`` binds to every verb's log context."""
        return call_log_fields(request.call)

    @translate_errors
    async def IpamAdd(
        self, request: cni_pb2.IpamAddRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.IpamAddResponse:
        async with self._observe("ipam", "ADD"):
            await self._settle("ipam", request.call)
            return cni_pb2.IpamAddResponse(result=await self._handlers.add(request.call))

    @translate_errors
    async def IpamDel(
        self, request: cni_pb2.IpamDelRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.IpamDelResponse:
        async with self._observe("ipam", "DEL"):
            return cni_pb2.IpamDelResponse(result=await self._handlers.delete(request.call))

    @translate_errors
    async def IpamCheck(
        self, request: cni_pb2.IpamCheckRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.IpamCheckResponse:
        async with self._observe("ipam", "CHECK"):
            return cni_pb2.IpamCheckResponse(result=await self._handlers.check(request.call))

    @translate_errors
    async def IpamGc(
        self, request: cni_pb2.IpamGcRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.IpamGcResponse:
        async with self._observe("ipam", "GC"):
            return cni_pb2.IpamGcResponse(result=await self._handlers.gc(request.call))

    @translate_errors
    async def IpamStatus(
        self, request: cni_pb2.IpamStatusRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.IpamStatusResponse:
        async with self._observe("ipam", "STATUS"):
            return cni_pb2.IpamStatusResponse(result=await self._handlers.status(request.call))

    # -- coordinator ------------------------------------------------------------------

    @translate_errors
    async def CoordinatorAdd(
        self, request: cni_pb2.CoordinatorAddRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorAddResponse:
        async with self._observe("coordinator", "ADD"):
            await self._settle("coordinator", request.call)
            return cni_pb2.CoordinatorAddResponse(result=await self._coordinator.add(request.call))

    @translate_errors
    async def CoordinatorDel(
        self, request: cni_pb2.CoordinatorDelRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorDelResponse:
        async with self._observe("coordinator", "DEL"):
            return cni_pb2.CoordinatorDelResponse(result=await self._coordinator.delete(request.call))

    @translate_errors
    async def CoordinatorCheck(
        self, request: cni_pb2.CoordinatorCheckRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorCheckResponse:
        async with self._observe("coordinator", "CHECK"):
            return cni_pb2.CoordinatorCheckResponse(result=await self._coordinator.check(request.call))

    @translate_errors
    async def CoordinatorGc(
        self, request: cni_pb2.CoordinatorGcRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorGcResponse:
        async with self._observe("coordinator", "GC"):
            return cni_pb2.CoordinatorGcResponse(result=await self._coordinator.gc(request.call))

    @translate_errors
    async def CoordinatorStatus(
        self, request: cni_pb2.CoordinatorStatusRequest, context: grpc.aio.ServicerContext
    ) -> cni_pb2.CoordinatorStatusResponse:
        async with self._observe("coordinator", "STATUS"):
            return cni_pb2.CoordinatorStatusResponse(result=await self._coordinator.status(request.call))
