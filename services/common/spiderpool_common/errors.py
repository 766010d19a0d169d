"""The error tree shared by both services: pure classes, no transport.

Each class knows the CNI code it maps to (table in ``spiderpool_cni.codes``), a stable
``reason`` (the ``ErrorInfo`` reason on the wire), a transport-neutral ``category``
saying what kind of failure it is, and the ``log_level`` a server logs it at when a
request fails with it (an error, except "not found" answers to lookups). The domain
raises these, so this module imports nothing but the standard library and the
import-free code table: an import-linter contract keeps the domain free of grpc even
through here. The one translation to and from gRPC
(``category`` -> status code, ``google.rpc.Status`` with ``ErrorInfo``, and back) is
``spiderpool_common.grpc_errors``.
"""

from __future__ import annotations

import enum
import logging
from typing import ClassVar

from spiderpool_cni import codes


class Category(enum.StrEnum):
    """What kind of failure an error is, whatever carries it (gRPC, HTTP, a CLI exit)."""

    INTERNAL = "internal"  # a bug or an unexpected failure
    INVALID = "invalid"  # the caller's input is wrong; retrying the same input fails again
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    PRECONDITION = "precondition"  # the current state refuses the operation
    STALE = "stale"  # a compare-and-swap lost: re-read, then retry
    EXPIRED = "expired"  # the asked-for history is no longer kept (HTTP 410)
    EXHAUSTED = "exhausted"  # a resource (a pool's addresses) is used up
    UNAVAILABLE = "unavailable"  # a dependency cannot answer now; retrying later may work


# CNI codes a CniError reports for the caller's own input, and for "try again later".
_INVALID_CNI_CODES = frozenset(
    {
        codes.INVALID_CONFIG,
        codes.DECODING_FAILURE,
        codes.INVALID_ENVIRONMENT,
        codes.INCOMPATIBLE_VERSION,
        codes.UNSUPPORTED_FIELD,
    }
)
_UNAVAILABLE_CNI_CODES = frozenset({codes.TRY_AGAIN_LATER, codes.NOT_AVAILABLE})


class SpiderpoolError(Exception):
    """Base of every error a caller may see; never raised directly."""

    category: ClassVar[Category] = Category.INTERNAL
    cni_code: ClassVar[int] = codes.INTERNAL
    reason: ClassVar[str] = "INTERNAL"
    log_level: ClassVar[int] = logging.ERROR

    def __init__(self, message: str, *, details: str = "", cni_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if cni_code is not None:
            self.cni_code = cni_code  # type: ignore[misc]

    def __str__(self) -> str:
        return self.message


class InvalidRequest(SpiderpoolError):
    category = Category.INVALID
    cni_code = codes.INVALID_CONFIG
    reason = "INVALID_REQUEST"


class InvalidObject(InvalidRequest):
    """A manifest failed validation; the message names the object and field."""

    category = Category.INVALID
    cni_code = codes.INVALID_OBJECT
    reason = "INVALID_OBJECT"


class NotFound(SpiderpoolError):
    """A looked-up object does not exist: an answer more than a failure (logged at info)."""

    category = Category.NOT_FOUND
    log_level = logging.INFO
    cni_code = codes.OBJECT_NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(SpiderpoolError):
    category = Category.ALREADY_EXISTS
    cni_code = codes.OBJECT_CONFLICT
    reason = "ALREADY_EXISTS"


class Conflict(SpiderpoolError):
    """A compare-and-swap lost, or a deletion/update was refused by a rule."""

    category = Category.PRECONDITION
    cni_code = codes.OBJECT_CONFLICT
    reason = "CONFLICT"


class PoolNotFound(SpiderpoolError):
    category = Category.NOT_FOUND
    cni_code = codes.POOL_NOT_FOUND
    reason = "POOL_NOT_FOUND"


class PoolExhausted(SpiderpoolError):
    category = Category.EXHAUSTED
    cni_code = codes.POOL_EXHAUSTED
    reason = "POOL_EXHAUSTED"


class NoPoolMatched(SpiderpoolError):
    category = Category.PRECONDITION
    cni_code = codes.NO_POOL_MATCHED
    reason = "NO_POOL_MATCHED"


class InvalidAnnotation(SpiderpoolError):
    category = Category.INVALID
    cni_code = codes.INVALID_ANNOTATION
    reason = "INVALID_ANNOTATION"


class RequestedIPNotAllowed(SpiderpoolError):
    """A requested address is in no pool the pod may use, outside its ranges, excluded or reserved."""

    category = Category.PRECONDITION
    cni_code = codes.REQUESTED_IP_NOT_ALLOWED
    reason = "REQUESTED_IP_NOT_ALLOWED"


class RequestedIPInUse(SpiderpoolError):
    """A requested address is held by another attachment."""

    category = Category.PRECONDITION
    cni_code = codes.REQUESTED_IP_IN_USE
    reason = "REQUESTED_IP_IN_USE"


class AllocationNotFound(SpiderpoolError):
    """No reservation for an attachment: DEL and CHECK ask, and "none" is an answer (info)."""

    category = Category.NOT_FOUND
    log_level = logging.INFO
    cni_code = codes.ALLOCATION_NOT_FOUND
    reason = "ALLOCATION_NOT_FOUND"


class Unavailable(SpiderpoolError):
    """A dependency (store, controller) cannot answer now; the caller may retry."""

    category = Category.UNAVAILABLE
    cni_code = codes.TRY_AGAIN_LATER
    reason = "UNAVAILABLE"


class CniError(SpiderpoolError):
    """An error whose CNI code is chosen at the raise site (agent-side CNI validation)."""

    category = Category.PRECONDITION
    reason = "CNI_ERROR"

    def __init__(self, cni_code: int, message: str, *, details: str = "") -> None:
        super().__init__(message, details=details, cni_code=cni_code)
        if cni_code in _INVALID_CNI_CODES:
            self.category = Category.INVALID  # type: ignore[misc]
        elif cni_code in _UNAVAILABLE_CNI_CODES:
            self.category = Category.UNAVAILABLE  # type: ignore[misc]


# The classes a peer's ``reason`` names; a reason not listed comes back as a CniError.
BY_REASON: dict[str, type[SpiderpoolError]] = {
    cls.reason: cls
    for cls in (
        InvalidRequest,
        InvalidObject,
        NotFound,
        AlreadyExists,
        Conflict,
        PoolNotFound,
        PoolExhausted,
        NoPoolMatched,
        InvalidAnnotation,
        RequestedIPNotAllowed,
        RequestedIPInUse,
        AllocationNotFound,
        Unavailable,
    )
}
