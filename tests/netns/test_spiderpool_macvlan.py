"""Debian's macvlan with ``"ipam": {"type": "spiderpool"}``, end to end through our runtime.

Real everything: the controller on an SQLite file and the agent run as processes in the
node namespace, the shims are installed into a CNI bin directory, macvlan execs our IPAM
shim from CNI_PATH. Covers the CNI lifecycle the spec asks of an IPAM: dual-stack ADD,
pods talking, idempotent DEL, CHECK that notices a reservation released behind its back,
GC (the runtime's DEL of stale attachments and the plugin's own GC verb), STATUS when a
daemon is down (code 50), and a DEL accepted while the controller is down and replayed
once it returns.
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc
from spiderpool_tools.cni_runtime import (
    CniPluginError,
    CniRuntime,
    NetworkConfigList,
    RuntimeConf,
    load_config,
    result_ips,
)
from spiderpool_tools.netns import NetNs, wait_for
from spiderpool_tools.node_stack import NodeStack

pytestmark = pytest.mark.netns

NETWORK = "macvlan-sp"
POD_NAMESPACE = "netns-test"
V4_RANGE = (ipaddress.ip_address("172.30.0.10"), ipaddress.ip_address("172.30.0.60"))
V6_RANGE = (ipaddress.ip_address("fd00:172:30::10"), ipaddress.ip_address("fd00:172:30::60"))


def ipam_section(stack: NodeStack) -> dict[str, object]:
    return {
        "type": "spiderpool",
        "default_ipv4_ippool": ["demo-v4"],
        "default_ipv6_ippool": ["demo-v6"],
        "ipam_unix_socket_path": str(stack.layout.agent_socket),
        "log_file_path": str(stack.layout.log_dir / "shim.log"),
    }


def macvlan_network(stack: NodeStack) -> NetworkConfigList:
    """Debian's macvlan (speaks up to CNI 1.0.0) delegating IPAM to spiderpool."""
    plugin = {"type": "macvlan", "master": "master0", "mode": "bridge", "ipam": ipam_section(stack)}
    return load_config({"cniVersion": "1.0.0", "name": NETWORK, "plugins": [plugin]})


def ipam_only_network(stack: NodeStack) -> NetworkConfigList:
    """The same network as the spiderpool plugin alone at 1.1.0, for GC and STATUS (macvlan 1.1.1
    knows neither verb)."""
    plugin = {"type": "spiderpool", "ipam": ipam_section(stack)}
    return load_config({"cniVersion": "1.1.0", "name": NETWORK, "plugins": [plugin]})


def pod_attachment(pod: NetNs, name: str) -> RuntimeConf:
    args = (
        ("IgnoreUnknown", "true"),
        ("K8S_POD_NAMESPACE", POD_NAMESPACE),
        ("K8S_POD_NAME", name),
        ("K8S_POD_UID", f"uid-{name}"),
    )
    return RuntimeConf(f"ctr-{name}", "eth0", pod.path, args)


def allocated(stack: NodeStack) -> set[str]:
    """Every address the controller's store holds in both demo pools."""
    return set(stack.allocated_ips("demo-v4")) | set(stack.allocated_ips("demo-v6"))


def bare_ips(result: dict[str, object]) -> set[str]:
    return {cidr.split("/", 1)[0] for cidr in result_ips(result)}


def test_dual_stack_pods_get_pool_addresses_ping_each_other_and_del_twice(
    spiderpool_stack: NodeStack, spiderpool_runtime: CniRuntime, make_pod: Callable[[], NetNs]
) -> None:
    """Two pods get one address from each pool, on their eth0 and in the store; they ping each other
    in both families; DEL frees everything and a second DEL succeeds."""
    config = macvlan_network(spiderpool_stack)
    pods = {"a": make_pod(), "b": make_pod()}
    results = {name: spiderpool_runtime.add(config, pod_attachment(pod, name)) for name, pod in pods.items()}
    for name, pod in pods.items():
        ips = [ipaddress.ip_interface(cidr) for cidr in result_ips(results[name])]
        assert sorted(ip.version for ip in ips) == [4, 6]
        for ip in ips:
            low, high = V4_RANGE if ip.version == 4 else V6_RANGE
            assert low <= ip.ip <= high  # type: ignore[operator]
        assert {a.cidr for a in pod.addresses("eth0") if a.scope == "global"} == set(
            result_ips(results[name])
        )
    assert allocated(spiderpool_stack) == bare_ips(results["a"]) | bare_ips(results["b"])
    for src, dst in (("a", "b"), ("b", "a")):
        for address in bare_ips(results[dst]):
            pods[src].wait_ping(address, deadline_s=5)

    for name, pod in pods.items():
        spiderpool_runtime.delete(config, pod_attachment(pod, name))
        assert "eth0" not in pod.links()
    assert allocated(spiderpool_stack) == set()
    for name, pod in pods.items():
        spiderpool_runtime.delete(config, pod_attachment(pod, name))
    assert spiderpool_runtime.cached_attachments() == []


