"""A real node stack for CNI conformance tests: controller and agent processes, installed shims.

The controller runs on a temporary SQLite file and unix socket, the agent as its own
process beside it, and ``spiderpool-install-cni`` writes the two shims into a temporary
CNI bin directory: every CNI call in a test is the installed executable run as a runtime
runs it (a bare environment of ``CNI_*`` variables, the network config on stdin). Each
run checks the output contract (one JSON object or nothing on stdout, nothing on stderr,
never a traceback); ``StoreState`` is the whole IPAM state read back through the
controller's ResourceService, so a test can say "nothing changed" exactly.

Everything here is synchronous (plain ``subprocess`` and grpcio's blocking API): the
stack is module-scoped and the tests are plain functions, so no event loop is involved.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc, resource_pb2, resource_pb2_grpc

from tests.component.agent_harness import DEADLINE, ServiceProcess
from tests.waiting import wait_for

NETNS = "/proc/self/ns/net"  # exists in the agent process too: the ADD netns check passes
MISSING_NETNS = "/run/netns/spiderpool-conformance-absent"
POD_NAMESPACE = "conformance"
NODE = "node-1"
ERROR_KEYS = frozenset({"cniVersion", "code", "msg", "details"})
ATTACHMENT_VERBS = ("ADD", "DEL", "CHECK")
# Fast reconnects while a service's socket is still being created.
_PROBE_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
]


class ServiceExited(Exception):
    """The service's process ended before it became healthy."""


