"""The IPAM verbs: a validated CNI call turned into controller calls and a CNI answer.

Owns the per-verb semantics (CNI SPEC.md section "CNI Operations", upstream Spiderpool
plugin behaviour from cmd/spiderpool and pkg/ipam):

- ADD allocates through the controller and answers only this interface's IPs; a failed
  ADD leaves nothing allocated (rollback, journaled if the controller is gone meanwhile).
  When the outcome of the Allocate call is unknown (the controller died or the connection
  broke mid-call), a release for the attachment is journaled before the error is answered,
  so nothing stays allocated once the controller is back. A pending journaled release for
  the same key is replayed first. When the controller's
  detection switches ride on the IPs, ADD probes for conflicts and the gateway in the pod
  (``ip_detection``); on failure the addresses are released with ``detection_failed`` (a
  stateless pod's retry starts afresh, a StatefulSet member keeps them) and ADD fails
  with 103 / 104.
- DEL releases on behalf of its container ID: when another sandbox of the pod holds the
  addresses now, nothing is freed (logged). Nothing to release and repeated DELs succeed;
  an unreachable controller turns the release into a durable journal entry and DEL still
  succeeds.
- CHECK verifies the reservation exists, is held by this container, and matches
  prevResult (codes 106 / 107).
- GC releases this node's and this network's allocations missing from the valid list.
- STATUS answers code 50 when an ADD could not be served now.

The controller is reached through the ``ControllerClient`` protocol, whose methods raise
``SpiderpoolError`` (transport failures as ``Unavailable``), so this module imports no grpc
and is tested against an in-test fake.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog
from spiderpool.controller.v1 import ipam_pb2
from spiderpool_cni import codes
from spiderpool_common.errors import AllocationNotFound, CniError, NotFound, SpiderpoolError, Unavailable
from spiderpool_coordinator.errors import CoordinatorError, IPConflict

from spiderpool_agent.cni_call import Invocation, OwnerRef, RawCall, Verb, parse_call
from spiderpool_agent.cni_result import ipam_result_for_interface, prev_result_ips, render_ipam_result
from spiderpool_agent.coordinator_errors import to_cni_error
from spiderpool_agent.ip_detection import Detector, NetnsDetector, Probes, plan_probes
from spiderpool_agent.pod_context import CniArgsContext, PodContextSource
from spiderpool_agent.release_journal import ReleaseFn, ReleaseIntent, ReleaseJournal

log = structlog.get_logger(__name__)


class ControllerClient(Protocol):
    """The controller's IpamService as the agent needs it; errors are ``SpiderpoolError``."""

    async def allocate(self, request: ipam_pb2.AllocateRequest) -> ipam_pb2.AllocateResponse: ...
    async def release(self, request: ipam_pb2.ReleaseRequest) -> ipam_pb2.ReleaseResponse: ...
    async def get_endpoint(self, request: ipam_pb2.GetEndpointRequest) -> ipam_pb2.GetEndpointResponse: ...
    async def release_unlisted(
        self, request: ipam_pb2.ReleaseUnlistedRequest
    ) -> ipam_pb2.ReleaseUnlistedResponse: ...
    async def check_capacity(
        self, request: ipam_pb2.CheckCapacityRequest
    ) -> ipam_pb2.CheckCapacityResponse: ...


def release_intent(inv: Invocation, node: str, owner: OwnerRef | None = None) -> ReleaseIntent:
    return ReleaseIntent(
        container_id=inv.container_id,
        ifname=inv.ifname,
        pod_namespace=inv.args.pod_namespace,
        pod_name=inv.args.pod_name,
        pod_uid=inv.args.pod_uid,
        node=node,
        network=inv.config.name,
        owner_kind=owner.kind if owner else "",
        owner_name=owner.name if owner else "",
        owner_replicas=owner.replicas if owner else 0,
        owner_exists=owner.exists if owner else False,
    )


def _owner(owner: OwnerRef | None) -> ipam_pb2.Owner | None:
    if owner is None:
        return None
    return ipam_pb2.Owner(
        kind=owner.kind,
        name=owner.name,
        uid=owner.uid,
        replicas=owner.replicas,
        exists=owner.exists,
        api_version=owner.api_version,
    )


