"""The one translation between the error tree (``spiderpool_common.errors``) and gRPC.

``to_grpc_status`` is the only place a domain error becomes a gRPC status: the error's
``category`` picks the status code, and an ``ErrorInfo`` detail carries the reason and the
CNI code, so the agent and the stdlib-only shims can print ``{cniVersion, code, msg,
details}``. ``from_rpc_error`` is its inverse, used by gRPC clients (the agent,
spiderpoolctl). The domain never imports this module (an import-linter contract says so).

A status travels in HTTP/2 trailers, where gRPC's peers refuse metadata over 8 KiB (soft
limit) or 16 KiB (hard): an error quoting a huge user value (a pool name, a CNI_ARGS
value) would be replaced by RESOURCE_EXHAUSTED and its CNI code lost (102 became 999).
The message travels twice (``grpc-message``, percent-encoded, up to three bytes per
byte; and inside ``grpc-status-details-bin``, base64), so ``to_grpc_status`` cuts the
message and the details to ``MAX_TEXT_BYTES`` each, on a UTF-8 boundary, with a marker
saying how much was cut: at most ~6 KiB of trailers whatever the error says.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from spiderpool_cni import codes

from spiderpool_common.errors import BY_REASON, Category, CniError, SpiderpoolError, Unavailable

STATUS_CODES: dict[Category, grpc.StatusCode] = {
    Category.INTERNAL: grpc.StatusCode.INTERNAL,
    Category.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Category.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Category.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Category.PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Category.STALE: grpc.StatusCode.ABORTED,
    Category.EXPIRED: grpc.StatusCode.OUT_OF_RANGE,
    Category.EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Category.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}


MAX_TEXT_BYTES = 1000


def bounded(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    """``text`` if its UTF-8 form fits ``limit`` bytes, else its head and a truncation marker."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text
    head = raw[: limit - 40].decode("utf-8", "ignore")  # a cut multi-byte character is dropped
    return f"{head}... [{len(raw) - len(head.encode('utf-8', 'surrogatepass'))} more bytes truncated]"


def status_code(err: SpiderpoolError) -> grpc.StatusCode:
    """The gRPC status code ``err`` leaves with."""
    return STATUS_CODES[err.category]


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
    return status_pb2.Status(code=status_code(err).value[0], message=bounded(err.message), details=[detail])


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
                cls = BY_REASON.get(info.reason)
                details = info.metadata.get(codes.META_DETAILS, "")
                if cls is None:
                    return CniError(cni_code, status.message, details=details)
                return cls(status.message, details=details, cni_code=cni_code)
    code = exc.code() if hasattr(exc, "code") else None
    text = exc.details() if hasattr(exc, "details") else str(exc)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"peer unavailable: {text}")
    return SpiderpoolError(f"unexpected gRPC error {code}: {text}")
