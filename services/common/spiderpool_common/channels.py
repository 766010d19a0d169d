"""gRPC client channels to a ``HOST:PORT`` or ``unix:PATH`` address, for every client we ship.

Owns how spiderpoolctl (sync) and the agent (asyncio) reach the controller: one address
syntax, the same one the servers listen on (``addresses.parse_listen``), and channel
options that notice a restarted peer quickly (short reconnect backoff) and a dead one
(keepalive). Calls on these channels should fail fast (no wait-for-ready) and carry a
deadline; the channel does not decide that for them.
"""

from __future__ import annotations

import grpc

from spiderpool_common.addresses import parse_listen

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


def open_channel(address: str) -> grpc.aio.Channel:
    """An insecure asyncio channel to ``address`` (see ``channel_target``)."""
    return grpc.aio.insecure_channel(channel_target(address), options=CHANNEL_OPTIONS)


def open_sync_channel(address: str) -> grpc.Channel:
    """An insecure blocking channel to ``address``, for command-line tools."""
    return grpc.insecure_channel(channel_target(address), options=CHANNEL_OPTIONS)
