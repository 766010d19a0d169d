"""Label and field selectors: the query-string forms (`labelSelector`, `fieldSelector`) and `LabelSelector`
objects.

Label selectors accept `=`, `==`, `!=`, `in (...)`, `notin (...)`, `key` (exists) and `!key`, comma-separated;
field selectors accept `=`, `==`, `!=` on the field labels a kind supports (metadata.name and
metadata.namespace always; others per kind, as listed in `kinds.py`). Malformed selectors and unsupported
field labels are 400s with the real server's messages.
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


def _expression(key: str, op: str, values: set[str]) -> Matcher:
    if op == "In":
        return lambda labels: labels.get(key) in values
    if op == "NotIn":
        return lambda labels: labels.get(key) not in values
    if op == "Exists":
        return lambda labels: key in labels
    if op == "DoesNotExist":
        return lambda labels: key not in labels
    raise ApiError(400, f'"{op}" is not a valid label selector operator')


def selector_object_matcher(selector: Mapping[str, Any] | None) -> Matcher:
    """A matcher for a `LabelSelector` object (matchLabels + matchExpressions); None/{} matches all."""
    if not selector:
        return lambda labels: True
    reqs = [_expression(k, "In", {v}) for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        reqs.append(_expression(expr.get("key", ""), expr.get("operator", ""), set(expr.get("values") or [])))
    return lambda labels: all(r(labels) for r in reqs)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field path (`spec.nodeName`), "" when absent: compared by selectors."""
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
        if m.group(1) not in allowed:
            raise ApiError(400, f"field label not supported: {m.group(1)}")
        reqs.append(_field_requirement(m.group(1), m.group(2) == "!=", m.group(3)))
    return lambda obj: all(r(obj) for r in reqs)


def _field_requirement(path: str, negate: bool, value: str) -> Callable[[Mapping[str, Any]], bool]:
    if negate:
        return lambda obj: field_value(obj, path) != value
    return lambda obj: field_value(obj, path) == value


def exact_name(text: str | None) -> str:
    """The name a `fieldSelector` pins with `metadata.name=X` (or `==`), else "": a real API server
    authorizes such a list or watch as a request for that name, so Roles with `resourceNames` allow it."""
    if not text:
        return ""
    for part in _split_top(text):
        m = re.fullmatch(r"metadata\.name\s*(==|=)\s*(.*)", part.strip())
        if m and m.group(2) and "/" not in m.group(2):
            return m.group(2)
    return ""
