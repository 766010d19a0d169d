"""What the mutating and validating webhooks decide, per kind: the embedded mode's rules.

Owns the decision for one ``AdmissionRequest``; no HTTP here. The rules are the functions
the embedded mode's apply runs (``domain/validation.py``, ``domain/coordinator_spec.py``, and
``domain/multus_config.py`` for SpiderMultusConfig): one set of rules, two front doors.

- Mutating (CREATE, UPDATE): ``validation.apply_defaults``; the answer is the JSONPatch from
  the object the API server sent to the defaulted one. An object being deleted is left alone
  (defaulting would put back the finalizer its owner is removing).
- Validating: CREATE ``validate_create``, UPDATE ``validate_update`` (immutable fields, and
  no IP a pod holds may leave a pool: the old object carries the allocations), DELETE
  ``validate_delete``. The rules that compare with other objects (overlapping subnets, pools
  sharing a subnet, a pool inside its SpiderSubnet) read them through ``ObjectReader``, a
  read-only view of the Store contract (the Kubernetes store in a cluster, any Store in tests),
  after the object's own checks passed, within ``read_timeout_s``. A SpiderMultusConfig may
  not take over a NetworkAttachmentDefinition another SpiderMultusConfig manages: the owner is
  looked up through ``NadOwnerLookup`` (not a Store kind; ``nad_owners.py`` reads it from the
  API server), skipped when none is given.

Errors become denials the API server prints as ``admission webhook "..." denied the request:
<message>``: ``InvalidObject`` 422 Invalid, ``Conflict`` (a terminating object, a pool in use)
403 Forbidden, a review for the wrong kind 400 BadRequest, a store that cannot answer 500
InternalError (with ``failurePolicy: Fail`` the write is refused either way; the message says
why). Nothing here writes, so ``dryRun`` needs no special case.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import structlog
from spiderpool_common.errors import Conflict, InvalidObject, InvalidRequest, SpiderpoolError

from spiderpool_controller.domain import models, multus_config, validation
from spiderpool_controller.domain.validation import ValidationSettings
from spiderpool_controller.webhook import json_patch
from spiderpool_controller.webhook.review import AdmissionRequest, Verdict

log = structlog.get_logger(__name__)

Obj = dict[str, Any]
DEFAULT_READ_TIMEOUT_S = 5.0  # under the API server's default webhook timeout (10 s)
Rule = Callable[[str, AdmissionRequest], Awaitable[Verdict]]


class ObjectReader(Protocol):
    """The read half of the Store contract (``store/contract.py``): all the webhooks need."""

    async def get(self, kind: str, name: str, namespace: str = "") -> Obj: ...

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]: ...


class MultusConfigRules(Protocol):
    """SpiderMultusConfig defaulting and validation: ``domain/multus_config.py`` (the default)."""

    def apply_defaults(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    def validate(
        self, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None, *, nad_owner: str | None = None
    ) -> None: ...


class NadOwnerLookup(Protocol):
    """The SpiderMultusConfig managing a NetworkAttachmentDefinition, or None (absent or unmanaged)."""

    async def __call__(self, namespace: str, name: str) -> str | None: ...


class StoreReadFailed(SpiderpoolError):
    """The objects a cross-object rule needs could not be read."""

    reason = "STORE_READ_FAILED"


class Admission:
    """The decisions of every kind's webhooks; see the module docstring."""

    def __init__(
        self,
        reader: ObjectReader,
        settings: ValidationSettings | None = None,
        *,
        multus_rules: MultusConfigRules = multus_config,
        nad_owners: NadOwnerLookup | None = None,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    ) -> None:
        self._reader = reader
        self._settings = settings or ValidationSettings()
        self._multus = multus_rules
        self._nad_owners = nad_owners
        self._read_timeout = read_timeout_s

    # entry points ---------------------------------------------------------------------
    async def mutate(self, kind: str, req: AdmissionRequest) -> Verdict:
        """The mutating webhook of ``kind`` (the route names the kind)."""
        return await self._decide(kind, req, self._mutate)

    async def validate(self, kind: str, req: AdmissionRequest) -> Verdict:
        """The validating webhook of ``kind``."""
        return await self._decide(kind, req, self._validate)

    async def _decide(self, kind: str, req: AdmissionRequest, rule: Rule) -> Verdict:
        if req.kind != kind or req.group != models.API_GROUP:
            return Verdict.deny(
                400,
                "BadRequest",
                f"this webhook serves {models.API_GROUP} {kind}; the review is for "
                f"{req.group or 'core'} {req.kind} (check the webhook configuration's rules)",
            )
        try:
            if req.old_object is not None:
                _check_stored(kind, req.old_object)
            verdict = await rule(kind, req)
        except InvalidObject as err:
            verdict = Verdict.deny(422, "Invalid", err.message)
        except Conflict as err:
            verdict = Verdict.deny(403, "Forbidden", err.message)
        except InvalidRequest as err:
            verdict = Verdict.deny(400, "BadRequest", err.message)
        except SpiderpoolError as err:
            verdict = Verdict.deny(500, "InternalError", err.message)
        log.info(
            "admission_reviewed",
            kind=kind,
            name=req.name,
            namespace=req.namespace,
            operation=req.operation,
            uid=req.uid,
            dry_run=req.dry_run,
            allowed=verdict.allowed,
            patched=len(verdict.patch),
            message=verdict.message or None,
        )
        return verdict

    # mutating -------------------------------------------------------------------------
    async def _mutate(self, kind: str, req: AdmissionRequest) -> Verdict:
        if req.operation not in ("CREATE", "UPDATE") or req.object is None:
            return Verdict.allow()
        obj = req.object
        if kind == models.KIND_MULTUS_CONFIG:
            if _terminating(obj):
                return Verdict.allow()
            defaulted: Obj = self._multus.apply_defaults(obj)
        else:
            defaulted = validation.apply_defaults(obj)
        return Verdict.allow(json_patch.diff(obj, defaulted))

    # validating -----------------------------------------------------------------------
    async def _validate(self, kind: str, req: AdmissionRequest) -> Verdict:
        if kind == models.KIND_MULTUS_CONFIG:
            return await self._validate_multus_config(req)
        if req.operation == "DELETE":
            assert req.old_object is not None  # parse_review guarantees it
            validation.validate_delete(req.old_object, self._settings)
            return Verdict.allow(warnings=_deletion_warnings(req.old_object))
        if req.operation not in ("CREATE", "UPDATE"):
            return Verdict.allow()
        obj, old = req.object, req.old_object
        assert obj is not None
        # the object's own rules first: a wrong field is reported without reading anything
        self._check(obj, old, ())
        peer_kinds = validation.peer_kinds(kind)
        if peer_kinds and not (old is not None and _drops_finalizer_while_terminating(obj)):
            self._check(obj, old, await self._read_peers(kind, peer_kinds))
        return Verdict.allow()

    def _check(self, obj: Obj, old: Obj | None, peers: list[Obj] | tuple[Obj, ...]) -> None:
        if old is None:
            validation.validate_create(obj, peers, self._settings)
        else:
            validation.validate_update(old, obj, peers, self._settings)

    async def _read_peers(self, kind: str, kinds: tuple[str, ...]) -> list[Obj]:
        out: list[Obj] = []
        for peer_kind in kinds:
            try:
                async with asyncio.timeout(self._read_timeout):  # not wait_for: 3.11 can lose a cancel
                    objs, _ = await self._reader.list(peer_kind)
            except TimeoutError:
                raise StoreReadFailed(
                    f"cannot check {kind} against other objects: listing {peer_kind}s took longer than "
                    f"{self._read_timeout:g}s; try again"
                ) from None
            except SpiderpoolError as err:
                raise StoreReadFailed(
                    f"cannot check {kind} against other objects: listing {peer_kind}s failed: {err}; "
                    "try again"
                ) from err
            out += objs
        return out

    async def _validate_multus_config(self, req: AdmissionRequest) -> Verdict:
        obj = req.object
        if req.operation not in ("CREATE", "UPDATE") or obj is None or _terminating(obj):
            return Verdict.allow()
        self._multus.validate(obj, req.old_object)  # own rules first, without reading
        if self._nad_owners is None:
            return Verdict.allow()
        config = multus_config.SpiderMultusConfig.from_dict(obj)
        namespace = config.meta.namespace or req.namespace
        try:
            async with asyncio.timeout(self._read_timeout):
                owner = await self._nad_owners(namespace, config.nad_name)
        except TimeoutError:
            raise StoreReadFailed(
                f"cannot check who manages NetworkAttachmentDefinition {namespace}/{config.nad_name}: "
                f"the read took longer than {self._read_timeout:g}s; try again"
            ) from None
        self._multus.validate(obj, req.old_object, nad_owner=owner)
        return Verdict.allow()


