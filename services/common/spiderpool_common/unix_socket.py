"""Claiming a unix socket path for a server: never take over a path a live process serves.

Owns what a server does with its socket path before binding. gRPC binds wherever it is
told, so a server that unlinked whatever was at its path would take a live server's path
over: the first server keeps running but nobody reaches it any more, and when the
newcomer exits gRPC deletes the path under it. So:

- the path is probed by connecting to it: when a process accepts, the path is refused,
  naming that process's pid (the ``SO_PEERCRED`` of the probe connection);
- a socket file nobody listens on (``ECONNREFUSED``: a crashed server's leftover) is stale
  and removed, so a restart after ``kill -9`` just works;
- anything else at the path (a regular file, a directory, a symlink) is refused and left
  alone: ``--listen unix:/etc/passwd`` must not delete ``/etc/passwd``.

The window between the probe and the bind is a few microseconds; two servers started in
it at once could still race (controllers on one store are ordered earlier, by the store's
lock). ``SocketInUse`` is an ``OSError``, which the programs' mains print in one line.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import stat
import struct
from pathlib import Path

PROBE_TIMEOUT_S = 1.0
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class SocketInUse(OSError):
    """The socket path is served by a live process, or holds something that is not a socket."""


def claim(path: Path, *, dir_mode: int = 0o755) -> None:
    """Make ``path`` free for a server to bind: create its directory (``dir_mode`` when new),
    remove a stale socket file, refuse a live one or a non-socket (``SocketInUse``)."""
    path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a symlink" if stat.S_ISLNK(mode) else "a file"
        raise SocketInUse(f"{path} is {kind}, not a unix socket; refusing to replace it: choose another path")
    pid = _serving_pid(path)
    if pid is not None:
        who = f"process {pid}" if pid > 0 else "another process"
        raise SocketInUse(
            f"unix socket {path} is served by {who}; refusing to take it over: stop it or choose another path"
        )
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _serving_pid(path: Path) -> int | None:
    """The pid of the process accepting on ``path`` (0 if unknown), or None when nobody listens."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT_S)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        return None  # a socket file without a listener: stale
    except FileNotFoundError:
        return None  # removed meanwhile
    except TimeoutError:
        return 0  # a listener whose backlog is full: alive, just busy
    except OSError as exc:
        if exc.errno == errno.EACCES:
            raise SocketInUse(
                f"unix socket {path} belongs to someone else (permission denied when probing it); "
                "refusing to replace it: choose another path"
            ) from None
        raise
    else:
        try:
            creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        except OSError:
            return 0
        pid: int = _UCRED.unpack(creds)[0]
        return pid
    finally:
        probe.close()
