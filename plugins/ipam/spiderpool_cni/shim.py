"""The one main of both CNI shims: environment and stdin in, one gRPC call, CNI JSON out.

The runtime executes a shim once per CNI call, so everything here is chosen for start-up
cost (measured; tests/component/test_shim_imports.py guards it): only built-in or C standard-library modules
(``posix``, ``sys``, ``time``, ``_json`` via ``cnijson``, ``_socket`` via ``h2unary``), no
``os``, ``json``, ``re``, ``typing``. The shim decides nothing about CNI semantics: the
agent validates environment, configuration and versions and answers with the rendered
result or a gRPC status carrying the CNI code. Locally the shim only answers VERSION,
rejects stdin that is not a JSON object (code 6) and an unknown command (code 4), and
turns an unreachable, silent or vanished agent into code 11 (code 50 for STATUS, whose
point is to say the plugin cannot serve ADD), except on DEL: a DEL the agent cannot take
is recorded in the node's DEL spool and answered with success (``spool``), so a pod's
teardown never waits for the agent, and the agent replays it when it is back.

``handle`` is the logic (pure apart from the one call); ``run`` is the wiring: read fd 0
and the environment, write fd 1 exactly once, append one line to the plugin's log file,
never let a traceback reach stdout. The log line names the call with the keys the agent
and the controller log it under: ``rpc``, ``pod`` (namespace/name from ``CNI_ARGS``),
``container_id``, ``ifname``, ``network`` (the config's ``name``).
"""

import posix
import time

from spiderpool_cni import cnijson, codes, h2unary, spool, wire

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
DEFAULT_VERSION = "1.1.0"
DEFAULT_SOCKET = "/var/run/spidernet/spiderpool.sock"
DEFAULT_LOG = {
    "ipam": "/var/log/spidernet/spiderpool.log",
    "coordinator": "/var/log/spidernet/coordinator.log",
}
DEFAULT_LOG_MAX_MB = 100  # upstream's log_file_max_size default
SERVICE = "/spiderpool.agent.v1.CniService/"
RPC_PREFIX = {"ipam": "Ipam", "coordinator": "Coordinator"}
RPC_VERB = {"ADD": "Add", "DEL": "Del", "CHECK": "Check", "GC": "Gc", "STATUS": "Status"}
CNI_ENV = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
TIMEOUT_ENV = "SPIDERPOOL_SHIM_TIMEOUT"
STATUS_TIMEOUT = 5.0
CALL_TIMEOUT = 60.0

# gRPC statuses without a spiderpool ErrorInfo (a foreign or broken peer, a server
# shutting down): the ones worth retrying become "try again later".
_GRPC_RETRYABLE = (1, 4, 14)  # CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE
_GRPC_INVALID_ARGUMENT = 3
_GRPC_NAMES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


class Reply:
    """What one invocation prints, how it exits, and what it logs."""

    __slots__ = (
        "code", "command", "exit_code", "log_max_bytes", "log_path", "msg", "network", "no_answer", "note",
        "output", "rpc",
    )  # fmt: skip

    def __init__(self, exit_code: int, output: bytes, *, code: int = 0, msg: str = "") -> None:
        self.exit_code = exit_code
        self.output = output
        self.code = code
        self.msg = msg
        self.command = ""
        self.rpc = ""
        self.network = ""
        self.log_path = ""
        self.log_max_bytes = DEFAULT_LOG_MAX_MB << 20
        self.no_answer = False  # the agent was unreachable, silent, gone, or shutting down
        self.note = ""  # an extra ``key=value`` for the log line (the spooled DEL's file)


def _error(cni_version: str, code: int, msg: str, details: str = "") -> Reply:
    return Reply(1, cnijson.render_error(cni_version, code, msg, details) + b"\n", code=code, msg=msg)


def _string(section: object, key: str) -> str:
    if isinstance(section, dict):
        value = section.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _timeout(env: dict[str, str], command: str) -> float:
    raw = env.get(TIMEOUT_ENV, "")
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if value > 0:
            return value
    return STATUS_TIMEOUT if command == "STATUS" else CALL_TIMEOUT


