#!/usr/bin/env python3
"""Upstream's agent in the simulated cluster: the cluster benchmark's baseline (bench/cluster_alloc.py).

The node agent itself (``spiderpool_agent.server.Agent``: the same CNI gRPC service, pod facts from its
informers, journal) with one part replaced: instead of asking the controller, each allocation and release
runs upstream's protocol against the API server (``cas_baseline.CasAgent``, shared with
bench/alloc_throughput.py): the node's per-pool ticket, a direct GET of the SpiderIPPool, the lowest free
address, a ``status`` update carrying the resourceVersion read (compare-and-swap, 409 when another agent
wrote first), on 409 upstream's ``retry.DefaultRetry`` (5 attempts, waits of 10 ms growing by 1.5 with 10%
jitter); after the fifth conflict the ADD fails (code 11 to the kubelet, which runs it again).

The pool is upstream's choice for a pod without pool annotations: the namespace's
``ipam.spidernet.io/default-ipv4-ippool``, else the CNI configuration's ``default_ipv4_ippool``; IPv4 only
(the benchmark's scenario). What the agent allocated is remembered per pod UID and interface, standing in
for the SpiderEndpoint upstream's DEL reads from its informer cache; a DEL of an attachment it does not know
releases nothing. Left out, each in the baseline's favour: upstream's SpiderEndpoint writes per ADD and DEL
(the controller's endpoint writes are in our figures), its reads of the pod and the endpoint, its
controller's pool informer.

Flags: spiderpool-agent's, plus ``--tally-file``: the attempts, writes, conflicts and failures of the
allocations and releases (``cas_baseline.Tally``) as JSON, rewritten at most every 0.2 s and at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from cas_baseline import CasAgent
from spiderpool.controller.v1 import ipam_pb2
from spiderpool_agent.main import build_parser
from spiderpool_agent.server import Agent
from spiderpool_agent.settings import load_settings
from spiderpool_common.errors import NotFound, Unavailable
from spiderpool_common.logging import configure_logging
from spiderpool_controller.domain.models import KIND_IPPOOL, AllocationRecord
from spiderpool_controller.store.kubernetes import KubernetesStore

DEFAULT_V4_POOL = "ipam.spidernet.io/default-ipv4-ippool"
TALLY_EVERY_S = 0.2


def pool_for(request: ipam_pb2.AllocateRequest) -> str:
    """Upstream's pool for a pod without pool annotations: the namespace's default, else the CNI
    configuration's."""
    text = request.namespace_annotations.get(DEFAULT_V4_POOL, "")
    if text:
        names = json.loads(text)
        if isinstance(names, list) and names:
            return str(names[0])
    if request.default_ipv4_ippools:
        return str(request.default_ipv4_ippools[0])
    raise NotFound(f"no IPv4 pool for pod {request.pod.namespace}/{request.pod.name}")


class CasController:
    """The agent's controller backend replaced by upstream's per-agent compare-and-swap."""

    def __init__(self, store: KubernetesStore, tally_file: Path | None) -> None:
        self.store = store
        self.cas = CasAgent(store)
        self.tally_file = tally_file
        self.held: dict[tuple[str, str], tuple[str, str]] = {}  # (pod UID, ifname) -> (pool, ip/prefix)
        self._gateways: dict[str, str] = {}
        self._dirty = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    async def _gateway(self, pool: str) -> str:
        if pool not in self._gateways:  # upstream: from the informer cache; the spec does not change here
            obj = await self.store.get(KIND_IPPOOL, pool)
            self._gateways[pool] = str((obj.get("spec") or {}).get("gateway") or "")
        return self._gateways[pool]

    async def allocate(self, request: ipam_pb2.AllocateRequest) -> ipam_pb2.AllocateResponse:
        pool = pool_for(request)
        pod = request.pod
        record = AllocationRecord(
            pod=f"{pod.namespace}/{pod.name}",
            pod_uid=pod.uid,
            container_id=pod.container_id,
            interface=request.ifname,
            node=pod.node,
            network=request.network,
            owner_kind=request.owner.kind,
            owner_name=request.owner.name,
        )
        try:
            address = await self.cas.allocate(pool, record)
        finally:
            self._changed()
        self.held[(pod.uid, request.ifname)] = (pool, address)
        gateway = "" if request.clean_gateway else await self._gateway(pool)
        config = ipam_pb2.IPConfig(nic=request.ifname, version=4, address=address, gateway=gateway, pool=pool)
        return ipam_pb2.AllocateResponse(ips=[config])

    async def release(self, request: ipam_pb2.ReleaseRequest) -> ipam_pb2.ReleaseResponse:
        key = (request.pod.uid, request.ifname)
        held = self.held.get(key)
        if held is None:
            return ipam_pb2.ReleaseResponse()
        pool, address = held
        try:
            released = await self.cas.release(pool, address.split("/")[0], request.pod.uid)
        finally:
            self._changed()
        del self.held[key]
        if not released:
            return ipam_pb2.ReleaseResponse()
        return ipam_pb2.ReleaseResponse(
            released=[ipam_pb2.IPConfig(nic=request.ifname, version=4, address=address, pool=pool)]
        )

    async def get_endpoint(self, request: ipam_pb2.GetEndpointRequest) -> ipam_pb2.GetEndpointResponse:
        raise Unavailable("CHECK is not part of the baseline")

    async def release_unlisted(
        self, request: ipam_pb2.ReleaseUnlistedRequest
    ) -> ipam_pb2.ReleaseUnlistedResponse:
        raise Unavailable("GC is not part of the baseline")

    async def check_capacity(self, request: ipam_pb2.CheckCapacityRequest) -> ipam_pb2.CheckCapacityResponse:
        raise Unavailable("STATUS is not part of the baseline")

    async def get_object(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        raise Unavailable("the coordinator is not part of the baseline")

    # -- the tally file ---------------------------------------------------------------------------

    def _changed(self) -> None:
        if self.tally_file is None:
            return
        self._dirty.set()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name="tally")

    async def _flush_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self.write_tally()
            await asyncio.sleep(TALLY_EVERY_S)

    def write_tally(self) -> None:
        if self.tally_file is None:
            return
        tmp = self.tally_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"alloc": self.cas.alloc.as_dict(), "rel": self.cas.rel.as_dict()}))
        os.replace(tmp, self.tally_file)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self.write_tally()
        await self.store.close()


async def serve(agent: Agent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    try:
        await stop.wait()
    finally:
        await agent.stop()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.prog = "cas_cluster_agent.py"
    parser.add_argument("--tally-file", type=Path, help="where the protocol's counts are written (JSON)")
    args = parser.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "tally_file")}
    settings = load_settings(flags, config_file=args.config)
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> None:
        store = KubernetesStore(kubeconfig=settings.kubeconfig or None)
        await serve(Agent(settings, controller=CasController(store, args.tally_file)))

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
