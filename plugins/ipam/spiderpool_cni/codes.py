"""The one table of CNI error codes this project emits.

Codes below 100 are the CNI specification's (SPEC.md "Error" section); codes from 100 up
are this project's own. The shims (stdlib only, run with ``python -IS``) and both services
import this module, so it must stay free of any import.
"""

# CNI 1.1 specification codes.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50  # STATUS: cannot service ADD
NOT_AVAILABLE_DEGRADED = 51  # STATUS: and existing containers may have limited connectivity

# This project's codes (100 and up).
POOL_EXHAUSTED = 100  # every candidate pool is out of free addresses
NO_POOL_MATCHED = 101  # no pool selection rule yielded a usable pool
POOL_NOT_FOUND = 102  # a pool named in an annotation or config does not exist
IP_CONFLICT = 103  # another host answered for the pod's address (ARP/NDP probe)
GATEWAY_UNREACHABLE = 104  # the gateway did not answer ARP/NDP
INVALID_ANNOTATION = 105  # a pod or namespace annotation is malformed
ALLOCATION_NOT_FOUND = 106  # CHECK: the reservation for this attachment is gone
ALLOCATION_MISMATCH = 107  # CHECK: the reservation differs from prevResult
REQUESTED_IP_NOT_ALLOWED = 108  # a requested address lies in no pool the pod may use, or is excluded/reserved
REQUESTED_IP_IN_USE = 109  # a requested address is held by another attachment
INVALID_OBJECT = 110  # a resource manifest failed validation (spiderpoolctl apply)
OBJECT_NOT_FOUND = 111
OBJECT_CONFLICT = 112  # already exists / changed concurrently / deletion refused
COORDINATOR_FAILED = 120  # the coordinator could not set up routing in the pod
INTERNAL = 999  # an unexpected internal error (libcni's skel uses 999 too)

DESCRIPTIONS: dict[int, str] = {
    INCOMPATIBLE_VERSION: "incompatible CNI version",
    UNSUPPORTED_FIELD: "unsupported field in network configuration",
    UNKNOWN_CONTAINER: "container unknown or does not exist",
    INVALID_ENVIRONMENT: "invalid necessary environment variables",
    IO_FAILURE: "I/O failure",
    DECODING_FAILURE: "failed to decode content",
    INVALID_CONFIG: "invalid network config",
    TRY_AGAIN_LATER: "try again later",
    NOT_AVAILABLE: "plugin not available",
    NOT_AVAILABLE_DEGRADED: "plugin not available, existing containers may have limited connectivity",
    POOL_EXHAUSTED: "IP pool exhausted",
    NO_POOL_MATCHED: "no IP pool matched the pod",
    POOL_NOT_FOUND: "IP pool not found",
    IP_CONFLICT: "IP address conflict detected",
    GATEWAY_UNREACHABLE: "gateway unreachable",
    INVALID_ANNOTATION: "invalid pod or namespace annotation",
    ALLOCATION_NOT_FOUND: "IP reservation not found",
    ALLOCATION_MISMATCH: "IP reservation does not match prevResult",
    REQUESTED_IP_NOT_ALLOWED: "requested IP address not allowed",
    REQUESTED_IP_IN_USE: "requested IP address in use",
    INVALID_OBJECT: "invalid object",
    OBJECT_NOT_FOUND: "object not found",
    OBJECT_CONFLICT: "object conflict",
    COORDINATOR_FAILED: "coordinator failed",
    INTERNAL: "internal error",
}

# The ErrorInfo domain and metadata keys that carry a CNI error over gRPC.
ERROR_DOMAIN = "spiderpool.spidernet.io"
META_CNI_CODE = "cni_code"
META_DETAILS = "details"
