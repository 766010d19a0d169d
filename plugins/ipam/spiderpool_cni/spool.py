"""The shims' half of the DEL spool: a DEL the agent could not take, recorded durably on the node.

A DEL that fails makes the runtime retry it and wedges the pod's teardown (Multus' thick
shim answers DEL with success when its daemon is unreachable, for that reason), and a DEL
answered with success but never done leaks the pod's address and its node-side routes.
So when the agent cannot be reached on DEL (socket missing, connection refused, no answer
in time, the connection lost mid-call, or a retryable gRPC status without our ErrorInfo),
the shim writes the DEL here and answers success; the agent replays it at start, before
it serves, and periodically (``spiderpool_agent.del_spool``). Only DEL is spooled: ADD,
CHECK, GC and STATUS keep answering code 11 (50 for STATUS) so the runtime retries them.

One file per DEL in the spool directory (``del_spool_dir`` in the ``ipam`` section for the
IPAM plugin, at the top level for the coordinator, like ``ipam_unix_socket_path``; default
``/var/lib/spiderpool/agent/spool``, under the agent's default state directory), written
atomically and durably before the answer: a temporary file ``.<name>.tmp`` created
exclusively with mode 0600, written, fsynced, renamed to ``<name>``, then the directory
fsynced. A crash before the rename leaves only a dot-file, which the agent ignores and
removes; after it the DEL is on disk. The name sorts by time:
``<ns since the epoch, 20 digits>-<pid>-<plugin>.del``.

Content: one JSON object, ``{"format": 1, "plugin", "command": "DEL", "containerID",
"ifname", "env": {CNI_* variable: value, for each one present}, "config": "<stdin, exactly
as received>", "reason", "spooledAt"}``: everything the shim would have sent, so the agent
replays the DEL through its normal path, with the container ID exactly as the DEL had it.

Permissions: the directory is created 0700 (missing parents 0755) and the files 0600, so
only root (the runtime runs plugins as root) can read or plant a DEL; the agent tightens
the directory at start and replays only regular files owned by its own user. A DEL the
shim cannot record (the directory cannot be created, the disk is full) is not answered
with success: the shim then answers code 11 as before, naming both failures.

A DEL without ``CNI_CONTAINERID`` or ``CNI_IFNAME``, or with a malformed container ID, is
not spooled either: it answers code 4 as the agent would (a spooled DEL is keyed by them).

stdlib-light like the rest of the shim: ``posix``, ``time`` and ``cnijson`` only.
"""

import posix
import time

from spiderpool_cni import cnijson

DEFAULT_DIR = "/var/lib/spiderpool/agent/spool"
FORMAT = 1
SUFFIX = ".del"
DIR_MODE = 0o700
FILE_MODE = 0o600
CONFIG_KEY = "del_spool_dir"
_ID_EXTRA = "_.-"


class SpoolError(Exception):
    """The DEL could not be recorded durably; the message says why."""


def container_id_problem(env: dict[str, str]) -> str:
    """Why this DEL's environment cannot be spooled (code 4), or "" when it can."""
    missing = [name for name in ("CNI_CONTAINERID", "CNI_IFNAME") if not env.get(name)]
    if missing:
        return f"required env variables [{','.join(missing)}] missing"
    cid = env["CNI_CONTAINERID"]
    if not (cid[0].isascii() and cid[0].isalnum()) or not all(
        c.isascii() and (c.isalnum() or c in _ID_EXTRA) for c in cid
    ):
        return f"invalid env variables: CNI_CONTAINERID: {cid!r} has invalid characters"
    return ""


def file_name(plugin: str, now_ns: int, pid: int) -> str:
    return f"{now_ns:020d}-{pid}-{plugin}{SUFFIX}"


def render(plugin: str, env: dict[str, str], present: list[str], stdin: bytes, reason: str) -> bytes:
    """The spool file's content (ASCII JSON); ``present`` lists the CNI_* variables that were set."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    q = cnijson.quote
    variables = ", ".join(f"{q(name)}: {q(env.get(name, ''))}" for name in present)
    return (
        f'{{"format": {FORMAT}, "plugin": {q(plugin)}, "command": "DEL", '
        f'"containerID": {q(env.get("CNI_CONTAINERID", ""))}, "ifname": {q(env.get("CNI_IFNAME", ""))}, '
        f'"env": {{{variables}}}, "config": {q(stdin.decode("utf-8"))}, '
        f'"reason": {q(reason)}, "spooledAt": {q(stamp)}}}\n'
    ).encode("ascii")


def _makedirs(path: str, mode: int, depth: int = 0) -> None:
    try:
        posix.mkdir(path, mode)
    except FileExistsError:
        return
    except FileNotFoundError:
        parent = path.rpartition("/")[0]
        if not parent or depth > 32:
            raise
        _makedirs(parent, 0o755, depth + 1)
        try:
            posix.mkdir(path, mode)
        except FileExistsError:
            return


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[posix.write(fd, view) :]


def write(directory: str, name: str, data: bytes) -> str:
    """Write ``data`` as ``directory/name`` atomically and durably; return the path."""
    directory = directory.rstrip("/") or "/"
    try:
        _makedirs(directory, DIR_MODE)
        final = f"{directory}/{name}"
        tmp = f"{directory}/.{name}.tmp"
        flags = posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC
        fd = posix.open(tmp, flags, FILE_MODE)
        try:
            try:
                _write_all(fd, data)
                posix.fsync(fd)
            finally:
                posix.close(fd)
            posix.rename(tmp, final)
        except BaseException:
            try:
                posix.unlink(tmp)
            except OSError:
                pass
            raise
        dfd = posix.open(directory, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
        try:
            posix.fsync(dfd)
        finally:
            posix.close(dfd)
    except OSError as exc:
        raise SpoolError(f"cannot spool the DEL in {directory}: {exc}") from None
    return final


def spool_del(
    plugin: str, directory: str, env: dict[str, str], *, present: list[str], stdin: bytes, reason: str
) -> str:
    """Record one DEL the agent could not take; return the file's path or raise ``SpoolError``."""
    data = render(plugin, env, present, stdin, reason)
    return write(directory, file_name(plugin, time.time_ns(), posix.getpid()), data)
