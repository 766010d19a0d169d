"""A standby replica forwards IPAM calls to the leader, untouched.

Agents reach the controller through its Service, i.e. any replica; only the leader runs the
engine and only the leader writes. This server interceptor hands every ``IpamService`` and
``AdminService`` (the operators' views of the leader's records) call, and every
``ResourceService`` write (spiderpoolctl apply and delete), that arrives at a replica
that is not the leader to the leader's gRPC address (from the Lease) as raw bytes, and
passes the leader's answer or status back unchanged, ``ErrorInfo`` details included, so
the agent cannot tell the difference. A forwarded call carries a marker; a replica that
is not the leader either does not forward it again (no loops while leadership moves) and
answers UNAVAILABLE (the CNI code 11 the agent retries on), as it does when no leader is
known yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog

log = structlog.get_logger(__name__)

FORWARDED = "x-spiderpool-forwarded"
# Prefixes of the forwarded methods: every IpamService and AdminService call, and spiderpoolctl's
# writes (ResourceService Apply and Delete: only the leader writes; its Get and List are served here).
FORWARDED_SERVICES = (
    "/spiderpool.controller.v1.IpamService/",
    "/spiderpool.controller.v1.AdminService/",
    "/spiderpool.controller.v1.ResourceService/Apply",
    "/spiderpool.controller.v1.ResourceService/Delete",
)


class LeaderForwarding(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        is_leader: Callable[[], bool],
        leader_target: Callable[[], str],
        open_channel: Callable[[str], grpc.aio.Channel],
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self._is_leader = is_leader
        self._leader_target = leader_target
        self._open_channel = open_channel
        self._timeout = timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.forwarded = 0

    def _channel(self, target: str) -> grpc.aio.Channel:
        channel = self._channels.get(target)
        if channel is None:
            channel = self._open_channel(target)
            self._channels[target] = channel
        return channel

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method
        if self._is_leader() or not method.startswith(FORWARDED_SERVICES):
            return await continuation(details)
        already = any(k == FORWARDED for k, _ in (details.invocation_metadata or ()))
        return grpc.unary_unary_rpc_method_handler(self._forwarder(method, already))

    def _forwarder(self, method: str, already: bool) -> Callable[[bytes, Any], Awaitable[bytes]]:
        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            target = self._leader_target()
            if already or not target:
                why = "no leader is elected yet" if not target else "leadership is moving"
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, f"this controller replica is not the leader: {why}"
                )
            remaining = context.time_remaining()
            timeout = self._timeout if remaining is None else max(0.05, min(self._timeout, remaining))
            call = self._channel(target).unary_unary(method)
            try:
                reply: bytes = await call(request, timeout=timeout, metadata=((FORWARDED, "1"),))
            except grpc.aio.AioRpcError as err:
                # The leader's status, message and trailing metadata (the error details the agent
                # reads its CNI code from), passed on as they came; abort takes the metadata as a
                # tuple of pairs, not grpc.aio's Metadata (a TypeError there lost all three).
                await context.abort(err.code(), err.details() or "", tuple(err.trailing_metadata() or ()))
                raise  # unreachable
            self.forwarded += 1
            return reply

        return forward

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
