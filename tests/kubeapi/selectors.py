"""Label and field selectors: the query-string forms (`labelSelector`, `fieldSelector`) and `LabelSelector` objects.

Label selectors accept `=`, `==`, `!=`, `in (...)`, `notin (...)`, `key` (exists) and `!key`, comma-separated;
field selectors accept `=`, `==`, `!=` on the field labels a kind supports (metadata.name and metadata.namespace
always; others per kind, as listed in `kinds.py`). Malformed selectors and unsupported field labels are 400s with
the real server's messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ApiError

Matcher = Callable[[Mapping[str, str]], bool]

_KEY = r"[A-Za-z0-9./_-]+"
_VALUE = r"[A-Za-z0-9._-]*"


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _requirement(text: str) -> Matcher:
    bad = ApiError(400, f"unable to parse requirement: {text!r}")
    m = re.fullmatch(rf"({_KEY})\s+(in|notin)\s*\(([^)]*)\)", text)
    if m:
        key, op = m.group(1), m.group(2)
        values = {v.strip() for v in m.group(3).split(",") if v.strip()}
        if op == "in":
            return lambda labels: key in labels and labels[key] in values
        return lambda labels: key not in labels or labels[key] not in values
    m = re.fullmatch(rf"({_KEY})\s*(==|=|!=)\s*({_VALUE})", text)
    if m:
        key, op, value = m.group(1), m.group(2), m.group(3)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    m = re.fullmatch(rf"(!?)\s*({_KEY})", text)
    if m:
        negate, key = m.group(1) == "!", m.group(2)
        return (lambda labels: key not in labels) if negate else (lambda labels: key in labels)
    raise bad


def parse_label_selector(text: str | None) -> Matcher:
    """A matcher for a `labelSelector` query value; empty matches everything."""
    if not text:
        return lambda labels: True
    reqs = [_requirement(p) for p in _split_top(text)]
    return lambda labels: all(r(labels) for r in reqs)


def selector_object_matcher(selector: Mapping[str, Any] | None) -> Matcher:
    """A matcher for a `LabelSelector` object (`matchLabels` + `matchExpressions`); None/{} matches everything."""
    if not selector:
        return lambda labels: True
    reqs: list[Matcher] = []
    for k, v in (selector.get("matchLabels") or {}).items():
        reqs.append(lambda labels, k=k, v=v: labels.get(k) == v)
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), set(expr.get("values") or [])
        if op == "In":
            reqs.append(lambda labels, key=key, values=values: labels.get(key) in values)
        elif op == "NotIn":
            reqs.append(lambda labels, key=key, values=values: labels.get(key) not in values)
        elif op == "Exists":
            reqs.append(lambda labels, key=key: key in labels)
        elif op == "DoesNotExist":
            reqs.append(lambda labels, key=key: key not in labels)
        else:
            raise ApiError(400, f'"{op}" is not a valid label selector operator')
    return lambda labels: all(r(labels) for r in reqs)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field path (`spec.nodeName`), "" when absent, as field selectors compare."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None, supported: tuple[str, ...]) -> Callable[[Mapping[str, Any]], bool]:
    """A matcher for a `fieldSelector` query value over whole objects."""
    if not text:
        return lambda obj: True
    reqs: list[Callable[[Mapping[str, Any]], bool]] = []
    allowed = ("metadata.name", "metadata.namespace", *supported)
    for part in _split_top(text):
        m = re.fullmatch(r"([A-Za-z0-9._-]+)\s*(==|=|!=)\s*(.*)", part)
        if not m:
            raise ApiError(400, f"invalid selector: '{text}'; can't understand '{part}'")
        path, op, value = m.group(1), m.group(2), m.group(3)
        if path not in allowed:
            raise ApiError(400, f'field label not supported: {path}')
        if op == "!=":
            reqs.append(lambda obj, p=path, v=value: field_value(obj, p) != v)
        else:
            reqs.append(lambda obj, p=path, v=value: field_value(obj, p) == v)
    return lambda obj: all(r(obj) for r in reqs)
