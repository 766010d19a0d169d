"""The rules the real API server enforces on a CustomResourceDefinition before it accepts it.

Owns the checks of apiextensions.k8s.io/v1 that a generated CRD could break (Kubernetes docs,
"Specifying a structural schema", and the CRD validation of the apiextensions API server):

* every node of the schema has a ``type``, except one marked ``x-kubernetes-int-or-string`` or
  ``x-kubernetes-preserve-unknown-fields``; arrays have ``items``; the root is an object;
* ``properties`` and ``additionalProperties`` never share a node;
* inside ``allOf``/``anyOf``/``oneOf``/``not``: no ``type``, ``description``, ``default``,
  ``additionalProperties`` or ``nullable``, and no field or item not also specified outside;
* the root ``metadata`` restricts nothing but ``name`` and ``generateName``;
* every ``default`` validates against its node and holds no unknown field (defaults are pruned);
* enum values have the node's type, list and map types are known ones;
* the envelope: name = plural.group, listKind, exactly one storage version, printer column
  types and JSON paths, lowercase names.

Returns messages ``<where>: <what>``; the generator refuses to write a CRD with any.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spiderpool_controller.domain.openapi_fields import schema_errors

_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
_FORBIDDEN_IN_JUNCTORS = ("type", "description", "default", "additionalProperties", "nullable")
_LIST_TYPES = frozenset({"atomic", "set", "map"})
_MAP_TYPES = frozenset({"atomic", "granular"})
_COLUMN_TYPES = frozenset({"integer", "number", "string", "boolean", "date"})
_ENUM_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _children(node: Mapping[str, Any], path: str) -> list[tuple[str, Mapping[str, Any]]]:
    out: list[tuple[str, Mapping[str, Any]]] = []
    props = node.get("properties")
    if isinstance(props, Mapping):
        out += [(f"{path}.properties.{k}", v) for k, v in props.items()]
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), Mapping):
            out.append((f"{path}.{key}", node[key]))
    return out


def _junctor_errors(node: Mapping[str, Any], path: str) -> list[str]:
    errors: list[str] = []
    for junctor in _JUNCTORS:
        subs = node.get(junctor)
        if subs is None:
            continue
        for i, sub in enumerate(subs if isinstance(subs, list) else [subs]):
            where = f"{path}.{junctor}[{i}]"
            errors += [
                f"{where}: {key} is not allowed inside {junctor}"
                for key in _FORBIDDEN_IN_JUNCTORS
                if key in sub
            ]
            outside = node.get("properties") or {}
            errors += [
                f"{where}.properties.{name}: not specified outside {junctor}"
                for name in (sub.get("properties") or {})
                if name not in outside
            ]
            if "items" in sub and "items" not in node:
                errors.append(f"{where}.items: not specified outside {junctor}")
    return errors


def _node_errors(node: Mapping[str, Any], path: str) -> list[str]:
    errors: list[str] = []
    typ = node.get("type")
    exempt = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    if typ is None and not exempt:
        errors.append(f"{path}: type is required (structural schema)")
    elif typ is not None and typ not in _TYPES:
        errors.append(f"{path}: unknown type {typ!r}")
    if "properties" in node and "additionalProperties" in node:
        errors.append(f"{path}: properties and additionalProperties are mutually exclusive")
    if typ == "array" and not isinstance(node.get("items"), Mapping):
        errors.append(f"{path}: an array must specify items (one schema)")
    props = node.get("properties") or {}
    errors += [
        f"{path}.required: {name!r} is not a property"
        for name in node.get("required", ())
        if name not in props
    ]
    for value in node.get("enum") or ():
        allowed = _ENUM_TYPES.get(str(typ))
        if allowed and (not isinstance(value, allowed) or (typ != "boolean" and isinstance(value, bool))):
            errors.append(f"{path}.enum: {value!r} is not of type {typ}")
    if node.get("x-kubernetes-list-type", "atomic") not in _LIST_TYPES:
        errors.append(f"{path}: unknown x-kubernetes-list-type {node['x-kubernetes-list-type']!r}")
    if node.get("x-kubernetes-map-type", "atomic") not in _MAP_TYPES:
        errors.append(f"{path}: unknown x-kubernetes-map-type {node['x-kubernetes-map-type']!r}")
    if "default" in node:
        if node["default"] is None and not node.get("nullable"):
            errors.append(f"{path}.default: null is not allowed (the node is not nullable)")
        else:
            errors += [
                f"{path}.default: {where or 'value'}: {msg}"
                for where, msg in schema_errors(node, node["default"])
            ]
    return errors + _junctor_errors(node, path)


def schema_errors_of(schema: Mapping[str, Any], path: str = "openAPIV3Schema") -> list[str]:
    """Structural-schema violations of an ``openAPIV3Schema`` (empty when the server accepts it)."""
    errors: list[str] = []
    if schema.get("type") != "object":
        errors.append(f"{path}: the root must be of type object")
    metadata = (schema.get("properties") or {}).get("metadata")
    if isinstance(metadata, Mapping):
        extra = set(metadata) - {"type", "properties", "description"}
        named = set(metadata.get("properties") or {}) - {"name", "generateName"}
        if extra or named:
            errors.append(f"{path}.properties.metadata: only name and generateName may be restricted")
    stack: list[tuple[str, Mapping[str, Any]]] = [(path, schema)]
    while stack:
        where, node = stack.pop()
        errors += _node_errors(node, where)
        stack += _children(node, where)
    return errors


def crd_errors(crd: Mapping[str, Any]) -> list[str]:
    """Everything the API server (and this project's conventions) would refuse in a CRD."""
    errors: list[str] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group", ""), names.get("plural", ""), names.get("kind", "")
    if (crd.get("metadata") or {}).get("name") != f"{plural}.{group}":
        errors.append(f"metadata.name: must be {plural}.{group}")
    if names.get("listKind") != f"{kind}List":
        errors.append(f"spec.names.listKind: must be {kind}List")
    for key in ("plural", "singular"):
        if names.get(key) != str(names.get(key, "")).lower() or not names.get(key):
            errors.append(f"spec.names.{key}: must be a non-empty lowercase name")
    errors += [
        f"spec.names.shortNames: {s!r} is not lowercase"
        for s in names.get("shortNames", ())
        if s != s.lower()
    ]
    if spec.get("scope") not in ("Cluster", "Namespaced"):
        errors.append("spec.scope: must be Cluster or Namespaced")
    versions = spec.get("versions") or []
    if sum(1 for v in versions if v.get("storage")) != 1:
        errors.append("spec.versions: exactly one version must be the storage version")
    for i, version in enumerate(versions):
        where = f"spec.versions[{i}]"
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, Mapping):
            errors.append(f"{where}.schema.openAPIV3Schema: required")
            continue
        errors += [f"{where}.schema.{e}" for e in schema_errors_of(schema)]
        subresources = version.get("subresources") or {}
        if "status" in subresources and "status" not in (schema.get("properties") or {}):
            errors.append(f"{where}.subresources.status: the schema has no status")
        for j, col in enumerate(version.get("additionalPrinterColumns") or ()):
            col_where = f"{where}.additionalPrinterColumns[{j}]"
            if not col.get("name"):
                errors.append(f"{col_where}.name: required")
            if col.get("type") not in _COLUMN_TYPES:
                errors.append(f"{col_where}.type: {col.get('type')!r} is not one of {sorted(_COLUMN_TYPES)}")
            if not str(col.get("jsonPath", "")).startswith("."):
                errors.append(f"{col_where}.jsonPath: must start with '.'")
            if col.get("priority", 0) < 0:
                errors.append(f"{col_where}.priority: must be >= 0")
    return errors
