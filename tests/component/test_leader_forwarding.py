"""A standby replica hands the leader's answer back unchanged, its error status and details included.

Two real gRPC servers on unix sockets: the "leader" answers IpamService/Allocate with FAILED_PRECONDITION
and a trailing ``grpc-status-details-bin`` (what the agent reads the CNI code from); the "standby" serves
only the LeaderForwarding interceptor. An Allocate sent to the standby gets the leader's code, message and
details (it once got UNKNOWN: the interceptor handed the leader's trailing metadata to ``abort`` in a type
it refuses), and a success is forwarded byte for byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from spiderpool_controller.grpcapi.leader_forwarding import LeaderForwarding

METHOD = "/spiderpool.controller.v1.IpamService/Allocate"
DETAILS = b"\x08\x09\x12\x04why!"  # any bytes: forwarded as they are


async def leader_allocate(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == b"fail":
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION, "no IPv6 pool", (("grpc-status-details-bin", DETAILS),)
        )
    return b"ok:" + request


@pytest.fixture
async def standby(tmp_path: Path) -> AsyncIterator[str]:
    leader = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "spiderpool.controller.v1.IpamService",
        {"Allocate": grpc.unary_unary_rpc_method_handler(leader_allocate)},
    )
    leader.add_generic_rpc_handlers((handler,))
    leader.add_insecure_port(f"unix:{tmp_path / 'leader.sock'}")
    forwarding = LeaderForwarding(
        lambda: False, lambda: f"unix:{tmp_path / 'leader.sock'}", grpc.aio.insecure_channel
    )
    server = grpc.aio.server(interceptors=[forwarding])
    server.add_insecure_port(f"unix:{tmp_path / 'standby.sock'}")
    await leader.start()
    await server.start()
    try:
        yield f"unix:{tmp_path / 'standby.sock'}"
    finally:
        await server.stop(0)
        await leader.stop(0)
        await forwarding.close()


async def test_the_leader_s_error_reaches_the_caller_unchanged(standby: str) -> None:
    async with grpc.aio.insecure_channel(standby) as channel:
        call = channel.unary_unary(METHOD)
        assert await call(b"x", timeout=10) == b"ok:x"
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call(b"fail", timeout=10)
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert failed.value.details() == "no IPv6 pool"
    assert dict(failed.value.trailing_metadata())["grpc-status-details-bin"] == DETAILS