def handle(kind: str, env: dict[str, str], stdin: bytes) -> Reply:
    """Answer one CNI invocation of the ``kind`` shim ("ipam" or "coordinator")."""
    command = env.get("CNI_COMMAND", "")
    config: object = None
    decode_error = ""
    try:
        config = cnijson.decode(stdin)
    except cnijson.JsonError as exc:
        decode_error = str(exc)
    cni_version = DEFAULT_VERSION
    if isinstance(config, dict):
        cni_version = _string(config, "cniVersion") or DEFAULT_VERSION

    reply = _dispatch(
        kind, env, stdin, command=command, config=config, decode_error=decode_error, cni_version=cni_version
    )
    reply.command = command
    if command in RPC_VERB:
        reply.rpc = RPC_PREFIX[kind] + RPC_VERB[command]
    log_path, log_max_mb = "", 0
    if isinstance(config, dict):
        reply.network = _string(config, "name")
        if kind == "ipam":
            ipam = config.get("ipam")
            log_path = _string(ipam, "log_file_path")
            log_max_mb = ipam.get("log_file_max_size", 0) if isinstance(ipam, dict) else 0
        else:
            options = config.get("logOptions")
            log_path = _string(options, "logFile")
            log_max_mb = options.get("logMaxSize", 0) if isinstance(options, dict) else 0
    reply.log_path = log_path or DEFAULT_LOG[kind]
    if isinstance(log_max_mb, int) and not isinstance(log_max_mb, bool) and log_max_mb > 0:
        reply.log_max_bytes = log_max_mb << 20
    return reply


def _dispatch(
    kind: str,
    env: dict[str, str],
    stdin: bytes,
    *,
    command: str,
    config: object,
    decode_error: str,
    cni_version: str,
) -> Reply:
    if command == "VERSION":
        if not stdin.strip():
            return Reply(0, cnijson.render_version(DEFAULT_VERSION, SUPPORTED_VERSIONS) + b"\n")
        if decode_error or not isinstance(config, dict):
            return _not_an_object(cni_version, decode_error, config)
        requested = config.get("cniVersion", DEFAULT_VERSION)
        if not isinstance(requested, str):
            return _error(cni_version, codes.DECODING_FAILURE, "cniVersion must be a string")
        return Reply(0, cnijson.render_version(requested or DEFAULT_VERSION, SUPPORTED_VERSIONS) + b"\n")
    if command not in RPC_VERB:
        if "CNI_COMMAND" not in env:
            return _error(cni_version, codes.INVALID_ENVIRONMENT, "CNI_COMMAND is not set")
        return _error(
            cni_version,
            codes.INVALID_ENVIRONMENT,
            f"unknown CNI_COMMAND {command!r}",
            "expected one of ADD, DEL, CHECK, GC, STATUS, VERSION",
        )
    if decode_error or not isinstance(config, dict):
        return _not_an_object(cni_version, decode_error, config)
    if kind == "ipam" and not isinstance(config.get("ipam"), dict):
        # No ipam object, so no socket path: code 7 now, not 11 from a default socket.
        return _error(cni_version, codes.INVALID_CONFIG, "network config: missing ipam (an object)")

    fields: dict[str, str] = {}
    for name in CNI_ENV:
        value = env.get(name, "")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return _error(cni_version, codes.INVALID_ENVIRONMENT, f"{name} is not valid UTF-8")
        fields[name] = value
    present = [name for name in CNI_ENV if name in env]
    call = wire.encode_cni_call(
        command=fields["CNI_COMMAND"],
        container_id=fields["CNI_CONTAINERID"],
        netns=fields["CNI_NETNS"],
        ifname=fields["CNI_IFNAME"],
        args=fields["CNI_ARGS"],
        path=fields["CNI_PATH"],
        config=stdin,
        present=present,
    )
    section = config.get("ipam") if kind == "ipam" else config
    socket_path = section.get("ipam_unix_socket_path") if isinstance(section, dict) else None
    if socket_path is not None and not isinstance(socket_path, str):
        key = "ipam.ipam_unix_socket_path" if kind == "ipam" else "ipam_unix_socket_path"
        return _error(cni_version, codes.INVALID_CONFIG, f"network config: {key} must be a string")
    socket_path = socket_path or DEFAULT_SOCKET
    spool_dir = section.get(spool.CONFIG_KEY) if isinstance(section, dict) else None
    if spool_dir is not None and (not isinstance(spool_dir, str) or not spool_dir.startswith("/")):
        key = f"ipam.{spool.CONFIG_KEY}" if kind == "ipam" else spool.CONFIG_KEY
        return _error(cni_version, codes.INVALID_CONFIG, f"network config: {key} must be an absolute path")
    method = SERVICE + RPC_PREFIX[kind] + RPC_VERB[command]
    reply = _call_agent(socket_path, method, call, timeout=_timeout(env, command), cni_version=cni_version)
    if reply.no_answer and command == "DEL":
        directory = spool_dir or spool.DEFAULT_DIR
        return _spool_del(
            kind, directory, fields, present=present, stdin=stdin, failed=reply, cni_version=cni_version
        )
    return reply


