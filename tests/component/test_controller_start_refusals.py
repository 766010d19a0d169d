"""What a controller refuses at start, as a user meets it: real controller processes.

A second controller on a store already in use, a socket path another process serves, a
store file that is not a spiderpool store, plain TCP without the opt-in, a port out of
range: each stops the newcomer with one line on stderr and leaves the first controller,
the socket and the file as they were. A refused start must not hang, so every refusal is
awaited with a deadline (a controller that starts instead runs until it is killed there).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc, resource_pb2, resource_pb2_grpc

from tests.component.agent_harness import DEADLINE, ServiceProcess, pool_manifest
from tests.component.conformance_stack import start_service

CONTROLLER = [sys.executable, "-m", "spiderpool_controller.main"]


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="spr-", dir="/tmp"))  # short: unix socket paths
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def controller_argv(store: Path, listen: str, *extra: str) -> list[str]:
    return [
        *CONTROLLER,
        "--store",
        f"sqlite://{store}",
        "--listen",
        listen,
        "--log-format",
        "console",
        *extra,
    ]


def start_controller(workdir: Path, store: Path, sock: Path, name: str = "a") -> ServiceProcess:
    service = ServiceProcess(controller_argv(store, f"unix:{sock}"), sock, workdir / f"{name}.log")
    start_service(service)
    return service


def refused(argv: list[str]) -> tuple[int, str]:
    """Run a controller that must refuse to start: its exit code and its stderr."""
    proc = subprocess.run(argv, capture_output=True, timeout=DEADLINE, check=False, stdin=subprocess.DEVNULL)
    err = proc.stderr.decode()
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("spiderpool-controller: "), err
    return proc.returncode, err


def healthy(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=DEADLINE)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def allocate(target: str, pod: str) -> str:
    with grpc.insecure_channel(target) as channel:
        resources = resource_pb2_grpc.ResourceServiceStub(channel)
        manifest = pool_manifest("p", "10.50.0.0/24", ["10.50.0.10-10.50.0.20"], default=True)
        resources.Apply(resource_pb2.ApplyRequest(object_json=json.dumps(manifest)), timeout=DEADLINE)
        ref = ipam_pb2.PodRef(namespace="ns", name=pod, uid=f"uid-{pod}", container_id=f"c-{pod}", node="n")
        reply = ipam_pb2_grpc.IpamServiceStub(channel).Allocate(
            ipam_pb2.AllocateRequest(pod=ref, ifname="eth0"), timeout=DEADLINE
        )
    return str(reply.ips[0].address)


def test_a_second_controller_on_the_same_store_refuses_to_start_naming_the_holder(workdir: Path) -> None:
    """The README's controller command run twice on one store: the second exits 1 naming the store,
    its lock file and the first controller's pid; the first keeps serving alone."""
    store = workdir / "controller.db"
    first = start_controller(workdir, store, workdir / "a.sock")
    try:
        assert first.proc is not None
        code, err = refused(controller_argv(store, f"unix:{workdir / 'b.sock'}"))
        assert code == 1
        assert str(store) in err and f"{store}.lock" in err and f"process {first.proc.pid}" in err, err
        assert not (workdir / "b.sock").exists()
        assert allocate(first.target, "pod-1") == "10.50.0.10/24"
    finally:
        first.stop()


def test_a_controller_does_not_take_over_a_socket_another_process_serves(workdir: Path) -> None:
    """A controller on another store but the same socket path exits 1 naming the path and the
    serving pid; the first controller's socket file stays and it still answers."""
    sock = workdir / "shared.sock"
    first = start_controller(workdir, workdir / "one.db", sock)
    try:
        assert first.proc is not None
        code, err = refused(controller_argv(workdir / "two.db", f"unix:{sock}"))
        assert code == 1
        assert str(sock) in err and f"process {first.proc.pid}" in err, err
        assert stat.S_ISSOCK(sock.lstat().st_mode)
        assert healthy(first.target)
    finally:
        first.stop()
    # the refused controller gave its store's lock up: a controller on it starts
    second = start_controller(workdir, workdir / "two.db", sock, "b")
    second.stop()


