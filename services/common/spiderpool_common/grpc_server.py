"""Wiring shared by both gRPC servers: listen addresses, reflection, health, error translation.

Servicer methods are wrapped by ``translate_errors``, the one place per service where a
request enters and leaves:

- the log context: ``rpc`` (the method name) and whatever the servicer's ``log_fields``
  finds in the request (``pod`` as namespace/name, ``container_id``, ``ifname``,
  ``network``) are bound to structlog's contextvars for the call and reset after it, so
  every line logged while serving it carries them;
- errors: a ``SpiderpoolError`` is logged once (``request_failed``, with its reason) and
  leaves as a gRPC status carrying an ``ErrorInfo`` (the one translation, in
  ``grpc_errors.to_grpc_status``); anything unexpected is logged with its traceback and
  answered as INTERNAL, never as a traceback.

Every server also decodes requests itself (``DecodeRequests``, installed by
``start_server`` in front of any other interceptor): grpcio answers a body that is not the
method's protobuf message with UNKNOWN ("Unexpected DecodeError") and logs a traceback;
here it is INVALID_ARGUMENT with the CNI code 6 ("failed to decode content") in the
``ErrorInfo``, logged as one warning, on every service (health and reflection included).
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from spiderpool_cni import codes

from spiderpool_common import unix_socket
from spiderpool_common.addresses import parse_listen, unix_path
from spiderpool_common.errors import CniError, SpiderpoolError
from spiderpool_common.grpc_errors import to_grpc_status

log = structlog.get_logger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]
# A servicer's ``log_fields(request)``: the request's log keys; empty values are left out.
LogFields = Callable[[Any], Mapping[str, str]]


def request_log_fields(servicer: object, rpc: str, request: object) -> dict[str, str]:
    """``rpc`` plus the non-empty fields the servicer's ``log_fields`` (if any) finds in ``request``."""
    fields = {"rpc": rpc}
    log_fields: LogFields | None = getattr(servicer, "log_fields", None)
    if log_fields is not None:
        fields.update((k, v) for k, v in log_fields(request).items() if v)
    return fields


def translate_errors(method: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Bind the request's log context; turn domain errors into gRPC statuses with ErrorInfo."""
    rpc = method.__name__

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        tokens = structlog.contextvars.bind_contextvars(**request_log_fields(self, rpc, request))
        try:
            return await method(self, request, context)
        except SpiderpoolError as err:
            extra = {"details": err.details} if err.details else {}
            log.log(
                err.log_level,
                "request_failed",
                reason=err.reason,
                cni_code=err.cni_code,
                error=err.message,
                **extra,
            )
            await context.abort_with_status(rpc_status.to_status(to_grpc_status(err)))
            raise  # unreachable: abort raises
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            log.exception("request_crashed")
            internal = SpiderpoolError(f"internal error: {type(exc).__name__}: {exc}")
            await context.abort_with_status(rpc_status.to_status(to_grpc_status(internal)))
            raise
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    return wrapper


Deserializer = Callable[[bytes], Any]


class DecodeRequests(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Decode each request message here, so an undecodable one is INVALID_ARGUMENT (module docstring)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler  # an unknown method, or one that takes raw bytes (leader forwarding)
        decode = _decoder(details.method, handler.request_deserializer)
        serialize = handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary_unary(handler.unary_unary, decode), response_serializer=serialize
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _unary_stream(handler.unary_stream, decode), response_serializer=serialize
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _stream_unary(handler.stream_unary, decode), response_serializer=serialize
            )
        return grpc.stream_stream_rpc_method_handler(
            _stream_stream(handler.stream_stream, decode), response_serializer=serialize
        )


Decode = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]]


