"""The error tree shared by both services, and its one translation to gRPC.

Each class knows its gRPC status code and the CNI code it maps to (table in
``spiderpool_cni.codes``). ``to_grpc_status`` is the only place a domain error becomes a
gRPC status: a ``google.rpc.Status`` whose ``ErrorInfo`` detail carries the CNI code, so
the agent and the stdlib-only shims can print ``{cniVersion, code, msg, details}``.
``from_rpc_error`` is its inverse, used by gRPC clients (the agent, spiderpoolctl).

A status travels in HTTP/2 trailers, where gRPC's peers refuse metadata over 8 KiB (soft
limit) or 16 KiB (hard): an error quoting a huge user value (a pool name, a CNI_ARGS
value) would be replaced by RESOURCE_EXHAUSTED and its CNI code lost (102 became 999).
The message travels twice (``grpc-message``, percent-encoded, up to three bytes per
byte; and inside ``grpc-status-details-bin``, base64), so ``to_grpc_status`` cuts the
message and the details to ``MAX_TEXT_BYTES`` each, on a UTF-8 boundary, with a marker
saying how much was cut: at most ~6 KiB of trailers whatever the error says.
"""

from __future__ import annotations

from typing import ClassVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from spiderpool_cni import codes


class SpiderpoolError(Exception):
    """Base of every error a caller may see; never raised directly."""

    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    cni_code: ClassVar[int] = codes.INTERNAL
    reason: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, *, details: str = "", cni_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if cni_code is not None:
            self.cni_code = cni_code  # type: ignore[misc]

    def __str__(self) -> str:
        return self.message


class InvalidRequest(SpiderpoolError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    cni_code = codes.INVALID_CONFIG
    reason = "INVALID_REQUEST"


class InvalidObject(InvalidRequest):
    """A manifest failed validation; the message names the object and field."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    cni_code = codes.INVALID_OBJECT
    reason = "INVALID_OBJECT"


class NotFound(SpiderpoolError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    cni_code = codes.OBJECT_NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(SpiderpoolError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    cni_code = codes.OBJECT_CONFLICT
    reason = "ALREADY_EXISTS"


class Conflict(SpiderpoolError):
    """A compare-and-swap lost, or a deletion/update was refused by a rule."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    cni_code = codes.OBJECT_CONFLICT
    reason = "CONFLICT"


class PoolNotFound(SpiderpoolError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    cni_code = codes.POOL_NOT_FOUND
    reason = "POOL_NOT_FOUND"


class PoolExhausted(SpiderpoolError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    cni_code = codes.POOL_EXHAUSTED
    reason = "POOL_EXHAUSTED"


class NoPoolMatched(SpiderpoolError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    cni_code = codes.NO_POOL_MATCHED
    reason = "NO_POOL_MATCHED"


class InvalidAnnotation(SpiderpoolError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    cni_code = codes.INVALID_ANNOTATION
    reason = "INVALID_ANNOTATION"


class AllocationNotFound(SpiderpoolError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    cni_code = codes.ALLOCATION_NOT_FOUND
    reason = "ALLOCATION_NOT_FOUND"


class Unavailable(SpiderpoolError):
    """A dependency (store, controller) cannot answer now; the caller may retry."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    cni_code = codes.TRY_AGAIN_LATER
    reason = "UNAVAILABLE"


class CniError(SpiderpoolError):
    """An error whose CNI code is chosen at the raise site (agent-side CNI validation)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "CNI_ERROR"

    def __init__(self, cni_code: int, message: str, *, details: str = "") -> None:
        super().__init__(message, details=details, cni_code=cni_code)
        if cni_code in (
            codes.INVALID_CONFIG,
            codes.DECODING_FAILURE,
            codes.INVALID_ENVIRONMENT,
            codes.INCOMPATIBLE_VERSION,
            codes.UNSUPPORTED_FIELD,
        ):
            self.grpc_code = grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[misc]
        elif cni_code in (codes.TRY_AGAIN_LATER, codes.NOT_AVAILABLE):
            self.grpc_code = grpc.StatusCode.UNAVAILABLE  # type: ignore[misc]


MAX_TEXT_BYTES = 1000


def bounded(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    """``text`` if its UTF-8 form fits ``limit`` bytes, else its head and a truncation marker."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text
    head = raw[: limit - 40].decode("utf-8", "ignore")  # a cut multi-byte character is dropped
    return f"{head}... [{len(raw) - len(head.encode('utf-8', 'surrogatepass'))} more bytes truncated]"


def to_grpc_status(err: SpiderpoolError) -> status_pb2.Status:
    """Render a domain error as a ``google.rpc.Status`` with an ``ErrorInfo`` detail, its
    message and details bounded so the trailers always fit the peer's metadata limit."""
    info = error_details_pb2.ErrorInfo(
        reason=err.reason,
        domain=codes.ERROR_DOMAIN,
        metadata={codes.META_CNI_CODE: str(err.cni_code), codes.META_DETAILS: bounded(err.details)},
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=err.grpc_code.value[0], message=bounded(err.message), details=[detail])


_BY_REASON: dict[str, type[SpiderpoolError]] = {}


def _register(*classes: type[SpiderpoolError]) -> None:
    for cls in classes:
        _BY_REASON[cls.reason] = cls


_register(
    InvalidRequest,
    InvalidObject,
    NotFound,
    AlreadyExists,
    Conflict,
    PoolNotFound,
    PoolExhausted,
    NoPoolMatched,
    InvalidAnnotation,
    AllocationNotFound,
    Unavailable,
)


def from_rpc_error(exc: grpc.RpcError) -> SpiderpoolError:
    """Rebuild the domain error a peer raised; transport failures become ``Unavailable``."""
    from grpc_status import rpc_status  # noqa: PLC0415  (heavy; only clients need it)

    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except ValueError:  # details that contradict the call's code (the transport replaced the status)
        status = None
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == codes.ERROR_DOMAIN:
                cni_code = int(info.metadata.get(codes.META_CNI_CODE, codes.INTERNAL))
                cls = _BY_REASON.get(info.reason)
                details = info.metadata.get(codes.META_DETAILS, "")
                if cls is None:
                    return CniError(cni_code, status.message, details=details)
                return cls(status.message, details=details, cni_code=cni_code)
    code = exc.code() if hasattr(exc, "code") else None
    text = exc.details() if hasattr(exc, "details") else str(exc)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"peer unavailable: {text}")
    return SpiderpoolError(f"unexpected gRPC error {code}: {text}")
