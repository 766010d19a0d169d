"""A one-node spiderpool installation inside a "node" network namespace.

Owns starting and stopping what a node runs in the embedded (no Kubernetes) mode: the
controller on an SQLite file and the agent, both as processes inside the node namespace
(so the coordinator's "host" side is that namespace, never the machine's root one), both
listening on unix sockets in a private directory (reachable from every namespace), plus
the shims installed into a private CNI bin directory. The demo, the CNI benchmark and the
netns/end-to-end tests share it, so all of them start the stack the same way and tear it
down completely: ``close`` is idempotent and stops every process it started.

Readiness is the standard gRPC health service answering SERVING, waited on with a
deadline (never a sleep).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spiderpool_tools.netns import NetNs, stop_process, wait_for

SCRIPTS_DIR = Path(sys.executable).parent  # the virtualenv's bin: console scripts live beside python


class StackError(RuntimeError):
    """A component failed to start or a command against it failed; the message says which."""


@dataclass(frozen=True)
class StackLayout:
    """Where everything of one stack lives, all under one private directory."""

    root: Path

    @property
    def controller_socket(self) -> Path:
        return self.root / "controller.sock"

    @property
    def agent_socket(self) -> Path:
        return self.root / "agent.sock"

    @property
    def store(self) -> Path:
        return self.root / "store.db"

    @property
    def state_dir(self) -> Path:
        return self.root / "agent-state"

    @property
    def spool_dir(self) -> Path:
        """Where the shims spool a DEL the agent cannot take: the agent's default, under its state
        directory; network configs name it as ``del_spool_dir``."""
        return self.state_dir / "spool"

    @property
    def bin_dir(self) -> Path:
        return self.root / "cni-bin"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cni-cache"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def controller_target(self) -> str:
        return f"unix:{self.controller_socket}"


class ServiceProcess:
    """A long-running component started inside a namespace, its output in a log file."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def grpc_serving(target: str, timeout_s: float = 1.0) -> bool:
    """True when the gRPC health service at ``target`` answers SERVING."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class NodeStack:
    """Controller + agent running in ``node``, shims installed; a context manager."""

    def __init__(
        self,
        node: NetNs,
        root: Path,
        *,
        node_name: str = "node1",
        log_level: str = "info",
        scripts_dir: Path = SCRIPTS_DIR,
        ready_deadline_s: float = 30.0,
    ) -> None:
        self.node = node
        self.layout = StackLayout(root)
        self.node_name = node_name
        self.log_level = log_level
        self.scripts_dir = scripts_dir
        self.ready_deadline_s = ready_deadline_s
        self.controller: ServiceProcess | None = None
        self.agent: ServiceProcess | None = None
        self.layout.log_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> NodeStack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def script(self, name: str) -> str:
        path = self.scripts_dir / name
        if not path.exists():
            raise StackError(f"{path} is missing: is the project installed (make setup)?")
        return str(path)

    # -- components ------------------------------------------------------------------

    def _start(self, name: str, args: list[str], target: str) -> ServiceProcess:
        log_path = self.layout.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            proc = self.node.popen(args, stdout=log, stderr=subprocess.STDOUT)
        service = ServiceProcess(name, proc, log_path)

        def ready() -> bool:
            if not service.alive():
                raise StackError(f"{name} exited with {proc.returncode}:\n{service.log_tail()}")
            return grpc_serving(target)

        try:
            wait_for(
                ready, deadline_s=self.ready_deadline_s, what=f"{name} to serve on {target}", interval_s=0.05
            )
        except TimeoutError as exc:
            service.stop()
            raise StackError(f"{exc}\n{service.log_tail()}") from exc
        except BaseException:
            service.stop()
            raise
        return service

    def start_controller(self) -> ServiceProcess:
        """Start the controller on the SQLite store, listening on the controller socket."""
        if self.controller is not None and self.controller.alive():
            return self.controller
        args = [
            self.script("spiderpool-controller"),
            "--store", f"sqlite:///{self.layout.store}",
            "--listen", self.layout.controller_target,
            "--log-level", self.log_level,
            "--log-format", "json",
        ]  # fmt: skip
        self.controller = self._start("controller", args, self.layout.controller_target)
        return self.controller

    def start_agent(self) -> ServiceProcess:
        """Start the node agent, talking to the controller, serving the shims on its socket."""
        if self.agent is not None and self.agent.alive():
            return self.agent
        self.layout.state_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.script("spiderpool-agent"),
            "--controller", self.layout.controller_target,
            "--socket", str(self.layout.agent_socket),
            "--node", self.node_name,
            "--state-dir", str(self.layout.state_dir),
        ]  # fmt: skip
        self.agent = self._start("agent", args, f"unix:{self.layout.agent_socket}")
        return self.agent

    def stop_controller(self) -> None:
        if self.controller is not None:
            self.controller.stop()

    def stop_agent(self) -> None:
        if self.agent is not None:
            self.agent.stop()

    def install_shims(self) -> Path:
        """Install the spiderpool and coordinator shims into the private CNI bin directory."""
        self.layout.bin_dir.mkdir(parents=True, exist_ok=True)
        self._run([self.script("spiderpool-install-cni"), "--bin-dir", str(self.layout.bin_dir)])
        for shim in ("spiderpool", "coordinator"):
            if not (self.layout.bin_dir / shim).exists():
                raise StackError(f"spiderpool-install-cni did not write {self.layout.bin_dir / shim}")
        return self.layout.bin_dir

    def start(self) -> NodeStack:
        """Controller, agent and shims, in that order."""
        self.start_controller()
        self.start_agent()
        self.install_shims()
        return self

    def close(self) -> None:
        """Stop the agent, then the controller; safe to call more than once."""
        for service in (self.agent, self.controller):
            if service is not None:
                service.stop()

    def processes(self) -> list[ServiceProcess]:
        return [s for s in (self.controller, self.agent) if s is not None]

    # -- talking to it ---------------------------------------------------------------

    def ctl(self, *args: str) -> str:
        """Run ``spiderpoolctl --controller unix:SOCKET ARGS`` and return its stdout."""
        return self._run([self.script("spiderpoolctl"), "--controller", self.layout.controller_target, *args])

    def get_object(self, kind: str, name: str, namespace: str = "") -> dict[str, Any]:
        """One object as stored by the controller (ResourceService.Get)."""
        from spiderpool.controller.v1 import resource_pb2, resource_pb2_grpc  # noqa: PLC0415

        with grpc.insecure_channel(self.layout.controller_target) as channel:
            stub = resource_pb2_grpc.ResourceServiceStub(channel)
            reply = stub.Get(resource_pb2.GetRequest(kind=kind, namespace=namespace, name=name), timeout=10)
        obj = json.loads(reply.object_json)
        if not isinstance(obj, dict):
            raise StackError(f"{kind} {name}: not an object")
        return obj

    def allocated_ips(self, pool: str) -> dict[str, Any]:
        """The pool's ``status.allocatedIPs`` map (IP -> allocation record)."""
        status = self.get_object("SpiderIPPool", pool).get("status") or {}
        allocated = status.get("allocatedIPs") or {}
        if isinstance(allocated, str):  # upstream stores the map as a JSON string
            allocated = json.loads(allocated) if allocated else {}
        return dict(allocated)

    @staticmethod
    def _run(args: list[str]) -> str:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise StackError(
                f"{Path(args[0]).name} {' '.join(args[1:])} failed ({proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc.stdout
