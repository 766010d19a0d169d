"""Our CNI runtime drives Debian's macvlan + host-local for real, in network namespaces.

The baseline the spiderpool IPAM is compared with, and proof that the runtime does what
a container engine does: addresses arrive, pods talk over the macvlan network, CHECK
consults the cached result, DEL cleans up (also twice, also after a failed ADD).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from spiderpool_tools.cni_runtime import (
    CniPluginError,
    CniRuntime,
    NetworkConfigList,
    RuntimeConf,
    load_config,
    result_ips,
)
from spiderpool_tools.netns import NetNs

pytestmark = pytest.mark.netns


def hostlocal_config(
    data_dir: Path,
    *,
    v4: str = "172.31.0.0/24",
    v6: str | None = "fd00:31::/64",
    range_end: str | None = None,
) -> NetworkConfigList:
    v4_range: dict[str, Any] = {"subnet": v4}
    if range_end:
        v4_range.update(rangeStart=range_end, rangeEnd=range_end)
    ranges = [[v4_range]] + ([[{"subnet": v6}]] if v6 else [])
    return load_config(
        {
            "cniVersion": "1.0.0",
            "name": "hlnet",
            "plugins": [
                {
                    "type": "macvlan",
                    "master": "master0",
                    "mode": "bridge",
                    "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": ranges},
                }
            ],
        }
    )


def reservations(data_dir: Path) -> set[str]:
    """Addresses host-local currently holds (one file per address in its network directory)."""
    net_dir = data_dir / "hlnet"
    if not net_dir.is_dir():
        return set()
    return {p.name for p in net_dir.iterdir() if not p.name.startswith(("last_reserved_ip", "lock"))}


def test_add_gives_dual_stack_addresses_and_pods_ping_each_other(
    node_runtime: CniRuntime, make_pod: Callable[[], NetNs], tmp_path: Path
) -> None:
    """Two pods get one IPv4 and one IPv6 address each on eth0 and reach each other in both families."""
    config = hostlocal_config(tmp_path / "hl")
    pods = [make_pod(), make_pod()]
    results = [
        node_runtime.add(config, RuntimeConf(f"ctr{i}", "eth0", pod.path)) for i, pod in enumerate(pods)
    ]
    for pod, result in zip(pods, results, strict=True):
        assert result["interfaces"][0]["sandbox"] == pod.path
        on_link = {a.cidr for a in pod.addresses("eth0") if a.scope == "global"}
        assert on_link == set(result_ips(result))
        assert {a.split("/")[0] for a in on_link} <= reservations(tmp_path / "hl")
    for src, dst in ((pods[0], results[1]), (pods[1], results[0])):
        for address in result_ips(dst):
            src.wait_ping(address.split("/")[0], deadline_s=5)


def test_check_passes_after_add_and_fails_once_the_link_is_gone(
    node_runtime: CniRuntime, make_pod: Callable[[], NetNs], tmp_path: Path
) -> None:
    """CHECK with the cached result succeeds for a healthy pod and fails after its interface is removed."""
    config = hostlocal_config(tmp_path / "hl")
    pod = make_pod()
    rt = RuntimeConf("ctr-check", "eth0", pod.path)
    node_runtime.add(config, rt)
    node_runtime.check(config, rt)
    pod.ip("link", "del", "eth0")
    with pytest.raises(CniPluginError) as caught:
        node_runtime.check(config, rt)
    assert caught.value.plugin == "macvlan"


def test_del_releases_address_removes_link_and_cache_and_repeats(
    node_runtime: CniRuntime, make_pod: Callable[[], NetNs], tmp_path: Path
) -> None:
    """DEL removes eth0, host-local's reservation and the cache entry; a second DEL and a DEL
    after the namespace is gone both succeed."""
    data_dir = tmp_path / "hl"
    config = hostlocal_config(data_dir)
    pod = make_pod()
    rt = RuntimeConf("ctr-del", "eth0", pod.path)
    node_runtime.add(config, rt)
    assert len(reservations(data_dir)) == 2
    node_runtime.delete(config, rt)
    assert "eth0" not in pod.links()
    assert reservations(data_dir) == set()
    assert node_runtime.cached_result("hlnet", "ctr-del", "eth0") is None
    node_runtime.delete(config, rt)
    pod.delete()
    node_runtime.delete(config, rt)


def test_failed_ipam_add_is_cleaned_up_by_del(
    node_runtime: CniRuntime, make_pod: Callable[[], NetNs], tmp_path: Path
) -> None:
    """When host-local runs out of addresses the ADD fails, nothing is cached, and DEL removes the
    link macvlan 1.1.1 leaves behind."""
    data_dir = tmp_path / "hl"
    config = hostlocal_config(data_dir, v6=None, range_end="172.31.0.9")
    first, second = make_pod(), make_pod()
    node_runtime.add(config, RuntimeConf("ctr-a", "eth0", first.path))
    rt = RuntimeConf("ctr-b", "eth0", second.path)
    with pytest.raises(CniPluginError) as caught:
        node_runtime.add(config, rt)
    assert "no IP addresses available" in caught.value.msg
    assert node_runtime.cached_result("hlnet", "ctr-b", "eth0") is None
    node_runtime.delete(config, rt)
    assert "eth0" not in second.links()
    assert reservations(data_dir) == {"172.31.0.9"}


def test_cached_result_is_the_json_macvlan_printed(
    node_runtime: CniRuntime, make_pod: Callable[[], NetNs], tmp_path: Path
) -> None:
    """The cache file holds the exact final ADD result, which is what DEL and CHECK receive."""
    config = hostlocal_config(tmp_path / "hl")
    pod = make_pod()
    result = node_runtime.add(config, RuntimeConf("ctr-cache", "eth0", pod.path))
    cache_file = node_runtime.cache_dir / "results" / "hlnet-ctr-cache-eth0"
    assert json.loads(cache_file.read_text())["result"] == result
    assert result["interfaces"][0]["mac"] == pod.mac("eth0")
