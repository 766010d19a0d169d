"""CRD structural schemas: pruning, defaulting and validation of custom resources against `openAPIV3Schema`.

The order is the real server's: null values of non-nullable fields are dropped, unknown fields are pruned (and
reported, for `fieldValidation=Strict`/`Warn`), defaults are filled wherever the enclosing object exists, then
the value validations run and report `Cause`s with the real messages (`spec.ipVersion: Unsupported value: 7:
supported values: "4", "6"`). The root `apiVersion`/`kind`/`metadata` are not the schema's business (the
server checks metadata itself), nor is `x-kubernetes-validations` (CEL is not evaluated: a known gap).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from datetime import datetime
from typing import Any

from .errors import Cause

Schema = dict[str, Any]
_ROOT_META = ("apiVersion", "kind", "metadata")


def _props(schema: Schema) -> dict[str, Schema]:
    p = schema.get("properties")
    return p if isinstance(p, dict) else {}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def prune(value: Any, schema: Schema, path: str = "", root: bool = True) -> tuple[Any, list[str]]:
    """Drop unknown fields and nulls of non-nullable fields; returns the pruned value and unknown paths."""
    unknown: list[str] = []
    if isinstance(value, dict) and (schema.get("type") == "object" or "properties" in schema or root):
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        props = _props(schema)
        addl = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for k, v in value.items():
            sub_path = _join(path, k)
            if (root or embedded) and k in _ROOT_META:
                out[k] = v
                continue
            if k in props:
                sub = props[k]
                if v is None and not sub.get("nullable"):
                    continue
                out[k], more = prune(v, sub, sub_path, root=False)
                unknown += more
            elif isinstance(addl, dict):
                out[k], more = prune(v, addl, sub_path, root=False)
                unknown += more
            elif addl is True or preserve:
                out[k] = v
            else:
                unknown.append(sub_path)
        return out, unknown
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = []
        for i, v in enumerate(value):
            pv, more = prune(v, schema["items"], f"{path}[{i}]", root=False)
            items.append(pv)
            unknown += more
        return items, unknown
    return value, unknown


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Fill `default`s of absent properties of every object that exists (structural defaulting)."""
    if isinstance(value, dict):
        props = _props(schema)
        for k, sub in props.items():
            if k not in value and "default" in sub:
                value[k] = copy.deepcopy(sub["default"])
            if k in value:
                value[k] = apply_defaults(value[k], sub)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for k in list(value):
                if k not in props:
                    value[k] = apply_defaults(value[k], addl)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


