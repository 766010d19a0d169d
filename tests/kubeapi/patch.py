"""Patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch for builtin kinds.

Strategic merge patch knows the merge keys of the common builtin list fields (`MERGE_KEYS`: containers, env,
volumes... by name, volumeMounts by mountPath, container ports by containerPort, service ports by port) and
the `$patch` (replace/delete/merge), `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>` and
`$retainKeys` directives; lists without a known merge key are replaced whole, as for fields with no patch
strategy. Custom resources refuse it with 415, as the real server does.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import ApiError
from .store import clone

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"

#: list field name -> merge key (parent-dependent `ports` is handled in `merge_key`).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
    "readinessGates": "conditionType",
}
#: primitive lists merged as sets (patchStrategy "merge").
PRIMITIVE_MERGE = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    out = clone(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# --- RFC 6902
# --------------------------------------------------------------------------------------------------


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, f"invalid JSON pointer: {path!r}")
    return [_unescape(t) for t in path[1:].split("/")]


def _index(container: list[Any], token: str, *, insert: bool) -> int:
    if token == "-" and insert:
        return len(container)
    if not token.isdigit():
        raise ValueError(f"invalid array index {token!r}")
    idx = int(token)
    if idx > len(container) or (not insert and idx == len(container)):
        raise ValueError(f"array index {idx} out of bounds")
    return idx


def _parent(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for t in tokens[:-1]:
        if isinstance(cur, dict):
            if t not in cur:
                raise ValueError(f"missing path component {t!r}")
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t, insert=False)]
        else:
            raise ValueError(f"cannot descend into {t!r}")
    return cur


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise ValueError(f"missing key {last!r}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, insert=False)]
    raise ValueError("invalid path")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, insert=True), value)
    else:
        raise ValueError("invalid path")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise ValueError("cannot remove the root")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise ValueError(f"unable to remove nonexistent key: {last}")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, insert=False)]
    else:
        raise ValueError("invalid path")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 on a copy of `doc`. A non-list body is a 400 with the Go decoder's message, as measured."""
    if isinstance(ops, dict):
        raise ApiError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    if not isinstance(ops, list):
        raise ApiError(
            400, f"json: cannot unmarshal {type(ops).__name__} into Go value of type jsonpatch.Patch"
        )
    out = clone(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise ApiError(400, "json: cannot unmarshal into Go value of type jsonpatch.Operation")
        try:
            name = op["op"]
            tokens = _pointer(op.get("path", ""))
            if name == "add":
                out = _add(out, tokens, clone(op.get("value")))
            elif name == "remove":
                out = _remove(out, tokens)
            elif name == "replace":
                _get(out, tokens)
                out = _add(_remove(out, tokens), tokens, clone(op.get("value"))) if tokens else op["value"]
            elif name in ("move", "copy"):
                src = _pointer(op.get("from", ""))
                value = clone(_get(out, src))
                if name == "move":
                    out = _remove(out, src)
                out = _add(out, tokens, value)
            elif name == "test":
                if _get(out, tokens) != op.get("value"):
                    raise ValueError(f"testing value {op.get('path')} failed")
            else:
                raise ValueError(f"Unexpected kind: {name}")
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise ApiError(
                422, f"the server rejected our request due to an error in our request: {exc}"
            ) from exc
    return out


# --- strategic merge patch
# -------------------------------------------------------------------------------------


def merge_key(field: str, parent_field: str) -> str | None:
    """The merge key of a builtin list field (`parent_field` is the list holding its map), None if atomic."""
    if field == "ports":
        return (
            "containerPort"
            if parent_field in ("containers", "initContainers", "ephemeralContainers")
            else "port"
        )
    return MERGE_KEYS.get(field)


def strategic_merge(original: Any, patch: Any, parent_field: str = "") -> Any:
    """Apply a strategic merge patch to a map (recursively); `parent_field` names the list the map sits in."""
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    body = {k: v for k, v in patch.items() if k != "$patch"}
    if directive == "replace":
        return _strip_directives(body)
    out = clone(original) if isinstance(original, dict) else {}
    orders = {k.split("/", 1)[1]: v for k, v in body.items() if k.startswith("$setElementOrder/")}
    deletes = {k.split("/", 1)[1]: v for k, v in body.items() if k.startswith("$deleteFromPrimitiveList/")}
    retain = body.get("$retainKeys")
    for key, value in body.items():
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge(out.get(key), value, parent_field)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list):
            out[key] = _merge_list(out.get(key), value, key, parent_field)
        else:
            out[key] = value
    for key, values in deletes.items():
        if isinstance(out.get(key), list):
            out[key] = [v for v in out[key] if v not in values]
    for key, order in orders.items():
        if isinstance(out.get(key), list):
            out[key] = _reorder(out[key], order, merge_key(key, parent_field))
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _merge_list(original: Any, patch: list[Any], field: str, parent_field: str) -> list[Any]:
    current = clone(original) if isinstance(original, list) else []
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [
            _strip_directives(p) for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")
        ]
    if field in PRIMITIVE_MERGE:
        return current + [v for v in patch if v not in current]
    key = merge_key(field, parent_field)
    if key is None or not all(isinstance(p, dict) for p in patch):
        return _strip_directives(patch)  # type: ignore[no-any-return]
    for item in patch:
        if key not in item:
            raise ApiError(422, f"map: {item} does not contain declared merge key: {key}")
        idx = next(
            (i for i, c in enumerate(current) if isinstance(c, dict) and c.get(key) == item[key]), None
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                del current[idx]
            continue
        if idx is None:
            current.append(_strip_directives(item))
        else:
            current[idx] = strategic_merge(current[idx], item, field)
    return current


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(v: Any) -> str:
        return json.dumps(v.get(key) if key and isinstance(v, dict) else v, sort_keys=True)

    wanted = [ident(o) for o in order]
    ranked = [i for i in items if ident(i) in wanted]
    ranked.sort(key=lambda i: wanted.index(ident(i)))
    rest = [i for i in items if ident(i) not in wanted]
    return ranked + rest