def start_service(service: ServiceProcess) -> None:
    """Start ``service`` as a child process and return once its health service says SERVING."""
    with service.log_path.open("ab") as log:
        service.proc = subprocess.Popen(
            service.argv, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    with grpc.insecure_channel(service.target, options=_PROBE_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def serving() -> bool:
            if service.proc is None or service.proc.poll() is not None:
                raise ServiceExited(service.argv[2])
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0, wait_for_ready=True)
            except grpc.RpcError:
                return False  # not listening yet: wait_for_ready waited for the socket
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        try:
            wait_for(serving, f"{service.argv[2]} to be healthy", deadline=DEADLINE, interval=0.02)
            return
        except (ServiceExited, TimeoutError):
            pass
    service.stop(signal.SIGKILL)
    raise RuntimeError(f"{service.argv[2]} did not become healthy; log:\n{service.log_path.read_text()}")


@dataclass(frozen=True)
class Outcome:
    """One shim run: exit code, raw stdout, and stdout parsed as one JSON object (or None)."""

    rc: int
    stdout: bytes
    obj: dict[str, Any] | None

    def succeeded_silently(self) -> None:
        """Exit 0 and nothing on stdout (DEL, CHECK, GC and STATUS print nothing on success)."""
        assert (self.rc, self.stdout) == (0, b""), self.stdout

    def result(self) -> dict[str, Any]:
        """Exit 0 and one JSON object that is not an error."""
        assert self.rc == 0, self.stdout
        assert self.obj is not None
        assert "code" not in self.obj
        return self.obj

    def cni_error(self, code: int, cni_version: str) -> dict[str, Any]:
        """Exit 1 and the spec's error object with ``code``, in the request's ``cniVersion``."""
        assert self.rc == 1, self.stdout
        assert self.obj is not None
        assert set(self.obj) == ERROR_KEYS, self.obj
        assert (self.obj["code"], self.obj["cniVersion"]) == (code, cni_version), self.obj
        assert isinstance(self.obj["msg"], str)
        assert self.obj["msg"]
        assert isinstance(self.obj["details"], str)
        return self.obj


def run_executable(executable: Path, env: dict[str, str], stdin: bytes) -> Outcome:
    """Run one installed shim and check the output contract common to every verb."""
    proc = subprocess.run(
        [str(executable)], input=stdin, env=env, capture_output=True, timeout=60, check=False
    )
    assert b"Traceback" not in proc.stdout
    assert proc.stderr == b"", proc.stderr  # the shims log to a file, never to stdout/stderr
    if proc.stdout == b"":
        return Outcome(proc.returncode, b"", None)
    assert proc.stdout.endswith(b"\n")
    obj = json.loads(proc.stdout)  # exactly one JSON document, or this raises
    assert isinstance(obj, dict), obj
    return Outcome(proc.returncode, proc.stdout, obj)


@dataclass(frozen=True)
class StoreState:
    """Everything the controller stores about IPAM, and the agent's release journal."""

    pools_revision: str
    endpoints_revision: str
    pools: tuple[str, ...]
    endpoints: tuple[str, ...]
    journal: bytes


def kubelet_args(container_id: str) -> str:
    """CNI_ARGS as a kubelet passes them, for a pod named after its container."""
    return (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE={POD_NAMESPACE};K8S_POD_NAME={container_id};"
        f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID=uid-{container_id}"
    )


def _pods_by_pools(pools: Iterable[str]) -> dict[str, set[str]]:
    """Pod ("namespace/name") -> the addresses the pools' records give it."""
    out: dict[str, set[str]] = {}
    for text in pools:
        raw = (json.loads(text).get("status") or {}).get("allocatedIPs") or "{}"
        records = json.loads(raw) if isinstance(raw, str) else raw
        for ip, record in records.items():
            out.setdefault(record.get("pod", ""), set()).add(ip)
    return out


def _pods_by_endpoints(endpoints: Iterable[str]) -> dict[str, set[str]]:
    """Pod ("namespace/name") -> the addresses its SpiderEndpoint lists."""
    out: dict[str, set[str]] = {}
    for text in endpoints:
        obj = json.loads(text)
        meta = obj["metadata"]
        current = (obj.get("status") or {}).get("current") or {}
        ips = {
            detail[key].split("/")[0]
            for detail in current.get("ips") or []
            for key in ("ipv4", "ipv6")
            if detail.get(key)
        }
        out[f"{meta.get('namespace', '')}/{meta['name']}"] = ips
    return out


@dataclass
class Stack:
    """The running controller + agent, the installed shims, and calls against them."""

    workdir: Path
    bin_dir: Path
    controller: ServiceProcess
    agent: ServiceProcess
    channel: grpc.Channel
    _ids: count[int] = field(default_factory=count)

    # -- CNI calls ---------------------------------------------------------------------

    def new_id(self, tag: str) -> str:
        """A container ID no other call of this stack has used."""
        return f"{tag}-{next(self._ids)}"

    def net_conf(
        self,
        version: str,
        network: str = "conformance-net",
        *,
        v4: tuple[str, ...] = ("conf-v4",),
        v6: tuple[str, ...] = ("conf-v6",),
        **extra: Any,
    ) -> dict[str, Any]:
        """A macvlan network delegating IPAM to spiderpool, as the IPAM plugin receives it."""
        ipam: dict[str, Any] = {
            "type": "spiderpool",
            "default_ipv4_ippool": list(v4),
            "ipam_unix_socket_path": str(self.agent.socket_path),
            "log_file_path": str(self.workdir / "ipam-shim.log"),
        }
        if v6:
            ipam["default_ipv6_ippool"] = list(v6)
        return {
            "cniVersion": version,
            "name": network,
            "type": "macvlan",
            "master": "eth0",
            "ipam": ipam,
            **extra,
        }

    def coordinator_conf(self, version: str, **extra: Any) -> dict[str, Any]:
        """A coordinator plugin config, chained after a main plugin."""
        return {
            "cniVersion": version,
            "name": "conformance-net",
            "type": "coordinator",
            "ipam_unix_socket_path": str(self.agent.socket_path),
            "logOptions": {"logFile": str(self.workdir / "coordinator-shim.log")},
            **extra,
        }

    def env(
        self,
        command: str,
        container_id: str = "",
        *,
        ifname: str = "eth0",
        netns: str = NETNS,
        args: str | None = None,
        omit: tuple[str, ...] = (),
    ) -> dict[str, str]:
        """The runtime's environment for ``command``: attachment variables only for ADD/DEL/CHECK."""
        env = {"CNI_COMMAND": command, "CNI_PATH": str(self.bin_dir)}
        if command in ATTACHMENT_VERBS:
            env["CNI_CONTAINERID"] = container_id
            env["CNI_NETNS"] = netns
            env["CNI_IFNAME"] = ifname
            env["CNI_ARGS"] = kubelet_args(container_id) if args is None else args
        for name in omit:
            env.pop(name, None)
        return env

    def run(
        self,
        command: str,
        config: dict[str, Any] | bytes,
        container_id: str = "",
        *,
        shim: str = "spiderpool",
        **env: Any,
    ) -> Outcome:
        """Run the installed ``shim`` for ``command`` with ``config`` on stdin."""
        stdin = config if isinstance(config, bytes) else json.dumps(config).encode()
        return run_executable(self.bin_dir / shim, self.env(command, container_id, **env), stdin)

    def add(self, version: str, container_id: str, **conf: Any) -> dict[str, Any]:
        """A successful ADD through the shim; returns the printed result."""
        return self.run("ADD", self.net_conf(version, **conf), container_id).result()

    # -- the controller's view -----------------------------------------------------------

    def records(self, pool: str) -> dict[str, dict[str, Any]]:
        """The pool's ``status.allocatedIPs`` records (IP -> record)."""
        stub = resource_pb2_grpc.ResourceServiceStub(self.channel)
        reply = stub.Get(resource_pb2.GetRequest(kind="SpiderIPPool", name=pool), timeout=DEADLINE)
        raw = (json.loads(reply.object_json).get("status") or {}).get("allocatedIPs") or "{}"
        records: dict[str, dict[str, Any]] = json.loads(raw) if isinstance(raw, str) else raw
        return records

    def ips_of(self, container_id: str, *pools: str) -> dict[str, str]:
        """The addresses ``container_id`` holds in ``pools`` (IP -> pool)."""
        return {
            ip: pool
            for pool in pools
            for ip, record in self.records(pool).items()
            if record.get("cid") == container_id
        }

    def state(self) -> StoreState:
        """The settled store (every pod's SpiderEndpoint agrees with the pools) and the journal.

        The controller writes SpiderEndpoints off the request path, after a CNI call has
        returned: wait, with a deadline, until both lists were read at one store revision
        and every pod holding addresses has its endpoint listing exactly those.
        """
        stub = resource_pb2_grpc.ResourceServiceStub(self.channel)

        def settled() -> tuple[Any, Any] | None:
            pools = stub.List(resource_pb2.ListRequest(kind="SpiderIPPool"), timeout=DEADLINE)
            endpoints = stub.List(resource_pb2.ListRequest(kind="SpiderEndpoint"), timeout=DEADLINE)
            if pools.resource_version == endpoints.resource_version and _pods_by_pools(
                pools.object_json
            ) == _pods_by_endpoints(endpoints.object_json):
                return pools, endpoints
            return None

        pools, endpoints = wait_for(settled, "SpiderEndpoints to settle to the pools' records")
        journal = self.workdir / "agent-state" / "release-journal.jsonl"
        return StoreState(
            pools_revision=pools.resource_version,
            endpoints_revision=endpoints.resource_version,
            pools=tuple(sorted(pools.object_json)),
            endpoints=tuple(sorted(endpoints.object_json)),
            journal=journal.read_bytes() if journal.exists() else b"",
        )

    def release_behind_its_back(self, container_id: str, ifname: str = "eth0") -> int:
        """Release an attachment at the controller directly (not through CNI); return how many IPs."""
        ref = ipam_pb2.PodRef(
            namespace=POD_NAMESPACE, name=container_id, uid=f"uid-{container_id}",
            container_id=container_id, node=NODE,
        )  # fmt: skip
        stub = ipam_pb2_grpc.IpamServiceStub(self.channel)
        reply = stub.Release(ipam_pb2.ReleaseRequest(pod=ref, ifname=ifname), timeout=DEADLINE)
        return len(reply.released)

    def apply(self, manifest: dict[str, Any]) -> None:
        stub = resource_pb2_grpc.ResourceServiceStub(self.channel)
        stub.Apply(resource_pb2.ApplyRequest(object_json=json.dumps(manifest)), timeout=DEADLINE)


@contextmanager
def running_stack(
    prefix: str,
    pools: Iterable[dict[str, Any]],
    *,
    agent_args: Iterable[str] = (),
    controller_args: Iterable[str] = (),
) -> Iterator[Stack]:
    """A controller and an agent process with ``pools`` applied and the shims installed;
    everything is stopped and removed on exit."""
    from tests.component.agent_harness import agent_process, controller_process  # noqa: PLC0415

    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # short: unix socket paths
    controller = controller_process(workdir, extra=controller_args)
    agent = agent_process(workdir, controller, node=NODE, extra=agent_args)
    channel: grpc.Channel | None = None
    try:
        start_service(controller)
        channel = grpc.insecure_channel(controller.target)
        bin_dir = workdir / "cni-bin"
        installer = Path(sys.executable).parent / "spiderpool-install-cni"
        subprocess.run([str(installer), "--bin-dir", str(bin_dir)], check=True, capture_output=True)
        stack = Stack(workdir, bin_dir, controller, agent, channel)
        for manifest in pools:
            stack.apply(manifest)
        start_service(agent)
        yield stack
    finally:
        agent.stop()
        controller.stop()
        if channel is not None:
            channel.close()
        shutil.rmtree(workdir, ignore_errors=True)
