"""The semantics of each REST verb on a resource: what the real API server does between decoding and storage.

Create, get, list, update (PUT), patch (merge, JSON, strategic, apply), delete and deletecollection, for the
main resource and the `status` subresource, in the real server's order: decode + strict field check,
defaulting, mutating webhooks, schema validation, validating webhooks, then compare-and-swap storage. Here
live: resourceVersion preconditions (409), `generation` (bumped only by changes outside metadata and status),
the status subresource split, generateName, uid/creationTimestamp, namespace existence (404) and termination,
`dryRun=All`, finalizers and `deletionTimestamp` (202), delete preconditions, owner-reference garbage
collection (background, foreground, orphan), namespace deletion, CRD registration, managedFields and the fake
workload status. HTTP (routing, content negotiation, watch streams) is `server.py`'s.
"""

from __future__ import annotations

import base64
import json
import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from . import apply as ssa
from . import crds, schema, workloads
from .admission import Admission
from .admission import Request as AdmissionRequest
from .errors import MODIFIED, ApiError, Cause, already_exists, bad_request, conflict, invalid, not_found
from .kinds import Registry, ResourceType
from .patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    json_patch,
    merge_patch,
    strategic_merge,
)
from .rbac import User
from .selectors import parse_field_selector, parse_label_selector
from .store import Event, Obj, Store, clone, meta

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SERVER_META = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
    "selfLink",
    "managedFields",
)
NAMESPACES = "/namespaces"
CRDS = "apiextensions.k8s.io/customresourcedefinitions"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Ctx:
    """One request, resolved: which resource, where, by whom, with which query parameters."""

    rt: ResourceType
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    user: User = field(default_factory=lambda: User("system:admin", ("system:masters",)))
    user_agent: str = ""

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun", "") == "All"

    @property
    def field_validation(self) -> str:
        return self.query.get("fieldValidation", "") or "Warn"

    @property
    def field_manager(self) -> str:
        agent = self.user_agent.split("/", 1)[0] if self.user_agent else "unknown"
        return self.query.get("fieldManager") or agent


@dataclass
class Result:
    status: int
    body: Obj
    warnings: list[str] = field(default_factory=list)


def _strip(obj: Obj, keys: tuple[str, ...]) -> Obj:
    return {k: v for k, v in obj.items() if k not in keys}


def _spec_part(obj: Obj) -> Obj:
    """Everything outside metadata and status: what a `generation` bump is about."""
    return _strip(obj, ("metadata", "status", "apiVersion", "kind"))


def _without_managed(obj: Obj) -> Obj:
    out = clone(obj)
    meta(out).pop("managedFields", None)
    return out


