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
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from spiderpool_tools.cni_runtime import CniRuntime
from spiderpool_tools.demo import EXAMPLES, POOL_MANIFESTS
from spiderpool_tools.netns import NetNs, temporary_netns
from spiderpool_tools.node_stack import NodeStack

from tests.netns.coordinator_lab import Lab

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


@pytest.fixture
def spiderpool_stack(node_ns: NetNs) -> Iterator[NodeStack]:
    """Controller (SQLite) + agent running in ``node_ns``, shims installed, the demo pools
    (demo-v4 172.30.0.10-60, demo-v6 fd00:172:30::10-60) applied. A short private directory
    keeps the unix socket paths under the kernel's 108-byte limit."""
    root = Path(tempfile.mkdtemp(prefix="spst-"))
    stack = NodeStack(node_ns, root, node_name="netns-node")
    try:
        stack.start()
        for manifest in POOL_MANIFESTS:
            stack.ctl("apply", "-f", str(EXAMPLES / manifest))
        yield stack
    finally:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def spiderpool_runtime(spiderpool_stack: NodeStack, node_ns: NetNs) -> CniRuntime:
    """Our CNI runtime with the installed shims first on CNI_PATH, then Debian's plugins."""
    layout = spiderpool_stack.layout
    return CniRuntime(
        [str(layout.bin_dir), str(REFERENCE_PLUGINS)], layout.cache_dir, exec_context=node_ns.entered
    )


@pytest.fixture
def make_stack(node_ns: NetNs, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., NodeStack]]:
    """Start a stack like ``spiderpool_stack`` but with chosen settings and pools:
    ``make(manifests, enable_gateway_detection="true", ...)`` exports each keyword as a
    ``SPIDERPOOL_*`` variable, which the controller and the agent read at start (each picks its
    own settings), then applies the manifest files. Every stack made is closed at teardown."""
    made: list[tuple[NodeStack, Path]] = []

    def make(manifests: Sequence[Path] = (), **settings: str) -> NodeStack:
        for name, value in settings.items():
            monkeypatch.setenv(f"SPIDERPOOL_{name.upper()}", value)
        root = Path(tempfile.mkdtemp(prefix="spst-"))
        stack = NodeStack(node_ns, root, node_name="netns-node")
        made.append((stack, root))
        stack.start()
        for manifest in manifests:
            stack.ctl("apply", "-f", str(manifest))
        return stack

    yield make
    for stack, root in made:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_lab(node_ns: NetNs, node_runtime: CniRuntime, tmp_path: Path) -> Iterator[Callable[[int], Lab]]:
    """``make(subnets)``: the coordinator lab (router with strict rp_filter, external client, ``subnets``
    masters ens<x> in ``node_ns``) around the node namespace; every lab made is closed at teardown."""
    made: list[Lab] = []

    def make(subnets: int) -> Lab:
        lab = Lab.create(node_ns, node_runtime, tmp_path, subnets=subnets)
        made.append(lab)
        return lab

    yield make
    for lab in made:
        lab.close()
