"""Validate a manifest against the generated CRD files offline, as the API server would.

Owns the server's order for a custom resource (apiextensions-apiserver): the ``apiVersion`` and
``kind`` must name a served CRD and ``metadata.name`` must be set; null values of non-nullable
fields are dropped; unknown fields are pruned (with ``strict``, the default and what kubectl's
``--validate=strict`` asks for, each one is an error naming its path instead); the schema's
defaults are applied; then the value validation runs, here with ``jsonschema`` (Draft 4, the
JSON Schema that OpenAPI v3.0 extends) on the OpenAPI subset converted: ``nullable``,
``x-kubernetes-int-or-string`` and the formats the server checks (ipv4, ipv6, cidr, mac, int32,
int64, with ``openapi_fields.format_ok``'s Go semantics).

A development and test tool: it reads the files ``make crds`` wrote, so it proves the artifact,
not the tables; ``jsonschema`` comes with the ``test`` extra, and production code (the webhooks
run the domain's own validation) never imports this module.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from spiderpool_common import bounded_yaml
from spiderpool_controller.domain.openapi_fields import apply_defaults, format_ok

_FORMATS = ("ipv4", "ipv6", "cidr", "mac", "int32", "int64")
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")


@dataclass(frozen=True)
class FieldError:
    path: str  # e.g. spec.routes[0].gw
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ManifestInvalid(ValueError):
    """The manifest would be refused; ``errors`` name every offending field."""

    def __init__(self, name: str, errors: Iterable[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__(f"{name}: " + "; ".join(map(str, self.errors)))

    @property
    def paths(self) -> list[str]:
        return [e.path for e in self.errors]


@dataclass(frozen=True)
class Admitted:
    """What the server would store: the pruned, defaulted object and the fields it dropped."""

    obj: dict[str, Any]
    pruned: tuple[str, ...]


@dataclass(frozen=True)
class CrdSet:
    """The CRDs of one directory, by ``(group/version, kind)``."""

    crds: dict[tuple[str, str], dict[str, Any]]

    @classmethod
    def load(cls, directory: Path) -> CrdSet:
        crds: dict[tuple[str, str], dict[str, Any]] = {}
        for path in sorted(directory.glob("*.yaml")):
            for doc in bounded_yaml.load_all(path.read_text(), str(path)):
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    if version.get("served"):
                        crds[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = doc
        return cls(crds)

    def schema(self, api_version: str, kind: str) -> dict[str, Any] | None:
        crd = self.crds.get((api_version, kind))
        if crd is None:
            return None
        version = api_version.rsplit("/", 1)[-1]
        for v in crd["spec"]["versions"]:
            if v["name"] == version:
                schema = v["schema"]["openAPIV3Schema"]
                assert isinstance(schema, dict)
                return schema
        return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def prune(schema: Mapping[str, Any], value: Any, path: str = "") -> tuple[Any, list[str]]:
    """Drop unknown fields and nulls of non-nullable fields; return the value and the dropped paths."""
    dropped: list[str] = []
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if not isinstance(props, Mapping) and not isinstance(extra, Mapping):
            return value, dropped  # e.g. the root metadata: the server checks it, not the schema
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = props.get(key) if isinstance(props, Mapping) else None
            if sub is None and isinstance(extra, Mapping):
                sub = extra
            if sub is None:
                dropped.append(_join(path, key))
            elif item is not None or sub.get("nullable"):
                out[key], more = prune(sub, item, _join(path, key))
                dropped += more
        return out, dropped
    items = schema.get("items")
    if isinstance(value, list) and isinstance(items, Mapping):
        out_items = []
        for i, item in enumerate(value):
            pruned, more = prune(items, item, f"{path}[{i}]")
            out_items.append(pruned)
            dropped += more
        return out_items, dropped
    return value, dropped


def to_json_schema(node: Any) -> Any:
    """The Draft 4 JSON Schema equivalent of an OpenAPI v3 (structural) schema node."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "description", "default"):
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        else:
            out[key] = to_json_schema(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())
    for fmt in _FORMATS:
        checker.checks(fmt)(lambda value, fmt=fmt: format_ok(fmt, value))
    return checker


_CHECKER = _format_checker()


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out = f"{out}[{part}]" if isinstance(part, int) else _join(out, str(part))
    return out


def _field_error(error: jsonschema.ValidationError) -> FieldError:
    path = _path(error.absolute_path)
    rule = error.validator_value if isinstance(error.validator_value, list) else []
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in rule if name not in error.instance]
        return FieldError(_join(path, missing[0]) if missing else path, "Required value")
    if error.validator == "anyOf":
        formats = [s.get("format") for s in rule if isinstance(s, Mapping)]
        if all(formats):
            return FieldError(path, f"{error.instance!r} is not a valid {' or '.join(map(str, formats))}")
    return FieldError(path, error.message)


def validate_manifest(manifest: Mapping[str, Any], crds: CrdSet, *, strict: bool = True) -> Admitted:
    """Admit ``manifest`` as the API server would, or raise ``ManifestInvalid`` naming each field."""
    meta = manifest.get("metadata")
    name = str(meta.get("name", "")) if isinstance(meta, Mapping) else ""
    where = f"{manifest.get('kind', '?')} {name or '<unnamed>'}"
    api_version, kind = str(manifest.get("apiVersion", "")), str(manifest.get("kind", ""))
    schema = crds.schema(api_version, kind)
    if schema is None:
        raise ManifestInvalid(where, [FieldError("kind", f"no served CRD for {api_version} {kind}")])
    if not isinstance(meta, Mapping) or not (meta.get("name") or meta.get("generateName")):
        raise ManifestInvalid(where, [FieldError("metadata.name", "Required value")])
    obj, dropped = prune(schema, copy.deepcopy(dict(manifest)))
    if strict and dropped:
        raise ManifestInvalid(where, [FieldError(p, "unknown field") for p in dropped])
    obj = apply_defaults(schema, obj)
    validator = jsonschema.Draft4Validator(to_json_schema(schema), format_checker=_CHECKER)
    errors = sorted((_field_error(e) for e in validator.iter_errors(obj)), key=lambda e: e.path)
    if errors:
        raise ManifestInvalid(where, errors)
    return Admitted(obj, tuple(dropped))
