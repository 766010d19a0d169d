"""Service addresses: the one syntax every server listens on and every client dials.

Owns ``HOST:PORT`` and ``unix:PATH`` (also ``unix://PATH``), their validation, and the
controller's default address. The default is a unix socket (mode 0600, see
``grpc_server.start_server``): the controller's API allocates and releases any pod's
addresses and deletes pools, so on one machine only root may reach it. Plain TCP has no
authentication (mutual TLS is for the cluster mode, later) and needs an explicit opt-in
(the controller's ``--insecure-tcp``). No grpc import here, so settings stay cheap to load.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_CONTROLLER = "unix:/run/spiderpool/controller.sock"
MAX_PORT = 65535


def parse_listen(address: str, *, allow_port_zero: bool = False) -> str:
    """Accept ``HOST:PORT`` or ``unix:PATH`` (also ``unix://PATH``) and return a gRPC target.

    The port must be a decimal from 1 to 65535: gRPC binds a port it cannot use (99999)
    to a random free one, where nobody would find the server. Port 0 (a free port the
    kernel picks, read back from the bound address) only where ``allow_port_zero`` says
    the caller reports the port it got.
    """
    if address.startswith("unix:"):
        path = address.removeprefix("unix:").removeprefix("//")
        if not path:
            raise ValueError(f"address {address!r} has no socket path: expected unix:PATH")
        return "unix:" + path
    host, colon, port = address.rpartition(":")
    if not colon or not host:
        raise ValueError(f"address {address!r} is neither HOST:PORT nor unix:PATH")
    if not (port.isascii() and port.isdigit()) or int(port) > MAX_PORT:
        raise ValueError(f"address {address!r}: port {port!r} is not a number from 1 to {MAX_PORT}")
    if int(port) == 0 and not allow_port_zero:
        raise ValueError(
            f"address {address!r}: port 0 would bind a random free port; give a port from 1 to {MAX_PORT}"
        )
    return address


def unix_path(target: str) -> Path | None:
    """The socket path of a ``unix:PATH`` target, None for TCP."""
    return Path(target.removeprefix("unix:")) if target.startswith("unix:") else None