class Api:
    """The REST verbs over one store and registry."""

    def __init__(
        self, store: Store, registry: Registry, admission: Admission, fake_workload_status: bool = True
    ):
        self.store = store
        self.registry = registry
        self.admission = admission
        self.fake_workload_status = fake_workload_status
        self._owners: dict[str, set[tuple[str, str, str]]] = {}  # owner uid -> dependents' keys
        store.listeners.append(self._on_event)

    # --- reads ---------------------------------------------------------------------------------------------

    def present(self, rt: ResourceType, obj: Obj) -> Obj:
        """The object as served at `rt`'s version (conversion strategy None: only apiVersion differs)."""
        obj["apiVersion"] = rt.group_version
        obj["kind"] = rt.kind
        return obj

    def load(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(rt.key, namespace if rt.namespaced else "", name)
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return self.present(rt, obj)

    def get(self, ctx: Ctx) -> Obj:
        return self.load(ctx.rt, ctx.namespace, ctx.name)

    def matcher(self, ctx: Ctx) -> Callable[[Obj], bool]:
        """Label selector, field selector and namespace of a list or watch, as one predicate."""
        labels = parse_label_selector(ctx.query.get("labelSelector"))
        supported = ctx.rt.field_labels + ctx.rt.selectable_fields
        fields = parse_field_selector(ctx.query.get("fieldSelector"), supported)
        ns = ctx.namespace if ctx.rt.namespaced else ""

        def match(obj: Obj) -> bool:
            m = meta(obj)
            if ns and m.get("namespace") != ns:
                return False
            return labels(m.get("labels") or {}) and fields(obj)

        return match

    def list_page(self, ctx: Ctx) -> tuple[list[Obj], str, str, int]:
        """Matching objects, the list's resourceVersion, a continue token and the remaining count."""
        match = self.matcher(ctx)
        rv = str(self.store.revision)
        # stored objects are shared (read-only): present() changes a shallow copy's apiVersion/kind only
        items = [self.present(ctx.rt, dict(o)) for o in self.store.view(ctx.rt.key) if match(o)]
        start: list[str] | None = None
        if ctx.query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(ctx.query["continue"]))
                rv, start = str(token["rv"]), list(token["start"])
            except (ValueError, KeyError, TypeError) as exc:
                raise bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion"
                ) from exc
            if int(rv) < self.store.compacted:
                raise ApiError(
                    410,
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.",
                    reason="Expired",
                )
            items = [o for o in items if [meta(o).get("namespace", ""), meta(o)["name"]] > start]
        limit = int(ctx.query.get("limit", "0") or 0)
        if limit > 0 and len(items) > limit:
            page, rest = items[:limit], items[limit:]
            last = meta(page[-1])
            token = {"rv": int(rv), "start": [last.get("namespace", ""), last["name"]]}
            cont = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            return page, rv, cont, len(rest)
        return items, rv, "", 0

    # --- helpers -------------------------------------------------------------------------------------------

    def _namespace_obj(self, name: str) -> Obj | None:
        return self.store.get(NAMESPACES, "", name)

    def namespace_labels(self, name: str) -> dict[str, str]:
        ns = self.store.peek(NAMESPACES, "", name)
        return dict(meta(ns).get("labels") or {}) if ns else {}

    def _check_namespace(self, ctx: Ctx, creating: bool) -> None:
        if not ctx.rt.namespaced:
            return
        ns = self._namespace_obj(ctx.namespace)
        if ns is None:
            raise not_found("namespaces", "", ctx.namespace)
        if creating and meta(ns).get("deletionTimestamp"):
            raise ApiError(
                403,
                f'{ctx.rt.plural} "{ctx.name}" is forbidden: unable to create new content in namespace '
                f"{ctx.namespace} because it is being terminated",
                details={"name": ctx.name, "kind": ctx.rt.plural},
            )

    def _decode_check(self, ctx: Ctx, obj: Any) -> Obj:
        if not isinstance(obj, dict):
            raise bad_request("the object provided is unrecognized (must be of type object)")
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if (
            api_version
            and api_version != ctx.rt.group_version
            and not (ctx.rt.crd and api_version.startswith(ctx.rt.group + "/"))
        ):
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({ctx.rt.group_version})"
            )
        if kind and kind != ctx.rt.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({ctx.rt.kind})"
            )
        obj["apiVersion"], obj["kind"] = ctx.rt.group_version, ctx.rt.kind
        m = meta(obj)
        if ctx.rt.namespaced:
            if m.get("namespace") and ctx.namespace and m["namespace"] != ctx.namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            m["namespace"] = ctx.namespace or m.get("namespace", "")
        else:
            m.pop("namespace", None)
        return obj

    def _structural(self, ctx: Ctx, obj: Obj, warnings: list[str] | None) -> Obj:
        """Prune (reporting unknown fields per fieldValidation when `warnings` is given) and default a CR."""
        rt = ctx.rt
        if rt.schema is None:
            return obj
        pruned, unknown = schema.prune(obj, rt.schema)
        if warnings is not None and unknown:
            if ctx.field_validation == "Strict":
                listing = ", ".join(f'unknown field "{u}"' for u in unknown)
                raise bad_request(f"strict decoding error: {listing}")
            if ctx.field_validation == "Warn":
                warnings.extend(f'unknown field "{u}"' for u in unknown)
        return schema.apply_defaults(pruned, rt.schema)  # type: ignore[no-any-return]

    def _validate(self, ctx: Ctx, obj: Obj, old: Obj | None) -> None:
        rt = ctx.rt
        name = meta(obj).get("name", "")
        causes: list[Cause] = []
        if old is None:
            cause = _name_problem(rt, name)
            if cause:
                causes.append(cause)
        if rt.schema is not None:
            causes += schema.validate(obj, rt.schema)
        if rt.key == CRDS:
            causes += crds.check(obj)
        if causes:
            raise invalid(rt.kind, rt.group, name, causes)

    async def _admit(
        self, ctx: Ctx, op: str, obj: Obj | None, old: Obj | None, warnings: list[str]
    ) -> Obj | None:
        req = AdmissionRequest(
            rt=ctx.rt,
            operation=op,
            name=meta(obj or old or {}).get("name", ""),
            namespace=ctx.namespace,
            user=ctx.user,
            obj=obj,
            old=old,
            subresource=ctx.subresource,
            dry_run=ctx.dry_run,
        )
        out = await self.admission.mutate(req)
        if out is not None:
            out = self._structural(ctx, out, None)
        if out is not None or op == "DELETE":
            req.obj = out
            if out is not None:
                self._validate(ctx, out, old)
            await self.admission.validate(req)
        warnings += req.warnings
        return out

    def _unchanged_since_admission(self, ctx: Ctx, old: Obj, *, modified_ok: bool = False) -> Obj:
        """The stored object after the (awaited) webhooks: 404 when it went meanwhile, 409 when another
        write changed it (the real server's storage compares the resourceVersion it admitted), unless
        ``modified_ok`` (a delete without preconditions deletes what is there)."""
        current = self.store.get(ctx.rt.key, ctx.namespace if ctx.rt.namespaced else "", ctx.name)
        if current is None:
            raise not_found(ctx.rt.plural, ctx.rt.group, ctx.name)
        if meta(current).get("resourceVersion") != meta(old).get("resourceVersion") and not modified_ok:
            raise conflict(ctx.rt.plural, ctx.rt.group, ctx.name, MODIFIED)
        return self.present(ctx.rt, current)

    def _normalize(self, rt: ResourceType, obj: Obj) -> None:
        """What the real registries fill or fold on every write."""
        if rt.key == "/secrets":
            for k, v in (obj.pop("stringData", None) or {}).items():
                obj.setdefault("data", {})[k] = base64.b64encode(str(v).encode()).decode()
            if not obj.get("type"):
                obj["type"] = "Opaque"
        elif rt.key == CRDS:
            crds.apply_defaults(obj)

    def seed(self, rt: ResourceType, body: Obj) -> Obj:
        """Store an object without admission or checks (what a real cluster has at start)."""
        obj = clone(body)
        obj["apiVersion"], obj["kind"] = rt.group_version, rt.kind
        m = meta(obj)
        m.setdefault("uid", str(uuid.uuid4()))
        m.setdefault("creationTimestamp", now())
        if rt.tracks_generation:
            m.setdefault("generation", 1)
        if rt.key == NAMESPACES:
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
        self._normalize(rt, obj)
        if rt.key == CRDS:
            crds.with_status(obj, now())
        stored = self.store.put(rt.key, obj, None)
        self._after_write(rt, stored, None)
        return stored

    # --- create --------------------------------------------------------------------------------------------

    async def create(
        self, ctx: Ctx, body: Any, manager_op: str = "Update", applied: Obj | None = None
    ) -> Result:
        rt = ctx.rt
        obj = self._decode_check(ctx, body)
        m = meta(obj)
        if not m.get("name") and m.get("generateName"):
            m["name"] = m["generateName"] + "".join(random.choices(_NAME_CHARS, k=5))
        if not m.get("name"):
            raise invalid(
                rt.kind,
                rt.group,
                "",
                [
                    Cause(
                        "FieldValueRequired",
                        "Required value: name or generateName is required",
                        "metadata.name",
                    )
                ],
            )
        ctx.name = m["name"]
        if not rt.namespaced and rt.key == NAMESPACES:
            ctx.namespace = ""
        self._check_namespace(ctx, creating=True)
        for k in _SERVER_META:
            m.pop(k, None)
        if rt.status:
            obj.pop("status", None)
        if rt.key == "/pods":
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif rt.key == NAMESPACES:
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        self._normalize(rt, obj)
        warnings: list[str] = []
        obj = self._structural(ctx, obj, warnings)
        m = meta(obj)
        m["uid"] = str(uuid.uuid4())
        m["creationTimestamp"] = now()
        if rt.tracks_generation:
            m["generation"] = 1
        admitted = await self._admit(ctx, "CREATE", obj, None, warnings)
        assert admitted is not None
        obj = admitted
        if self.store.get(rt.key, meta(obj).get("namespace", ""), meta(obj)["name"]) is not None:
            raise already_exists(rt.plural, rt.group, meta(obj)["name"])
        fields = ssa.field_set(applied if applied is not None else obj, rt.schema, not rt.crd)
        ssa.record(obj, None, ctx.field_manager, manager_op, fields, rt.group_version, now())
        if rt.key == CRDS:
            crds.with_status(obj, now())
        if ctx.dry_run:
            return Result(201, self.present(rt, obj), warnings)
        stored = self.store.put(rt.key, obj, None)
        self._after_write(rt, stored, None)
        return Result(201, self.present(rt, stored), warnings)

    # --- update --------------------------------------------------------------------------------------------

    async def update(self, ctx: Ctx, body: Any) -> Result:
        rt = ctx.rt
        old = self.load(rt, ctx.namespace, ctx.name)
        obj = self._decode_check(ctx, body)
        m = meta(obj)
        if m.get("name") and m["name"] != ctx.name:
            raise bad_request(
                f"the name of the object ({m['name']}) does not match the name on the URL ({ctx.name})"
            )
        rv = m.get("resourceVersion")
        if rv and rv != meta(old)["resourceVersion"]:
            raise conflict(rt.plural, rt.group, ctx.name, MODIFIED)
        if not rv and rt.crd:
            raise invalid(
                rt.kind,
                rt.group,
                ctx.name,
                [
                    Cause(
                        "FieldValueInvalid",
                        "Invalid value: 0x0: must be specified for an update",
                        "metadata.resourceVersion",
                    )
                ],
            )
        return await self._update(ctx, old, obj, "Update")

    async def _update(self, ctx: Ctx, old: Obj, obj: Obj, operation: str) -> Result:
        """The shared tail of PUT and PATCH: status split, admission, validation, generation, storage."""
        rt = ctx.rt
        status_write = ctx.subresource == "status"
        if status_write:
            new = clone(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            if operation == "Apply":
                meta(new)["managedFields"] = meta(obj).get("managedFields", [])
        else:
            new = obj
            nm, om = meta(new), meta(old)
            kept = (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ) + (() if operation == "Apply" else ("managedFields",))
            for k in kept:
                if k in om:
                    nm[k] = om[k]
                else:
                    nm.pop(k, None)
            if rt.status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
        self._normalize(rt, new)
        if not status_write and meta(old).get("deletionTimestamp"):
            # ValidateObjectMetaUpdate: a terminating object's finalizer set may only shrink.
            added = set(meta(new).get("finalizers") or ()) - set(meta(old).get("finalizers") or ())
            if added:
                raise invalid(
                    rt.kind,
                    rt.group,
                    ctx.name,
                    [
                        Cause(
                            "FieldValueForbidden",
                            "Forbidden: no new finalizers can be added if the object is being deleted, "
                            f"found new finalizers {sorted(added)!r}",
                            "metadata.finalizers",
                        )
                    ],
                )
        warnings: list[str] = []
        new = self._structural(ctx, new, warnings)
        admitted = await self._admit(ctx, "UPDATE", new, old, warnings)
        assert admitted is not None
        new = admitted
        self._unchanged_since_admission(ctx, old)
        if rt.tracks_generation and _spec_part(new) != _spec_part(old):
            meta(new)["generation"] = int(meta(old).get("generation", 0)) + 1
        if operation != "Apply":
            fields = ssa.changed_fields(old, new, rt.schema, not rt.crd, status_write)
            ssa.record(
                new,
                old,
                ctx.field_manager,
                "Update",
                fields,
                rt.group_version,
                now(),
                "status" if status_write else "",
            )
        if rt.key == CRDS:
            crds.with_status(new, now())
        meta(new)["resourceVersion"] = meta(old)["resourceVersion"]
        if _without_managed(new) == _without_managed(old):
            return Result(200, self.present(rt, old), warnings)
        if ctx.dry_run:
            return Result(200, self.present(rt, new), warnings)
        if meta(new).get("deletionTimestamp") and not meta(new).get("finalizers"):
            gone = self.store.remove(rt.key, new)
            return Result(200, self.present(rt, gone), warnings)
        stored = self.store.put(rt.key, new, old)
        self._after_write(rt, stored, old)
        return Result(200, self.present(rt, stored), warnings)

    # --- patch ---------------------------------------------------------------------------------------------

    async def patch(self, ctx: Ctx, body: bytes, content_type: str) -> Result:
        rt = ctx.rt
        ct = content_type.split(";", 1)[0].strip().lower()
        if ct not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH) or (
            ct == STRATEGIC_PATCH and rt.crd
        ):
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}" + ("" if rt.crd else f", {STRATEGIC_PATCH}"),
            )
        try:
            patch = yaml.safe_load(body) if ct == APPLY_PATCH else json.loads(body or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"error decoding patch: {exc}") from exc
        current = self.store.get(rt.key, ctx.namespace if rt.namespaced else "", ctx.name)
        if ct == APPLY_PATCH:
            return await self._apply(ctx, current, patch)
        if current is None:
            raise not_found(rt.plural, rt.group, ctx.name)
        old = self.present(rt, current)
        if ct == JSON_PATCH:
            patched = json_patch(old, patch)
        elif ct == MERGE_PATCH:
            if not isinstance(patch, dict):
                raise bad_request(
                    "json: cannot unmarshal array into Go value of type map[string]interface {}"
                )
            patched = merge_patch(old, patch)
        else:
            if not isinstance(patch, dict):
                raise bad_request(
                    "json: cannot unmarshal array into Go value of type map[string]interface {}"
                )
            patched = strategic_merge(old, patch)
        if not isinstance(patched, dict):
            raise bad_request("the patch produced a non-object")
        rv = meta(patched).get("resourceVersion")
        if rv and rv != meta(old)["resourceVersion"]:
            raise conflict(rt.plural, rt.group, ctx.name, MODIFIED)
        if meta(patched).get("name", ctx.name) != ctx.name:
            raise bad_request(
                f"the name of the object ({meta(patched)['name']}) does not match the name on the "
                f"URL ({ctx.name})"
            )
        patched = self._decode_check(ctx, patched)
        return await self._update(ctx, old, patched, "Update")

    async def _apply(self, ctx: Ctx, current: Obj | None, applied: Any) -> Result:
        rt = ctx.rt
        if not isinstance(applied, dict) or not applied.get("apiVersion") or not applied.get("kind"):
            raise bad_request("error decoding YAML: apply patches must set apiVersion and kind")
        name = meta(applied).get("name")
        if name and name != ctx.name:
            raise bad_request(
                f"the name of the object ({name}) does not match the name on the URL ({ctx.name})"
            )
        applied = self._decode_check(ctx, clone(applied))
        if rt.schema is not None:
            pruned, unknown = schema.prune(applied, rt.schema)
            if unknown and ctx.field_validation == "Strict":
                listing = ", ".join(f".{u}: field not declared in schema" for u in unknown)
                raise bad_request(
                    f"failed to create typed patch object (/{ctx.name}; {rt.group_version}, "
                    f"Kind={rt.kind}): {listing}"
                )
            applied = pruned
        if current is None:
            if ctx.subresource:
                raise not_found(rt.plural, rt.group, ctx.name)
            body = clone(applied)
            meta(body)["name"] = ctx.name
            return await self.create(ctx, body, manager_op="Apply", applied=applied)
        old = self.present(rt, current)
        merged = ssa.apply(
            old, applied, ctx.field_manager, rt.schema, not rt.crd, now(), status=ctx.subresource == "status"
        )
        return await self._update(ctx, old, merged, "Apply")

    # --- delete --------------------------------------------------------------------------------------------

    async def delete(self, ctx: Ctx, options: Obj) -> Result:
        rt = ctx.rt
        old = self.load(rt, ctx.namespace, ctx.name)
        pre = options.get("preconditions") or {}
        m = meta(old)
        if pre.get("uid") and pre["uid"] != m.get("uid"):
            raise conflict(
                rt.plural,
                rt.group,
                ctx.name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {m.get('uid')}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != m.get("resourceVersion"):
            raise conflict(
                rt.plural,
                rt.group,
                ctx.name,
                f"Precondition failed: ResourceVersion in precondition: "
                f"{pre['resourceVersion']}, ResourceVersion in object meta: {m.get('resourceVersion')}",
            )
        warnings: list[str] = []
        await self._admit(ctx, "DELETE", None, old, warnings)
        old = self._unchanged_since_admission(ctx, old, modified_ok=True)
        policy = options.get("propagationPolicy") or ctx.query.get("propagationPolicy") or "Background"
        if ctx.dry_run:
            code = 202 if m.get("finalizers") else 200
            return Result(code, old, warnings)
        code, out = self.delete_object(rt.key, old, policy)
        return Result(code, self.present(rt, out), warnings)

    async def delete_collection(self, ctx: Ctx, options: Obj) -> Result:
        items, _, _, _ = self.list_page(ctx)
        deleted = []
        for obj in items:
            sub = Ctx(
                ctx.rt,
                meta(obj).get("namespace", ""),
                meta(obj)["name"],
                "",
                ctx.query,
                ctx.user,
                ctx.user_agent,
            )
            try:
                deleted.append((await self.delete(sub, options)).body)
            except ApiError as exc:
                if exc.code != 404:
                    raise
        body = {
            "kind": ctx.rt.list_kind,
            "apiVersion": ctx.rt.group_version,
            "metadata": {"resourceVersion": str(self.store.revision)},
            "items": deleted,
        }
        return Result(200, body)

    def delete_object(self, key: str, obj: Obj, policy: str = "Background") -> tuple[int, Obj]:
        """Delete now, or mark for deletion while finalizers remain (202). Also used by garbage collection."""
        m = meta(obj)
        if key == NAMESPACES:
            return self._delete_namespace(obj)
        if key == CRDS:
            self._delete_custom_resources(obj)
        dependents = self._dependents(m.get("uid", ""))
        if policy == "Orphan":
            for dep_key, dep in dependents:
                self._drop_owner(dep_key, dep, m.get("uid", ""))
        elif policy == "Foreground" and dependents:
            finalizers = list(m.get("finalizers") or [])
            if "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            m["finalizers"] = finalizers
        if m.get("finalizers"):
            if m.get("deletionTimestamp"):
                return 202, obj
            old = clone(obj)
            m["deletionTimestamp"] = now()
            m["deletionGracePeriodSeconds"] = 0
            if "generation" in m:
                m["generation"] = int(m["generation"]) + 1
            stored = self.store.put(key, obj, old)
            if policy == "Foreground":
                for dep_key, dep in dependents:
                    self.delete_object(dep_key, dep, "Foreground")
            return 202, stored
        return 200, self.store.remove(key, obj)

    def _delete_namespace(self, ns: Obj) -> tuple[int, Obj]:
        name = meta(ns)["name"]
        if not meta(ns).get("deletionTimestamp"):
            old = clone(ns)
            meta(ns)["deletionTimestamp"] = now()
            ns["status"] = {"phase": "Terminating"}
            ns = self.store.put(NAMESPACES, ns, old)
        for (key, obj_ns, _), obj in self.store.all_objects():
            if obj_ns == name and not meta(obj).get("deletionTimestamp"):
                self.delete_object(key, clone(obj))
        return self._finish_namespace(name) or (200, ns)

    def _finish_namespace(self, name: str) -> tuple[int, Obj] | None:
        ns = self._namespace_obj(name)
        if ns is None or not meta(ns).get("deletionTimestamp") or meta(ns).get("finalizers"):
            return None
        if any(k[1] == name for k in self.store.keys()):  # noqa: SIM118 (Store.keys is a method)
            return None
        return 200, self.store.remove(NAMESPACES, ns)

    def _delete_custom_resources(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        key = f"{spec.get('group', '')}/{(spec.get('names') or {}).get('plural', '')}"
        for obj in self.store.objects(key):
            meta(obj)["finalizers"] = []  # the CRD's cleanup finalizer removes instances unconditionally
            self.store.remove(key, obj)

    # --- garbage collection --------------------------------------------------------------------------------

    def _dependents(self, uid: str) -> list[tuple[str, Obj]]:
        out = []
        for key, ns, name in sorted(self._owners.get(uid, set())):
            obj = self.store.get(key, ns, name)
            if obj is not None:
                out.append((key, obj))
        return out

    def _drop_owner(self, key: str, obj: Obj, uid: str) -> None:
        old = clone(obj)
        refs = [r for r in meta(obj).get("ownerReferences") or [] if r.get("uid") != uid]
        if refs:
            meta(obj)["ownerReferences"] = refs
        else:
            meta(obj).pop("ownerReferences", None)
        self.store.put(key, obj, old)

    def _uid_exists(self, uid: str) -> bool:
        return any(meta(o).get("uid") == uid for _, o in self.store.all_objects())

    def _on_event(self, ev: Event) -> None:
        """Keep the owner index; after a removal, collect dependents and finish waiting owners/namespaces."""
        m = meta(ev.obj)
        k = (ev.key, m.get("namespace", ""), m.get("name", ""))
        for ref in meta(ev.old or {}).get("ownerReferences") or []:
            self._owners.get(ref.get("uid", ""), set()).discard(k)
        if ev.type != "DELETED":
            for ref in m.get("ownerReferences") or []:
                self._owners.setdefault(ref.get("uid", ""), set()).add(k)
            return
        uid = m.get("uid", "")
        if ev.key == CRDS:
            self.registry.remove_crd(m["name"])
        for dep_key, dep in self._dependents(uid):
            remaining = [r for r in meta(dep).get("ownerReferences") or [] if r.get("uid") != uid]
            if any(self._uid_exists(r.get("uid", "")) for r in remaining):
                self._drop_owner(dep_key, dep, uid)
            elif not meta(dep).get("deletionTimestamp"):
                self.delete_object(dep_key, dep)
        self._owners.pop(uid, None)
        for ref in m.get("ownerReferences") or []:
            self._maybe_finish_foreground(ref.get("uid", ""))
        if m.get("namespace"):
            self._finish_namespace(m["namespace"])

    def _maybe_finish_foreground(self, owner_uid: str) -> None:
        if self._dependents(owner_uid):
            return
        for (key, _, _), obj in self.store.all_objects():
            om = meta(obj)
            if om.get("uid") == owner_uid and "foregroundDeletion" in (om.get("finalizers") or []):
                new = clone(obj)
                meta(new)["finalizers"] = [f for f in om["finalizers"] if f != "foregroundDeletion"]
                if meta(new)["finalizers"]:
                    self.store.put(key, new, obj)
                else:
                    self.store.remove(key, new)
                return

    # --- after a write ------------------------------------------------------------------------------------

    def _after_write(self, rt: ResourceType, stored: Obj, old: Obj | None) -> None:
        if rt.key == CRDS:
            self.registry.add_crd(meta(stored)["name"], crds.types(stored))
            return
        if self.fake_workload_status and (
            old is None or meta(old).get("generation") != meta(stored).get("generation")
        ):
            nodes = self.store.count("/nodes")
            status = workloads.status_for(rt.key, stored, nodes, now())
            if status is not None:
                new = clone(stored)
                new["status"] = status
                self.store.put(rt.key, new, stored)


def _name_problem(rt: ResourceType, name: str) -> Cause | None:
    if rt.crd:
        if name in (".", "..") or "/" in name or "%" in name:
            return Cause(
                "FieldValueInvalid", f"Invalid value: \"{name}\": may not contain '/' or '%'", "metadata.name"
            )
        return None
    if rt.key == NAMESPACES:
        if not _LABEL.fullmatch(name) or len(name) > 63:
            return Cause(
                "FieldValueInvalid",
                f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of '
                "lower case alphanumeric characters or '-', and must start and end with an alphanumeric "
                "character (e.g. 'my-name',  or '123-abc', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "metadata.name",
            )
        return None
    if rt.key in (
        "rbac.authorization.k8s.io/clusterroles",
        "rbac.authorization.k8s.io/roles",
        "rbac.authorization.k8s.io/clusterrolebindings",
        "rbac.authorization.k8s.io/rolebindings",
    ):
        return None  # RBAC names are path segments ("system:discovery")
    if not _SUBDOMAIN.fullmatch(name) or len(name) > 253:
        return Cause(
            "FieldValueInvalid",
            f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
            "lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
            "character (e.g. 'example.com', regex used for validation is "
            r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            "metadata.name",
        )
    return None