def _call_agent(socket_path: str, method: str, call: bytes, *, timeout: float, cni_version: str) -> Reply:
    """The one unary call to the agent and its answer as a Reply (``no_answer`` when none came)."""
    unavailable = codes.NOT_AVAILABLE if method.endswith("Status") else codes.TRY_AGAIN_LATER
    try:
        status, message, details_bin, body = h2unary.unary_call(
            socket_path, method, wire.encode_request(call), timeout
        )
    except h2unary.CallError as exc:
        if isinstance(exc, h2unary.Unreachable):
            reply = _error(cni_version, unavailable, f"spiderpool-agent unreachable at {socket_path}: {exc}")
        elif isinstance(exc, h2unary.DeadlineExceeded):
            reply = _error(
                cni_version,
                unavailable,
                f"spiderpool-agent at {socket_path} did not answer within {timeout:g}s",
                str(exc),
            )
        else:
            reply = _error(
                cni_version, unavailable, f"spiderpool-agent at {socket_path} failed the call: {exc}"
            )
        reply.no_answer = True
        return reply
    if status != 0:
        return _status_error(cni_version, status, message, details_bin, unavailable)
    try:
        result = wire.decode_result(body)
    except wire.WireError as exc:
        return _error(cni_version, codes.INTERNAL, "could not decode the spiderpool-agent answer", str(exc))
    return Reply(0, result + b"\n" if result else b"")


def _not_an_object(cni_version: str, decode_error: str, config: object) -> Reply:
    if decode_error:
        details = decode_error
    else:
        kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
        details = f"expected a JSON object, got {kinds.get(type(config), 'null')}"
    return _error(cni_version, codes.DECODING_FAILURE, "failed to decode the network configuration", details)


def _status_error(cni_version: str, status: int, message: str, details_bin: bytes, unavailable: int) -> Reply:
    """Turn a gRPC error status into the CNI error the agent meant (its ErrorInfo's code)."""
    if details_bin:
        try:
            decoded = wire.decode_status(details_bin)
            info = decoded.error_info()
        except wire.WireError:
            info = None
        if info is not None and info[1] == codes.ERROR_DOMAIN:
            raw_code = info[2].get(codes.META_CNI_CODE, "")
            if raw_code.isdigit():
                return _error(
                    cni_version,
                    int(raw_code),
                    decoded.message or message,
                    info[2].get(codes.META_DETAILS, ""),
                )
    name = _GRPC_NAMES.get(status, str(status))
    if status in _GRPC_RETRYABLE:
        code = unavailable
    elif status == _GRPC_INVALID_ARGUMENT:
        code = codes.INVALID_CONFIG
    else:
        code = codes.INTERNAL
    reply = _error(cni_version, code, message or f"spiderpool-agent answered {name}", f"gRPC status {name}")
    # No ErrorInfo and retryable: the transport or a server shutting down answered, not the
    # agent's CNI logic (which always attaches ErrorInfo).
    reply.no_answer = status in _GRPC_RETRYABLE
    return reply


def _spool_del(
    kind: str,
    directory: str,
    fields: dict[str, str],
    *,
    present: list[str],
    stdin: bytes,
    failed: Reply,
    cni_version: str,
) -> Reply:
    """A DEL the agent did not take (``failed``): record it in the spool and succeed, or say why not."""
    problem = spool.container_id_problem(fields)
    if problem:
        return _error(cni_version, codes.INVALID_ENVIRONMENT, problem)
    try:
        path = spool.spool_del(kind, directory, fields, present=present, stdin=stdin, reason=failed.msg)
    except spool.SpoolError as exc:
        return _error(cni_version, failed.code, f"{failed.msg}; and {exc}", "the DEL was not recorded")
    reply = Reply(0, b"")
    reply.note = f"spooled={cnijson.quote(path)} cause={cnijson.quote(failed.msg)}"
    return reply


# -- wiring -----------------------------------------------------------------------------


