"""Is a ``CNI_NETNS`` path a network namespace? The agent's check before ADD and CHECK.

Owns telling a network namespace from anything else at a path: a namespace file is an
inode of the kernel's nsfs (a bind mount under /run/netns, or /proc/PID/ns/net), and
every nsfs inode has the same device as ``/proc/self/ns/net``. Among nsfs files the
``NS_GET_NSTYPE`` ioctl says which kind of namespace it is (``CLONE_NEWNET`` for a
network one); only nsfs files are opened (``O_NONBLOCK``), so a FIFO or a device at the
path is never touched. Cost: two ``stat`` calls, an ``open`` and an ``ioctl``.

Decision, per the CNI spec's error codes (the spec leaves this case open):

- nothing at the path: code 3, "container unknown or does not exist" (the sandbox is
  gone; the spec adds that the runtime need not clean up, which holds: nothing was done);
- something that is not a network namespace (a regular file, a directory, another kind
  of namespace): code 4, "invalid necessary environment variables", naming
  ``CNI_NETNS``. Such a value is the runtime's mistake, not evidence that the container
  is gone, so code 3's "no cleanup needed" would be a claim we cannot make.

``check`` is the ``netns_exists`` hook ``cni_call.parse_call`` takes: False for a missing
path, True for a network namespace, ``CniError`` code 4 for anything else.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from spiderpool_cni import codes
from spiderpool_common.errors import CniError

NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), linux/nsfs.h
CLONE_NEWNET = 0x40000000
SELF_NETNS = "/proc/self/ns/net"


def check(path: str) -> bool:
    """True when ``path`` is a network namespace, False when nothing is there; otherwise
    ``CniError`` code 4 saying what the path is instead."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # nothing there (or a file on the way)
        return False
    except OSError as exc:
        raise _invalid(path, f"cannot be examined: {exc.strerror}") from None
    if st.st_dev != os.stat(SELF_NETNS).st_dev:
        raise _invalid(path, f"is {_kind(st.st_mode)}, not a network namespace")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _invalid(path, f"cannot be opened: {exc.strerror}") from None
    try:
        nstype = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError as exc:
        if exc.errno != errno.ENOTTY:
            raise _invalid(path, f"cannot be examined: {exc.strerror}") from None
        nstype = 0
    finally:
        os.close(fd)
    if nstype != CLONE_NEWNET:
        raise _invalid(path, "is a namespace, but not a network namespace")
    return True


def _invalid(path: str, what: str) -> CniError:
    return CniError(codes.INVALID_ENVIRONMENT, f"CNI_NETNS {path!r} {what}")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "another kind of file"
