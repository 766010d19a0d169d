"""gRPC client channels to a ``HOST:PORT`` or ``unix:PATH`` address, for every client we ship.

Owns how spiderpoolctl (sync) and the agent (asyncio) reach the controller: one address
syntax, the same one the servers listen on (``addresses.parse_listen``), and channel
options that notice a restarted peer quickly (short reconnect backoff) and a dead one
(keepalive). Calls on these channels should fail fast (no wait-for-ready) and carry a
deadline; the channel does not decide that for them.
"""

from __future__ import annotations

from typing import Any

import grpc

from spiderpool_common.addresses import parse_listen
from spiderpool_common.tls import TlsFiles, channel_credentials

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]


def channel_target(address: str) -> str:
    """The gRPC target for ``HOST:PORT``, ``unix:PATH`` or ``unix://PATH``; ValueError otherwise."""
    address = address.strip()
    if not address:
        raise ValueError("empty address: expected HOST:PORT or unix:PATH")
    return parse_listen(address)


def open_channel(address: str, tls: TlsFiles | None = None, server_name: str = "") -> grpc.aio.Channel:
    """An asyncio channel to ``address`` (see ``channel_target``): mutual TLS with ``tls``
    (``server_name``: the name the server's certificate carries, when the address is an IP),
    plain otherwise."""
    target = channel_target(address)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
    options: list[tuple[str, Any]] = list(CHANNEL_OPTIONS)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.aio.secure_channel(target, channel_credentials(tls), options=options)


def open_sync_channel(address: str, tls: TlsFiles | None = None, server_name: str = "") -> grpc.Channel:
    """A blocking channel to ``address``, for command-line tools (mutual TLS with ``tls``)."""
    target = channel_target(address)
    if tls is None:
        return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    options: list[tuple[str, Any]] = list(CHANNEL_OPTIONS)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, channel_credentials(tls), options=options)
