"""The vocabulary of the CRD field tables: typed schema nodes that render to OpenAPI v3.

Owns how one field of a ``spiderpool.spidernet.io`` object is declared (its JSON name, type,
enum, format, range, pattern, default, whether it is required, its description and the model
attribute that holds it) and the two pure operations on the rendered schema that the whole
project shares: rendering to the OpenAPI v3 subset a CRD's structural schema accepts, and
structural defaulting (the API server's rule: a ``default`` fills an absent or null field of
an object that exists, recursively, so a default inside an absent object never appears).

The tables themselves are ``crd_schema.py``; the CRD manifests are generated from them by
``spiderpool_tools.crdgen``; the embedded mode's defaulting (``validation.default_object``)
uses the same ``apply_defaults``, so a manifest gets the same defaults with or without an API
server. Pure data and functions: no Kubernetes imports.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

Json = dict[str, Any]


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Final = _NoDefault()


@dataclass(frozen=True)
class Scalar:
    """A string, integer or boolean leaf.

    ``any_of_formats`` renders ``anyOf: [{format: a}, {format: b}]`` for a value that may take
    one of several formats (an IP of either family); structural schemas allow formats, but not
    types, inside ``anyOf``.
    """

    type: str
    format: str | None = None
    enum: tuple[str | int | bool, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None
    any_of_formats: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListOf:
    items: Node
    list_type: str | None = None  # x-kubernetes-list-type


@dataclass(frozen=True)
class MapOf:
    values: Node


@dataclass(frozen=True)
class Field:
    """One property of an object: upstream's JSON name and everything the CRD says about it.

    ``attr`` is the attribute of the project's model that holds the field; by default the
    snake_case of ``name`` (``podCIDRType`` -> ``pod_cidr_type``). A test binds every model to
    its table and fails when either side has a field the other lacks.
    """

    name: str
    node: Node
    description: str = ""
    required: bool = False
    default: object = NO_DEFAULT
    attr: str | None = None

    @property
    def attribute(self) -> str:
        return self.attr if self.attr is not None else snake_case(self.name)

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT


@dataclass(frozen=True)
class Obj:
    """An object with known properties (``title`` names it in errors and in the model bindings)."""

    title: str
    fields: tuple[Field, ...]
    description: str = ""
    map_type: str | None = None  # x-kubernetes-map-type

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.title} has no field {name!r}")

    @property
    def names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


Node = Scalar | ListOf | MapOf | Obj


# ---------------------------------------------------------------------------------------
# constructors that read like the Go types upstream declares


def string(
    *,
    fmt: str | None = None,
    enum: tuple[str, ...] = (),
    pattern: str | None = None,
    any_of_formats: tuple[str, ...] = (),
) -> Scalar:
    return Scalar("string", format=fmt, enum=enum, pattern=pattern, any_of_formats=any_of_formats)


def integer(*, minimum: int | None = None, maximum: int | None = None, enum: tuple[int, ...] = ()) -> Scalar:
    """A Go ``int``: upstream's generator writes no format for it."""
    return Scalar("integer", minimum=minimum, maximum=maximum, enum=enum)


def int32(*, minimum: int | None = None, maximum: int | None = None) -> Scalar:
    return Scalar("integer", format="int32", minimum=minimum, maximum=maximum)


def int64(*, minimum: int | None = None, maximum: int | None = None, enum: tuple[int, ...] = ()) -> Scalar:
    return Scalar("integer", format="int64", minimum=minimum, maximum=maximum, enum=enum)


def boolean(*, enum: tuple[bool, ...] = ()) -> Scalar:
    return Scalar("boolean", enum=enum)


def strings(item: Scalar | None = None, *, list_type: str | None = None) -> ListOf:
    return ListOf(item or string(), list_type=list_type)


_ACRONYM_BEFORE_WORD = re.compile(r"([A-Z]+)([A-Z][a-z])")
_LOWER_BEFORE_UPPER = re.compile(r"([a-z0-9])([A-Z])")


def snake_case(name: str) -> str:
    """``podCIDRType`` -> ``pod_cidr_type``, ``vlanID`` -> ``vlan_id``, ``ipv4Pool`` -> ``ipv4_pool``."""
    return _LOWER_BEFORE_UPPER.sub(r"\1_\2", _ACRONYM_BEFORE_WORD.sub(r"\1_\2", name)).lower()


# ---------------------------------------------------------------------------------------
# rendering


def to_openapi(node: Node, description: str = "") -> Json:
    """The OpenAPI v3 (structural) schema of ``node``; keys are plain dicts, lists keep their order."""
    out: Json
    if isinstance(node, Scalar):
        out = {"type": node.type}
        if node.format is not None:
            out["format"] = node.format
        if node.enum:
            out["enum"] = list(node.enum)
        if node.minimum is not None:
            out["minimum"] = node.minimum
        if node.maximum is not None:
            out["maximum"] = node.maximum
        if node.pattern is not None:
            out["pattern"] = node.pattern
        if node.any_of_formats:
            out["anyOf"] = [{"format": f} for f in node.any_of_formats]
    elif isinstance(node, ListOf):
        out = {"type": "array", "items": to_openapi(node.items)}
        if node.list_type is not None:
            out["x-kubernetes-list-type"] = node.list_type
    elif isinstance(node, MapOf):
        out = {"type": "object", "additionalProperties": to_openapi(node.values)}
    else:
        out = {"type": "object", "properties": {}}
        for f in node.fields:
            prop = to_openapi(f.node, f.description)
            if f.has_default:
                prop["default"] = copy.deepcopy(f.default)
            out["properties"][f.name] = prop
        required = sorted(f.name for f in node.fields if f.required)
        if required:
            out["required"] = required
        if node.map_type is not None:
            out["x-kubernetes-map-type"] = node.map_type
        description = description or node.description
    if description:
        out["description"] = description
    return out


