"""The coordinator verbs: a validated CNI call run through the coordinator library.

Owns the per-verb semantics of the ``coordinator`` plugin chained after the main CNI
(upstream's cmd/coordinator/cmd: cni_types.go, command_add.go, command_del.go); the routing work
itself is ``spiderpool_coordinator.api``,
which this module runs in the agent's process, so the "host" side of every pod is the
agent's own network namespace (the node's).

- ADD needs prevResult (code 7 without it). Its configuration is the SpiderCoordinator
  ``default`` (``coordinator_source``), overridden by every field set in the CNI config,
  then by the pod's ``ipam.spidernet.io/default-route-nic`` annotation. The answer is
  prevResult (the coordinator does not change it) in the requested CNI version.
- DEL removes the host side; it succeeds when the namespace is gone, when repeated, and
  when the controller is unreachable (the last known or default configuration is used).
- CHECK verifies what ADD made and fails naming what is missing (code 120).
- GC removes the node-side state (host veth, host routes, neighbours and rules) of this
  network's attachments missing from ``cni.dev/valid-attachments``: ADD records per
  attachment what it leaves on the node (``spiderpool_coordinator.host_records``, under the
  agent's state directory), DEL uses and forgets that record, and GC collects the records
  of its own network only (``spiderpool_coordinator.gc``); failures are reported together
  as code 11 and retried by the next GC.
- STATUS answers 50 when the SpiderCoordinator cannot be read or is not ready.

Pod annotations come from the same ``PodContextSource`` the IPAM verbs use: in the
embedded mode the ones the runtime put under the config's ``args.cni.annotations``
(``cni_call.PodMetadata``), in a cluster the pod read from the API
(``kube_pod_context``). ADD and CHECK read them; DEL does not (it removes what ADD made,
whatever NIC carried the default route, and must not fail over a pod that is gone).
STATUS also answers 50 while that source is not ready. The library's errors become
``CniError`` in one place, ``coordinator_errors.to_cni_error``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import structlog
from spiderpool_cni import codes
from spiderpool_common.errors import CniError, SpiderpoolError
from spiderpool_coordinator import api as library_api
from spiderpool_coordinator import gc as library_gc
from spiderpool_coordinator.config import CoordinatorConfig, merge
from spiderpool_coordinator.errors import CoordinatorError
from spiderpool_coordinator.host_records import HostRecords, HostSide, RecordError

from spiderpool_agent.cni_call import Invocation, RawCall, Verb, parse_call
from spiderpool_agent.cni_result import render_converted
from spiderpool_agent.coordinator_errors import to_cni_error
from spiderpool_agent.coordinator_source import CoordinatorSource
from spiderpool_agent.pod_context import CniArgsContext, PodContextSource

log = structlog.get_logger(__name__)


class CoordinatorApi(Protocol):
    """The coordinator library's entry points (``spiderpool_coordinator.api``)."""

    async def add(
        self,
        netns: str,
        ifname: str,
        container_id: str,
        prev_result: dict[str, Any],
        cfg: CoordinatorConfig,
        *,
        on_host_side: Callable[[HostSide], None] | None = None,
    ) -> dict[str, Any]: ...

    async def del_(
        self,
        netns: str,
        ifname: str,
        container_id: str,
        prev_result: dict[str, Any] | None,
        cfg: CoordinatorConfig,
        *,
        known: HostSide | None = None,
    ) -> None: ...

    async def remove(self, side: HostSide) -> None: ...

    async def check(
        self, netns: str, ifname: str, container_id: str, prev_result: dict[str, Any], cfg: CoordinatorConfig
    ) -> None: ...


@contextlib.contextmanager
def library_errors() -> Iterator[None]:
    """The coordinator library's errors leave as ``CniError`` with the library's code."""
    try:
        yield
    except CoordinatorError as exc:
        raise to_cni_error(exc) from None


def _key(inv: Invocation) -> tuple[str, str, str]:
    """An attachment's record key: (network, container ID, interface)."""
    return inv.config.name, inv.container_id, inv.ifname


def _prev_result(inv: Invocation) -> dict[str, Any]:
    prev = inv.config.prev_result
    if prev is None:
        raise CniError(
            codes.INVALID_CONFIG,
            "network config: coordinator needs prevResult (chain it after the main CNI)",
        )
    return dict(prev)


