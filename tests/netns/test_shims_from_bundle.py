"""macvlan pods through shims installed from the interpreter bundle, on a host without Python.

The bundle is built from this machine's Python and installed into a temporary host root
(``spiderpool-install-cni --bundle --host-root``), as the agent's init container does on a node.
The CNI runtime then runs in a private mount namespace where the host root's ``/opt/spiderpool``
is the host's (the path the shims' shebangs name), with a PATH that holds no Python at all:
Debian's macvlan execs our IPAM shim from the host root's CNI bin directory, which runs on the
bundled interpreter, reaches the agent and gives the pod its addresses; DEL frees them.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from spiderpool_cni import install
from spiderpool_tools import pybundle_build
from spiderpool_tools.netns import NetNs
from spiderpool_tools.node_stack import NodeStack

pytestmark = pytest.mark.netns

REFERENCE_PLUGINS = "/usr/lib/cni"
MOUNT_HOST_OPT = (
    'mount -t tmpfs tmpfs /opt && mkdir /opt/spiderpool && mount --bind "$0/opt/spiderpool" /opt/spiderpool'
    ' && exec "$@"'
)


def run_cni(
    host: Path, node: NetNs, command: str, config: Path, pod: NetNs, empty_path: Path, cache: Path
) -> subprocess.CompletedProcess[str]:
    """Our CNI runtime in the node namespace, in a mount namespace that shows the host root's
    /opt/spiderpool at /opt/spiderpool, with PATH naming only an empty directory."""
    runtime = [
        sys.executable, "-m", "spiderpool_tools.cni_runtime", command, str(config),
        "--path", f"{host}/opt/cni/bin:{REFERENCE_PLUGINS}", "--cache-dir", str(cache),
        "--container-id", "bundle-pod", "--netns", str(pod.path),
        "--args", "IgnoreUnknown=true;K8S_POD_NAMESPACE=bundle;K8S_POD_NAME=p;K8S_POD_UID=uid-bundle",
    ]  # fmt: skip
    argv = [
        "unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNT_HOST_OPT, str(host),
        "ip", "netns", "exec", node.name, "env", "-i", f"PATH={empty_path}", *runtime,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_a_macvlan_pod_gets_its_addresses_from_shims_on_the_bundled_interpreter(
    spiderpool_stack: NodeStack, node_ns: NetNs, make_pod: Callable[[], NetNs], tmp_path: Path
) -> None:
    """With no Python on PATH, macvlan + the bundled IPAM shim give the pod both addresses; DEL frees them."""
    bundle = tmp_path / "pybundle"
    pybundle_build.build(install.default_interpreter(), bundle)
    host = tmp_path / "host"
    done = install.install_from_bundle(str(bundle), str(host))
    assert not (host / "usr").exists()  # the host root holds the install and nothing else
    empty_path = tmp_path / "no-python-here"
    empty_path.mkdir()
    layout = spiderpool_stack.layout
    ipam = {
        "type": "spiderpool",
        "default_ipv4_ippool": ["demo-v4"],
        "default_ipv6_ippool": ["demo-v6"],
        "ipam_unix_socket_path": str(layout.agent_socket),
        "log_file_path": str(tmp_path / "shim.log"),
    }
    config = tmp_path / "macvlan.conflist"
    config.write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "macvlan-bundle",
        "plugins": [{"type": "macvlan", "master": "master0", "mode": "bridge", "ipam": ipam}],
    }))  # fmt: skip
    pod = make_pod()
    cache = tmp_path / "cache"

    added = run_cni(host, node_ns, "add", config, pod, empty_path, cache)
    assert added.returncode == 0, added.stdout + added.stderr
    result = json.loads(added.stdout)
    cidrs = {ip["address"] for ip in result["ips"]}
    assert sorted(ipaddress.ip_interface(c).version for c in cidrs) == [4, 6]
    assert {a.cidr for a in pod.addresses("eth0") if a.scope == "global"} == cidrs
    held = set(spiderpool_stack.allocated_ips("demo-v4")) | set(spiderpool_stack.allocated_ips("demo-v6"))
    assert held == {c.split("/")[0] for c in cidrs}
    log = (tmp_path / "shim.log").read_text()
    assert 'command="ADD"' in log and 'container_id="bundle-pod"' in log and "result=ok" in log  # ours ran
    assert done.bundle.id in (host / "opt/cni/bin/spiderpool").read_text()

    deleted = run_cni(host, node_ns, "del", config, pod, empty_path, cache)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert "eth0" not in pod.links()
    assert not spiderpool_stack.allocated_ips("demo-v4") and not spiderpool_stack.allocated_ips("demo-v6")
