"""CustomResourceDefinitions: their defaults, checks, status conditions and the resources they serve.

A CRD the server accepts is served at once: `types()` gives the `ResourceType` of every served version (with
its schema, printer columns and selectable fields) for the registry, and `with_status()` writes what a real
server's CRD controllers write: `acceptedNames`, `storedVersions` and the `NamesAccepted` and `Established`
conditions (kubectl wait and Helm's watcher wait on them). Name conflicts between CRDs are not detected (a
known gap).
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import Cause
from .kinds import ResourceType
from .store import Obj, meta


def apply_defaults(crd: Obj) -> None:
    """The defaults the real server fills into a v1 CRD (names.singular, listKind, conversion strategy)."""
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    spec.setdefault("conversion", {"strategy": "None"})
    for v in spec.get("versions") or []:
        v.setdefault("served", True)


def check(crd: Obj) -> list[Cause]:
    """The CRD fields whose absence would make it unservable, reported like the real validation."""
    causes: list[Cause] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    if not group or "." not in group:
        causes.append(Cause("FieldValueInvalid", "should be a domain with at least one dot", "spec.group"))
    if not names.get("plural"):
        causes.append(Cause("FieldValueRequired", "Required value", "spec.names.plural"))
    if not names.get("kind"):
        causes.append(Cause("FieldValueRequired", "Required value", "spec.names.kind"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            Cause(
                "FieldValueNotSupported",
                f'Unsupported value: "{spec.get("scope", "")}": supported values: "Cluster", "Namespaced"',
                "spec.scope",
            )
        )
    versions = spec.get("versions") or []
    if not versions or sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "must have exactly one version marked as storage version",
                "spec.versions",
            )
        )
    name = meta(crd).get("name", "")
    if names.get("plural") and group and name != f"{names['plural']}.{group}":
        causes.append(
            Cause(
                "FieldValueInvalid",
                f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                "metadata.name",
            )
        )
    return causes


def types(crd: Obj) -> list[ResourceType]:
    """One ResourceType per served version, storage version first (the preferred one in discovery)."""
    spec = crd["spec"]
    names = spec["names"]
    versions = sorted(spec.get("versions") or [], key=lambda v: not v.get("storage"))
    out = []
    for v in versions:
        if not v.get("served", True):
            continue
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        out.append(
            ResourceType(
                group=spec["group"],
                version=v["name"],
                kind=names["kind"],
                plural=names["plural"],
                namespaced=spec.get("scope") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in (v.get("subresources") or {}),
                singular=names.get("singular", ""),
                crd=meta(crd)["name"],
                schema=copy.deepcopy(schema) if isinstance(schema, dict) else None,
                printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
                selectable_fields=tuple(f["jsonPath"].lstrip(".") for f in v.get("selectableFields") or ()),
            )
        )
    return out


def with_status(crd: Obj, now: str) -> Obj:
    """The CRD with the status its controllers would write: names accepted, established, stored versions."""
    spec = crd["spec"]
    status = crd.setdefault("status", {})
    status["acceptedNames"] = dict(spec["names"])
    stored = list(status.get("storedVersions") or [])
    for v in spec.get("versions") or []:
        if v.get("storage") and v["name"] not in stored:
            stored.append(v["name"])
    status["storedVersions"] = stored
    old = {c.get("type"): c for c in status.get("conditions") or []}

    def cond(ctype: str, reason: str, message: str) -> dict[str, Any]:
        prev = old.get(ctype)
        since = prev["lastTransitionTime"] if prev and prev.get("status") == "True" else now
        return {
            "type": ctype,
            "status": "True",
            "lastTransitionTime": since,
            "reason": reason,
            "message": message,
        }

    status["conditions"] = [
        cond("NamesAccepted", "NoConflicts", "no conflicts found"),
        cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
    ]
    return crd
