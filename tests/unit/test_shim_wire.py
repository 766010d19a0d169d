"""The shims' protobuf wire code agrees with the real protobuf runtime, byte for byte.

``spiderpool_cni.wire`` encodes the CniCall request and decodes the response and the
``google.rpc.Status`` error details without the protobuf package; here the generated
classes parse what it writes and write what it parses.
"""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given
from hypothesis import strategies as st
from spiderpool.agent.v1 import cni_pb2
from spiderpool_cni import codes, wire
from spiderpool_common.errors import CniError, PoolExhausted
from spiderpool_common.grpc_errors import to_grpc_status

ENV_NAMES = ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"]

texts = st.text(max_size=80)


@given(
    command=texts,
    container_id=texts,
    netns=texts,
    ifname=texts,
    args=texts,
    path=texts,
    config=st.binary(max_size=2000),
    present=st.lists(st.sampled_from(ENV_NAMES), max_size=6),
)
def test_cni_call_encoding_parses_with_protobuf(
    command: str,
    container_id: str,
    netns: str,
    ifname: str,
    args: str,
    path: str,
    config: bytes,
    present: list[str],
) -> None:
    """Any CniCall the shim encodes is parsed by protobuf into the same fields, and serializes identically."""
    call = wire.encode_cni_call(
        command=command,
        container_id=container_id,
        netns=netns,
        ifname=ifname,
        args=args,
        path=path,
        config=config,
        present=present,
    )
    request = cni_pb2.IpamAddRequest.FromString(wire.encode_request(call))
    expected = cni_pb2.CniCall(
        command=command,
        container_id=container_id,
        netns=netns,
        ifname=ifname,
        args=args,
        path=path,
        config=config,
        present=present,
    )
    assert request.call == expected
    assert wire.encode_request(call) == cni_pb2.IpamAddRequest(call=expected).SerializeToString()


@given(st.binary(max_size=5000))
def test_response_result_decodes_what_protobuf_writes(result: bytes) -> None:
    """The result bytes of any response serialized by protobuf come back unchanged."""
    assert wire.decode_result(cni_pb2.CoordinatorAddResponse(result=result).SerializeToString()) == result


def test_unknown_fields_are_skipped() -> None:
    """Fields a newer agent might add (any wire type) do not disturb decoding."""
    data = (
        bytes((0x10, 0x96, 0x01))  # field 2 varint 150
        + bytes((0x19,)) + bytes(8)  # field 3 fixed64
        + bytes((0x25,)) + bytes(4)  # field 4 fixed32
        + cni_pb2.IpamAddResponse(result=b"ok").SerializeToString()
        + bytes((0x2A, 0x01, 0x41))  # field 5 bytes
    )  # fmt: skip
    assert wire.decode_result(data) == b"ok"


@pytest.mark.parametrize("data", [b"\x0a\x05ab", b"\x0a", b"\x80", b"\x0b", b"\x00"])
def test_malformed_messages_raise_wire_error(data: bytes) -> None:
    """Truncated fields, a dangling varint, group wire types and field 0 are rejected."""
    with pytest.raises(wire.WireError):
        wire.decode_result(data)


def test_status_from_to_grpc_status_decodes_with_error_info() -> None:
    """The server's own Status (grpc_errors.to_grpc_status) yields its code, message and ErrorInfo."""
    err = PoolExhausted("pool blue exhausted \u00e9", details="0 of 254 free")
    data = to_grpc_status(err).SerializeToString()
    status = wire.decode_status(data)
    assert (status.code, status.message) == (8, "pool blue exhausted \u00e9")
    info = status.error_info()
    assert info == (
        "POOL_EXHAUSTED",
        codes.ERROR_DOMAIN,
        {codes.META_CNI_CODE: str(codes.POOL_EXHAUSTED), codes.META_DETAILS: "0 of 254 free"},
    )


def test_error_info_is_found_among_other_details() -> None:
    """An ErrorInfo after other Any details is still found; a status without one has none."""
    other = any_pb2.Any(type_url="type.googleapis.com/google.rpc.RetryInfo", value=b"\x0a\x00")
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="R", domain="d", metadata={"k": "v", "": "empty key"}))
    status = wire.decode_status(
        status_pb2.Status(code=3, message="m", details=[other, info]).SerializeToString()
    )
    assert [url for url, _ in status.details] == [other.type_url, info.type_url]
    assert status.error_info() == ("R", "d", {"k": "v", "": "empty key"})
    bare = wire.decode_status(status_pb2.Status(code=14, details=[other]).SerializeToString())
    assert bare.error_info() is None


def test_negative_status_codes_decode_as_int32() -> None:
    """int32 fields written as 10-byte varints for negative values decode to the negative number."""
    assert wire.decode_status(status_pb2.Status(code=-5).SerializeToString()).code == -5


@given(
    cni_code=st.integers(min_value=1, max_value=999),
    message=st.text(max_size=200),
    details=st.text(max_size=200),
)
def test_any_cni_error_round_trips(cni_code: int, message: str, details: str) -> None:
    """Any CniError rendered by the server decodes to the same CNI code, message and details."""
    status = wire.decode_status(
        to_grpc_status(CniError(cni_code, message, details=details)).SerializeToString()
    )
    assert status.message == message
    info = status.error_info()
    assert info is not None
    assert info[2] == {codes.META_CNI_CODE: str(cni_code), codes.META_DETAILS: details}


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varints_round_trip(value: int) -> None:
    """Varint encoding and decoding are inverse over the 64-bit range."""
    encoded = wire.encode_varint(value)
    assert wire.decode_varint(encoded, 0) == (value, len(encoded))
