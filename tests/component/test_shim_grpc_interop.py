"""The shims' own gRPC client against the real grpcio server, and against scripted HTTP/2 peers.

The shims carry a hand-written HTTP/2 + HPACK + protobuf client (spiderpool_cni.h2unary),
so these tests prove interoperability where it matters: a ``grpc.aio`` server built from the
generated CniService code receives exactly the CniCall the shim encoded, and every answer
it can give (results of any size, every status code with an ErrorInfo, messages that need
percent-encoding, trailers-only errors, a shutdown mid-call, a deadline) comes out as the
right CNI output. Scripted raw HTTP/2 peers cover what grpcio will not do on demand:
closing early, GOAWAY, RST_STREAM, PING, CONTINUATION and padding.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status
from spiderpool.agent.v1 import cni_pb2, cni_pb2_grpc
from spiderpool_cni import codes, h2unary, hpack, wire
from spiderpool_cni.install import install
from spiderpool_common.errors import CniError, SpiderpoolError, Unavailable
from spiderpool_common.grpc_errors import to_grpc_status

RPCS = [
    f"{kind}{verb}" for kind in ("Ipam", "Coordinator") for verb in ("Add", "Del", "Check", "Gc", "Status")
]
SERVICE = "/spiderpool.agent.v1.CniService/"

Behaviour = Callable[[str, Any, grpc.aio.ServicerContext], Awaitable[bytes]]


async def _ok(name: str, request: Any, context: grpc.aio.ServicerContext) -> bytes:
    return b'{"cniVersion": "1.0.0", "ips": []}'


class Agent:
    """A CniService whose RPCs record each request and answer with the test's behaviour."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.requests: list[tuple[str, Any]] = []
        self.behaviour: Behaviour = _ok
        self.server: grpc.aio.Server | None = None

    def servicer(self) -> cni_pb2_grpc.CniServiceServicer:
        agent = self
        methods: dict[str, Any] = {}
        for name in RPCS:

            async def method(self: Any, request: Any, context: Any, _name: str = name) -> Any:
                agent.requests.append((_name, request))
                result = await agent.behaviour(_name, request, context)
                return getattr(cni_pb2, f"{_name}Response")(result=result)

            methods[name] = method
        return type("RecordingServicer", (cni_pb2_grpc.CniServiceServicer,), methods)()  # type: ignore[no-any-return]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="spshim", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def agent(short_dir: Path) -> AsyncIterator[Agent]:
    socket_path = str(short_dir / "agent.sock")
    agent = Agent(socket_path)
    server = grpc.aio.server()
    cni_pb2_grpc.add_CniServiceServicer_to_server(agent.servicer(), server)
    server.add_insecure_port(f"unix:{socket_path}")
    await server.start()
    agent.server = server
    yield agent
    await server.stop(None)


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cnibin")
    install(str(path))
    return path


def ipam_config(socket_path: str, log_dir: Path, cni_version: str = "1.0.0", **extra: Any) -> bytes:
    ipam = {
        "type": "spiderpool",
        "ipam_unix_socket_path": socket_path,
        "log_file_path": str(log_dir / "spiderpool.log"),
        "del_spool_dir": str(log_dir / "spool"),
    }
    return json.dumps(
        {"cniVersion": cni_version, "name": "net1", "type": "macvlan", "ipam": ipam, **extra}
    ).encode()


def coordinator_config(socket_path: str, log_dir: Path, cni_version: str = "1.0.0") -> bytes:
    return json.dumps(
        {
            "cniVersion": cni_version,
            "name": "net1",
            "type": "coordinator",
            "ipam_unix_socket_path": socket_path,
            "del_spool_dir": str(log_dir / "spool"),
            "logOptions": {"logFile": str(log_dir / "coordinator.log")},
        }
    ).encode()


def cni_env(command: str, **extra: str) -> dict[str, str]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c0ffee",
        "CNI_NETNS": "/var/run/netns/pod1",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }
    env.update(extra)
    return env


async def run_shim(executable: Path, env: dict[str, str], stdin: bytes) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        str(executable),
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode is not None
    return proc.returncode, stdout, stderr


