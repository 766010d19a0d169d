"""The coordinator's one-thread-per-call helper: results, errors and namespaces stay where they belong."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest
from spiderpool_coordinator import namespaces, netlink
from spiderpool_tools.netns import NetNs

pytestmark = pytest.mark.netns


def _own_netns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def test_fresh_thread_returns_the_result_and_raises_the_error() -> None:
    """``in_fresh_thread`` hands back what the function returned, or raises what it raised."""

    def fails() -> None:
        raise ValueError("boom")

    assert asyncio.run(namespaces.in_fresh_thread(lambda a, b: a + b, 2, 3)) == 5
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(namespaces.in_fresh_thread(fails))


def test_sides_puts_the_thread_in_the_pod_and_keeps_the_host_socket_on_the_host(
    node_ns: NetNs, make_pod: Callable[[], NetNs]
) -> None:
    """In a fresh thread ``sides`` opens the host socket in the host namespace, then moves only that
    thread into the pod: the pod socket sees the pod's links, the host socket the host's, and the
    caller's thread never changes namespace."""
    pod = make_pod()
    pod.ip("link", "add", "podonly0", "type", "veth", "peer", "name", "podonly1")
    node_ns.ip("link", "add", "hostonly0", "type", "veth", "peer", "name", "hostonly1")
    before = _own_netns()

    def body() -> tuple[set[str], set[str], str]:
        with namespaces.sides(pod.path, node_ns.path) as (pod_ipr, host_ipr):
            return set(netlink.read_links(pod_ipr)), set(netlink.read_links(host_ipr)), _own_netns()

    pod_links, host_links, inside = asyncio.run(namespaces.in_fresh_thread(body))
    assert "podonly0" in pod_links and "hostonly0" not in pod_links
    assert "hostonly0" in host_links and "podonly0" not in host_links
    assert inside != before
    assert _own_netns() == before