class CoordinatorHandlers:
    """ADD/DEL/CHECK/GC/STATUS of the coordinator plugin; returns the bytes the shim prints."""

    def __init__(
        self,
        source: CoordinatorSource,
        api: CoordinatorApi = library_api,
        *,
        netns_exists: Callable[[str], bool] = os.path.exists,
        context: PodContextSource | None = None,
        records: HostRecords | None = None,
    ) -> None:
        self._source = source
        self._api = api
        self._netns_exists = netns_exists
        self._context: PodContextSource = context or CniArgsContext()
        self._records = records  # None: nothing is recorded and GC collects nothing

    async def _config(
        self, inv: Invocation, base: CoordinatorConfig, annotations: Mapping[str, str] | None = None
    ) -> CoordinatorConfig:
        """``base``, overridden by the CNI config, then by the pod's annotations (ADD, CHECK)."""
        if annotations is None:
            annotations = await self._context.pod_annotations(inv)
        return merge(base, inv.config.raw, annotations)

    async def add(self, call: RawCall) -> bytes:
        inv = parse_call(call, Verb.ADD, netns_exists=self._netns_exists, require_ipam=False)
        prev = _prev_result(inv)
        with library_errors():
            cfg = await self._config(inv, await self._source.for_add())
            out = await self._api.add(
                inv.netns, inv.ifname, inv.container_id, prev, cfg, on_host_side=self._recorder(inv)
            )
        log.info("coordinator_added", container_id=inv.container_id, ifname=inv.ifname, mode=cfg.mode)
        return render_converted(out, inv.config.cni_version)

    async def delete(self, call: RawCall) -> bytes:
        inv = parse_call(call, Verb.DEL, require_ipam=False)
        prev = dict(inv.config.prev_result) if inv.config.prev_result is not None else None
        known = self._records.get(*_key(inv)) if self._records is not None else None
        with library_errors():
            cfg = await self._config(inv, await self._source.for_del(), annotations={})
            await self._api.del_(inv.netns, inv.ifname, inv.container_id, prev, cfg, known=known)
        if self._records is not None:
            self._records.remove(*_key(inv))
        log.info(
            "coordinator_deleted", container_id=inv.container_id, ifname=inv.ifname, recorded=bool(known)
        )
        return b""

    def _recorder(self, inv: Invocation) -> Callable[[HostSide], None] | None:
        """Writes the attachment's record from the ADD's worker thread (before routes and rules)."""
        records = self._records
        if records is None:
            return None

        def record(side: HostSide) -> None:
            try:
                records.write(*_key(inv), side)
            except (OSError, RecordError) as exc:
                # Without a record GC could not find this attachment: fail the ADD (the
                # runtime's DEL, which needs no record, cleans up).
                raise CoordinatorError(f"cannot record the attachment's node-side state: {exc}") from exc

        return record

    async def check(self, call: RawCall) -> bytes:
        inv = parse_call(call, Verb.CHECK, netns_exists=self._netns_exists, require_ipam=False)
        prev = _prev_result(inv)
        with library_errors():
            cfg = await self._config(inv, await self._source.for_add())
            await self._api.check(inv.netns, inv.ifname, inv.container_id, prev, cfg)
        return b""

    async def gc(self, call: RawCall) -> bytes:
        inv = parse_call(call, Verb.GC, require_ipam=False)
        if self._records is None:
            return b""
        network = inv.config.name
        valid = [(a.container_id, a.ifname) for a in inv.config.valid_attachments]
        outcome = await library_gc.collect(self._records, network, valid, self._api.remove)
        for problem in outcome.corrupt:
            log.warning("coordinator_record_corrupt_set_aside", network=network, problem=problem)
        log.info(
            "coordinator_gc_done",
            network=network,
            removed=[f"{r.container_id}/{r.ifname}" for r in outcome.removed],
            kept=len(outcome.kept),
            errors=len(outcome.errors),
        )
        if outcome.errors:
            raise CniError(
                codes.TRY_AGAIN_LATER,
                f"coordinator GC removed {len(outcome.removed)} attachment(s); {len(outcome.errors)} failed",
                details="; ".join(outcome.errors),
            )
        return b""

    async def status(self, call: RawCall) -> bytes:
        parse_call(call, Verb.STATUS, require_ipam=False)
        unready = self._context.unready_reason()
        if unready:
            raise CniError(codes.NOT_AVAILABLE, f"coordinator cannot serve ADD: {unready}")
        try:
            await self._source.for_add()
        except (SpiderpoolError, CoordinatorError) as exc:
            raise CniError(codes.NOT_AVAILABLE, f"coordinator cannot serve ADD: {exc}") from exc
        return b""