def _pod_ref(intent: ReleaseIntent) -> ipam_pb2.PodRef:
    return ipam_pb2.PodRef(
        namespace=intent.pod_namespace,
        name=intent.pod_name,
        uid=intent.pod_uid,
        container_id=intent.container_id,
        node=intent.node,
    )


def release_via(controller: ControllerClient) -> ReleaseFn:
    """The journal's replay action: release at the controller; "nothing there" is done."""

    async def release(intent: ReleaseIntent) -> None:
        owner = ipam_pb2.Owner(
            kind=intent.owner_kind,
            name=intent.owner_name,
            replicas=intent.owner_replicas,
            exists=intent.owner_exists,
        )
        request = ipam_pb2.ReleaseRequest(pod=_pod_ref(intent), ifname=intent.ifname, owner=owner)
        try:
            response = await controller.release(request)
        except (NotFound, AllocationNotFound):
            return
        if response.holder_container_id:
            log.info(
                "release_skipped_other_sandbox",
                container_id=intent.container_id,
                ifname=intent.ifname,
                holder=response.holder_container_id,
            )

    return release


def _prev_ips_for(
    prev: Mapping[str, Any], ifname: str
) -> set[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """prevResult's addresses on ``ifname`` (IPs without an interface index count too)."""
    interfaces = prev.get("interfaces") or []
    addresses = prev_result_ips(prev)
    out: set[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = set()
    for entry, addr in zip(prev.get("ips") or [], addresses, strict=True):
        index = entry.get("interface")
        if isinstance(index, int) and isinstance(interfaces, list) and 0 <= index < len(interfaces):
            iface = interfaces[index]
            if isinstance(iface, dict) and iface.get("name") not in (None, ifname):
                continue
        out.add(addr)
    return out


def _no_ip_for(ifname: str) -> CniError:
    # Upstream's plugin fails the same way ("no Interface X IP allocation found").
    return CniError(codes.NO_POOL_MATCHED, f"the controller allocated no IP for interface {ifname}")


class IpamHandlers:
    """ADD/DEL/CHECK/GC/STATUS against the controller; returns the bytes the shim prints."""

    def __init__(
        self,
        controller: ControllerClient,
        journal: ReleaseJournal,
        node: str,
        *,
        netns_exists: Callable[[str], bool] = os.path.exists,
        detector: Detector | None = None,
        context: PodContextSource | None = None,
    ) -> None:
        self._controller = controller
        self._journal = journal
        self._node = node
        self._netns_exists = netns_exists
        self._context: PodContextSource = context or CniArgsContext()
        self._release = release_via(controller)
        self._detector: Detector = detector or NetnsDetector()

    # -- ADD --------------------------------------------------------------------------

    async def add(self, call: RawCall) -> bytes:
        inv = parse_call(call, Verb.ADD, netns_exists=self._netns_exists)
        assert inv.config.ipam is not None
        ipam = inv.config.ipam
        key = (inv.identity, inv.ifname)
        if self._journal.has_pending(key):
            try:
                await self._journal.settle(key)
            except SpiderpoolError as exc:
                raise Unavailable(
                    f"a pending release for {inv.container_id}/{inv.ifname} could not be replayed: {exc}"
                ) from exc
        pod = await self._context.for_add(inv)
        intent = release_intent(inv, self._node)  # a rollback frees even a StatefulSet member's
        request = ipam_pb2.AllocateRequest(
            pod=_pod_ref(intent),
            ifname=inv.ifname,
            network=inv.config.name,
            pod_labels=pod.labels,
            pod_annotations=pod.annotations,
            namespace_labels=pod.namespace_labels,
            namespace_annotations=pod.namespace_annotations,
            node_labels=pod.node_labels,
            default_ipv4_ippools=list(ipam.default_ipv4_ippool),
            default_ipv6_ippools=list(ipam.default_ipv6_ippool),
            clean_gateway=ipam.clean_gateway,
            owner=_owner(pod.owner),
            multus_name=pod.multus_name,
            requested_ips=list(inv.requested_ips),
        )
        try:
            response = await self._controller.allocate(request)
        except (asyncio.CancelledError, Unavailable) as exc:
            # The caller gave up, or the controller or the connection died mid-call: the
            # controller may have allocated anyway. Journal the release before answering,
            # so a failed ADD leaves nothing allocated once the controller is back.
            await asyncio.shield(self._journal.record(intent))
            if isinstance(exc, Unavailable):
                log.warning("add_outcome_unknown_release_journaled", error=str(exc))
            raise
        self._journal.nudge()
        try:
            result = ipam_result_for_interface(
                response.ips, response.routes, inv.ifname, clean_gateway=ipam.clean_gateway
            )
            if not result.ips:
                raise _no_ip_for(inv.ifname)  # noqa: TRY301  (the rollback below must run)
            rendered = render_ipam_result(result, inv.config.cni_version)
            probes = plan_probes(response.ips, inv.ifname, clean_gateway=ipam.clean_gateway)
            if probes:
                await self._detector.verify(inv.netns, inv.ifname, probes)
        except CoordinatorError as exc:
            conflicting = [exc.address] if isinstance(exc, IPConflict) and exc.address else []
            note = await asyncio.shield(self._release_after_detection(intent, conflicting))
            raise to_cni_error(exc, note=note) from None
        except BaseException:
            await asyncio.shield(self._rollback(intent))
            raise
        log.info(
            "ip_allocated",
            container_id=inv.container_id,
            ifname=inv.ifname,
            ips=[ip.address for ip in result.ips],
        )
        if probes:
            await self._announce(inv, probes)
        return rendered

    async def _release_after_detection(self, intent: ReleaseIntent, conflicting: list[str]) -> str:
        """Release after a failed probe (upstream isReleaseConflictIPs); say what happened.

        A conflicting address is named so the controller sets it aside: the retry gets
        another one instead of the same conflict again."""
        request = ipam_pb2.ReleaseRequest(
            pod=_pod_ref(intent), ifname=intent.ifname, detection_failed=True, conflicting_ips=conflicting
        )
        try:
            response = await self._controller.release(request)
        except SpiderpoolError as exc:
            # The runtime's DEL after the failed ADD releases them (or journals the release).
            log.warning("detection_release_failed", container_id=intent.container_id, error=str(exc))
            return f"releasing the addresses failed ({exc}); DEL will release them"
        if response.kept:
            return "the addresses stay reserved for this StatefulSet member"
        released = ", ".join(ip.address for ip in response.released) or "none held"
        return f"released {released} so that a retry starts afresh"

    async def _announce(self, inv: Invocation, probes: Probes) -> None:
        """Gratuitous ARP / unsolicited NA for the probed addresses; never fails the ADD."""
        try:
            await self._detector.announce(inv.netns, inv.ifname, probes.addresses)
        except Exception as exc:  # best effort: a neighbour's stale cache is not worth a failed ADD
            log.warning("announce_failed", container_id=inv.container_id, ifname=inv.ifname, error=str(exc))

    async def _rollback(self, intent: ReleaseIntent) -> None:
        try:
            await self._release(intent)
        except SpiderpoolError as exc:
            log.warning("add_rollback_journaled", container_id=intent.container_id, error=str(exc))
            await self._journal.record(intent)

    # -- DEL --------------------------------------------------------------------------

    async def delete(self, call: RawCall) -> bytes:
        inv = parse_call(call, Verb.DEL)
        intent = release_intent(inv, self._node, await self._context.owner_for_release(inv))
        try:
            await self._release(intent)
        except Unavailable as exc:
            await self._journal.record(intent)
            log.info("release_deferred", container_id=inv.container_id, ifname=inv.ifname, error=str(exc))
            return b""
        log.info("ip_released", container_id=inv.container_id, ifname=inv.ifname)
        if self._journal.has_pending(intent.key):
            try:
                await self._journal.settle(intent.key)
            except SpiderpoolError:
                pass  # the replay loop retries it
        self._journal.nudge()
        return b""

    # -- CHECK ------------------------------------------------------------------------

    async def check(self, call: RawCall) -> bytes:
        inv = parse_call(call, Verb.CHECK, netns_exists=self._netns_exists)
        intent = release_intent(inv, self._node)
        where = f"container {inv.container_id} interface {inv.ifname}"
        if self._journal.has_pending(intent.key):
            raise CniError(codes.ALLOCATION_NOT_FOUND, f"no IP reservation for {where}: it is being released")
        try:
            response = await self._controller.get_endpoint(
                ipam_pb2.GetEndpointRequest(pod=_pod_ref(intent), ifname=inv.ifname)
            )
        except (NotFound, AllocationNotFound):
            response = ipam_pb2.GetEndpointResponse()
        mine = [ip for ip in response.ips if ip.nic == inv.ifname]
        if not mine:
            raise CniError(codes.ALLOCATION_NOT_FOUND, f"no IP reservation for {where}")
        if response.container_id and response.container_id != inv.container_id:
            raise CniError(
                codes.ALLOCATION_MISMATCH,
                f"the reservation for {where} is held by another sandbox of the pod, "
                f"container {response.container_id}",
            )
        if response.network and response.network != inv.config.name:
            raise CniError(
                codes.ALLOCATION_MISMATCH,
                f"the reservation for {where} belongs to network {response.network!r}, "
                f"not {inv.config.name!r}",
            )
        if inv.config.prev_result is not None:
            reserved = {ipaddress.ip_interface(ip.address) for ip in mine}
            expected = _prev_ips_for(inv.config.prev_result, inv.ifname)
            if reserved != expected:
                raise CniError(
                    codes.ALLOCATION_MISMATCH,
                    f"the reservation for {where} does not match prevResult",
                    details=f"reserved {sorted(map(str, reserved))}, prevResult {sorted(map(str, expected))}",
                )
        return b""

    # -- GC ---------------------------------------------------------------------------

    async def gc(self, call: RawCall) -> bytes:
        inv = parse_call(call, Verb.GC)
        request = ipam_pb2.ReleaseUnlistedRequest(
            node=self._node,
            network=inv.config.name,
            valid=[
                ipam_pb2.Attachment(container_id=a.container_id, ifname=a.ifname)
                for a in inv.config.valid_attachments
            ],
        )
        response = await self._controller.release_unlisted(request)
        self._journal.nudge()
        log.info(
            "gc_done", network=inv.config.name, released=len(response.released), errors=len(response.errors)
        )
        if response.errors:
            # Every failure is reported; the next GC retries them (code 11: transient).
            raise CniError(
                codes.TRY_AGAIN_LATER,
                f"GC released {len(response.released)} allocation(s); {len(response.errors)} failed",
                details="; ".join(response.errors),
            )
        return b""

    # -- STATUS -----------------------------------------------------------------------

    async def status(self, call: RawCall) -> bytes:
        inv = parse_call(call, Verb.STATUS)
        assert inv.config.ipam is not None
        unready = self._context.unready_reason()
        if unready:
            raise CniError(codes.NOT_AVAILABLE, f"spiderpool cannot serve ADD: {unready}")
        request = ipam_pb2.CheckCapacityRequest(
            default_ipv4_ippools=list(inv.config.ipam.default_ipv4_ippool),
            default_ipv6_ippools=list(inv.config.ipam.default_ipv6_ippool),
            node=self._node,
        )
        try:
            response = await self._controller.check_capacity(request)
        except Unavailable as exc:
            raise CniError(codes.NOT_AVAILABLE, f"spiderpool controller unreachable: {exc}") from exc
        except SpiderpoolError as exc:
            raise CniError(codes.NOT_AVAILABLE, f"spiderpool cannot serve ADD: {exc}") from exc
        if not response.ready:
            raise CniError(
                codes.NOT_AVAILABLE, f"spiderpool cannot serve ADD: {response.reason or 'not ready'}"
            )
        self._journal.nudge()
        return b""