def cni_error(stdout: bytes) -> dict[str, Any]:
    """Parse stdout as exactly one CNI error object."""
    assert stdout.endswith(b"\n")
    obj = json.loads(stdout)
    assert isinstance(obj, dict)
    assert set(obj) == {"cniVersion", "code", "msg", "details"}
    return obj


# -- success and encoding interop ----------------------------------------------------------


async def test_add_prints_the_agent_result_and_the_agent_receives_the_exact_cni_call(
    agent: Agent, bin_dir: Path, short_dir: Path
) -> None:
    """ADD prints the agent's result bytes unchanged, and the server decodes the exact env and raw stdin."""
    result = (
        '{"cniVersion": "1.0.0", "ips": [{"address": "10.6.0.7/16"}], "dns": {"domain": "\u00e9t\u00e9"}}'
    )
    agent.behaviour = lambda *_: asyncio.sleep(0, result.encode())
    config = (
        b'  {"cniVersion":"1.0.0", "name":"net1",\n "ipam":{"ipam_unix_socket_path":"%s", "x":"\xc3\xa9"}}\n'
        % (agent.socket_path.encode())
    )
    env = cni_env("ADD", CNI_ARGS="K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p\u00e9;K8S_POD_UID=u1")
    rc, stdout, stderr = await run_shim(bin_dir / "spiderpool", env, config)
    assert (rc, stdout, stderr) == (0, result.encode() + b"\n", b"")
    [(rpc, request)] = agent.requests
    assert rpc == "IpamAdd"
    call = request.call
    assert call.command == "ADD"
    assert call.container_id == "c0ffee"
    assert call.netns == "/var/run/netns/pod1"
    assert call.ifname == "eth0"
    assert call.args == "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p\u00e9;K8S_POD_UID=u1"
    assert call.path == "/opt/cni/bin"
    assert call.config == config
    assert list(call.present) == [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
    ]


async def test_present_names_exactly_the_variables_that_were_set_even_when_empty(
    agent: Agent, bin_dir: Path, short_dir: Path
) -> None:
    """DEL with CNI_NETNS set but empty and no CNI_ARGS reports CNI_NETNS present and CNI_ARGS absent."""
    agent.behaviour = lambda *_: asyncio.sleep(0, b"")
    env = cni_env("DEL", CNI_NETNS="")
    rc, stdout, _ = await run_shim(bin_dir / "spiderpool", env, ipam_config(agent.socket_path, short_dir))
    assert (rc, stdout) == (0, b"")
    call = agent.requests[0][1].call
    assert call.netns == ""
    assert list(call.present) == ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]


@pytest.mark.parametrize("kind", ["ipam", "coordinator"])
@pytest.mark.parametrize("verb", ["ADD", "DEL", "CHECK", "GC", "STATUS"])
async def test_each_verb_calls_its_rpc_and_prints_only_a_non_empty_result(
    agent: Agent, bin_dir: Path, short_dir: Path, kind: str, verb: str
) -> None:
    """Each verb reaches Ipam<Verb> or Coordinator<Verb>; an empty result prints nothing."""
    answer = b'{"cniVersion": "1.1.0"}' if verb in ("ADD", "CHECK") else b""
    agent.behaviour = lambda *_: asyncio.sleep(0, answer)
    if kind == "ipam":
        executable, config = bin_dir / "spiderpool", ipam_config(agent.socket_path, short_dir)
    else:
        executable, config = bin_dir / "coordinator", coordinator_config(agent.socket_path, short_dir)
    rc, stdout, _ = await run_shim(executable, cni_env(verb), config)
    assert rc == 0
    assert stdout == (answer + b"\n" if answer else b"")
    expected_rpc = ("Ipam" if kind == "ipam" else "Coordinator") + verb.capitalize()
    assert [name for name, _ in agent.requests] == [expected_rpc]
    log = (short_dir / ("spiderpool.log" if kind == "ipam" else "coordinator.log")).read_text()
    assert f'command="{verb}"' in log
    assert "result=ok" in log


