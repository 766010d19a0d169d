"""A minimal gRPC unary client: HTTP/2 with prior knowledge over a unix socket.

The shims make exactly one unary call per process, and importing grpcio would cost
~80 ms of a CNI call whose floor is ~7 ms of interpreter start, so this module speaks
the wire protocol itself (RFC 9113 framing, RFC 7541 header compression via ``hpack``,
gRPC's length-prefixed messages and trailers as in grpc/doc/PROTOCOL-HTTP2.md):

- one connection, one stream (id 1): preface + SETTINGS + connection WINDOW_UPDATE +
  HEADERS + DATA(END_STREAM), written together before reading anything;
- flow control both ways: request bodies wait for the server's windows, response
  bodies of any size are accepted because the receive windows are raised at start and
  replenished as data arrives;
- SETTINGS are acknowledged, PINGs answered, GOAWAY honoured (the call continues when
  the server says it will still process stream 1), RST_STREAM and an early close end the
  call as ``ConnectionLost``;
- the deadline is absolute: every blocking socket operation gets the time left, and the
  server learns it through ``grpc-timeout``.

``unary_call`` returns the gRPC outcome ``(status, message, details_bin, body)`` for any
answer the server gave, and raises a ``CallError`` subclass when no answer came.
"""

import _socket
import time

from spiderpool_cni import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 section 6).
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

# Settings identifiers (section 6.5.2).
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5

DEFAULT_WINDOW = 65535
DEFAULT_MAX_FRAME = 16384
RECV_WINDOW = 1 << 24  # what we let the server send before we acknowledge (16 MiB)
RECV_MAX_FRAME = 1 << 20  # fewer, larger DATA frames for big results
MAX_RESPONSE = 256 << 20  # refuse to buffer more than this (a sane agent sends kilobytes)
STREAM = 1

# gRPC codes used here (grpc/doc/statuscodes.md).
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
INTERNAL = 13

# HTTP status to gRPC status when a response carries no grpc-status
# (grpc/doc/http-grpc-status-mapping.md).
_HTTP_TO_GRPC = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}

_RST_NAMES = {
    0: "NO_ERROR",
    1: "PROTOCOL_ERROR",
    2: "INTERNAL_ERROR",
    3: "FLOW_CONTROL_ERROR",
    5: "STREAM_CLOSED",
    6: "FRAME_SIZE_ERROR",
    7: "REFUSED_STREAM",
    8: "CANCEL",
    9: "COMPRESSION_ERROR",
    11: "ENHANCE_YOUR_CALM",
}


class CallError(Exception):
    """No gRPC answer was obtained; the message says why, for the CNI error ``msg``."""


class Unreachable(CallError):
    """The socket could not be connected (missing file, refused, permission)."""


class DeadlineExceeded(CallError):
    """The deadline passed before the server answered.

    Also raised when the server itself reports DEADLINE_EXCEEDED (without details) at our
    deadline: it enforces the ``grpc-timeout`` we send, and whether its status or our own
    timer comes first is a race; both are the same event to the caller."""


class ConnectionLost(CallError):
    """The server closed, reset or refused the call, or broke the protocol, mid-call."""


class Clock:
    """The time source for the deadline (``time.monotonic``); a test passes a subclass it moves.

    A class rather than a ``Callable[[], float]`` parameter: naming that type needs
    ``typing`` or ``collections.abc``, which the shim never loads (start-up cost)."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()


MONOTONIC = Clock()


def frame(frame_type: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame: 9-byte header (24-bit length, type, flags, stream id) and payload."""
    n = len(payload)
    return (
        bytes((n >> 16, (n >> 8) & 0xFF, n & 0xFF, frame_type, flags)) + stream.to_bytes(4, "big") + payload
    )


