"""Server-side tables (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), as kubectl asks for them.

Columns are Name, then a CRD's `additionalPrinterColumns` (JSONPath subset: `.a.b`, `.a[0].b`, `.a[*].b`,
`.a['x.y']`) or a builtin kind's own columns (pods: READY STATUS RESTARTS AGE, IP and NODE in wide...), and
Age. Columns with priority > 0 are the ones kubectl shows only with `-o wide`; the server always sends them
all. Ages are rendered like the apiserver's human-readable durations ("5s", "3m2s", "4h", "2d3h").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .kinds import ResourceType
from .store import Obj, meta

Column = dict[str, Any]
_NAME = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name must be unique within a namespace.",
}
_AGE = {
    "name": "Age",
    "type": "string",
    "format": "",
    "priority": 0,
    "description": "CreationTimestamp is a timestamp representing the server time when this object was "
    "created.",
}


def human_duration(seconds: float) -> str:
    """Go's duration.HumanDuration, as `kubectl get` prints ages."""
    if seconds < -1:
        return "<invalid>"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, now: datetime | None = None) -> str:
    if not timestamp:
        return "<unknown>"
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return human_duration(((now or datetime.now(UTC)) - then).total_seconds())


_TOKEN = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+|\*)\]|\['([^']+)'\]|\[\"([^\"]+)\"\]")


def jsonpath(obj: Any, expr: str) -> list[Any]:
    """Evaluate the JSONPath subset printer columns use; returns every match."""
    expr = expr.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    expr = expr.removeprefix("$")
    current = [obj]
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            return []
        pos = m.end()
        nxt: list[Any] = []
        for c in current:
            key = m.group(1) or m.group(3) or m.group(4)
            if key is not None:
                if isinstance(c, dict) and key in c:
                    nxt.append(c[key])
            elif m.group(2) == "*":
                nxt.extend(c if isinstance(c, list) else list(c.values()) if isinstance(c, dict) else [])
            elif isinstance(c, list) and int(m.group(2)) < len(c):
                nxt.append(c[int(m.group(2))])
        current = nxt
    return current


def _cell(obj: Obj, column: Column) -> Any:
    found = jsonpath(obj, column.get("jsonPath", ""))
    if not found:
        return None
    value = (
        found[0] if len(found) == 1 else ",".join(v if isinstance(v, str) else json.dumps(v) for v in found)
    )
    if column.get("type") == "date" and isinstance(value, str):
        return age(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


# --- builtin kinds' columns
# ------------------------------------------------------------------------------------


def _pod_cells(pod: Obj) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for c in statuses:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            reason = waiting["reason"]
    if meta(pod).get("deletionTimestamp"):
        reason = "Terminating"
    gates = ",".join(g.get("conditionType", "") for g in spec.get("readinessGates") or []) or "<none>"
    return [
        f"{ready}/{total}",
        reason,
        restarts,
        None,
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates,
    ]


def _replicas(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = spec.get("replicas", 1)
    return [
        f"{status.get('readyReplicas', 0)}/{want}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
    ]


def _col(name: str, typ: str = "string", priority: int = 0) -> Column:
    return {"name": name, "type": typ, "format": "", "description": name, "priority": priority}


_BUILTIN: dict[str, tuple[list[Column], Callable[[Obj], list[Any]]]] = {
    "/pods": (
        [
            _col("Ready"),
            _col("Status"),
            _col("Restarts", "string"),
            _col("Age"),
            _col("IP", priority=1),
            _col("Node", priority=1),
            _col("Nominated Node", priority=1),
            _col("Readiness Gates", priority=1),
        ],
        _pod_cells,
    ),
    "/namespaces": (
        [_col("Status"), _col("Age")],
        lambda o: [(o.get("status") or {}).get("phase", "Active"), None],
    ),
    "/nodes": (
        [_col("Status"), _col("Roles"), _col("Age"), _col("Version")],
        lambda o: [
            _node_ready(o),
            "<none>",
            None,
            ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""),
        ],
    ),
    "/configmaps": (
        [_col("Data", "integer"), _col("Age")],
        lambda o: [len(o.get("data") or {}) + len(o.get("binaryData") or {}), None],
    ),
    "/secrets": (
        [_col("Type"), _col("Data", "integer"), _col("Age")],
        lambda o: [o.get("type", "Opaque"), len(o.get("data") or {}), None],
    ),
    "apps/deployments": (
        [_col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"), _col("Age")],
        lambda o: [*_replicas(o), None],
    ),
    "apiextensions.k8s.io/customresourcedefinitions": (
        [_col("Created At", "date")],
        lambda o: [meta(o).get("creationTimestamp")],
    ),
}


def _node_ready(node: Obj) -> str:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return "Ready" if c.get("status") == "True" else "NotReady"
    return "Unknown"


def columns(rt: ResourceType) -> list[Column]:
    if rt.crd:
        cols = [
            {
                "name": c["name"],
                "type": c.get("type", "string"),
                "format": c.get("format", ""),
                "description": c.get("description", ""),
                "priority": c.get("priority", 0),
            }
            for c in rt.printer_columns
        ]
        return [_NAME, *cols, _AGE]
    builtin = _BUILTIN.get(rt.key)
    if builtin is None:
        return [_NAME, _AGE]
    cols = [_AGE if c["name"] == "Age" else c for c in builtin[0]]
    return [_NAME, *cols] if any(c["name"] == "Age" for c in cols) else [_NAME, *cols, _AGE]


def row(rt: ResourceType, obj: Obj, include_object: str = "Metadata") -> dict[str, Any]:
    m = meta(obj)
    if rt.crd:
        cells = [m.get("name"), *(_cell(obj, c) for c in rt.printer_columns), age(m.get("creationTimestamp"))]
    elif rt.key in _BUILTIN:
        defs, fn = _BUILTIN[rt.key]
        values = fn(obj)
        cells = [m.get("name")]
        for c, v in zip(defs, values, strict=True):
            cells.append(age(m.get("creationTimestamp")) if c["name"] == "Age" else v)
        if not any(c["name"] == "Age" for c in defs):
            cells.append(age(m.get("creationTimestamp")))
    else:
        cells = [m.get("name"), age(m.get("creationTimestamp"))]
    out: dict[str, Any] = {"cells": cells}
    if include_object == "Object":
        out["object"] = obj
    elif include_object != "None":
        out["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": m}
    return out


def table(
    rt: ResourceType,
    objs: list[Obj],
    rv: str,
    include_object: str = "Metadata",
    cont: str = "",
    remaining: int | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        metadata["continue"] = cont
    if remaining:
        metadata["remainingItemCount"] = remaining
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns(rt),
        "rows": [row(rt, o, include_object) for o in objs],
    }
