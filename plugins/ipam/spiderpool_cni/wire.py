"""Protobuf wire encoding of the shims' two messages and of the gRPC error details.

The shims cannot afford the protobuf runtime (tens of milliseconds per CNI call), and
they need only: encode ``XxxRequest{CniCall call = 1}`` (proto/spiderpool/agent/v1/
cni.proto), decode ``XxxResponse{bytes result = 1}``, and decode the error a server
attaches in ``grpc-status-details-bin``: ``google.rpc.Status{code, message, details}``
whose ``google.protobuf.Any`` details may hold a ``google.rpc.ErrorInfo{reason, domain,
metadata}``. Decoders skip unknown fields, as protobuf requires, so the agent may add
fields without breaking installed shims.
"""


class WireError(ValueError):
    """Bytes that are not a valid encoding of the expected message."""


ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo"

_VARINT = 0
_I64 = 1
_LEN = 2
_I32 = 5


def encode_varint(value: int) -> bytes:
    """Base-128 varint; negative int32/int64 values use their 64-bit two's complement."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return encode_varint((number << 3) | _LEN) + encode_varint(len(payload)) + payload


def encode_cni_call(
    *,
    command: str = "",
    container_id: str = "",
    netns: str = "",
    ifname: str = "",
    args: str = "",
    path: str = "",
    config: bytes = b"",
    present: list[str] | tuple[str, ...] = (),
) -> bytes:
    """Encode a ``CniCall`` (proto3: empty scalars are omitted, as the runtime does)."""
    out = bytearray()
    for number, text in ((1, command), (2, container_id), (3, netns), (4, ifname), (5, args), (6, path)):
        if text:
            out += _field_bytes(number, text.encode("utf-8"))
    if config:
        out += _field_bytes(7, config)
    for name in present:
        out += _field_bytes(8, name.encode("utf-8"))
    return bytes(out)


def encode_request(call: bytes) -> bytes:
    """Wrap an encoded ``CniCall`` as field 1 of any of the CniService requests."""
    return _field_bytes(1, call)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read a varint at ``pos``; return (value, next position)."""
    value = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def iter_fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """Split a message into ``(field number, wire type, value)``; LEN values as bytes."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = decode_varint(data, pos)
        number = key >> 3
        wire_type = key & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire_type == _VARINT:
            value, pos = decode_varint(data, pos)
        elif wire_type == _LEN:
            length, pos = decode_varint(data, pos)
            if pos + length > end:
                raise WireError("length-delimited field runs past the message")
            value = data[pos : pos + length]
            pos += length
        elif wire_type == _I64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            value = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire_type == _I32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            value = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire_type}")
        fields.append((number, wire_type, value))
    return fields


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise WireError("expected a length-delimited string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"string field is not UTF-8: {exc}") from None


def decode_result(data: bytes) -> bytes:
    """The ``bytes result = 1`` of any CniService response (last occurrence wins)."""
    result = b""
    for number, _wire_type, value in iter_fields(data):
        if number == 1:
            if not isinstance(value, bytes):
                raise WireError("response field 1 is not length-delimited")
            result = value
    return result


def decode_error_info(data: bytes) -> tuple[str, str, dict[str, str]]:
    """Decode ``google.rpc.ErrorInfo`` into (reason, domain, metadata)."""
    reason = ""
    domain = ""
    metadata: dict[str, str] = {}
    for number, _wire_type, value in iter_fields(data):
        if number == 1:
            reason = _text(value)
        elif number == 2:
            domain = _text(value)
        elif number == 3:
            if not isinstance(value, bytes):
                raise WireError("map entry is not length-delimited")
            key = ""
            item = ""
            for entry_number, _entry_type, entry_value in iter_fields(value):
                if entry_number == 1:
                    key = _text(entry_value)
                elif entry_number == 2:
                    item = _text(entry_value)
            metadata[key] = item
    return reason, domain, metadata


class RpcStatus:
    """A decoded ``google.rpc.Status`` with its ``Any`` details as (type_url, value)."""

    __slots__ = ("code", "details", "message")

    def __init__(self, code: int, message: str, details: list[tuple[str, bytes]]) -> None:
        self.code = code
        self.message = message
        self.details = details

    def error_info(self) -> tuple[str, str, dict[str, str]] | None:
        """The first ``ErrorInfo`` detail, decoded, if the status carries one."""
        for type_url, value in self.details:
            if type_url == ERROR_INFO_TYPE_URL or type_url.endswith("/google.rpc.ErrorInfo"):
                return decode_error_info(value)
        return None


def decode_status(data: bytes) -> RpcStatus:
    """Decode the ``google.rpc.Status`` carried base64-encoded in ``grpc-status-details-bin``."""
    code = 0
    message = ""
    details: list[tuple[str, bytes]] = []
    for number, wire_type, value in iter_fields(data):
        if number == 1:
            if wire_type != _VARINT or not isinstance(value, int):
                raise WireError("Status.code is not a varint")
            code = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 2:
            message = _text(value)
        elif number == 3:
            if not isinstance(value, bytes):
                raise WireError("Status.details entry is not length-delimited")
            type_url = ""
            payload = b""
            for any_number, _any_type, any_value in iter_fields(value):
                if any_number == 1:
                    type_url = _text(any_value)
                elif any_number == 2:
                    if not isinstance(any_value, bytes):
                        raise WireError("Any.value is not length-delimited")
                    payload = any_value
            details.append((type_url, payload))
    return RpcStatus(code, message, details)
