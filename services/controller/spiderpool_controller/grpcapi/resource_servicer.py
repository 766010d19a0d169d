"""gRPC ``spiderpool.controller.v1.ResourceService``: translation between protobuf and ``ResourceService``.

Nothing here decides anything: JSON text becomes manifest dicts, kubectl-style kind names
(``ippool``, ``sp``, ``SpiderIPPool``) become kinds via ``models.resolve_kind``, and errors
leave through ``translate_errors`` (invalid JSON or an unknown kind is ``InvalidRequest``).
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from spiderpool.controller.v1 import resource_pb2, resource_pb2_grpc
from spiderpool_common import bounded_json
from spiderpool_common.errors import InvalidRequest
from spiderpool_common.grpc_server import translate_errors

from spiderpool_controller.domain import models
from spiderpool_controller.resource_service import ResourceService


def _decode(text: str) -> dict[str, Any]:
    try:
        obj = bounded_json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"object_json is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRequest(f"object_json must be a JSON object, got {type(obj).__name__}")
    return obj


def _encode(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def _kind(text: str) -> str:
    try:
        return models.resolve_kind(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def _name(text: str) -> str:
    if not text:
        raise InvalidRequest("name is required")
    return text


class ResourceServicer(resource_pb2_grpc.ResourceServiceServicer):
    def __init__(self, resources: ResourceService) -> None:
        self._resources = resources

    @translate_errors
    async def Apply(
        self, request: resource_pb2.ApplyRequest, context: grpc.aio.ServicerContext
    ) -> resource_pb2.ApplyResponse:
        stored, created, unchanged = await self._resources.apply(_decode(request.object_json))
        return resource_pb2.ApplyResponse(object_json=_encode(stored), created=created, unchanged=unchanged)

    @translate_errors
    async def Get(
        self, request: resource_pb2.GetRequest, context: grpc.aio.ServicerContext
    ) -> resource_pb2.GetResponse:
        obj = await self._resources.get(_kind(request.kind), _name(request.name), request.namespace)
        return resource_pb2.GetResponse(object_json=_encode(obj))

    @translate_errors
    async def List(
        self, request: resource_pb2.ListRequest, context: grpc.aio.ServicerContext
    ) -> resource_pb2.ListResponse:
        objs, version = await self._resources.list(
            _kind(request.kind), request.namespace or None, request.label_selector or None
        )
        return resource_pb2.ListResponse(object_json=[_encode(o) for o in objs], resource_version=version)

    @translate_errors
    async def Delete(
        self, request: resource_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> resource_pb2.DeleteResponse:
        obj = await self._resources.delete(_kind(request.kind), _name(request.name), request.namespace)
        return resource_pb2.DeleteResponse(object_json=_encode(obj))


def register(server: grpc.aio.Server, resources: ResourceService) -> list[str]:
    """Add the servicer to ``server``; return its full service name (for reflection and health)."""
    resource_pb2_grpc.add_ResourceServiceServicer_to_server(ResourceServicer(resources), server)
    return [resource_pb2.DESCRIPTOR.services_by_name["ResourceService"].full_name]
