"""Entering a network namespace for one piece of blocking work.

Owns the only ``setns(2)`` in the library. Work runs in a fresh thread that joins the
namespace and ends with the work, so no pooled thread (asyncio's executor) is ever left in
a pod's namespace. Sockets keep the namespace they were created in, which is how the
library gets a netlink socket per namespace (pyroute2's own netns support forks a helper
and creates a missing namespace, which CNI DEL must never do) and raw sockets for ARP/NDP.
``/proc/sys/net`` shows the namespace of the thread that opens it, so sysctls go here too.

A coordinator call is one such thread (``in_fresh_thread``): ``sides`` opens the host's
netlink socket where the thread starts (the agent's namespace, or ``host_netns`` in
tests), then moves the thread into the pod's namespace for the rest of its life, so every
pod-side step (netlink, sysctls, nftables, ARP/NDP) runs there without another thread or
another ``setns``; each thread hop and each new socket cost a fraction of a millisecond
that a CNI call pays several times otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from spiderpool_coordinator.rtnetlink import Rtnl

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


def enter(path: str) -> None:
    """Move the calling thread into namespace ``path`` for good.

    Only for a thread that ends with its work (``in_fresh_thread``, ``run_in``): a pooled
    thread must never be left in a pod's namespace.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise FileNotFoundError(errno.ENOENT, "network namespace not found", path) from exc
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


async def in_fresh_thread(fn: Callable[..., T], *args: Any, name: str = "coordinator") -> T:
    """Run ``fn(*args)`` in a new thread (which may ``enter`` a namespace) and await its result.

    One hop from the event loop, no executor: the thread ends with ``fn``. If the caller is
    cancelled the thread still finishes its work, and its result is dropped.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def body() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed while we worked
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=body, name=name).start()
    return await future


@contextlib.contextmanager
def sides(pod_netns: str | None, host_netns: str | None) -> Iterator[tuple[Any, Any]]:
    """(pod, host) ``rtnetlink.Rtnl`` sockets for a thread made by ``in_fresh_thread``.

    The host's socket is opened in the thread's own namespace (or in ``host_netns``), then the
    thread moves into ``pod_netns`` for good, so later pod-side work needs no ``setns``. With
    ``pod_netns`` None (DEL) the thread stays where the host is and pod is None.
    """
    if host_netns is not None:
        enter(host_netns)
    host = Rtnl()
    try:
        pod = None
        if pod_netns is not None:
            enter(pod_netns)
            pod = Rtnl()
        try:
            yield pod, host
        finally:
            if pod is not None:
                pod.close()
    finally:
        host.close()


def run_in(path: str | None, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in namespace ``path`` (None: the caller's) and return its result."""
    if path is None:
        return fn(*args)
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            enter(path)
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
    """An ``rtnetlink.Rtnl`` whose netlink socket lives in namespace ``path``."""
    if path is None:
        return Rtnl()
    if not exists(path):
        raise FileNotFoundError(errno.ENOENT, "network namespace not found", path)
    sock = run_in(path, socket.socket, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    return Rtnl(sock)


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