def _decoder(method: str, deserialize: Deserializer) -> Decode:
    message = getattr(deserialize, "__self__", None)  # protobuf's bound Message.FromString
    type_name = getattr(getattr(message, "DESCRIPTOR", None), "full_name", "") or "request message"

    async def decode(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            return deserialize(raw)
        except Exception as exc:
            log.warning("request_malformed", rpc=method, size=len(raw), error=f"{type(exc).__name__}: {exc}")
            err = CniError(
                codes.DECODING_FAILURE,
                f"the request is not a valid {type_name}: {type(exc).__name__}: {exc}",
            )
            await context.abort_with_status(rpc_status.to_status(to_grpc_status(err)))
            raise  # unreachable: abort raises

    return decode


def _unary_unary(behavior: Callable[..., Awaitable[Any]], decode: Decode) -> Callable[..., Awaitable[Any]]:
    async def call(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        return await behavior(await decode(raw, context), context)

    return call


async def _relay(answer: Any) -> AsyncIterator[Any]:
    """The items of a streaming answer: an async generator's, or none from a coroutine that
    writes with ``context.write``."""
    if inspect.isasyncgen(answer):
        async for item in answer:
            yield item
    else:
        await answer


def _decoded(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext, decode: Decode) -> Any:
    async def each() -> AsyncIterator[Any]:
        async for raw in requests:
            yield await decode(raw, context)

    return each()


# grpc.aio tells a handler's style by its function type (coroutine function: one answer or
# context.write; async generator function: a stream), so each wrapper has the style it serves.
def _unary_stream(behavior: Callable[..., Any], decode: Decode) -> Callable[..., AsyncIterator[Any]]:
    async def call(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for item in _relay(behavior(await decode(raw, context), context)):
            yield item

    return call


def _stream_unary(behavior: Callable[..., Awaitable[Any]], decode: Decode) -> Callable[..., Awaitable[Any]]:
    async def call(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
        return await behavior(_decoded(requests, context, decode), context)

    return call


def _stream_stream(behavior: Callable[..., Any], decode: Decode) -> Callable[..., AsyncIterator[Any]]:
    async def call(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for item in _relay(behavior(_decoded(requests, context, decode), context)):
            yield item

    return call


def claim_listen(listen: str) -> str:
    """Parse ``listen`` and, for a unix socket, make its path free (``unix_socket.claim``):
    a server may call it early, to refuse before it starts anything; ``start_server``
    claims again right before it binds. Returns the gRPC target."""
    target = parse_listen(listen, allow_port_zero=True)
    sock = unix_path(target)
    if sock is not None:
        unix_socket.claim(sock)
    return target


async def start_server(
    listen: str,
    register: Callable[[grpc.aio.Server], Iterable[str]],
    *,
    socket_mode: int | None = None,
    credentials: grpc.ServerCredentials | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, str]:
    """Start a grpc.aio server with reflection and health; return it and its bound address.

    ``register`` adds the servicers and returns their full service names. A TCP port 0
    is resolved to the real port in the returned address. A unix socket path that a live
    process serves is refused (``unix_socket.SocketInUse``), a stale one replaced; with
    ``socket_mode`` the socket is created with that mode (bound under a matching umask,
    so it is never reachable with a wider one, not even between bind and chmod). With
    ``credentials`` a TCP port is served over TLS (``tls.ReloadingServerCredentials``).
    """
    target = claim_listen(listen)
    sock = unix_path(target)
    server = grpc.aio.server(
        options=[("grpc.so_reuseport", 0)], interceptors=[DecodeRequests(), *interceptors]
    )
    names = list(register(server))
    health_servicer = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    # grpc binds in add_insecure_port: the umask decides the socket file's mode at bind.
    umask = os.umask(0o777 & ~socket_mode) if sock is not None and socket_mode is not None else None
    try:
        if credentials is not None:
            port = server.add_secure_port(target, credentials)
        else:
            port = server.add_insecure_port(target)
    finally:
        if umask is not None:
            os.umask(umask)
    if sock is None and port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    if sock is not None and socket_mode is not None:
        os.chmod(sock, socket_mode)
    for name in ["", *names]:
        result = health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        if hasattr(result, "__await__"):
            await result
    bound = target if sock is not None else f"{target.rsplit(':', 1)[0]}:{port}"
    return server, bound