# ---------------------------------------------------------------------------------------
# structural defaulting (shared by the offline validator and the embedded mode)


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """A copy of ``value`` with the schema's defaults filled in, as the API server does.

    A property with a ``default`` that is absent (or null, when not ``nullable``) from an object
    that exists gets the default, which is then itself defaulted; absent objects stay absent.
    Values of the wrong type are returned untouched for validation to report.
    """
    if isinstance(value, dict):
        out = dict(value)
        props = schema.get("properties")
        if isinstance(props, Mapping):
            for key, sub in props.items():
                missing = key not in out or (out[key] is None and not sub.get("nullable"))
                if missing and "default" in sub:
                    out[key] = copy.deepcopy(sub["default"])
                if key in out:
                    out[key] = apply_defaults(sub, out[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            known = props if isinstance(props, Mapping) else {}
            for key in list(out):
                if key not in known:
                    out[key] = apply_defaults(extra, out[key])
        return out
    items = schema.get("items")
    if isinstance(value, list) and isinstance(items, Mapping):
        return [apply_defaults(items, v) for v in value]
    return value


# ---------------------------------------------------------------------------------------
# formats and value checks (the embedded mode's stand-in for the API server's schema check)

_MAC_COLON_DASH = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2})*")
_MAC_DOTTED = re.compile(r"[0-9A-Fa-f]{4}(\.[0-9A-Fa-f]{4})*")
_CIDR_SHAPE = re.compile(r"[^/]+/[0-9]{1,3}")
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in text:  # Go's net.ParseIP knows no zones
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def format_ok(fmt: str, value: Any) -> bool:
    """Whether ``value`` has the OpenAPI ``fmt`` as the API server checks it (Go's net parsers).

    ``ipv4``/``ipv6``: an IP written with dots/colons; ``cidr``: ``address/length`` (host bits
    may be set, as for Go's ParseCIDR); ``mac``: 6, 8 or 20 bytes as ``:``/``-`` pairs or dotted
    quads; ``int32``/``int64``: the integer fits. Formats the server does not check pass.
    """
    if fmt in _INT_RANGES:
        lo, hi = _INT_RANGES[fmt]
        return not isinstance(value, int) or isinstance(value, bool) or lo <= value <= hi
    if not isinstance(value, str):
        return True
    if fmt == "ipv4":
        return _ip(value) is not None and "." in value
    if fmt == "ipv6":
        return _ip(value) is not None and ":" in value
    if fmt == "cidr":
        if not _CIDR_SHAPE.fullmatch(value) or _ip(value.split("/")[0]) is None:
            return False
        try:
            ipaddress.ip_interface(value)
        except ValueError:
            return False
        return True
    if fmt == "mac":
        if _MAC_COLON_DASH.fullmatch(value):
            return (len(value) + 1) // 3 in (6, 8, 20)
        if _MAC_DOTTED.fullmatch(value):
            return (len(value) + 1) // 5 * 2 in (6, 8, 20)
        return False
    return True


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _scalar_errors(schema: Mapping[str, Any], value: Any, path: str) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"])
        errors.append((path, f"{json.dumps(value)} is not one of {allowed}"))
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        errors.append((path, f"{value} is less than the minimum {schema['minimum']}"))
    if "maximum" in schema and isinstance(value, (int, float)) and value > schema["maximum"]:
        errors.append((path, f"{value} is more than the maximum {schema['maximum']}"))
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append((path, f"{value!r} does not match {schema['pattern']!r}"))
    if "format" in schema and not format_ok(schema["format"], value):
        errors.append((path, f"{value!r} is not a valid {schema['format']}"))
    any_of = schema.get("anyOf")
    if any_of and not any(not schema_errors(sub, value, path) for sub in any_of):
        formats = " or ".join(str(sub.get("format", "?")) for sub in any_of)
        errors.append((path, f"{value!r} is not a valid {formats}"))
    return errors


def schema_errors(schema: Mapping[str, Any], value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every ``(field path, message)`` where ``value`` breaks ``schema``, unknown fields included.

    Covers what the field tables use: type, enum, minimum/maximum, pattern, format, anyOf of
    formats, required and unknown properties, maps and lists. Paths read like the API server's
    (``spec.macvlan.master[0]``).
    """
    typ = schema.get("type")
    if typ in _TYPES and (
        not isinstance(value, _TYPES[typ]) or (typ in ("integer", "number") and isinstance(value, bool))
    ):
        return [(path, f"must be of type {typ}, got {json.dumps(value)}")]
    errors = _scalar_errors(schema, value, path)
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if isinstance(props, Mapping):
            errors += [(_join(path, k), "required") for k in schema.get("required", ()) if k not in value]
        for key, item in value.items():
            if isinstance(props, Mapping) and key in props:
                errors += schema_errors(props[key], item, _join(path, key))
            elif isinstance(extra, Mapping):
                errors += schema_errors(extra, item, _join(path, key))
            elif isinstance(props, Mapping) and not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append((_join(path, key), "unknown field"))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{path}[{i}]")
    return errors
