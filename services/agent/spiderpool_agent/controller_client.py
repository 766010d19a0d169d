"""The agent's grpc.aio client of the controller's IpamService (and ResourceService reads).

Owns the one channel to the controller and the translation of ``grpc.RpcError`` into the
domain errors (``spiderpool_common.grpc_errors.from_rpc_error``): the controller's own errors
keep their CNI code (100 pool exhausted, 101 no pool matched, ...) and pass through to the
shim unchanged; transport failures and deadlines become ``Unavailable`` (code 11), which
DEL turns into a journal entry.

Calls fail fast (no wait-for-ready) so an unreachable controller is noticed quickly. A
transport failure (UNAVAILABLE without our ErrorInfo) is retried once with wait-for-ready
for at most ``RECONNECT_WAIT`` seconds: right after the controller restarts, the channel
may still sit in its reconnect backoff (kept short, 1 s at most) and the first call would
otherwise fail although the controller is back. Every call is idempotent on the
controller side (ADD and DEL are keyed by attachment), so the retry is safe.

``get_object`` reads one object through the ResourceService on the same channel (the
coordinator's SpiderCoordinator ``default``); an object that does not exist is ``None``.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_status import rpc_status
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc, resource_pb2, resource_pb2_grpc
from spiderpool_cni import codes
from spiderpool_common.channels import open_channel
from spiderpool_common.errors import NotFound, SpiderpoolError
from spiderpool_common.grpc_errors import from_rpc_error
from spiderpool_common.tls import TlsFiles

Resp = TypeVar("Resp", bound=Message)

RECONNECT_WAIT = 1.5  # seconds; longer than the channel's max reconnect backoff


def _transport_failure(exc: grpc.RpcError) -> bool:
    """UNAVAILABLE raised by the channel itself, not by the controller's error translation."""
    code = exc.code() if hasattr(exc, "code") else None
    return code == grpc.StatusCode.UNAVAILABLE and rpc_status.from_call(exc) is None  # type: ignore[arg-type]


class GrpcControllerClient:
    """``ControllerClient`` over gRPC; every call has a deadline."""

    def __init__(
        self, address: str, *, timeout: float = 30.0, tls: TlsFiles | None = None, server_name: str = ""
    ) -> None:
        self.address = address
        self._timeout = timeout
        self._channel = open_channel(address, tls, server_name)
        self._stub = ipam_pb2_grpc.IpamServiceStub(self._channel)
        self._resources = resource_pb2_grpc.ResourceServiceStub(self._channel)

    async def _call(self, method: grpc.aio.UnaryUnaryMultiCallable, request: Message) -> Resp:  # type: ignore[type-var]
        try:
            response: Resp = await method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            if not _transport_failure(exc):
                raise from_rpc_error(exc) from exc
            try:
                response = await method(
                    request, timeout=min(RECONNECT_WAIT, self._timeout), wait_for_ready=True
                )
            except grpc.RpcError as again:
                raise from_rpc_error(again) from again
        return response

    async def allocate(self, request: ipam_pb2.AllocateRequest) -> ipam_pb2.AllocateResponse:
        return await self._call(self._stub.Allocate, request)

    async def release(self, request: ipam_pb2.ReleaseRequest) -> ipam_pb2.ReleaseResponse:
        return await self._call(self._stub.Release, request)

    async def get_endpoint(self, request: ipam_pb2.GetEndpointRequest) -> ipam_pb2.GetEndpointResponse:
        return await self._call(self._stub.GetEndpoint, request)

    async def release_unlisted(
        self, request: ipam_pb2.ReleaseUnlistedRequest
    ) -> ipam_pb2.ReleaseUnlistedResponse:
        return await self._call(self._stub.ReleaseUnlisted, request)

    async def check_capacity(self, request: ipam_pb2.CheckCapacityRequest) -> ipam_pb2.CheckCapacityResponse:
        return await self._call(self._stub.CheckCapacity, request)

    async def get_object(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        """The stored object as its manifest dict, or ``None`` when it does not exist."""
        request = resource_pb2.GetRequest(kind=kind, namespace=namespace, name=name)
        try:
            reply: resource_pb2.GetResponse = await self._call(self._resources.Get, request)
        except SpiderpoolError as exc:
            if isinstance(exc, NotFound) or exc.cni_code == codes.OBJECT_NOT_FOUND:
                return None
            raise
        obj = json.loads(reply.object_json)
        if not isinstance(obj, dict):
            raise SpiderpoolError(f"{kind} {name}: the controller answered a non-object")
        return obj

    async def close(self) -> None:
        await self._channel.close()
