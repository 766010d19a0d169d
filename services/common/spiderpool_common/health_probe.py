"""``spiderpool-health``: the kubelet's probe of the agent and the controller (an exec probe).

Both services serve the standard gRPC health service (``grpc.health.v1.Health/Check``) on
their gRPC endpoint. The agent has only a unix socket, and the controller's TCP port takes
mutual TLS only, which the kubelet's own ``grpc:`` probe cannot speak (it has no client
certificate and does no TLS), so the chart runs this command in the container instead:
``spiderpool-health --socket PATH`` for the agent, ``spiderpool-health --address
HOST:PORT --tls-cert-file ... --tls-key-file ... --tls-ca-file ... --tls-server-name NAME``
for the controller (with the certificate the controller itself presents to its peers).

It runs every few seconds on every node, so it stays cheap: no grpcio (~80 ms to import),
one unary call through the shims' HTTP/2 client (``spiderpool_cni.h2unary``) and the
protobuf wire helpers. Exit 0 when the service answers SERVING; 1 with one line on stderr
otherwise (unreachable, TLS refused, not serving, no answer within ``--timeout``).
"""

from __future__ import annotations

import argparse
import sys

from spiderpool_cni import h2unary, wire

CHECK = "/grpc.health.v1.Health/Check"
SERVING = 1
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


class ProbeFailed(Exception):
    """The service is not healthy, or could not be asked."""


def check_request(service: str) -> bytes:
    """A HealthCheckRequest: field 1, the service name (empty: the server as a whole)."""
    raw = service.encode()
    return b"\x0a" + wire.encode_varint(len(raw)) + raw if raw else b""


def serving_status(body: bytes) -> int:
    """The status of a HealthCheckResponse (field 1, an enum; absent means UNKNOWN)."""
    status = 0
    for number, wire_type, value in wire.iter_fields(body):
        if number == 1 and wire_type == 0 and isinstance(value, int):
            status = value
    return status


def _outcome(result: tuple[int, str, bytes, bytes], where: str) -> None:
    code, message, _details, body = result
    if code != 0:
        raise ProbeFailed(f"{where}: gRPC status {code}: {message}")
    status = serving_status(body)
    if status != SERVING:
        raise ProbeFailed(f"{where}: {STATUS_NAMES.get(status, status)}")


def probe_socket(path: str, service: str = "", timeout: float = 2.0) -> None:
    try:
        result = h2unary.unary_call(path, CHECK, check_request(service), timeout)
    except h2unary.CallError as exc:
        raise ProbeFailed(f"unix:{path}: {exc}") from None
    _outcome(result, f"unix:{path}")


def probe_tls(
    address: str, files: tuple[str, str, str], server_name: str, service: str = "", timeout: float = 2.0
) -> None:
    cert, key, ca = files
    import socket  # noqa: PLC0415  (only the TCP probe needs them; the agent's probe runs every few seconds)
    import ssl  # noqa: PLC0415

    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        context.load_cert_chain(cert, key)
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host, int(port)), timeout=timeout)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise ProbeFailed(f"{address}: {exc}") from None
    try:
        with context.wrap_socket(raw, server_hostname=server_name or host) as tls:
            result = h2unary.call_on(
                tls, CHECK, check_request(service), timeout, authority=server_name or host
            )
    except (OSError, ssl.SSLError, h2unary.CallError) as exc:
        raise ProbeFailed(f"{address}: {exc}") from None
    finally:
        raw.close()
    _outcome(result, address)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spiderpool-health", description="Probe a spiderpool service's gRPC health (exit 0: SERVING)."
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", help="the agent's unix socket")
    where.add_argument("--address", help="HOST:PORT of a controller serving mutual TLS")
    parser.add_argument("--tls-cert-file", default="", help="client certificate (with --address)")
    parser.add_argument("--tls-key-file", default="", help="its private key")
    parser.add_argument("--tls-ca-file", default="", help="CA of the server's certificate")
    parser.add_argument("--tls-server-name", default="", help="the name the server's certificate carries")
    parser.add_argument("--service", default="", help="service name to ask about (default: the server)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.socket:
            probe_socket(args.socket, args.service, args.timeout)
        else:
            files = (args.tls_cert_file, args.tls_key_file, args.tls_ca_file)
            if not all(files):
                parser.error("--address needs --tls-cert-file, --tls-key-file and --tls-ca-file")
            probe_tls(args.address, files, args.tls_server_name, args.service, args.timeout)
    except ProbeFailed as exc:
        print(f"spiderpool-health: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