def grpc_timeout(seconds: float) -> str:
    """The ``grpc-timeout`` value: at most 8 digits and a unit (milliseconds, else seconds)."""
    millis = max(1, int(seconds * 1000 + 0.999))
    if millis < 100_000_000:
        return f"{millis}m"
    return f"{min(int(seconds), 99_999_999)}S"


def percent_decode(raw: bytes) -> str:
    """Undo gRPC's percent-encoding of ``grpc-message``; malformed escapes stay literal."""
    if b"%" not in raw:
        return raw.decode("utf-8", "replace")
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        byte = raw[i]
        if byte == 0x25 and i + 2 < n and _is_hex(raw[i + 1]) and _is_hex(raw[i + 2]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(byte)
            i += 1
    return out.decode("utf-8", "replace")


def _is_hex(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x46 or 0x61 <= byte <= 0x66


def decode_details_bin(raw: bytes) -> bytes:
    """Decode a ``-bin`` metadata value: base64, padding optional; garbage yields b""."""
    import binascii  # noqa: PLC0415  (C module; only error answers carry details)

    raw = raw.strip()
    try:
        return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        return b""


def unary_call(
    socket_path: str,
    method: str,
    message: bytes,
    timeout: float,
    *,
    authority: str = "localhost",
    clock: Clock = MONOTONIC,
) -> tuple[int, str, bytes, bytes]:
    """Call ``method`` (``/package.Service/Method``) with one serialized request message.

    Returns ``(grpc status code, message, grpc-status-details-bin decoded, response
    message)``; raises ``Unreachable``, ``DeadlineExceeded`` or ``ConnectionLost``.
    """
    deadline = clock.now() + timeout
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(max(timeout, 0.001))
        try:
            sock.connect(socket_path)
        except TimeoutError:
            raise DeadlineExceeded(f"timed out connecting after {timeout:g}s") from None
        except OSError as exc:
            raise Unreachable(str(exc)) from None
        return _Exchange(sock, deadline, timeout, clock).run(method, message, authority)
    finally:
        sock.close()


def call_on(
    sock: _socket.socket, method: str, message: bytes, timeout: float, *, authority: str = "localhost"
) -> tuple[int, str, bytes, bytes]:
    """``unary_call`` over a socket the caller connected (a TLS socket to a TCP server, for
    ``spiderpool-health``); the caller closes it. Not used by the shims."""
    return _Exchange(sock, MONOTONIC.now() + timeout, timeout, MONOTONIC).run(method, message, authority)


class _Exchange:
    """The state of the one stream and its connection while the call is in flight."""

    def __init__(self, sock: _socket.socket, deadline: float, timeout: float, clock: Clock) -> None:
        self.sock = sock
        self.deadline = deadline
        self.clock = clock
        # How early a server's DEADLINE_EXCEEDED may come and still be our deadline (its
        # timer and ours are set from the same instant, give or take scheduling).
        self.deadline_slack = 0.01 + timeout / 20
        self.inbuf = bytearray()
        self.out = bytearray()
        self.decoder = hpack.Decoder()
        self.conn_send_window = DEFAULT_WINDOW
        self.stream_send_window = DEFAULT_WINDOW
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = DEFAULT_MAX_FRAME
        self.pending = memoryview(b"")
        self.conn_unacked = 0
        self.stream_unacked = 0
        self.fragment: bytearray | None = None
        self.fragment_end_stream = False
        self.blocks: list[list[tuple[bytes, bytes]]] = []
        self.body = bytearray()
        self.ended = False
        self.write_error = ""

    # -- sending -------------------------------------------------------------------------

    def _remaining(self) -> float:
        left = self.deadline - self.clock.now()
        if left <= 0:
            raise DeadlineExceeded("deadline exceeded waiting for the agent")
        return left

    def _flush(self) -> None:
        if not self.out:
            return
        if self.write_error:
            self.out.clear()
            return
        self.sock.settimeout(self._remaining())
        try:
            self.sock.sendall(self.out)
        except TimeoutError:
            raise DeadlineExceeded("deadline exceeded sending the request") from None
        except OSError as exc:
            # The peer stopped reading (closed, or answered early and shut down): what it
            # sent before may still be in our receive buffer, so keep reading; an end of
            # file before the trailers then reports this error.
            self.write_error = str(exc)
            self.pending = memoryview(b"")
        self.out.clear()

    def _queue_data(self) -> None:
        """Queue as much of the request body as the server's windows allow."""
        while self.pending and not self.ended:
            size = min(len(self.pending), self.conn_send_window, self.stream_send_window, self.peer_max_frame)
            if size <= 0:
                return
            chunk = self.pending[:size]
            self.pending = self.pending[size:]
            flags = 0 if self.pending else FLAG_END_STREAM
            self.out += frame(DATA, flags, STREAM, bytes(chunk))
            self.conn_send_window -= size
            self.stream_send_window -= size

    def run(self, method: str, message: bytes, authority: str) -> tuple[int, str, bytes, bytes]:
        """Send the request, read until the stream ends, and return the gRPC outcome."""
        block = hpack.encode(
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", method.encode("ascii")),
                (b":authority", authority.encode("ascii")),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                (b"grpc-timeout", grpc_timeout(self._remaining()).encode("ascii")),
                (b"user-agent", b"spiderpool-cni-shim"),
            ]
        )
        settings = (
            SETTINGS_ENABLE_PUSH.to_bytes(2, "big") + (0).to_bytes(4, "big")
            + SETTINGS_INITIAL_WINDOW_SIZE.to_bytes(2, "big") + RECV_WINDOW.to_bytes(4, "big")
            + SETTINGS_MAX_FRAME_SIZE.to_bytes(2, "big") + RECV_MAX_FRAME.to_bytes(4, "big")
        )  # fmt: skip
        self.out += PREFACE
        self.out += frame(SETTINGS, 0, 0, settings)
        self.out += frame(WINDOW_UPDATE, 0, 0, (RECV_WINDOW - DEFAULT_WINDOW).to_bytes(4, "big"))
        # The server's SETTINGS have not arrived: its frame size limit is the default.
        first = block[:DEFAULT_MAX_FRAME]
        rest = block[DEFAULT_MAX_FRAME:]
        self.out += frame(HEADERS, 0 if rest else FLAG_END_HEADERS, STREAM, first)
        while rest:
            piece, rest = rest[:DEFAULT_MAX_FRAME], rest[DEFAULT_MAX_FRAME:]
            self.out += frame(CONTINUATION, 0 if rest else FLAG_END_HEADERS, STREAM, piece)
        self.pending = memoryview(b"\x00" + len(message).to_bytes(4, "big") + message)
        self._queue_data()
        self._flush()
        while True:
            frame_type, flags, stream, payload = self._read_frame()
            self._handle(frame_type, flags, stream, payload)
            if self.ended:
                break
            self._queue_data()
            self._flush()
        return self._outcome()

    # -- receiving -----------------------------------------------------------------------

    def _recv(self) -> None:
        self.sock.settimeout(self._remaining())
        try:
            data = self.sock.recv(262144)
        except TimeoutError:
            raise DeadlineExceeded("deadline exceeded waiting for the agent's answer") from None
        except OSError as exc:
            raise ConnectionLost(f"the agent closed the connection before answering: {exc}") from None
        if not data:
            cause = f" ({self.write_error})" if self.write_error else ""
            raise ConnectionLost(f"the agent closed the connection before answering{cause}")
        self.inbuf += data

    def _read_frame(self) -> tuple[int, int, int, bytes]:
        while len(self.inbuf) < 9:
            self._recv()
        head = self.inbuf
        length = (head[0] << 16) | (head[1] << 8) | head[2]
        if length > RECV_MAX_FRAME:
            raise ConnectionLost(f"protocol error: {length}-byte frame above the advertised maximum")
        while len(self.inbuf) < 9 + length:
            self._recv()
        frame_type = head[3]
        flags = head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        payload = bytes(self.inbuf[9 : 9 + length])
        del self.inbuf[: 9 + length]
        return frame_type, flags, stream, payload

    def _handle(self, frame_type: int, flags: int, stream: int, payload: bytes) -> None:
        if self.fragment is not None and frame_type != CONTINUATION:
            raise ConnectionLost("protocol error: header block interrupted before END_HEADERS")
        if frame_type == DATA:
            self._on_data(flags, stream, payload)
        elif frame_type == HEADERS:
            self._on_headers(flags, stream, payload)
        elif frame_type == CONTINUATION:
            if self.fragment is None or stream != STREAM:
                raise ConnectionLost("protocol error: unexpected CONTINUATION")
            self.fragment += payload
            if flags & FLAG_END_HEADERS:
                self._end_block()
        elif frame_type == SETTINGS:
            self._on_settings(flags, stream, payload)
        elif frame_type == PING:
            if len(payload) != 8:
                raise ConnectionLost("protocol error: PING payload is not 8 bytes")
            if not flags & FLAG_ACK:
                self.out += frame(PING, FLAG_ACK, 0, payload)
        elif frame_type == WINDOW_UPDATE:
            if len(payload) != 4:
                raise ConnectionLost("protocol error: WINDOW_UPDATE payload is not 4 bytes")
            increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
            if stream == 0:
                self.conn_send_window += increment
            elif stream == STREAM:
                self.stream_send_window += increment
        elif frame_type == RST_STREAM:
            if stream == STREAM:
                code = int.from_bytes(payload[:4], "big")
                name = _RST_NAMES.get(code, str(code))
                raise ConnectionLost(f"the agent reset the call (RST_STREAM {name})")
        elif frame_type == GOAWAY:
            self._on_goaway(payload)
        elif frame_type == PUSH_PROMISE:
            raise ConnectionLost("protocol error: PUSH_PROMISE although push is disabled")
        # PRIORITY and unknown frame types are ignored (section 5.5).

    def _on_data(self, flags: int, stream: int, payload: bytes) -> None:
        if stream != STREAM:
            raise ConnectionLost(f"protocol error: DATA on stream {stream}")
        if not self.blocks:
            raise ConnectionLost("protocol error: DATA before response HEADERS")
        length = len(payload)
        data = payload
        if flags & FLAG_PADDED:
            if not payload or payload[0] >= length:
                raise ConnectionLost("protocol error: bad DATA padding")
            data = payload[1 : length - payload[0]]
        self.body += data
        if len(self.body) > MAX_RESPONSE:
            raise ConnectionLost(f"the agent's answer exceeds {MAX_RESPONSE} bytes")
        if flags & FLAG_END_STREAM:
            self.ended = True
            return
        # Give back what was consumed once half a window is used (section 6.9).
        self.conn_unacked += length
        self.stream_unacked += length
        if self.conn_unacked >= RECV_WINDOW // 2:
            self.out += frame(WINDOW_UPDATE, 0, 0, self.conn_unacked.to_bytes(4, "big"))
            self.conn_unacked = 0
        if self.stream_unacked >= RECV_WINDOW // 2:
            self.out += frame(WINDOW_UPDATE, 0, STREAM, self.stream_unacked.to_bytes(4, "big"))
            self.stream_unacked = 0

    def _on_headers(self, flags: int, stream: int, payload: bytes) -> None:
        if stream != STREAM:
            raise ConnectionLost(f"protocol error: HEADERS on stream {stream}")
        start = 0
        end = len(payload)
        if flags & FLAG_PADDED:
            if not payload:
                raise ConnectionLost("protocol error: bad HEADERS padding")
            end -= payload[0]
            start = 1
        if flags & FLAG_PRIORITY:
            start += 5
        if start > end:
            raise ConnectionLost("protocol error: bad HEADERS padding")
        self.fragment = bytearray(payload[start:end])
        self.fragment_end_stream = bool(flags & FLAG_END_STREAM)
        if flags & FLAG_END_HEADERS:
            self._end_block()

    def _end_block(self) -> None:
        block = bytes(self.fragment or b"")
        self.fragment = None
        try:
            self.blocks.append(self.decoder.decode(block))
        except hpack.HpackError as exc:
            raise ConnectionLost(f"protocol error: bad header block: {exc}") from None
        if self.fragment_end_stream:
            self.ended = True

    def _on_settings(self, flags: int, stream: int, payload: bytes) -> None:
        if stream != 0 or len(payload) % 6:
            raise ConnectionLost("protocol error: malformed SETTINGS")
        if flags & FLAG_ACK:
            return
        for i in range(0, len(payload), 6):
            ident = int.from_bytes(payload[i : i + 2], "big")
            value = int.from_bytes(payload[i + 2 : i + 6], "big")
            if ident == SETTINGS_INITIAL_WINDOW_SIZE:
                self.stream_send_window += value - self.peer_initial_window
                self.peer_initial_window = value
            elif ident == SETTINGS_MAX_FRAME_SIZE:
                self.peer_max_frame = max(DEFAULT_MAX_FRAME, min(value, (1 << 24) - 1))
        self.out += frame(SETTINGS, FLAG_ACK, 0)

    def _on_goaway(self, payload: bytes) -> None:
        if len(payload) < 8:
            raise ConnectionLost("protocol error: short GOAWAY")
        last_stream = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
        if last_stream < STREAM:
            code = int.from_bytes(payload[4:8], "big")
            debug = payload[8:].decode("utf-8", "replace")
            name = _RST_NAMES.get(code, str(code))
            raise ConnectionLost(f"the agent refused the call (GOAWAY {name}{': ' + debug if debug else ''})")
        # The server will still finish stream 1: keep reading.

    # -- outcome -------------------------------------------------------------------------

    def _outcome(self) -> tuple[int, str, bytes, bytes]:
        merged: dict[bytes, bytes] = {}
        for block in self.blocks:
            for name, value in block:
                merged[name] = value
        http_status = b""
        for name, value in self.blocks[0] if self.blocks else ():
            if name == b":status":
                http_status = value
        message = percent_decode(merged.get(b"grpc-message", b""))
        raw_details = merged.get(b"grpc-status-details-bin")
        details = decode_details_bin(raw_details) if raw_details else b""
        raw_status = merged.get(b"grpc-status")
        if raw_status is None:
            if http_status != b"200":
                code = _HTTP_TO_GRPC.get(int(http_status) if http_status.isdigit() else 0, UNKNOWN)
                return code, f"HTTP status {http_status.decode('ascii', 'replace')} from the agent", b"", b""
            return INTERNAL, "the agent ended the call without a grpc-status", b"", b""
        if not raw_status.isdigit():
            return INTERNAL, f"malformed grpc-status {raw_status!r}", b"", b""
        code = int(raw_status)
        at_deadline = self.clock.now() >= self.deadline - self.deadline_slack
        if code == DEADLINE_EXCEEDED and not details and at_deadline:
            raise DeadlineExceeded(f"gRPC status DEADLINE_EXCEEDED: {message}")
        if code != 0:
            return code, message, details, b""
        body = self.body
        if len(body) < 5:
            return INTERNAL, "the agent answered OK without a response message", b"", b""
        if body[0] != 0:
            return INTERNAL, "the agent sent a compressed message, which the shim does not accept", b"", b""
        size = int.from_bytes(body[1:5], "big")
        if len(body) != 5 + size:
            return (
                INTERNAL,
                f"response message framing mismatch ({len(body) - 5} bytes, prefix says {size})",
                b"",
                b"",
            )
        return 0, message, b"", bytes(body[5:])
