"""spiderpoolctl's connection to the controller: one blocking client for its three services.

Owns how a command reaches the controller and how a failure reads: every call has a
deadline; a transport failure is ``ControllerUnreachable`` (``cannot reach the controller at
ADDRESS: ...``), a refusal is ``RequestFailed`` with kubectl's wording (``Error from server
(NotFound): ...``). ``wait`` runs a long call (a GC scan, a check of a big cluster) while a
``Progress`` ticks, so a user sees it is working.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import grpc
from spiderpool.controller.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    ipam_pb2,
    ipam_pb2_grpc,
    resource_pb2,
    resource_pb2_grpc,
)
from spiderpool_common.channels import open_sync_channel
from spiderpool_common.errors import InvalidObject
from spiderpool_common.grpc_errors import from_rpc_error
from spiderpool_common.tls import TlsFiles

from spiderpool_tools.progress import Progress

Obj = dict[str, Any]
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TICK_S = 0.1  # how often a waiting call's progress is redrawn


class UsageError(Exception):
    """A command line that cannot run (exit code 2)."""


class ControllerUnreachable(Exception):
    """The transport failed: no controller answers at the address (exit code 1)."""


# ---------------------------------------------------------------------------------------
# talking to the controller


_REASONS = {
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.INVALID_ARGUMENT: "BadRequest",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.FAILED_PRECONDITION: "Conflict",
    grpc.StatusCode.ABORTED: "Conflict",
    grpc.StatusCode.UNAVAILABLE: "ServiceUnavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "Timeout",
}


class RequestFailed(Exception):
    """The controller refused a request; ``str()`` is kubectl's ``Error from server (Reason): msg``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"Error from server ({reason}): {message}")
        self.reason = reason
        self.message = message


def _translate(exc: grpc.RpcError, address: str) -> Exception:
    from grpc_status import rpc_status  # noqa: PLC0415  (only needed on failure)

    code = exc.code() if isinstance(exc, grpc.Call) else None
    if rpc_status.from_call(exc) is None and code in (  # type: ignore[arg-type]
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ):
        detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        return ControllerUnreachable(f"cannot reach the controller at {address}: {detail}")
    err = from_rpc_error(exc)
    reason = "Invalid" if isinstance(err, InvalidObject) else _REASONS.get(code, "InternalError")  # type: ignore[arg-type]
    return RequestFailed(reason, err.message)


class Client:
    """A blocking ResourceService client; every call has a deadline and fails fast."""

    def __init__(
        self, address: str, timeout: float, tls: TlsFiles | None = None, server_name: str = ""
    ) -> None:
        self.address = address
        self._timeout = timeout
        self._channel = open_sync_channel(address, tls, server_name)
        self._stub = resource_pb2_grpc.ResourceServiceStub(self._channel)
        self._ipam = ipam_pb2_grpc.IpamServiceStub(self._channel)
        self._admin = admin_pb2_grpc.AdminServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., Any], request: Any, progress: Progress | None = None) -> Any:
        try:
            if progress is None:
                return method(request, timeout=self._timeout)
            future = method.future(request, timeout=self._timeout)  # type: ignore[attr-defined]
            while not future.done():
                progress.tick()
                time.sleep(TICK_S)
            return future.result()
        except grpc.RpcError as exc:
            raise _translate(exc, self.address) from None
        finally:
            if progress is not None:
                progress.close()

    def apply(self, obj: Obj) -> resource_pb2.ApplyResponse:
        text = json.dumps(obj, default=str)  # YAML timestamps become strings, as kubectl sends them
        response: resource_pb2.ApplyResponse = self._call(
            self._stub.Apply, resource_pb2.ApplyRequest(object_json=text)
        )
        return response

    def get(self, kind: str, name: str, namespace: str) -> Obj:
        request = resource_pb2.GetRequest(kind=kind, name=name, namespace=namespace)
        response: resource_pb2.GetResponse = self._call(self._stub.Get, request)
        obj: Obj = json.loads(response.object_json)
        return obj

    def list(self, kind: str, namespace: str, selector: str) -> list[Obj]:
        request = resource_pb2.ListRequest(kind=kind, namespace=namespace, label_selector=selector)
        response: resource_pb2.ListResponse = self._call(self._stub.List, request)
        return [json.loads(text) for text in response.object_json]

    def delete(self, kind: str, name: str, namespace: str) -> Obj:
        request = resource_pb2.DeleteRequest(kind=kind, name=name, namespace=namespace)
        response: resource_pb2.DeleteResponse = self._call(self._stub.Delete, request)
        obj: Obj = json.loads(response.object_json)
        return obj

    # -- IpamService and AdminService -------------------------------------------------------
    def garbage_collect(self, progress: Progress | None = None) -> ipam_pb2.GarbageCollectResponse:
        response: ipam_pb2.GarbageCollectResponse = self._call(
            self._ipam.GarbageCollect, ipam_pb2.GarbageCollectRequest(), progress
        )
        return response

    def release(self, request: ipam_pb2.ReleaseRequest) -> ipam_pb2.ReleaseResponse:
        response: ipam_pb2.ReleaseResponse = self._call(self._ipam.Release, request)
        return response

    def check(self, progress: Progress | None = None) -> admin_pb2.CheckResponse:
        response: admin_pb2.CheckResponse = self._call(self._admin.Check, admin_pb2.CheckRequest(), progress)
        return response

    def explain(self, request: ipam_pb2.AllocateRequest) -> admin_pb2.ExplainResponse:
        response: admin_pb2.ExplainResponse = self._call(
            self._admin.Explain, admin_pb2.ExplainRequest(request=request)
        )
        return response

    def describe_endpoint(self, namespace: str, name: str) -> admin_pb2.DescribeEndpointResponse:
        request = admin_pb2.DescribeEndpointRequest(namespace=namespace, name=name)
        response: admin_pb2.DescribeEndpointResponse = self._call(self._admin.DescribeEndpoint, request)
        return response
