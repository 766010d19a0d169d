"""The agent's CNI_NETNS check against real files: only a network namespace passes.

A named namespace (a bind mount under /run/netns, as runtimes make them) and a
``/proc/PID/ns/net`` link pass; a missing path is "unknown container" (False, code 3 at
the caller); a directory, a regular file, a FIFO (not opened, so never blocks), another
kind of namespace, and a named namespace's file after ``ip netns delete`` unmounted it
are code 4 naming CNI_NETNS and what the path is.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from spiderpool_agent.netns_probe import check
from spiderpool_cni import codes
from spiderpool_common.errors import CniError
from spiderpool_tools.netns import temporary_netns


def refusal(path: str) -> str:
    with pytest.raises(CniError) as info:
        check(path)
    assert info.value.cni_code == codes.INVALID_ENVIRONMENT
    assert f"CNI_NETNS {path!r}" in info.value.message
    return info.value.message


def test_a_named_network_namespace_and_a_proc_link_pass() -> None:
    """/run/netns/NAME of a live namespace and /proc/self/ns/net are network namespaces."""
    with temporary_netns("spprobe") as ns:
        assert check(ns.path) is True
    assert check(f"/proc/{os.getpid()}/ns/net") is True


def test_a_missing_path_is_an_unknown_container(tmp_path: Path) -> None:
    """Nothing at the path (or a file on the way to it) answers False: the caller's code 3."""
    assert check(str(tmp_path / "gone")) is False
    (tmp_path / "file").write_text("x")
    assert check(str(tmp_path / "file" / "below")) is False


def test_files_that_are_not_network_namespaces_are_code_4(tmp_path: Path) -> None:
    """A directory, a regular file, a FIFO and a mount namespace are refused, each said as such."""
    assert "is a directory" in refusal(str(tmp_path))
    regular = tmp_path / "netns-file"
    regular.write_text("")
    assert "is a regular file" in refusal(str(regular))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "is a FIFO" in refusal(str(fifo))
    assert "not a network namespace" in refusal("/proc/self/ns/mnt")
