"""Interim wiring of the controller's cluster mode, until the command's `--store kubernetes://` lands.

`python -m tests.simcluster.controller_preview --kubeconfig K --listen unix:S --identity I [--advertise A]`

The controller's cluster mode is on main as a library (`cluster_mode.ClusterController`: leader election on
the Lease, the engine on the fenced Kubernetes store while leading, the pool watcher and IP GC, stepping
down) but not yet as the command's `--store kubernetes://` branch. So that the simulated cluster runs the
real cluster-mode code today, this module does the process wiring the command will do: gRPC on the replica's
socket with the IpamService on the engine slot (a standby answers through `LeaderForwarding`, which hands the
call to the leader's advertised address), the ResourceService on the unfenced Kubernetes store (the agents
read the SpiderCoordinator through it), health and reflection, SIGTERM releasing the Lease. commands.py uses
the real command as soon as `spiderpool-controller --help` offers `--kubeconfig`; this module goes then.
Settings from the environment (as a chart's `env:`): `SPIDERPOOL_LEASE_DURATION`, `..._RENEW_DEADLINE`,
`..._RETRY_PERIOD` (seconds), `SPIDERPOOL_GC_INTERVAL` (seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence

import grpc
from spiderpool_common.channels import open_channel
from spiderpool_common.grpc_server import start_server
from spiderpool_common.logging import configure_logging
from spiderpool_controller.cluster_mode import ClusterController, ClusterOptions
from spiderpool_controller.domain.validation import ValidationSettings
from spiderpool_controller.engine_slot import EngineSlot
from spiderpool_controller.grpcapi import ipam_servicer, resource_servicer
from spiderpool_controller.grpcapi.leader_forwarding import LeaderForwarding
from spiderpool_controller.leader import LeaseTiming
from spiderpool_controller.resource_service import ResourceService


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


async def run(args: argparse.Namespace) -> None:
    timing = LeaseTiming(
        duration_s=_env_float("SPIDERPOOL_LEASE_DURATION", 15.0),
        renew_deadline_s=_env_float("SPIDERPOOL_LEASE_RENEW_DEADLINE", 10.0),
        retry_period_s=_env_float("SPIDERPOOL_LEASE_RETRY_PERIOD", 2.0),
    ).validate()
    options = ClusterOptions(
        identity=args.identity,
        advertise=args.advertise or args.listen,
        lease_namespace=args.lease_namespace,
        kubeconfig=args.kubeconfig,
        timing=timing,
        gc_interval_s=_env_float("SPIDERPOOL_GC_INTERVAL", 600.0),
    )
    slot = EngineSlot()
    cluster = ClusterController(options, slot)
    await cluster.start()
    assert cluster.resource_store is not None
    resources = ResourceService(
        cluster.resource_store, ValidationSettings(enable_ipv4=True, enable_ipv6=True)
    )
    forwarding = LeaderForwarding(cluster.is_leader, cluster.leader_target, open_channel)

    def register(server: grpc.aio.Server) -> list[str]:
        return [*ipam_servicer.register(server, slot), *resource_servicer.register(server, resources)]

    server, _ = await start_server(args.listen, register, interceptors=[forwarding])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(2.0)
    await cluster.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.simcluster.controller_preview", description=__doc__)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--listen", required=True, help="unix:PATH or HOST:PORT")
    p.add_argument("--identity", required=True)
    p.add_argument("--advertise", default="", help="where standbys reach this replica (default: --listen)")
    p.add_argument("--lease-namespace", default="kube-system")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    configure_logging(args.log_level, "json")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
