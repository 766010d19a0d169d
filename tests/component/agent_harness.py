"""Helpers for agent component tests: a real controller process, CNI calls, pool reads.

The controller runs as a subprocess (``python -m spiderpool_controller.main``) on a
temporary SQLite file and unix socket; tests wait for its health service rather than for
time to pass. Socket paths live under a short /tmp directory (unix paths max 107 bytes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spiderpool.agent.v1 import cni_pb2
from spiderpool.controller.v1 import resource_pb2, resource_pb2_grpc
from spiderpool_common.errors import SpiderpoolError
from spiderpool_common.grpc_errors import from_rpc_error

from tests.waiting import wait_for_async

DEADLINE = 15.0
# A private subchannel per probe: gRPC shares subchannels (and their reconnect backoff)
# between channels to one target, which would stretch a failed first probe to a second.
PROBE_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.initial_reconnect_backoff_ms", 50)]


async def wait_healthy(target: str, deadline: float = DEADLINE) -> None:
    """Wait until the gRPC health service at ``target`` answers SERVING."""
    last: list[grpc.RpcError] = []

    async def serving() -> bool:
        async with grpc.aio.insecure_channel(target, options=PROBE_OPTIONS) as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1.0
                )
            except grpc.RpcError as exc:
                last[:] = [exc]
                return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    try:
        await wait_for_async(serving, f"{target} to be healthy", deadline=deadline, interval=0.02)
    except TimeoutError:
        raise TimeoutError(f"{target} not healthy after {deadline}s: {last}") from None


# The shared helper, under the name these tests have imported it by.
wait_until = wait_for_async


class ServiceProcess:
    """A service run as a child process; start, health-wait, stop by signal."""

    def __init__(self, argv: list[str], socket_path: Path, log_path: Path) -> None:
        self.argv = argv
        self.socket_path = socket_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"unix:{self.socket_path}"

    async def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        log.close()
        try:
            await wait_healthy(self.target)
        except TimeoutError:
            self.stop(signal.SIGKILL)
            raise TimeoutError(f"{self.argv[2]} did not start; log:\n{self.log_path.read_text()}") from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def controller_process(
    workdir: Path, log_format: str = "console", extra: Iterable[str] = ()
) -> ServiceProcess:
    sock = workdir / "controller.sock"
    argv = [
        sys.executable, "-m", "spiderpool_controller.main",
        "--store", f"sqlite:///{workdir / 'controller.db'}",
        "--listen", f"unix:{sock}",
        "--log-format", log_format,
        *extra,
    ]  # fmt: skip
    return ServiceProcess(argv, sock, workdir / "controller.log")


def agent_process(
    workdir: Path,
    controller: ServiceProcess,
    node: str = "node-1",
    extra: Iterable[str] = (),
    log_format: str = "console",
) -> ServiceProcess:
    sock = workdir / "agent.sock"
    argv = [
        sys.executable, "-m", "spiderpool_agent.main",
        "--controller", controller.target,
        "--socket", str(sock),
        "--state-dir", str(workdir / "agent-state"),
        "--node", node,
        "--log-format", log_format,
        *extra,
    ]  # fmt: skip
    return ServiceProcess(argv, sock, workdir / "agent.log")


def pool_manifest(name: str, subnet: str, ips: list[str], **spec: Any) -> dict[str, Any]:
    version = 6 if ":" in subnet else 4
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": name},
        "spec": {"ipVersion": version, "subnet": subnet, "ips": ips, **spec},
    }


async def apply(target: str, manifest: dict[str, Any]) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = resource_pb2_grpc.ResourceServiceStub(channel)
        await stub.Apply(resource_pb2.ApplyRequest(object_json=json.dumps(manifest)), timeout=DEADLINE)


async def pool_records(target: str, name: str) -> dict[str, dict[str, str]]:
    """The pool's ``status.allocatedIPs`` records, read from the controller (IP -> record)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = resource_pb2_grpc.ResourceServiceStub(channel)
        reply = await stub.Get(resource_pb2.GetRequest(kind="SpiderIPPool", name=name), timeout=DEADLINE)
    status = json.loads(reply.object_json).get("status") or {}
    raw = status.get("allocatedIPs") or "{}"
    records: dict[str, dict[str, str]] = json.loads(raw) if isinstance(raw, str) else raw
    return records


def net_conf(version: str = "1.0.0", name: str = "macvlan-a", **ipam: Any) -> dict[str, Any]:
    ipam.setdefault("default_ipv4_ippool", ["v4-pool"])
    return {"cniVersion": version, "name": name, "type": "macvlan", "ipam": {"type": "spiderpool", **ipam}}


def cni_call(
    command: str,
    config: dict[str, Any] | bytes,
    *,
    container_id: str = "ctr-1",
    ifname: str = "eth0",
    netns: str = "",
    args: str = "",
    omit: Iterable[str] = (),
) -> cni_pb2.CniCall:
    """A CniCall as the shim sends it; ``omit`` lists CNI_* variables that are absent."""
    env = {"CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_ARGS": args}
    if command in ("GC", "STATUS"):
        env = {"CNI_ARGS": args}
    present = [k for k in ("CNI_COMMAND", *env) if k not in omit]
    raw = config if isinstance(config, bytes) else json.dumps(config).encode()
    return cni_pb2.CniCall(
        command=command,
        container_id=env.get("CNI_CONTAINERID", "") if "CNI_CONTAINERID" not in omit else "",
        netns=env.get("CNI_NETNS", "") if "CNI_NETNS" not in omit else "",
        ifname=env.get("CNI_IFNAME", "") if "CNI_IFNAME" not in omit else "",
        args=args,
        path="/opt/cni/bin",
        config=raw,
        present=present,
    )


def error_of(exc: grpc.RpcError) -> SpiderpoolError:
    return from_rpc_error(exc)