def _check_stored(kind: str, old: Obj) -> None:
    """``oldObject`` is the stored object, which the API server validated: refuse (400) a review
    whose oldObject is not readable as one, instead of failing inside a rule with a 500.

    The rules trust the stored object's shape: it is of the webhook's kind, its sections are
    objects, and a pool's or subnet's status (the allocations) reads back into the model.
    """
    problem = ""
    meta = old.get("metadata")
    if old.get("kind") != kind:
        problem = f"its kind is {old.get('kind')!r}"
    elif not isinstance(meta, dict):
        problem = "metadata must be an object"
    else:
        for key in ("labels", "annotations"):
            if not isinstance(meta.get(key) or {}, dict):
                problem = f"metadata.{key} must be an object"
    for key in ("spec", "status"):
        if not problem and not isinstance(old.get(key) or {}, dict):
            problem = f"{key} must be an object"
    if not problem and kind in validation.POOL_LIKE_KINDS:
        try:
            if kind == models.KIND_IPPOOL:
                models.IPPool.from_dict(old)
            validation.allocated_count(old)
        except (TypeError, ValueError, AttributeError) as exc:
            problem = f"its status does not read back: {type(exc).__name__}: {exc}"
    if problem:
        raise InvalidRequest(f"oldObject is not a stored {kind}: {problem}")


def _terminating(obj: Obj) -> bool:
    meta = obj.get("metadata")
    return isinstance(meta, dict) and bool(meta.get("deletionTimestamp"))


def _drops_finalizer_while_terminating(obj: Obj) -> bool:
    meta = obj.get("metadata")
    return (
        _terminating(obj)
        and isinstance(meta, dict)
        and models.FINALIZER not in (meta.get("finalizers") or [])
    )


def _deletion_warnings(obj: Obj) -> tuple[str, ...]:
    """A pool or subnet deleted with allocations stays until they are released: say so."""
    kind = str(obj.get("kind") or "")
    if kind not in validation.POOL_LIKE_KINDS:
        return ()
    count = validation.allocated_count(obj)
    if count == 0:
        return ()
    name = str((obj.get("metadata") or {}).get("name", ""))
    return (
        f'{kind} "{name}" still has {count} allocated IPs: it stays (Terminating, no new allocations) '
        "until their pods release them",
    )
