"""OpenAPI as clients need it: the `/openapi/v3` index, per-group-version documents, the `/openapi/v2` stub.

kubectl (default `--validate=strict`) and Helm download OpenAPI before writing. A per-GV v3 document whose
paths carry a `patch` operation with the `fieldValidation` query parameter and
`x-kubernetes-group-version-kind` tells them the server validates fields itself: they then skip client-side
validation and send `fieldValidation=Strict`. CRD schemas are included under
`components.schemas`. `/openapi/v2` answers the 30-byte protobuf document (empty paths) with the exact content
type client-go accepts.
"""

from __future__ import annotations

from typing import Any

from .kinds import Registry, ResourceType

V2_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _ld(field: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (payloads here are < 128 bytes)."""
    return bytes([(field << 3) | 2, len(payload)]) + payload


def v2_stub(version: str) -> bytes:
    """gnostic `openapi_v2.Document{swagger: "2.0", info{title, version}, paths{}}`."""
    info = _ld(1, b"Kubernetes") + _ld(2, version.encode())
    return _ld(1, b"2.0") + _ld(2, info) + _ld(8, b"")


def _gv_path(group: str, version: str) -> str:
    return "api/v1" if not group else f"apis/{group}/{version}"


def index(registry: Registry) -> dict[str, Any]:
    paths = {}
    for group, versions in registry.group_versions().items():
        for v in versions:
            p = _gv_path(group, v)
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash=0"}
    return {"paths": paths}


def _schema_name(rt: ResourceType) -> str:
    reversed_group = ".".join(reversed(rt.group.split("."))) if rt.group else "io.k8s.api.core"
    return f"{reversed_group}.{rt.version}.{rt.kind}"


def gv_document(registry: Registry, path: str, version: str) -> dict[str, Any] | None:
    """The document for `api/v1` or `apis/<g>/<v>`, or None when no such group-version is served."""
    parts = path.strip("/").split("/")
    if parts == ["api", "v1"]:
        group, ver = "", "v1"
    elif len(parts) == 3 and parts[0] == "apis":
        group, ver = parts[1], parts[2]
    else:
        return None
    types = registry.in_group_version(group, ver)
    if not types:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in types:
        if not rt.stored:
            continue
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        ns = "/namespaces/{namespace}" if rt.namespaced else ""
        item = f"{rt.path_prefix}{ns}/{rt.plural}/{{name}}"
        patch = {
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            ],
            "responses": {"200": {"description": "OK"}},
        }
        paths[item] = {"patch": patch}
        if rt.schema is not None:
            schema = dict(rt.schema)
            schema["x-kubernetes-group-version-kind"] = [gvk]
            schemas[_schema_name(rt)] = schema
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": version},
        "paths": paths,
        "components": {"schemas": schemas},
    }
