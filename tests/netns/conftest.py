"""Shared netns fixtures: a node namespace with a veth master, pod namespaces, a CNI runtime.

The main plugin (Debian's macvlan) runs inside the node namespace, whose veth end
``master0`` is the macvlan master; its peer ``wire0`` stays in the node namespace and is
the "rest of the network" (it can carry gateway addresses). Pods are further namespaces
with IPv6 DAD disabled, so addresses work the moment ADD returns. Nothing touches the
machine's root namespace links; every namespace is removed at teardown. These tests run
as root (CI does); missing Debian packages fail them with the fix, never skip them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from spiderpool_tools.cni_runtime import CniRuntime
from spiderpool_tools.netns import NetNs, temporary_netns

REFERENCE_PLUGINS = Path("/usr/lib/cni")
MASTER = "master0"
WIRE = "wire0"


def _require_reference_plugins() -> None:
    if not (REFERENCE_PLUGINS / "macvlan").exists():
        pytest.fail("Debian's containernetworking-plugins are not installed (make setup installs them)")
    if shutil.which("ping") is None:
        pytest.fail("ping is missing: install iputils-ping (make setup installs it)")


@pytest.fixture
def node_ns() -> Iterator[NetNs]:
    """A node namespace holding the veth pair master0 <-> wire0, both up."""
    _require_reference_plugins()
    with temporary_netns("spnode") as ns:
        ns.add_veth(MASTER, WIRE)
        yield ns


@pytest.fixture
def make_pod() -> Iterator[Callable[[], NetNs]]:
    """Create pod namespaces on demand (IPv6 DAD off); all are deleted at teardown."""
    made: list[NetNs] = []

    def make() -> NetNs:
        pod = NetNs.create("sppod")
        made.append(pod)
        pod.disable_dad()
        return pod

    yield make
    for pod in made:
        pod.delete()


@pytest.fixture
def node_runtime(node_ns: NetNs, tmp_path: Path) -> CniRuntime:
    """Our CNI runtime executing plugins from /usr/lib/cni inside the node namespace."""
    return CniRuntime([str(REFERENCE_PLUGINS)], tmp_path / "cni-cache", exec_context=node_ns.entered)
