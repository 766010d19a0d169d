"""The README's "On one machine" commands run as written and print what the README shows.

The shell block is read from README.md itself: every command in it is run through bash
(continuation lines joined, ``$(hostname)`` expanded), with the machine paths it names
(``/var/lib/spiderpool``, ``/run/spiderpool``, ``/var/run/spidernet``, ``/opt/cni/bin``)
moved under a temporary directory, and the default controller socket pointed there by
``SPIDERPOOL_LISTEN`` / ``SPIDERPOOL_CONTROLLER`` (so the commands rely on the defaults
exactly as a user's do). The services are started in the background and awaited on their
health service; each ``spiderpoolctl`` command must succeed, and the ``# `` lines right
below a command are its expected stdout, compared line by line.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.component.agent_harness import DEADLINE, PROBE_OPTIONS

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "### On one machine"
MACHINE_ROOTS = ("/var/lib/spiderpool", "/run/spiderpool", "/var/run/spidernet", "/opt/cni/bin")


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)


def readme_commands() -> list[Command]:
    """The commands of the README's "On one machine" shell block, each with its sample output."""
    text = README.read_text()
    block = re.search(r"```sh\n(.*?)```", text[text.index(SECTION) :], re.S)
    assert block is not None, "the section has no sh block"
    commands: list[Command] = []
    pending = ""
    previous_was_command = False
    for source_line in block.group(1).splitlines():
        raw, pending = (pending + " " + source_line.strip(), "") if pending else (source_line, "")
        if raw.endswith("\\"):
            pending = raw[:-1].rstrip()
            continue
        if raw.startswith("#"):
            if previous_was_command:
                commands[-1].expected.append(raw[2:].rstrip())
            continue
        previous_was_command = bool(raw.strip())
        if raw.strip():
            commands.append(Command(raw.strip()))
    return commands


@pytest.fixture
def machine() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="spm-", dir="/tmp"))  # short: unix socket paths
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def moved(line: str, root: Path) -> str:
    for machine_path in MACHINE_ROOTS:
        line = line.replace(machine_path, f"{root}{machine_path}")
    return line


def test_the_readme_commands_print_the_readme_sample_output(machine: Path) -> None:
    """Controller, spiderpoolctl, agent and installer run as the README writes them, and every
    sample output in the README is exactly what its command prints."""
    commands = readme_commands()
    assert [c.line.split()[0] for c in commands][:2] == ["spiderpool-controller", "spiderpoolctl"]
    assert any(c.expected for c in commands), "the README shows no sample output"
    socket = f"unix:{machine}/run/spiderpool/controller.sock"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "SPIDERPOOL_LISTEN": socket,
        "SPIDERPOOL_CONTROLLER": socket,
        "PYTHONUNBUFFERED": "1",
    }
    services: list[subprocess.Popen[bytes]] = []
    try:
        for command in commands:
            line = moved(command.line, machine)
            program = line.split()[0]
            if program in ("spiderpool-controller", "spiderpool-agent"):
                sock = (
                    socket
                    if program == "spiderpool-controller"
                    else "unix:" + line.split("--socket")[1].split()[0]
                )
                services.append(start_in_background(line, sock, env, machine / f"{program}.log"))
                continue
            proc = subprocess.run(
                ["bash", "-c", line],
                check=False,
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=DEADLINE,
            )
            assert proc.returncode == 0, f"{command.line}\n{proc.stderr}"
            if command.expected:
                assert proc.stdout.rstrip("\n").split("\n") == command.expected, command.line
    finally:
        for service in reversed(services):
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()


def start_in_background(
    line: str, target: str, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Run a service command line in the background; return once its health service is SERVING."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=ROOT, env=env, stdout=log, stderr=log)
    end = time.monotonic() + DEADLINE
    with grpc.insecure_channel(target, options=PROBE_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end and proc.poll() is None:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0, wait_for_ready=True)
            except grpc.RpcError:
                continue  # not listening yet
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return proc
    proc.kill()
    proc.wait()
    raise AssertionError(f"{line!r} did not become healthy:\n{log_path.read_text()}")
