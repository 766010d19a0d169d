"""The one error translation keeps statuses small enough for gRPC trailers, and its inverse
survives a status the transport replaced."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from spiderpool_cni import codes
from spiderpool_common.errors import PoolNotFound, SpiderpoolError
from spiderpool_common.grpc_errors import MAX_TEXT_BYTES, from_rpc_error, to_grpc_status


def error_info(status: Any) -> error_details_pb2.ErrorInfo:
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


@pytest.mark.parametrize("char", ["p", "é", "漢", "🙂"])
def test_a_huge_message_and_details_are_cut_on_a_character_boundary_with_a_marker(char: str) -> None:
    """Message and details over the bound are cut to at most MAX_TEXT_BYTES of valid UTF-8, ending
    with a marker that says how many bytes were cut; the code and CNI code are untouched."""
    err = PoolNotFound(f"IPPool {char * 50_000} not found", details=char * 50_000)
    status = to_grpc_status(err)
    info = error_info(status)
    for text in (status.message, info.metadata[codes.META_DETAILS]):
        assert len(text.encode()) <= MAX_TEXT_BYTES
        assert text.endswith(" more bytes truncated]")
    assert status.message.startswith(f"IPPool {char}")
    assert info.metadata[codes.META_CNI_CODE] == str(codes.POOL_NOT_FOUND)
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]


def test_a_message_within_the_bound_is_kept_whole() -> None:
    """An ordinary message travels unchanged."""
    text = "x" * MAX_TEXT_BYTES
    assert to_grpc_status(PoolNotFound(text)).message == text


class ReplacedStatus(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """A call whose details trailer contradicts its code, as when the transport replaced the
    status (metadata over the peer's limit)."""

    def __init__(self) -> None:
        self._status = to_grpc_status(PoolNotFound("IPPool x not found"))

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.RESOURCE_EXHAUSTED

    def details(self) -> str:
        return "received metadata size exceeds limit"

    def trailing_metadata(self) -> Any:
        return (("grpc-status-details-bin", self._status.SerializeToString()),)

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def test_a_status_the_transport_replaced_is_an_error_not_a_crash() -> None:
    """from_rpc_error gives a SpiderpoolError naming the real gRPC status, never raises ValueError."""
    err = from_rpc_error(ReplacedStatus())
    assert type(err) is SpiderpoolError
    assert "RESOURCE_EXHAUSTED" in err.message