def test_check_passes_after_add_and_fails_once_released_behind_its_back(
    spiderpool_stack: NodeStack, spiderpool_runtime: CniRuntime, make_pod: Callable[[], NetNs]
) -> None:
    """CHECK succeeds right after ADD; after a direct controller Release of the reservation it fails
    with code 106 (reservation not found), passed through by macvlan; DEL still succeeds."""
    config = macvlan_network(spiderpool_stack)
    pod = make_pod()
    rt = pod_attachment(pod, "checked")
    spiderpool_runtime.add(config, rt)
    spiderpool_runtime.check(config, rt)

    with grpc.insecure_channel(spiderpool_stack.layout.controller_target) as channel:
        ref = ipam_pb2.PodRef(
            namespace=POD_NAMESPACE, name="checked", uid="uid-checked", container_id=rt.container_id,
            node=spiderpool_stack.node_name,
        )  # fmt: skip
        released = ipam_pb2_grpc.IpamServiceStub(channel).Release(
            ipam_pb2.ReleaseRequest(pod=ref, ifname="eth0"), timeout=10
        )
    assert len(released.released) == 2
    assert allocated(spiderpool_stack) == set()

    with pytest.raises(CniPluginError) as caught:
        spiderpool_runtime.check(config, rt)
    assert caught.value.code == 106
    spiderpool_runtime.delete(config, rt)


def test_runtime_gc_deletes_attachments_missing_from_the_valid_list(
    spiderpool_stack: NodeStack, spiderpool_runtime: CniRuntime, make_pod: Callable[[], NetNs]
) -> None:
    """GC with only pod ``keep`` valid DELs the cached ``stale`` attachment (link and addresses gone)
    and leaves ``keep`` untouched."""
    config = macvlan_network(spiderpool_stack)
    keep_pod, stale_pod = make_pod(), make_pod()
    keep = spiderpool_runtime.add(config, pod_attachment(keep_pod, "keep"))
    spiderpool_runtime.add(config, pod_attachment(stale_pod, "stale"))
    spiderpool_runtime.gc(config, [("ctr-keep", "eth0")])
    assert allocated(spiderpool_stack) == bare_ips(keep)
    assert "eth0" not in stale_pod.links()
    assert "eth0" in keep_pod.links()
    assert [c.container_id for c in spiderpool_runtime.cached_attachments()] == ["ctr-keep"]


def test_ipam_gc_releases_reservations_the_runtime_no_longer_knows(
    spiderpool_stack: NodeStack, spiderpool_runtime: CniRuntime, make_pod: Callable[[], NetNs], tmp_path: Path
) -> None:
    """The plugin's own GC verb (1.1.0, cni.dev/valid-attachments) releases every reservation of the
    network not in the list, even one no runtime cache remembers."""
    config = macvlan_network(spiderpool_stack)
    keep = spiderpool_runtime.add(config, pod_attachment(make_pod(), "keep"))
    spiderpool_runtime.add(config, pod_attachment(make_pod(), "lost"))
    # A runtime whose cache was lost: GC can only reach the lost reservation through the plugin.
    amnesiac = CniRuntime([str(spiderpool_stack.layout.bin_dir)], tmp_path / "empty-cache")
    amnesiac.gc(ipam_only_network(spiderpool_stack), [("ctr-keep", "eth0")])
    assert allocated(spiderpool_stack) == bare_ips(keep)


def test_status_is_ready_and_code_50_while_agent_or_controller_is_down(
    spiderpool_stack: NodeStack, spiderpool_runtime: CniRuntime
) -> None:
    """STATUS succeeds with both daemons up and fails with code 50 while the agent, then the
    controller, is stopped; it recovers when each returns."""
    config = ipam_only_network(spiderpool_stack)
    spiderpool_runtime.status(config)

    spiderpool_stack.stop_agent()
    with pytest.raises(CniPluginError) as caught:
        spiderpool_runtime.status(config)
    assert caught.value.code == 50
    spiderpool_stack.start_agent()
    spiderpool_runtime.status(config)

    spiderpool_stack.stop_controller()
    with pytest.raises(CniPluginError) as caught:
        spiderpool_runtime.status(config)
    assert caught.value.code == 50
    spiderpool_stack.start_controller()
    wait_for(lambda: _status_ok(spiderpool_runtime, config), deadline_s=30, what="STATUS ready again")


def _status_ok(runtime: CniRuntime, config: NetworkConfigList) -> bool:
    try:
        runtime.status(config)
    except CniPluginError:
        return False
    return True


def test_del_while_controller_is_down_is_replayed_when_it_returns(
    spiderpool_stack: NodeStack, spiderpool_runtime: CniRuntime, make_pod: Callable[[], NetNs]
) -> None:
    """DEL succeeds while the controller is stopped (the agent journals the release); once the
    controller is back the agent replays it and the pools become empty."""
    config = macvlan_network(spiderpool_stack)
    pod = make_pod()
    rt = pod_attachment(pod, "replayed")
    result = spiderpool_runtime.add(config, rt)
    assert allocated(spiderpool_stack) == bare_ips(result)

    spiderpool_stack.stop_controller()
    spiderpool_runtime.delete(config, rt)
    assert "eth0" not in pod.links()
    assert spiderpool_runtime.cached_attachments() == []
    journal = spiderpool_stack.layout.state_dir
    assert any(p.is_file() and p.stat().st_size > 0 for p in journal.rglob("*")), "release not journaled"

    spiderpool_stack.start_controller()
    wait_for(lambda: not allocated(spiderpool_stack), deadline_s=45, what="the journaled release to replay")


def test_shims_are_installed_as_self_contained_executables(spiderpool_stack: NodeStack) -> None:
    """The installed IPAM shim answers VERSION on its own, listing CNI 1.1.0."""
    runtime = CniRuntime([str(spiderpool_stack.layout.bin_dir)], spiderpool_stack.layout.cache_dir)
    answer = runtime.version("spiderpool", "1.1.0")
    assert "1.1.0" in answer["supportedVersions"]
    assert shutil.which("spiderpool", path=str(spiderpool_stack.layout.bin_dir))