def _read_env() -> dict[str, str]:
    env: dict[str, str] = {}
    environ = posix.environ
    for name in (*CNI_ENV, TIMEOUT_ENV):
        raw = environ.get(name.encode("ascii"))
        if raw is not None:
            env[name] = raw.decode("utf-8", "surrogateescape")
    return env


def _read_stdin() -> bytes:
    chunks = []
    try:
        while True:
            chunk = posix.read(0, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        pass  # a closed stdin reads as empty
    return b"".join(chunks)


def _write_stdout(data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[posix.write(1, view) :]
    except OSError:
        pass  # nobody is reading; the exit code still tells


def _makedirs(path: str, depth: int = 0) -> None:
    try:
        posix.mkdir(path, 0o755)
    except FileExistsError:
        return
    except FileNotFoundError:
        parent = path.rpartition("/")[0]
        if not parent or depth > 32:
            raise
        _makedirs(parent, depth + 1)
        posix.mkdir(path, 0o755)


def append_log(path: str, line: str, max_bytes: int = DEFAULT_LOG_MAX_MB << 20) -> None:
    """Append one line to the log file, creating its directory; keep one rotated copy."""
    flags = posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_CLOEXEC
    try:
        fd = posix.open(path, flags, 0o644)
    except FileNotFoundError:
        _makedirs(path.rpartition("/")[0] or "/")
        fd = posix.open(path, flags, 0o644)
    try:
        if posix.fstat(fd).st_size >= max_bytes:
            posix.close(fd)
            fd = -1
            posix.rename(path, path + ".1")
            fd = posix.open(path, flags, 0o644)
        posix.write(fd, line.encode("utf-8", "backslashreplace"))
    finally:
        if fd >= 0:
            posix.close(fd)


def _pod(cni_args: str) -> str:
    """``namespace/name`` from CNI_ARGS' K8S_POD_NAMESPACE and K8S_POD_NAME, or "" without both."""
    args = {}
    for item in cni_args.split(";"):
        key, _, value = item.partition("=")
        args[key] = value
    namespace, name = args.get("K8S_POD_NAMESPACE", ""), args.get("K8S_POD_NAME", "")
    return f"{namespace}/{name}" if namespace and name else ""


def _log_line(kind: str, env: dict[str, str], reply: Reply, elapsed: float, trace: str) -> str:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    parts = [
        stamp,
        f"pid={posix.getpid()}",
        f"plugin={kind}",
        f"command={cnijson.quote(reply.command)}",
        f"rpc={cnijson.quote(reply.rpc)}",
        f"pod={cnijson.quote(_pod(env.get('CNI_ARGS', '')))}",
        f"container_id={cnijson.quote(env.get('CNI_CONTAINERID', ''))}",
        f"ifname={cnijson.quote(env.get('CNI_IFNAME', ''))}",
        f"network={cnijson.quote(reply.network)}",
    ]
    if reply.exit_code == 0:
        parts.append("result=ok")
        if reply.note:
            parts.append(reply.note)
    else:
        parts.append(f"result=error code={reply.code} msg={cnijson.quote(reply.msg)}")
    parts.append(f"elapsed_ms={elapsed * 1000:.1f}")
    if trace:
        parts.append(f"traceback={cnijson.quote(trace)}")
    return " ".join(parts) + "\n"


def run(kind: str) -> int:
    """The shim process: read fd 0 and the CNI environment, print on fd 1, return the exit code."""
    started = time.monotonic()
    env: dict[str, str] = {}
    trace = ""
    try:
        env = _read_env()
        reply = handle(kind, env, _read_stdin())
    except Exception as exc:  # the catch-all the CNI contract needs: JSON, never a traceback
        msg = f"spiderpool shim failed: {type(exc).__name__}: {exc}"
        reply = _error(DEFAULT_VERSION, codes.INTERNAL, msg)
        reply.log_path = DEFAULT_LOG.get(kind, DEFAULT_LOG["ipam"])
        try:
            import traceback  # noqa: PLC0415  (heavy; only on this path)

            trace = traceback.format_exc()
        except Exception:
            trace = repr(exc)
    _write_stdout(reply.output)
    line = _log_line(kind, env, reply, time.monotonic() - started, trace)
    try:
        append_log(reply.log_path, line, reply.log_max_bytes)
    except Exception:  # noqa: S110  (logging is best effort: it never fails the CNI call)
        pass
    return reply.exit_code
