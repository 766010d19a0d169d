"""Entering a network namespace for one piece of blocking work.

Owns the only ``setns(2)`` in the library. Work runs in a fresh thread that joins the
namespace and ends with the work, so no pooled thread (asyncio's executor) is ever left in
a pod's namespace. Sockets keep the namespace they were created in, which is how the
library gets a netlink socket per namespace (pyroute2's own netns support forks a helper
and creates a missing namespace, which CNI DEL must never do) and raw sockets for ARP/NDP.
``/proc/sys/net`` shows the namespace of the thread that opens it, so sysctls go here too.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pyroute2 import IPRoute

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def exists(path: str) -> bool:
    """Whether ``path`` names a network namespace that can be entered."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    os.close(fd)
    return True


def run_in(path: str | None, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in namespace ``path`` (None: the caller's) and return its result."""
    if path is None:
        return fn(*args)
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({path}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["result"] = fn(*args)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=body, name=f"netns:{os.path.basename(path)}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result


def iproute(path: str | None) -> Any:
    """A pyroute2 ``IPRoute`` whose netlink socket lives in namespace ``path``."""
    if path is None:
        return IPRoute()
    if not exists(path):
        raise FileNotFoundError(errno.ENOENT, "network namespace not found", path)
    sock = run_in(path, socket.socket, socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
    return IPRoute(use_socket=sock)


def write_sysctls(path: str | None, values: dict[str, str]) -> None:
    """Write ``/proc/sys`` keys (dotted names) in namespace ``path``; missing keys are skipped."""

    def body() -> None:
        for key, value in values.items():
            file = "/proc/sys/" + key.replace(".", "/")
            try:
                with open(file, "w", encoding="ascii") as fh:
                    fh.write(value)
            except FileNotFoundError:
                continue

    run_in(path, body)


def read_sysctl(path: str | None, key: str) -> str:
    def body() -> str:
        with open("/proc/sys/" + key.replace(".", "/"), encoding="ascii") as fh:
            return fh.read().strip()

    return run_in(path, body)
