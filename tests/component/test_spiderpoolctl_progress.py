"""spiderpoolctl shows progress on stderr only when stderr is a terminal: a slow check (a stand-in
controller that takes 1.5 s to answer) run with stderr on a pseudo-terminal, and on a pipe."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from spiderpool.controller.v1 import admin_pb2, admin_pb2_grpc
from spiderpool_common.grpc_server import start_server

CTL = Path(sys.executable).parent / "spiderpoolctl"
ANSWER_AFTER_S = 1.5


class SlowAdmin(admin_pb2_grpc.AdminServiceServicer):
    async def Check(
        self, request: admin_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.CheckResponse:
        await asyncio.sleep(ANSWER_AFTER_S)
        return admin_pb2.CheckResponse(pools=2, addresses=3, endpoints=3)

    async def Explain(
        self, request: admin_pb2.ExplainRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ExplainResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this stand-in")
        raise AssertionError  # abort raised

    async def DescribeEndpoint(
        self, request: admin_pb2.DescribeEndpointRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DescribeEndpointResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this stand-in")
        raise AssertionError  # abort raised


@pytest.fixture
def slow_controller() -> Iterator[str]:
    directory = Path(tempfile.mkdtemp(prefix="spprog-", dir="/tmp"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def register(server: grpc.aio.Server) -> list[str]:
        admin_pb2_grpc.add_AdminServiceServicer_to_server(SlowAdmin(), server)
        return [admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name]

    server, address = asyncio.run_coroutine_threadsafe(
        start_server(f"unix:{directory / 'c.sock'}", register), loop
    ).result(30)
    try:
        yield address
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        shutil.rmtree(directory, ignore_errors=True)


def run_with_terminal_stderr(argv: list[str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal; return the exit code, stdout and what the terminal got."""
    leader, follower = pty.openpty()
    try:
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL
        ) as proc:
            os.close(follower)
            terminal = b""
            while True:
                ready, _, _ = select.select([leader], [], [], 30)
                if not ready:
                    break
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the child closed its end
                    break
                if not chunk:
                    break
                terminal += chunk
            out = proc.stdout.read() if proc.stdout else b""
            code = proc.wait(timeout=30)
    finally:
        os.close(leader)
    return code, out.decode(), terminal.decode()


def test_a_slow_check_shows_a_spinner_on_a_terminal_and_nothing_on_a_pipe(slow_controller: str) -> None:
    """On a terminal the spinner with its elapsed time appears and is erased before the summary; the
    same command with stderr on a pipe prints only the summary; stdout is the same either way."""
    argv = [str(CTL), "--controller", slow_controller, "check"]
    code, out, terminal = run_with_terminal_stderr(argv)
    assert code == 0
    assert out == "No inconsistencies in 2 IPPool(s).\n"
    assert "\r\x1b[Kconsistency check " in terminal
    summary = "checked 2 IPPool(s), 3 allocated address(es), 3 SpiderEndpoint(s): 0 finding(s)"
    erased_then_summary = terminal.rsplit("\r\x1b[K", 1)[1]
    assert erased_then_summary.startswith(summary)
    piped = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert piped.returncode == 0
    assert piped.stdout == out
    assert "consistency check" not in piped.stderr
    assert "\r" not in piped.stderr
