"""The error tree's one gRPC translation: category -> status code, ErrorInfo out and back.

The wire contract is pinned here: the status code each error leaves with is what clients
(the shims, spiderpoolctl, the agent) and other gRPC tools see, so moving the codes out of
the error classes into ``grpc_errors`` must not change any of them.
"""

from __future__ import annotations

import grpc
import pytest
from google.rpc import status_pb2
from spiderpool_cni import codes
from spiderpool_common import errors
from spiderpool_common.errors import Category, CniError, SpiderpoolError
from spiderpool_common.grpc_errors import STATUS_CODES, from_rpc_error, status_code, to_grpc_status
from spiderpool_controller.store.contract import (
    Gone,
    ObjectAlreadyExists,
    ObjectNotFound,
    StaleResourceVersion,
    StoreUnavailable,
)

SC = grpc.StatusCode


class FakeRpcError(grpc.RpcError):  # type: ignore[misc]  # grpc ships no stubs
    """What a grpc client raises for a status, with the rich status in the trailers (or not)."""

    def __init__(self, status: status_pb2.Status, *, rich: bool = True) -> None:
        self._status = status
        self._rich = rich

    def code(self) -> grpc.StatusCode:
        return next(c for c in grpc.StatusCode if c.value[0] == self._status.code)

    def details(self) -> str:
        return str(self._status.message)

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        if not self._rich:
            return ()
        return (("grpc-status-details-bin", self._status.SerializeToString()),)


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (SpiderpoolError("x"), SC.INTERNAL),
        (errors.InvalidRequest("x"), SC.INVALID_ARGUMENT),
        (errors.InvalidObject("x"), SC.INVALID_ARGUMENT),
        (errors.NotFound("x"), SC.NOT_FOUND),
        (errors.AlreadyExists("x"), SC.ALREADY_EXISTS),
        (errors.Conflict("x"), SC.FAILED_PRECONDITION),
        (errors.PoolNotFound("x"), SC.NOT_FOUND),
        (errors.PoolExhausted("x"), SC.RESOURCE_EXHAUSTED),
        (errors.NoPoolMatched("x"), SC.FAILED_PRECONDITION),
        (errors.InvalidAnnotation("x"), SC.INVALID_ARGUMENT),
        (errors.AllocationNotFound("x"), SC.NOT_FOUND),
        (errors.Unavailable("x"), SC.UNAVAILABLE),
        (ObjectNotFound("x"), SC.NOT_FOUND),
        (ObjectAlreadyExists("x"), SC.ALREADY_EXISTS),
        (StaleResourceVersion("x"), SC.ABORTED),
        (Gone("x"), SC.OUT_OF_RANGE),
        (StoreUnavailable("x"), SC.UNAVAILABLE),
        (CniError(codes.INVALID_CONFIG, "x"), SC.INVALID_ARGUMENT),
        (CniError(codes.DECODING_FAILURE, "x"), SC.INVALID_ARGUMENT),
        (CniError(codes.INVALID_ENVIRONMENT, "x"), SC.INVALID_ARGUMENT),
        (CniError(codes.INCOMPATIBLE_VERSION, "x"), SC.INVALID_ARGUMENT),
        (CniError(codes.UNSUPPORTED_FIELD, "x"), SC.INVALID_ARGUMENT),
        (CniError(codes.TRY_AGAIN_LATER, "x"), SC.UNAVAILABLE),
        (CniError(codes.NOT_AVAILABLE, "x"), SC.UNAVAILABLE),
        (CniError(codes.POOL_EXHAUSTED, "x"), SC.FAILED_PRECONDITION),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.name,
)
def test_each_error_leaves_with_its_status_code(err: SpiderpoolError, expected: grpc.StatusCode) -> None:
    """Every error class (and CniError per CNI code) keeps the gRPC status code clients rely on."""
    assert status_code(err) is expected
    assert to_grpc_status(err).code == expected.value[0]


def test_every_category_has_a_status_code() -> None:
    """The translation is total: a new category without a status code fails here, not in production."""
    assert set(STATUS_CODES) == set(Category)


@pytest.mark.parametrize(
    "cls", [errors.BY_REASON[reason] for reason in sorted(errors.BY_REASON)], ids=lambda c: c.__name__
)
def test_a_peers_error_comes_back_as_the_same_class(cls: type[SpiderpoolError]) -> None:
    """Class, message, details and CNI code survive the trip through a google.rpc.Status."""
    sent = cls("pool blue: \u00e9puis\u00e9", details="0 of 254 free")
    back = from_rpc_error(FakeRpcError(to_grpc_status(sent)))
    assert type(back) is cls
    assert (back.message, back.details, back.cni_code) == (sent.message, sent.details, sent.cni_code)


def test_an_unknown_reason_comes_back_as_a_cni_error_with_its_code() -> None:
    """A reason this side does not know (a store error, a newer peer) keeps its CNI code."""
    back = from_rpc_error(FakeRpcError(to_grpc_status(StaleResourceVersion("changed"))))
    assert isinstance(back, CniError)
    assert (back.cni_code, back.message) == (codes.OBJECT_CONFLICT, "changed")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (SC.UNAVAILABLE, errors.Unavailable),
        (SC.DEADLINE_EXCEEDED, errors.Unavailable),
        (SC.UNKNOWN, SpiderpoolError),
    ],
)
def test_a_status_without_error_info_is_a_transport_failure_or_internal(
    code: grpc.StatusCode, expected: type[SpiderpoolError]
) -> None:
    """No ErrorInfo: unavailable and deadline become Unavailable (retryable), anything else internal."""
    back = from_rpc_error(FakeRpcError(status_pb2.Status(code=code.value[0], message="gone"), rich=False))
    assert type(back) is expected
    assert "gone" in back.message