@pytest.mark.parametrize("size", [1 << 20, 4 << 20])
async def test_large_results_cross_flow_control_intact(
    agent: Agent, bin_dir: Path, short_dir: Path, size: int
) -> None:
    """A result of 1-4 MiB (far beyond the 64 KiB default window) arrives byte for byte."""
    blob = bytes((i * 7 + i // 251) % 256 for i in range(size))
    agent.behaviour = lambda *_: asyncio.sleep(0, blob)
    rc, stdout, _ = await run_shim(
        bin_dir / "spiderpool", cni_env("ADD"), ipam_config(agent.socket_path, short_dir)
    )
    assert rc == 0
    assert stdout == blob + b"\n"


async def test_large_requests_wait_for_the_server_windows(
    agent: Agent, bin_dir: Path, short_dir: Path
) -> None:
    """A 600 KiB configuration (beyond the server's initial window) reaches the agent unchanged."""
    agent.behaviour = lambda *_: asyncio.sleep(0, b"{}")
    config = ipam_config(agent.socket_path, short_dir, padding="p" * (600 << 10))
    rc, stdout, _ = await run_shim(bin_dir / "spiderpool", cni_env("ADD"), config)
    assert (rc, stdout) == (0, b"{}\n")
    assert agent.requests[0][1].call.config == config


async def test_client_module_calls_grpcio_in_process(agent: Agent) -> None:
    """unary_call returns status 0 and the serialized response, which protobuf parses back."""
    agent.behaviour = lambda *_: asyncio.sleep(0, b"hello")
    request = wire.encode_request(wire.encode_cni_call(command="CHECK", container_id="x", config=b"{}"))
    status, message, details, body = await asyncio.to_thread(
        h2unary.unary_call, agent.socket_path, SERVICE + "IpamCheck", request, 10.0
    )
    assert (status, message, details) == (0, "", b"")
    assert cni_pb2.IpamCheckResponse.FromString(body).result == b"hello"
    assert wire.decode_result(body) == b"hello"
    assert agent.requests[0][1] == cni_pb2.IpamCheckRequest.FromString(request)


async def test_unknown_method_is_unimplemented(agent: Agent) -> None:
    """A method the server lacks comes back as gRPC status 12 (UNIMPLEMENTED), not a transport error."""
    status, _, _, body = await asyncio.to_thread(
        h2unary.unary_call, agent.socket_path, SERVICE + "IpamNope", b"", 10.0
    )
    assert (status, body) == (12, b"")


# -- error statuses ------------------------------------------------------------------------

ERROR_CODES = [code for code in grpc.StatusCode if code is not grpc.StatusCode.OK]


def _abort_with(
    err: SpiderpoolError, *, headers_first: bool = False, code: grpc.StatusCode | None = None
) -> Behaviour:
    """Abort with ``err``'s status, its gRPC code replaced by ``code`` (a foreign peer's choice)."""
    status = to_grpc_status(err)
    if code is not None:
        status.code = code.value[0]

    async def behaviour(name: str, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        if headers_first:
            await context.send_initial_metadata(())
        await context.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("abort returned")

    return behaviour


@pytest.mark.parametrize("grpc_code", ERROR_CODES, ids=lambda c: c.name)
async def test_every_status_code_with_error_info_prints_the_agents_cni_error(
    agent: Agent, bin_dir: Path, short_dir: Path, grpc_code: grpc.StatusCode
) -> None:
    """Whatever the gRPC code, the ErrorInfo's cni_code, the message and the details are printed."""
    err = CniError(codes.POOL_EXHAUSTED, f"all pools exhausted ({grpc_code.name})", details="pool-a: 0 free")
    agent.behaviour = _abort_with(err, code=grpc_code)
    config = ipam_config(agent.socket_path, short_dir, cni_version="0.4.0")
    rc, stdout, stderr = await run_shim(bin_dir / "spiderpool", cni_env("ADD"), config)
    assert rc == 1
    assert stderr == b""
    assert cni_error(stdout) == {
        "cniVersion": "0.4.0",
        "code": codes.POOL_EXHAUSTED,
        "msg": f"all pools exhausted ({grpc_code.name})",
        "details": "pool-a: 0 free",
    }
    log = (short_dir / "spiderpool.log").read_text()
    assert "result=error code=100" in log


@pytest.mark.parametrize("headers_first", [False, True], ids=["trailers-only", "headers-then-trailers"])
async def test_messages_needing_percent_encoding_arrive_verbatim(
    agent: Agent, bin_dir: Path, short_dir: Path, headers_first: bool
) -> None:
    """Non-ASCII, '%' and newlines in message and details survive, in both response shapes."""
    message = "pool \u00abblue\u00bb \u00e9puis\u00e9: 100% used\nsee \u6c60 %41"
    details = "tried: a%2Fb, \u00fc, \u2603"
    agent.behaviour = _abort_with(
        CniError(codes.NO_POOL_MATCHED, message, details=details), headers_first=headers_first
    )
    rc, stdout, _ = await run_shim(
        bin_dir / "spiderpool", cni_env("ADD"), ipam_config(agent.socket_path, short_dir)
    )
    assert rc == 1
    obj = cni_error(stdout)
    assert (obj["code"], obj["msg"], obj["details"]) == (codes.NO_POOL_MATCHED, message, details)


@pytest.mark.parametrize(
    ("grpc_code", "verb", "cni_code"),
    [
        (grpc.StatusCode.UNAVAILABLE, "ADD", codes.TRY_AGAIN_LATER),
        (grpc.StatusCode.UNAVAILABLE, "STATUS", codes.NOT_AVAILABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "CHECK", codes.TRY_AGAIN_LATER),
        (grpc.StatusCode.CANCELLED, "ADD", codes.TRY_AGAIN_LATER),
        (grpc.StatusCode.INVALID_ARGUMENT, "ADD", codes.INVALID_CONFIG),
        (grpc.StatusCode.PERMISSION_DENIED, "ADD", codes.INTERNAL),
        (grpc.StatusCode.INTERNAL, "CHECK", codes.INTERNAL),
    ],
)
async def test_statuses_without_error_info_map_to_generic_cni_codes(
    agent: Agent, bin_dir: Path, short_dir: Path, grpc_code: grpc.StatusCode, verb: str, cni_code: int
) -> None:
    """A status from a peer that sends no ErrorInfo still yields a CNI error with its message."""

    async def behaviour(name: str, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc_code, "plain failure \u00e9")
        raise AssertionError("abort returned")

    agent.behaviour = behaviour
    rc, stdout, _ = await run_shim(
        bin_dir / "spiderpool", cni_env(verb), ipam_config(agent.socket_path, short_dir)
    )
    obj = cni_error(stdout)
    assert rc == 1
    assert (obj["code"], obj["msg"], obj["details"]) == (
        cni_code,
        "plain failure \u00e9",
        f"gRPC status {grpc_code.name}",
    )


@pytest.mark.parametrize("grpc_code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
async def test_del_answered_by_a_retryable_status_without_error_info_is_spooled(
    agent: Agent, bin_dir: Path, short_dir: Path, grpc_code: grpc.StatusCode
) -> None:
    """A DEL the server fails with UNAVAILABLE or DEADLINE_EXCEEDED and no ErrorInfo (a server shutting
    down, not the agent's CNI logic) is spooled and answered with success."""

    async def behaviour(name: str, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc_code, "going away")
        raise AssertionError("abort returned")

    agent.behaviour = behaviour
    rc, stdout, _ = await run_shim(
        bin_dir / "coordinator", cni_env("DEL"), coordinator_config(agent.socket_path, short_dir)
    )
    assert (rc, stdout) == (0, b"")
    [spooled] = list((short_dir / "spool").iterdir())
    assert json.loads(spooled.read_bytes())["reason"] == "going away"


async def test_del_the_agent_fails_with_its_own_error_is_not_spooled(
    agent: Agent, bin_dir: Path, short_dir: Path
) -> None:
    """A DEL the agent answers with its own error (ErrorInfo attached, even on an UNAVAILABLE status
    with code 11) prints that error: the agent was there and decided, so nothing is spooled."""
    agent.behaviour = _abort_with(Unavailable("controller busy"))
    rc, stdout, _ = await run_shim(
        bin_dir / "spiderpool", cni_env("DEL"), ipam_config(agent.socket_path, short_dir)
    )
    assert rc == 1
    assert (cni_error(stdout)["code"], cni_error(stdout)["msg"]) == (codes.TRY_AGAIN_LATER, "controller busy")
    assert not (short_dir / "spool").exists()


async def test_del_whose_agent_goes_silent_is_spooled_after_the_timeout(
    agent: Agent, bin_dir: Path, short_dir: Path
) -> None:
    """A DEL the agent does not answer within SPIDERPOOL_SHIM_TIMEOUT is spooled and succeeds."""
    never = asyncio.Event()

    async def behaviour(name: str, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        await never.wait()
        return b""

    agent.behaviour = behaviour
    env = cni_env("DEL", SPIDERPOOL_SHIM_TIMEOUT="0.5")
    rc, stdout, _ = await run_shim(bin_dir / "spiderpool", env, ipam_config(agent.socket_path, short_dir))
    assert (rc, stdout) == (0, b"")
    [spooled] = list((short_dir / "spool").iterdir())
    assert "did not answer within 0.5s" in json.loads(spooled.read_bytes())["reason"]


# -- an agent that fails to answer ---------------------------------------------------------


async def _add_timing_out(agent: Agent, bin_dir: Path, short_dir: Path, timeout: int) -> dict[str, Any]:
    """Run an ADD with SPIDERPOOL_SHIM_TIMEOUT=timeout; it must fail as "did not answer in time"."""
    env = cni_env("ADD", SPIDERPOOL_SHIM_TIMEOUT=str(timeout))
    rc, stdout, _ = await run_shim(bin_dir / "spiderpool", env, ipam_config(agent.socket_path, short_dir))
    obj = cni_error(stdout)
    assert (rc, obj["code"]) == (1, codes.TRY_AGAIN_LATER)
    assert f"did not answer within {timeout}s" in obj["msg"]
    return obj


async def test_deadline_exceeded_is_try_again_later_and_the_server_saw_the_timeout(
    agent: Agent, bin_dir: Path, short_dir: Path
) -> None:
    """A server that never answers hits SPIDERPOOL_SHIM_TIMEOUT: code 11, and grpc-timeout reached it."""
    remaining: list[float | None] = []
    never = asyncio.Event()

    async def behaviour(name: str, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        remaining.append(context.time_remaining())
        await never.wait()
        return b""

    agent.behaviour = behaviour
    # 2 s, not less: on a loaded machine the server must still get to dispatch the handler
    # (and record the deadline it saw) before the shim gives up.
    await _add_timing_out(agent, bin_dir, short_dir, 2)
    assert remaining
    assert remaining[0] is not None
    assert 0 < remaining[0] <= 2


async def test_server_enforced_deadline_reads_as_the_shims_own_timeout(
    agent: Agent, bin_dir: Path, short_dir: Path
) -> None:
    """The server's DEADLINE_EXCEEDED just before the shim's own timer fires is the same timeout.

    grpcio enforces the grpc-timeout the shim sends; which side notices first is a race, and
    both must give the user the same code and message (CI once saw "Deadline Exceeded").
    """

    async def behaviour(name: str, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        left = context.time_remaining()
        assert left is not None
        await asyncio.sleep(max(left - 0.03, 0))
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        raise AssertionError("abort returned")

    agent.behaviour = behaviour
    obj = await _add_timing_out(agent, bin_dir, short_dir, 1)
    assert obj["details"] == "gRPC status DEADLINE_EXCEEDED: Deadline Exceeded"


async def test_status_deadline_reports_not_available(agent: Agent, bin_dir: Path, short_dir: Path) -> None:
    """STATUS whose agent does not answer in time reports code 50, not 11."""
    never = asyncio.Event()

    async def behaviour(name: str, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        await never.wait()
        return b""

    agent.behaviour = behaviour
    env = cni_env("STATUS", SPIDERPOOL_SHIM_TIMEOUT="0.3")
    rc, stdout, _ = await run_shim(
        bin_dir / "coordinator", env, coordinator_config(agent.socket_path, short_dir)
    )
    assert (rc, cni_error(stdout)["code"]) == (1, codes.NOT_AVAILABLE)


async def test_agent_shutting_down_mid_call_is_try_again_later(
    agent: Agent, bin_dir: Path, short_dir: Path
) -> None:
    """When the agent stops while the call is in flight, the shim prints code 11."""
    entered = asyncio.Event()
    never = asyncio.Event()

    async def behaviour(name: str, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        entered.set()
        await never.wait()
        return b""

    agent.behaviour = behaviour
    shim = asyncio.create_task(
        run_shim(bin_dir / "spiderpool", cni_env("ADD"), ipam_config(agent.socket_path, short_dir))
    )
    await asyncio.wait_for(entered.wait(), 10)
    assert agent.server is not None
    await agent.server.stop(0)
    rc, stdout, _ = await shim
    obj = cni_error(stdout)
    assert (rc, obj["code"]) == (1, codes.TRY_AGAIN_LATER)


@pytest.mark.parametrize("state", ["missing", "refused"])
@pytest.mark.parametrize("verb", ["ADD", "STATUS"])
async def test_dead_socket_is_unreachable(bin_dir: Path, short_dir: Path, state: str, verb: str) -> None:
    """No socket file, or a file nobody listens on: code 11 (50 for STATUS) naming the socket and errno."""
    path = short_dir / "dead.sock"
    if state == "refused":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.close()
    rc, stdout, _ = await run_shim(bin_dir / "spiderpool", cni_env(verb), ipam_config(str(path), short_dir))
    obj = cni_error(stdout)
    assert rc == 1
    assert obj["code"] == (codes.NOT_AVAILABLE if verb == "STATUS" else codes.TRY_AGAIN_LATER)
    errno_text = "[Errno 2]" if state == "missing" else "[Errno 111]"
    assert obj["msg"].startswith(f"spiderpool-agent unreachable at {path}: {errno_text}")


def test_dead_socket_raises_unreachable_in_process(short_dir: Path) -> None:
    """unary_call on a missing socket raises Unreachable carrying the OS error."""
    with pytest.raises(h2unary.Unreachable, match=r"Errno 2"):
        h2unary.unary_call(str(short_dir / "none.sock"), SERVICE + "IpamAdd", b"", 1.0)


# -- scripted HTTP/2 peers -----------------------------------------------------------------


def _read_request(conn: socket.socket) -> None:
    """Consume the client preface and frames until the request's END_STREAM."""
    buf = b""
    while len(buf) < len(h2unary.PREFACE):
        chunk = conn.recv(65536)
        if not chunk:
            return
        buf += chunk
    assert buf.startswith(h2unary.PREFACE)
    buf = buf[len(h2unary.PREFACE) :]
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
        length = int.from_bytes(buf[:3], "big")
        frame_type, flags = buf[3], buf[4]
        buf = buf[9 + length :]
        if frame_type == h2unary.DATA and flags & h2unary.FLAG_END_STREAM:
            return


class ScriptedPeer:
    """A one-connection HTTP/2 server on a unix socket that plays fixed frames back."""

    def __init__(
        self, path: str, script: Callable[[socket.socket], None], *, read_request: bool = True
    ) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.listener.settimeout(10)
        self.script = script
        self.read_request = read_request
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            if self.read_request:
                _read_request(conn)
            self.script(conn)

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()


RESPONSE_HEADERS = hpack.encode([(b":status", b"200"), (b"content-type", b"application/grpc")])
OK_TRAILERS = hpack.encode([(b"grpc-status", b"0")])


def _message(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def _ok_response(result: bytes) -> bytes:
    return _message(wire.encode_request(result))  # field 1 bytes: same encoding as the response


@pytest.fixture
def peer_path(short_dir: Path) -> str:
    return str(short_dir / "peer.sock")


def _call(path: str, timeout: float = 5.0) -> tuple[int, str, bytes, bytes]:
    return h2unary.unary_call(path, SERVICE + "IpamAdd", b"", timeout)


def test_trailers_only_response_carries_the_status(peer_path: str) -> None:
    """A single HEADERS frame with END_STREAM and grpc-status is a complete error answer."""
    block = hpack.encode(
        [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"5"),
         (b"grpc-message", b"no%20such%20pool%3A%20%C3%A9")]
    )  # fmt: skip

    def script(conn: socket.socket) -> None:
        conn.sendall(h2unary.frame(h2unary.SETTINGS, 0, 0) + h2unary.frame(h2unary.HEADERS, 0x5, 1, block))

    peer = ScriptedPeer(peer_path, script)
    assert _call(peer_path) == (5, "no such pool: \u00e9", b"", b"")
    peer.close()


class ManualClock(h2unary.Clock):
    """A deadline clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.at = 0.0

    def now(self) -> float:
        return self.at


@pytest.mark.parametrize(
    ("answered_at", "at_deadline"),
    [(0.0, False), (9.4, False), (9.6, True)],
    ids=["long-before", "just-outside-the-slack", "within-the-slack"],
)
def test_deadline_exceeded_status_is_the_deadline_only_at_the_deadline(
    peer_path: str, answered_at: float, at_deadline: bool
) -> None:
    """A peer's DEADLINE_EXCEEDED near our deadline raises DeadlineExceeded (the same event as our own
    timer); one sent long before it is just a status (the peer's own verdict, passed on).

    The 10 s deadline's slack is 0.51 s; the peer answers at a time set on an injected clock,
    so the outcome does not depend on how fast this machine schedules the peer's thread."""
    clock = ManualClock()
    block = hpack.encode(
        [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"4"),
         (b"grpc-message", b"Deadline%20Exceeded")]
    )  # fmt: skip

    def script(conn: socket.socket) -> None:
        clock.at = answered_at
        conn.sendall(h2unary.frame(h2unary.SETTINGS, 0, 0) + h2unary.frame(h2unary.HEADERS, 0x5, 1, block))

    def call() -> tuple[int, str, bytes, bytes]:
        return h2unary.unary_call(peer_path, SERVICE + "IpamAdd", b"", 10.0, clock=clock)

    peer = ScriptedPeer(peer_path, script)
    try:
        if at_deadline:
            with pytest.raises(
                h2unary.DeadlineExceeded, match=r"^gRPC status DEADLINE_EXCEEDED: Deadline Exceeded$"
            ):
                call()
        else:
            assert call() == (4, "Deadline Exceeded", b"", b"")
    finally:
        peer.close()


def test_continuation_padding_and_ping_are_handled(peer_path: str) -> None:
    """Headers split over CONTINUATION, padded DATA and a PING mid-stream (acknowledged) yield the body."""
    acks: list[bytes] = []

    def script(conn: socket.socket) -> None:
        head = RESPONSE_HEADERS
        body = _ok_response(b"padded result")
        padded = bytes((4,)) + body + b"\x00" * 4
        conn.sendall(
            h2unary.frame(h2unary.SETTINGS, 0, 0)
            + h2unary.frame(h2unary.HEADERS, 0, 1, head[:3])
            + h2unary.frame(h2unary.CONTINUATION, h2unary.FLAG_END_HEADERS, 1, head[3:])
            + h2unary.frame(h2unary.PING, 0, 0, b"12345678")
            + h2unary.frame(h2unary.DATA, h2unary.FLAG_PADDED, 1, padded)
            + h2unary.frame(h2unary.HEADERS, 0x5, 1, OK_TRAILERS)
        )
        conn.settimeout(5)
        data = b""
        while b"12345678" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        acks.append(data)

    peer = ScriptedPeer(peer_path, script)
    status, _, _, body = _call(peer_path)
    peer.close()
    assert (status, wire.decode_result(body)) == (0, b"padded result")
    assert h2unary.frame(h2unary.PING, h2unary.FLAG_ACK, 0, b"12345678") in acks[0]


@pytest.mark.parametrize(
    ("name", "frames", "read_request", "match"),
    [
        ("close before reading", b"", False, "closed the connection"),
        ("close after settings", h2unary.frame(h2unary.SETTINGS, 0, 0), True, "closed the connection"),
        (
            "close after headers",
            h2unary.frame(h2unary.HEADERS, 0x4, 1, RESPONSE_HEADERS),
            True,
            "closed the connection",
        ),
        ("goaway before stream 1", h2unary.frame(h2unary.GOAWAY, 0, 0, bytes(8) + b"bye"), True, "GOAWAY"),
        (
            "rst_stream",
            h2unary.frame(h2unary.RST_STREAM, 0, 1, (7).to_bytes(4, "big")),
            True,
            "REFUSED_STREAM",
        ),
    ],
)
def test_server_closing_early_is_connection_lost(
    peer_path: str, name: str, frames: bytes, read_request: bool, match: str
) -> None:
    """A peer that closes, refuses or resets before the trailers raises ConnectionLost, never hangs."""

    def script(conn: socket.socket) -> None:
        if frames:
            conn.sendall(frames)

    peer = ScriptedPeer(peer_path, script, read_request=read_request)
    with pytest.raises(h2unary.ConnectionLost, match=match):
        _call(peer_path)
    peer.close()


async def test_server_closing_early_prints_try_again_later(
    bin_dir: Path, short_dir: Path, peer_path: str
) -> None:
    """Through the installed shim, a peer that answers headers and hangs up gives code 11 on stdout."""

    def script(conn: socket.socket) -> None:
        conn.sendall(
            h2unary.frame(h2unary.SETTINGS, 0, 0) + h2unary.frame(h2unary.HEADERS, 0x4, 1, RESPONSE_HEADERS)
        )

    peer = ScriptedPeer(peer_path, script)
    rc, stdout, _ = await run_shim(bin_dir / "spiderpool", cni_env("ADD"), ipam_config(peer_path, short_dir))
    peer.close()
    obj = cni_error(stdout)
    assert (rc, obj["code"]) == (1, codes.TRY_AGAIN_LATER)
    assert "closed the connection" in obj["msg"]


def test_graceful_goaway_still_delivers_stream_one(peer_path: str) -> None:
    """GOAWAY whose last stream id covers stream 1 lets the answer complete."""

    def script(conn: socket.socket) -> None:
        conn.sendall(
            h2unary.frame(h2unary.SETTINGS, 0, 0)
            + h2unary.frame(h2unary.GOAWAY, 0, 0, (1).to_bytes(4, "big") + bytes(4))
            + h2unary.frame(h2unary.HEADERS, 0x4, 1, RESPONSE_HEADERS)
            + h2unary.frame(h2unary.DATA, 0, 1, _ok_response(b"done"))
            + h2unary.frame(h2unary.HEADERS, 0x5, 1, OK_TRAILERS)
        )

    peer = ScriptedPeer(peer_path, script)
    status, _, _, body = _call(peer_path)
    peer.close()
    assert (status, wire.decode_result(body)) == (0, b"done")


def test_non_200_http_status_without_grpc_status_maps_like_grpc(peer_path: str) -> None:
    """An HTTP 503 with no grpc-status becomes UNAVAILABLE (14), per gRPC's HTTP mapping."""
    block = hpack.encode([(b":status", b"503")])

    def script(conn: socket.socket) -> None:
        conn.sendall(h2unary.frame(h2unary.SETTINGS, 0, 0) + h2unary.frame(h2unary.HEADERS, 0x5, 1, block))

    peer = ScriptedPeer(peer_path, script)
    status, message, _, _ = _call(peer_path)
    peer.close()
    assert status == 14
    assert "503" in message


def test_silent_peer_raises_deadline_exceeded(peer_path: str) -> None:
    """A peer that accepts and never answers makes unary_call raise DeadlineExceeded at the deadline."""
    release = threading.Event()

    def script(conn: socket.socket) -> None:
        release.wait(10)

    peer = ScriptedPeer(peer_path, script)
    with pytest.raises(h2unary.DeadlineExceeded):
        _call(peer_path, timeout=0.3)
    release.set()
    peer.close()
