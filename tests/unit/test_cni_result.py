"""IPAM result rendering for every supported CNI version, and reading prevResult back."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from spiderpool_agent.cni_call import SUPPORTED_VERSIONS
from spiderpool_agent.cni_result import (
    IpamResult,
    ResultIP,
    ResultRoute,
    convert_result,
    ipam_result_for_interface,
    prev_result_ips,
    render_ipam_result,
)
from spiderpool_cni import codes
from spiderpool_common.errors import CniError

LEGACY = ("0.3.0", "0.3.1", "0.4.0")


@dataclass
class IP:
    nic: str
    address: str
    gateway: str = ""
    clean_gateway: bool = False


@dataclass
class Route:
    nic: str
    dst: str
    gw: str = ""


DUAL = [
    IP("eth0", "10.6.168.101/16", "10.6.0.1"),
    IP("eth0", "fd00::65/64", "fd00::1"),
    IP("net1", "172.16.0.5/24", "172.16.0.1"),
]
ROUTES = [Route("eth0", "10.7.0.0/16", "10.6.0.254"), Route("net1", "192.168.0.0/16", "172.16.0.254")]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_ipam_result_format_per_version(version: str) -> None:
    """Each version's result has cniVersion, ips, routes and dns; only <1.0.0 puts a version on each IP."""
    result = ipam_result_for_interface(DUAL, ROUTES, "eth0", clean_gateway=False)
    out = json.loads(render_ipam_result(result, version))
    assert out["cniVersion"] == version
    assert "interfaces" not in out
    assert all("interface" not in ip for ip in out["ips"])
    expected_ips = [
        {"address": "10.6.168.101/16", "gateway": "10.6.0.1"},
        {"address": "fd00::65/64", "gateway": "fd00::1"},
    ]
    if version in LEGACY:
        expected_ips = [{"version": v, **ip} for v, ip in zip(("4", "6"), expected_ips, strict=True)]
    assert out["ips"] == expected_ips
    assert out["routes"] == [
        {"dst": "0.0.0.0/0", "gw": "10.6.0.1"},
        {"dst": "::/0", "gw": "fd00::1"},
        {"dst": "10.7.0.0/16", "gw": "10.6.0.254"},
    ]
    assert out["dns"] == {}


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_key_order_follows_libcni(version: str) -> None:
    """Keys come in libcni's struct order, so our bytes equal a Go plugin's output."""
    result = IpamResult(
        ips=(ResultIP("10.0.0.2/24", "10.0.0.1"),), routes=(ResultRoute("0.0.0.0/0", "10.0.0.1"),)
    )
    text = render_ipam_result(result, version).decode()
    ip = (
        '{"version":"4","address":"10.0.0.2/24","gateway":"10.0.0.1"}'
        if version in LEGACY
        else ('{"address":"10.0.0.2/24","gateway":"10.0.0.1"}')
    )
    assert text == (
        f'{{"cniVersion":"{version}","ips":[{ip}],"routes":[{{"dst":"0.0.0.0/0","gw":"10.0.0.1"}}],"dns":{{}}}}'
    )


def test_only_the_requested_interface_is_returned() -> None:
    """IPs and routes of other NICs the controller allocated are left out of the result."""
    result = ipam_result_for_interface(DUAL, ROUTES, "net1", clean_gateway=False)
    assert result.ips == (ResultIP("172.16.0.5/24", "172.16.0.1"),)
    assert result.routes == (
        ResultRoute("0.0.0.0/0", "172.16.0.1"),
        ResultRoute("192.168.0.0/16", "172.16.0.254"),
    )
    assert ipam_result_for_interface(DUAL, ROUTES, "net9", clean_gateway=False).ips == ()


def test_clean_gateway_drops_the_default_route_only() -> None:
    """clean_gateway (config or per IP) removes the default route but keeps the pool routes."""
    result = ipam_result_for_interface(DUAL, ROUTES, "eth0", clean_gateway=True)
    assert result.routes == (ResultRoute("10.7.0.0/16", "10.6.0.254"),)
    per_ip = [IP("eth0", "10.6.168.101/16", "10.6.0.1", clean_gateway=True)]
    assert ipam_result_for_interface(per_ip, [], "eth0", clean_gateway=False).routes == ()


def test_no_gateway_means_no_default_route_and_no_gateway_key() -> None:
    """An IP without a pool gateway renders without a gateway and adds no default route."""
    result = ipam_result_for_interface([IP("eth0", "10.0.0.2/24")], [], "eth0", clean_gateway=False)
    out = json.loads(render_ipam_result(result, "1.1.0"))
    assert out == {"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24"}], "dns": {}}


def test_a_pool_default_route_is_not_duplicated() -> None:
    """When the pool's routes already hold a default route of that family, no second one is added."""
    routes = [Route("eth0", "0.0.0.0/0", "10.6.0.253")]
    result = ipam_result_for_interface(DUAL[:1], routes, "eth0", clean_gateway=False)
    assert result.routes == (ResultRoute("0.0.0.0/0", "10.6.0.253"),)


FULL_1X = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/p"}],
    "ips": [
        {"interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
        {"interface": 0, "address": "fd00::2/64"},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
    "dns": {"nameservers": ["10.0.0.53"]},
}


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_prev_result_converts_to_every_version(version: str) -> None:
    """A full result re-renders in each version: per-IP version added below 1.0.0, removed above."""
    out = convert_result(FULL_1X, version)
    assert out["cniVersion"] == version
    assert out["interfaces"] == FULL_1X["interfaces"]
    assert out["routes"] == FULL_1X["routes"]
    assert out["dns"] == FULL_1X["dns"]
    if version in LEGACY:
        assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
        back = convert_result(out, "1.1.0")
        assert back["ips"] == FULL_1X["ips"]
    else:
        assert all("version" not in ip for ip in out["ips"])
        assert [ip["address"] for ip in out["ips"]] == ["10.0.0.2/24", "fd00::2/64"]


@pytest.mark.parametrize("ips", ["x", [{"address": 5}], [{"address": "10.0.0.300/24"}], [7]])
def test_malformed_prev_result_is_code_7(ips: object) -> None:
    """A prevResult whose ips are not ip/prefix strings is an invalid config (code 7)."""
    with pytest.raises(CniError) as info:
        prev_result_ips({"ips": ips})
    assert info.value.cni_code == codes.INVALID_CONFIG
    assert "prevResult" in info.value.message
