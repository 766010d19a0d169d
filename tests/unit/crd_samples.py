"""Manifest values with every field of a field table set, valid against the table's schema."""

from __future__ import annotations

from typing import Any

from spiderpool_controller.domain import crd_schema
from spiderpool_controller.domain.openapi_fields import Field, ListOf, MapOf, Node, Obj, Scalar

_BY_FORMAT = {"cidr": "10.6.0.0/16", "ipv4": "10.6.0.1", "ipv6": "fd00::1", "mac": "aa:bb:cc:dd:ee:ff"}
_BY_PATTERN = {crd_schema.IP_RANGE_PATTERN: "10.6.0.10-10.6.0.20", crd_schema.MAC_PREFIX_PATTERN: "0a:1b"}


def _scalar(node: Scalar, field: Field | None) -> Any:
    default = field.default if field is not None and field.has_default else None
    if node.enum:
        others = [v for v in node.enum if v != default]
        return others[-1]
    if node.type == "boolean":
        return default is not True
    if node.type == "integer":
        low = node.minimum if node.minimum is not None else 0
        value = low + 2 if node.maximum is None or low + 2 <= node.maximum else low
        return value if value != default else value + 1
    if node.format in _BY_FORMAT:
        return _BY_FORMAT[node.format]
    if node.any_of_formats:
        return _BY_FORMAT[node.any_of_formats[0]] if node.any_of_formats[0] != "cidr" else "10.9.0.0/16"
    if node.pattern is not None:
        return _BY_PATTERN[node.pattern]
    return f"{field.name if field is not None else 'item'}-value"


def full_value(node: Node, field: Field | None = None) -> Any:
    """A value of ``node`` with every optional field present and different from its default."""
    if isinstance(node, Scalar):
        return _scalar(node, field)
    if isinstance(node, ListOf):
        return [full_value(node.items, field)]
    if isinstance(node, MapOf):
        return {"example.io/key": full_value(node.values, field)}
    assert isinstance(node, Obj)
    return {f.name: full_value(f.node, f) for f in node.fields}


def full_manifest(kind: str) -> dict[str, Any]:
    res = crd_schema.resource(kind)
    meta: dict[str, Any] = {"name": "full"}
    if res.namespaced:
        meta["namespace"] = "default"
    obj: dict[str, Any] = {
        "apiVersion": f"{crd_schema.GROUP}/{crd_schema.VERSION}",
        "kind": kind,
        "metadata": meta,
    }
    if res.spec is not None:
        obj["spec"] = full_value(res.spec)
    if res.status is not None:
        obj["status"] = full_value(res.status)
    return obj
