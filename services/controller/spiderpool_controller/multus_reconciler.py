"""The leader's SpiderMultusConfig reconciler: each one's NetworkAttachmentDefinition, kept in sync.

Owns the NetworkAttachmentDefinitions the SpiderMultusConfigs generate (upstream's pkg/multuscniconfig).
Two informers (SpiderMultusConfigs and NetworkAttachmentDefinitions, all namespaces) feed one
work queue of SpiderMultusConfig keys; a NAD change queues the configuration that owns it and
any that would generate its name, so a NAD deleted or edited by hand is put back at once. A sync:

- applies the same defaulting and validation as the webhooks (``multus_config``), so the NAD is
  the same whether or not the webhooks ran; an object that fails them gets a Warning Event
  naming the field and no NAD, until it is fixed;
- renders the NAD (``domain.nad_render``), reads the current one from the API server, and
  creates it, or replaces it (compare-and-swap on its ``resourceVersion``) when its
  annotations, ``spec.config`` or owner reference differ; a 409 is retried;
- never overwrites a NAD of that name it does not own: one without an owner reference to a
  SpiderMultusConfig of this name (a user's own, or another configuration's through
  ``multus.spidernet.io/cr-name``) is left as it is, and a Warning Event on the
  SpiderMultusConfig says whose it is and what to do (upstream's controller takes it over).
  A NAD whose owner reference names this configuration with another UID (the configuration
  was deleted and created again before the garbage collector got to the old NAD) is adopted;
- does nothing for a deleted SpiderMultusConfig: its NAD carries a controller owner reference
  and the API server's garbage collector deletes it.

NAD and Event writes go through the ``KubeRest`` it is given; in a cluster that is the leader's
``FencedRest``, so they pass the same write fence as the IPAM state: a replica whose Lease lapsed
writes nothing (the key is retried with back-off until it leads again or is cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import structlog
from spiderpool_common.errors import InvalidObject
from spiderpool_common.kube.informer import Informer
from spiderpool_common.kube.rest import KubeError, KubeRest

from spiderpool_controller.domain import models, nad_render
from spiderpool_controller.domain import multus_config as mc
from spiderpool_controller.kube_events import EventRecorder
from spiderpool_controller.work_queue import KeyedQueue

log = structlog.get_logger(__name__)

SMC_PATH = f"/apis/{models.API_VERSION}/spidermultusconfigs"
NAD_COLLECTION = "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions"
NAD_PATH = "/apis/k8s.cni.cncf.io/v1/namespaces/{namespace}/network-attachment-definitions/{name}"
NAD_NAMESPACED = "/apis/k8s.cni.cncf.io/v1/namespaces/{namespace}/network-attachment-definitions"
REASON_INVALID = "InvalidSpiderMultusConfig"
REASON_NOT_OURS = "NetworkAttachmentDefinitionNotManaged"

Key = tuple[str, str]  # (namespace, name) of a SpiderMultusConfig
Obj = dict[str, Any]


class Retry(Exception):
    """The sync could not finish now (a conflict, a NAD being deleted): try the key again later."""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _key(obj: Mapping[str, Any]) -> Key:
    meta = _meta(obj)
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def smc_owner(nad: Mapping[str, Any]) -> dict[str, Any] | None:
    """The SpiderMultusConfig owner reference of a NAD (the controller one first), if any."""
    refs = [
        r
        for r in _meta(nad).get("ownerReferences") or []
        if isinstance(r, dict)
        and r.get("kind") == mc.KIND
        and str(r.get("apiVersion", "")).startswith(f"{models.API_GROUP}/")
    ]
    refs.sort(key=lambda r: not r.get("controller"))
    return refs[0] if refs else None


def nad_path(namespace: str, name: str) -> str:
    return NAD_PATH.format(namespace=quote(namespace, safe=""), name=quote(name, safe=""))


def merge_desired(current: Mapping[str, Any], desired: Mapping[str, Any]) -> Obj:
    """``current`` with what the SpiderMultusConfig decides (annotations, spec, our owner
    reference); other owner references and server metadata are kept."""
    out = copy.deepcopy(dict(current))
    meta = out.setdefault("metadata", {})
    want = desired["metadata"]
    if want.get("annotations"):
        meta["annotations"] = dict(want["annotations"])
    else:
        meta.pop("annotations", None)
    ours = want["ownerReferences"][0]
    others = [
        r
        for r in meta.get("ownerReferences") or []
        if not (isinstance(r, dict) and r.get("kind") == mc.KIND and r.get("name") == ours["name"])
    ]
    meta["ownerReferences"] = [ours, *others]
    out["spec"] = copy.deepcopy(desired["spec"])
    return out


def needs_update(current: Mapping[str, Any], merged: Mapping[str, Any]) -> bool:
    cur, new = _meta(current), _meta(merged)
    return (
        (cur.get("annotations") or {}) != (new.get("annotations") or {})
        or (current.get("spec") or {}) != (merged.get("spec") or {})
        or (cur.get("ownerReferences") or []) != (new.get("ownerReferences") or [])
    )


class MultusConfigReconciler:
    def __init__(
        self,
        rest: KubeRest,
        *,
        events: EventRecorder | None = None,
        retry_base_s: float = 0.2,
        retry_max_s: float = 30.0,
        workers: int = 2,
    ) -> None:
        self._rest = rest
        self.events = events or EventRecorder(rest)
        self.queue: KeyedQueue[Key] = KeyedQueue(base_delay_s=retry_base_s, max_delay_s=retry_max_s)
        self.smcs = Informer(rest, SMC_PATH, handler=self._on_smc)
        self.nads = Informer(rest, NAD_COLLECTION, handler=self._on_nad)
        self._workers = workers
        self.syncs = 0

    # --- events ---------------------------------------------------------------------------

    def _on_smc(self, kind: str, obj: dict[str, Any]) -> None:
        key = _key(obj)
        if kind == "DELETED":
            self.queue.forget(key)
            self.events.clear(obj)
            return
        self.queue.add(key)

    def _on_nad(self, kind: str, obj: dict[str, Any]) -> None:
        namespace, name = _key(obj)
        owner = smc_owner(obj)
        if owner is not None:
            self.queue.add((namespace, str(owner.get("name", ""))))
        for smc in self.smcs.items():
            smc_ns, _ = _key(smc)
            if smc_ns == namespace and mc.SpiderMultusConfig.from_dict(smc).nad_name == name:
                self.queue.add(_key(smc))

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch and reconcile until cancelled (the replica stops leading)."""
        tasks = [
            asyncio.create_task(self.smcs.run(), name="smc-informer"),
            asyncio.create_task(self.nads.run(), name="nad-informer"),
        ]
        try:
            await self.smcs.synced.wait()
            await self.nads.synced.wait()
            log.info("multus_config_reconciler_started", configs=len(self.smcs.cache))
            tasks += [
                asyncio.create_task(self._worker(), name=f"smc-worker-{i}") for i in range(self._workers)
            ]
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            failed = False
            try:
                await self.sync(key)
            except asyncio.CancelledError:
                self.queue.done(key)
                raise
            except Retry as exc:
                failed = True
                log.info("multus_config_retry", namespace=key[0], name=key[1], reason=str(exc))
            except KubeError as exc:
                failed = True
                log.warning("multus_config_sync_failed", namespace=key[0], name=key[1], error=exc.message)
            except Exception as exc:  # a bug must not stop the other configurations
                failed = True
                log.exception("multus_config_sync_crashed", namespace=key[0], name=key[1], error=str(exc))
            self.queue.done(key, failed=failed)

    # --- one configuration ----------------------------------------------------------------

    async def sync(self, key: Key) -> None:
        """Bring the NAD of one SpiderMultusConfig (from the informer's cache) in line with it."""
        namespace, name = key
        self.syncs += 1
        smc = self.smcs.get(f"{namespace}/{name}")
        if smc is None or _meta(smc).get("deletionTimestamp"):
            return
        try:
            defaulted = mc.apply_defaults(smc)
            mc.validate(defaulted)
            desired = nad_render.render(defaulted)
        except InvalidObject as exc:
            if await self.events.warn(
                smc, REASON_INVALID, f"no NetworkAttachmentDefinition generated: {exc}"
            ):
                log.warning("multus_config_invalid", namespace=namespace, name=name, error=str(exc))
            return
        nad_name = desired["metadata"]["name"]
        path = nad_path(namespace, nad_name)
        try:
            current: Obj | None = await self._rest.get(path)
        except KubeError as exc:
            if not exc.not_found:
                raise
            current = None
        if current is None:
            await self._create(smc, desired)
            return
        if _meta(current).get("deletionTimestamp"):
            raise Retry(f"NetworkAttachmentDefinition {namespace}/{nad_name} is being deleted")
        owner = smc_owner(current)
        if owner is None or owner.get("name") != name:
            whose = (
                f"SpiderMultusConfig {owner.get('name')!r}" if owner is not None else "no SpiderMultusConfig"
            )
            message = (
                f"NetworkAttachmentDefinition {namespace}/{nad_name} already exists and is managed by "
                f"{whose}: it is left as it is; delete it (or name this network otherwise with the "
                f"annotation {mc.ANNO_CR_NAME}) for this SpiderMultusConfig to generate it"
            )
            if await self.events.warn(smc, REASON_NOT_OURS, message):
                log.warning("nad_not_managed", namespace=namespace, name=name, nad=nad_name, owner=whose)
            return
        merged = merge_desired(current, desired)
        if needs_update(current, merged):
            try:
                await self._rest.replace(path, merged)
            except KubeError as exc:
                if exc.conflict or exc.not_found:
                    raise Retry(
                        f"NetworkAttachmentDefinition {namespace}/{nad_name} changed meanwhile"
                    ) from exc
                raise
            adopted = owner.get("uid") != _meta(smc).get("uid")
            log.info("nad_updated", namespace=namespace, name=nad_name, config=name, adopted=adopted)
        self.events.clear(smc)

    async def _create(self, smc: Obj, desired: Obj) -> None:
        namespace, nad_name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        try:
            await self._rest.create(NAD_NAMESPACED.format(namespace=quote(namespace, safe="")), desired)
        except KubeError as exc:
            if exc.conflict:  # created meanwhile (409 AlreadyExists): judge it on the next pass
                raise Retry(f"NetworkAttachmentDefinition {namespace}/{nad_name} appeared meanwhile") from exc
            raise
        self.events.clear(smc)
        log.info("nad_created", namespace=namespace, name=nad_name, config=_meta(smc).get("name"))