def test_a_stale_socket_file_without_a_listener_is_replaced(workdir: Path) -> None:
    """A socket file left by a crashed server (nobody accepts on it) does not stop a restart."""
    sock = workdir / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(sock))
    leftover.close()
    assert stat.S_ISSOCK(sock.lstat().st_mode)
    service = start_controller(workdir, workdir / "state.db", sock)
    try:
        assert healthy(service.target)
    finally:
        service.stop()


def test_a_file_at_the_listen_path_is_refused_and_kept(workdir: Path) -> None:
    """``--listen unix:FILE`` where FILE is a regular file exits 1 and leaves the file alone."""
    precious = workdir / "precious.txt"
    precious.write_text("keep me\n")
    code, err = refused(controller_argv(workdir / "state.db", f"unix:{precious}"))
    assert code == 1
    assert str(precious) in err and "not a unix socket" in err, err
    assert precious.read_text() == "keep me\n"


def test_the_listen_socket_is_private_to_its_owner(workdir: Path) -> None:
    """The controller's unix socket has mode 0600 and its new directory is created."""
    sock = workdir / "run" / "spiderpool" / "controller.sock"
    service = start_controller(workdir, workdir / "state.db", sock)
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    finally:
        service.stop()


def test_plain_tcp_is_refused_without_the_insecure_opt_in(workdir: Path) -> None:
    """A HOST:PORT listen exits 2 saying why and naming --insecure-tcp; with the flag it serves."""
    code, err = refused(controller_argv(workdir / "state.db", "127.0.0.1:5720"))
    assert code == 2
    assert "plain TCP" in err and "--insecure-tcp" in err and "unix:" in err, err
    assert not (workdir / "state.db").exists()

    with socket.socket() as probe:  # a free port, for the opt-in run
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = controller_argv(workdir / "state.db", f"127.0.0.1:{port}", "--insecure-tcp")
    service = ServiceProcess(argv, workdir / "unused", workdir / "tcp.log")
    with (workdir / "tcp.log").open("ab") as log:
        service.proc = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=DEADLINE, wait_for_ready=True
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        service.stop(signal.SIGTERM)


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1", "http", ""])
def test_a_port_outside_1_to_65535_is_refused_not_bound_at_random(workdir: Path, port: str) -> None:
    """``--listen HOST:PORT`` with a port that is not 1-65535 exits 2 naming the port."""
    code, err = refused(controller_argv(workdir / "state.db", f"127.0.0.1:{port}", "--insecure-tcp"))
    assert code == 2
    assert f"'127.0.0.1:{port}'" in err and "port" in err and "1 to 65535" in err, err


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"", "is empty (0 bytes)"), (b"not a database at all " * 200, "not a spiderpool store")],
    ids=["zero-bytes", "garbage"],
)
def test_a_store_file_that_is_not_a_spiderpool_store_is_refused_unchanged(
    workdir: Path, content: bytes, fragment: str
) -> None:
    """A truncated (zero-byte) or corrupt store file stops the controller with one line; the
    file is left exactly as it was and no socket is created."""
    store = workdir / "controller.db"
    store.write_bytes(content)
    code, err = refused(controller_argv(store, f"unix:{workdir / 'c.sock'}"))
    assert code == 1
    assert str(store) in err and fragment in err, err
    assert store.read_bytes() == content
    assert not (workdir / "c.sock").exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["controller.db", "controller.db.lock"]


def test_every_client_defaults_to_the_controllers_default_socket() -> None:
    """The controller listens, and the agent and spiderpoolctl dial, one unix socket by default."""
    from spiderpool_agent.settings import load_settings as agent_settings  # noqa: PLC0415
    from spiderpool_controller.settings import load_settings as controller_settings  # noqa: PLC0415
    from spiderpool_tools.ctl import build_parser  # noqa: PLC0415

    listen = controller_settings([], environ={}).listen
    assert listen.startswith("unix:/")
    assert agent_settings({}, env={}).controller == listen
    env_backup = os.environ.pop("SPIDERPOOL_CONTROLLER", None)
    try:
        assert build_parser().parse_args(["get", "ippools"]).controller == listen
    finally:
        if env_backup is not None:
            os.environ["SPIDERPOOL_CONTROLLER"] = env_backup