def _go(value: Any) -> str:
    """A value as the real server prints it in messages (strings quoted, numbers bare)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _type_ok(value: Any, typ: str) -> bool:
    actual = _type_name(value)
    if typ == "number":
        return actual in ("integer", "number")
    if typ == "integer" and isinstance(value, float):
        return value.is_integer()
    return actual == typ


def _format_ok(value: str, fmt: str) -> bool:
    try:
        if fmt == "ipv4":
            ipaddress.IPv4Address(value)
        elif fmt == "ipv6":
            ipaddress.IPv6Address(value)
        elif fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
            return "/" in value
        elif fmt == "date-time":
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif fmt == "date":
            datetime.strptime(value, "%Y-%m-%d")
        elif fmt == "uuid":
            return re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", value) is not None
        elif fmt == "mac":
            return re.fullmatch(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}", value) is not None
        elif fmt == "hostname":
            return (
                re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", value)
                is not None
            )
    except ValueError:
        return False
    return True  # formats the server does not check (int32, int64, byte, password...) accept anything


def validate(value: Any, schema: Schema, path: str = "", root: bool = True) -> list[Cause]:
    """Value validation of an already pruned and defaulted object; one `Cause` per violation."""
    causes: list[Cause] = []
    if value is None:
        if not schema.get("nullable") and not root:
            causes.append(
                Cause(
                    "FieldValueTypeInvalid",
                    f'Invalid value: "null": {path} in body must be of type '
                    f'{schema.get("type", "object")}: "null"',
                    path,
                )
            )
        return causes
    typ = schema.get("type")
    int_or_string = schema.get("x-kubernetes-int-or-string")
    if int_or_string:
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            causes.append(
                Cause(
                    "FieldValueTypeInvalid",
                    f"Invalid value: {_go(value)}: {path} in body must be of "
                    f"type integer,string: {_go(_type_name(value))}",
                    path,
                )
            )
            return causes
    elif typ and not _type_ok(value, typ):
        causes.append(
            Cause(
                "FieldValueTypeInvalid",
                f"Invalid value: {_go(_type_name(value))}: {path} in body "
                f"must be of type {typ}: {_go(_type_name(value))}",
                path,
            )
        )
        return causes
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(json.dumps(e if isinstance(e, str) else _go(e)) for e in schema["enum"])
        causes.append(
            Cause(
                "FieldValueNotSupported",
                f"Unsupported value: {_go(value)}: supported values: {supported}",
                path,
            )
        )
    causes += _value_checks(value, schema, path)
    if isinstance(value, dict):
        props = _props(schema)
        for req in schema.get("required") or []:
            if req not in value:
                causes.append(Cause("FieldValueRequired", "Required value", _join(path, req)))
        for k, v in value.items():
            if (root or schema.get("x-kubernetes-embedded-resource")) and k in _ROOT_META:
                continue
            if k in props:
                causes += validate(v, props[k], _join(path, k), root=False)
            elif isinstance(schema.get("additionalProperties"), dict):
                causes += validate(v, schema["additionalProperties"], _join(path, k), root=False)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            causes += validate(v, schema["items"], f"{path}[{i}]", root=False)
        if schema.get("x-kubernetes-list-type") == "set":
            seen: list[Any] = []
            for i, v in enumerate(value):
                if v in seen:
                    causes.append(Cause("FieldValueDuplicate", f"Duplicate value: {_go(v)}", f"{path}[{i}]"))
                seen.append(v)
    for sub in schema.get("allOf") or []:
        causes += validate(value, sub, path, root=root)
    if schema.get("anyOf") and not any(not validate(value, s, path, root) for s in schema["anyOf"]):
        causes.append(
            Cause(
                "FieldValueInvalid",
                f"Invalid value: {_go(value)}: {path} in body must match at least one schema in anyOf",
                path,
            )
        )
    if schema.get("oneOf") and sum(1 for s in schema["oneOf"] if not validate(value, s, path, root)) != 1:
        causes.append(
            Cause(
                "FieldValueInvalid",
                f"Invalid value: {_go(value)}: {path} in body must match exactly one schema in oneOf",
                path,
            )
        )
    return causes


def _value_checks(value: Any, schema: Schema, path: str) -> list[Cause]:
    out: list[Cause] = []

    def bad(msg: str) -> None:
        out.append(Cause("FieldValueInvalid", f"Invalid value: {_go(value)}: {path} in body {msg}", path))

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema:
            lo = schema["minimum"]
            if value < lo or (schema.get("exclusiveMinimum") and value == lo):
                op = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
                bad(f"should be {op} {_go(lo)}")
        if "maximum" in schema:
            hi = schema["maximum"]
            if value > hi or (schema.get("exclusiveMaximum") and value == hi):
                op = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
                bad(f"should be {op} {_go(hi)}")
        if schema.get("multipleOf") and value % schema["multipleOf"]:
            bad(f"should be a multiple of {_go(schema['multipleOf'])}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            bad(f"should be at least {schema['minLength']} chars long")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(
                Cause(
                    "FieldValueTooLong", f"Too long: may not be more than {schema['maxLength']} bytes", path
                )
            )
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            bad(f"should match '{schema['pattern']}'")
        if "format" in schema and not _format_ok(value, schema["format"]):
            bad(f"must be of type {schema['format']}: {_go(value)}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            bad(f"should have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(
                Cause(
                    "FieldValueTooMany",
                    f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                    path,
                )
            )
    if isinstance(value, dict):
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            bad(f"should have at least {schema['minProperties']} properties")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            out.append(
                Cause(
                    "FieldValueTooMany",
                    f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
                    path,
                )
            )
    return out
