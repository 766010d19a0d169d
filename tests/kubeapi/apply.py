"""Server-side apply and `managedFields`: a minimal field-ownership model.

Each manager's entry in `metadata.managedFields` holds the set of fields it owns (FieldsV1). An apply merges
the applied configuration into the live object (maps recursively, keyed lists by their keys: the builtin merge
keys of `patch.py`, or `x-kubernetes-list-type: map` keys of a CRD schema; other lists atomically), then
removes the fields this manager applied last time and no longer applies, unless another manager owns them: so
an upgrade that drops a field removes it, as the real server does. Updates (PUT and the other patches) take
ownership of the fields they change. Not modelled (known gaps): apply conflicts between managers (409 without
`force`), the client-side-apply upgrade path, ownership of individual `status` fields.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .patch import PRIMITIVE_MERGE, merge_key

Path = tuple[str, ...]
_UNTRACKED_META = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "generateName",
}


def _keying(field: str, parent: str, schema: dict[str, Any] | None, builtin: bool) -> tuple[str, list[str]]:
    """How a list is merged: ("map", keys), ("set", []) or ("atomic", [])."""
    if field in PRIMITIVE_MERGE:
        return "set", []
    if field == "ownerReferences":
        return "map", ["uid"]
    if schema is not None and not builtin:
        kind = schema.get("x-kubernetes-list-type")
        if kind == "map":
            return "map", list(schema.get("x-kubernetes-list-map-keys") or [])
        return ("set", []) if kind == "set" else ("atomic", [])
    key = merge_key(field, parent) if builtin else None
    return ("map", [key]) if key else ("atomic", [])


def _sub(schema: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    if schema is None:
        return None
    props = schema.get("properties") or {}
    if key in props:
        return props[key]  # type: ignore[no-any-return]
    addl = schema.get("additionalProperties")
    return addl if isinstance(addl, dict) else None


def _item_key(item: Any, keys: list[str]) -> str:
    return "k:" + json.dumps({k: item.get(k) for k in keys if isinstance(item, dict)}, separators=(",", ":"))


def field_set(obj: Any, schema: dict[str, Any] | None, builtin: bool, status: bool = False) -> set[Path]:
    """The fields an object (or applied configuration) sets: leaves, keyed list items and set members."""
    out: set[Path] = set()
    if not isinstance(obj, dict):
        return out
    for k, v in obj.items():
        if k in ("apiVersion", "kind") or (k == "status") != status:
            continue
        if k == "metadata" and isinstance(v, dict):
            tracked = {mk: mv for mk, mv in v.items() if mk not in _UNTRACKED_META}
            if tracked:
                _walk(tracked, ("f:metadata",), None, True, "", out)
            continue
        _walk(v, (f"f:{k}",), _sub(schema, k), builtin, k, out)
    return out


def _walk(
    value: Any, path: Path, schema: dict[str, Any] | None, builtin: bool, field: str, out: set[Path]
) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _walk(v, (*path, f"f:{k}"), _sub(schema, k), builtin, k, out)
        return
    if isinstance(value, list) and value:
        fields_above = [el for el in path[:-1] if el.startswith("f:")]
        parent = fields_above[-1][2:] if fields_above else ""
        mode, keys = _keying(field, parent, schema, builtin)
        items_schema = schema.get("items") if schema else None
        if mode == "map":
            for item in value:
                ipath = (*path, _item_key(item, keys))
                out.add(ipath)
                if isinstance(item, dict):
                    for k, v in item.items():
                        _walk(v, (*ipath, f"f:{k}"), _sub(items_schema, k), builtin, k, out)
            return
        if mode == "set":
            for item in value:
                out.add((*path, "v:" + json.dumps(item, separators=(",", ":"))))
            return
    out.add(path)


def to_fields_v1(fields: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(fields):
        node = tree
        for el in path:
            node = node.setdefault(el, {})
        if path and path[-1].startswith("k:"):
            node.setdefault(".", {})
    return tree


def from_fields_v1(tree: Any, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    if not isinstance(tree, dict):
        return out
    for k, v in tree.items():
        if k == ".":
            out.add(prefix)
            continue
        if isinstance(v, dict) and v:
            out |= from_fields_v1(v, (*prefix, k))
        else:
            out.add((*prefix, k))
    return out


def _merge(
    live: Any, applied: Any, schema: dict[str, Any] | None, builtin: bool, field: str, parent: str
) -> Any:
    if isinstance(applied, dict) and isinstance(live, dict):
        out = copy.deepcopy(live)
        for k, v in applied.items():
            if v is None:
                out.pop(k, None)
            else:
                sub = None if field == "" and k == "metadata" else _sub(schema, k)
                out[k] = _merge(out.get(k), v, sub, builtin or (field == "" and k == "metadata"), k, field)
        return out
    if isinstance(applied, list) and isinstance(live, list):
        mode, keys = _keying(field, parent, schema, builtin)
        if mode == "set":
            return live + [v for v in applied if v not in live]
        if mode == "map":
            items_schema = schema.get("items") if schema else None
            out_list = copy.deepcopy(live)
            for item in applied:
                idx = next(
                    (i for i, c in enumerate(out_list) if _item_key(c, keys) == _item_key(item, keys)), None
                )
                if idx is None:
                    out_list.append(copy.deepcopy(item))
                else:
                    out_list[idx] = _merge(out_list[idx], item, items_schema, builtin, field, parent)
            return out_list
    return copy.deepcopy(applied)


def _remove_path(obj: Any, path: Path) -> None:
    cur = obj
    for i, el in enumerate(path):
        last = i == len(path) - 1
        if el.startswith("f:") and isinstance(cur, dict):
            name = el[2:]
            if last:
                cur.pop(name, None)
                return
            cur = cur.get(name)
        elif el[:2] in ("k:", "v:") and isinstance(cur, list):
            idx = next((j for j, item in enumerate(cur) if _matches(item, el)), None)
            if idx is None:
                return
            if last:
                del cur[idx]
                return
            cur = cur[idx]
        else:
            return


def _matches(item: Any, el: str) -> bool:
    wanted = json.loads(el[2:])
    if el.startswith("v:"):
        return bool(item == wanted)
    return isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items())


def _prune_empty(obj: Any, path: Path) -> None:
    """After a removal, drop maps the removal left empty (the real server does not keep `spec: {}` either)."""
    for depth in range(len(path) - 1, 0, -1):
        parent_path, el = path[: depth - 1], path[depth - 1]
        parent: Any = obj
        for p in parent_path:
            parent = parent.get(p[2:]) if isinstance(parent, dict) and p.startswith("f:") else None
        if isinstance(parent, dict) and el.startswith("f:") and parent.get(el[2:]) == {}:
            del parent[el[2:]]


def entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    mf = (obj.get("metadata") or {}).get("managedFields")
    return list(mf) if isinstance(mf, list) else []


def apply(
    live: dict[str, Any],
    applied: dict[str, Any],
    manager: str,
    schema: dict[str, Any] | None,
    builtin: bool,
    now: str,
    status: bool = False,
) -> dict[str, Any]:
    """The live object after `manager` applied `applied` (see the module docstring for what is modelled)."""
    body = {
        k: v
        for k, v in applied.items()
        if (k == "status") == status or k in ("apiVersion", "kind", "metadata")
    }
    merged: dict[str, Any] = _merge(live, body, schema, builtin, "", "")
    new_fields = field_set(applied, schema, builtin, status)
    sub = "status" if status else ""
    mine = [
        e
        for e in entries(live)
        if e.get("manager") == manager and e.get("operation") == "Apply" and e.get("subresource", "") == sub
    ]
    others = set().union(*(from_fields_v1(e.get("fieldsV1")) for e in entries(live) if e not in mine))
    prev = set().union(*(from_fields_v1(e.get("fieldsV1")) for e in mine))
    for path in sorted(prev - new_fields - others, key=len):  # a removed list item takes its fields along
        _remove_path(merged, path)
        _prune_empty(merged, path)
    record(merged, live, manager, "Apply", new_fields, applied.get("apiVersion", ""), now, sub)
    return merged


def record(
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    manager: str,
    operation: str,
    fields: set[Path],
    api_version: str,
    now: str,
    subresource: str = "",
) -> None:
    """Set `manager`'s entry in `obj`'s managedFields to own `fields` (taken from the other entries)."""
    kept: list[dict[str, Any]] = []
    for e in entries(old or {}):
        same = e.get("manager") == manager and e.get("operation") == operation
        if same and e.get("subresource", "") == subresource:
            continue
        rest = (
            from_fields_v1(e.get("fieldsV1")) - fields
            if operation == "Update"
            else from_fields_v1(e.get("fieldsV1"))
        )
        if rest:
            kept.append({**e, "fieldsV1": to_fields_v1(rest)})
    if fields:
        entry: dict[str, Any] = {
            "manager": manager,
            "operation": operation,
            "apiVersion": api_version,
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(fields),
        }
        if subresource:
            entry["subresource"] = subresource
        kept.append(entry)
    obj.setdefault("metadata", {})["managedFields"] = kept


def changed_fields(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    schema: dict[str, Any] | None,
    builtin: bool,
    status: bool = False,
) -> set[Path]:
    """Fields of `new` whose value differs from `old` (what an Update takes ownership of)."""
    before = _values(old or {}, schema, builtin, status)
    after = _values(new, schema, builtin, status)
    return {p for p, v in after.items() if before.get(p, _MISSING) != v}


_MISSING = object()


def _values(
    obj: dict[str, Any], schema: dict[str, Any] | None, builtin: bool, status: bool
) -> dict[Path, Any]:
    out = {}
    for p in field_set(obj, schema, builtin, status):
        out[p] = _value_at(obj, p)
    return out


def _value_at(obj: Any, path: Path) -> Any:
    cur = obj
    for el in path:
        if el.startswith("f:") and isinstance(cur, dict):
            cur = cur.get(el[2:])
        elif isinstance(cur, list):
            cur = next((i for i in cur if _matches(i, el)), None)
        else:
            return None
    return json.dumps(cur, sort_keys=True)
