"""Child process for the logging test: grpcio and asyncio log through the stdlib, once each.

Run as ``python stdlib_log_emitter.py SOCKET``. It configures logging as the services do
(``configure_logging``, JSON on stderr), binds a request-like key to the log context, then
makes grpcio's aio server log through its ``grpc._cython.cygrpc`` logger (a servicer that
raises) and asyncio through its ``asyncio`` logger (an exception handed to the loop).
"""

# ruff: noqa: I001  (the service package first, before grpc loads, as the services' entry points do)
from __future__ import annotations

import asyncio
import sys

import spiderpool_agent  # noqa: F401  (first, as in a service: grpc's C-core verbosity set)
import grpc
import structlog
from spiderpool_common.logging import configure_logging


async def boom(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise RuntimeError("servicer bug")


async def main(socket_path: str) -> None:
    configure_logging("info", "json")
    structlog.contextvars.bind_contextvars(container_id="ctr-9")
    handler = grpc.method_handlers_generic_handler(
        "test.Logging", {"Boom": grpc.unary_unary_rpc_method_handler(boom)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix:{socket_path}")
    await server.start()
    async with grpc.aio.insecure_channel(f"unix:{socket_path}") as channel:
        try:
            await channel.unary_unary("/test.Logging/Boom")(b"", timeout=10)
        except grpc.aio.AioRpcError:
            pass
    await server.stop(None)
    asyncio.get_running_loop().call_exception_handler({"message": "loop_trouble"})


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
