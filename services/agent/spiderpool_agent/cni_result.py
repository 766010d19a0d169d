"""CNI result rendering per version, and reading results back (prevResult).

An IPAM plugin answers an abbreviated Success result (SPEC.md section 4, "IP Allocation"):
no ``interfaces`` and no ``interface`` index. Result formats differ by version only where
the spec changed them: 0.3.0 to 0.4.0 carry ``"version": "4"|"6"`` on each IP, 1.0.0 removed
it. Keys appear in libcni's struct order and ``dns`` is always present (Go's encoder does
not omit an empty struct), so our output is byte-for-byte what a libcni plugin prints.

Which routes an IPAM result carries follows upstream Spiderpool (pkg/ipam/convert.go,
``convertResultsToIPConfigsAndAllRoutes`` and ``genDefaultRoute``): for each IP of the
interface with a pool gateway, a default route (``0.0.0.0/0`` or ``::/0``) via that gateway
comes first, unless clean_gateway is set (config or per-IP); then the pool's own routes for
that interface. One deliberate difference: when the pool's routes already hold a default
route of that family we do not add a second one (upstream's docs tell users not to
configure that; two default routes make the main plugin fail with EEXIST).

Pure module: no grpc, no I/O.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from spiderpool_cni import codes
from spiderpool_common.errors import CniError

from spiderpool_agent.cni_call import version_tuple


@dataclass(frozen=True)
class ResultIP:
    address: str  # "ip/prefixlen"
    gateway: str = ""

    @property
    def version(self) -> int:
        return ipaddress.ip_interface(self.address).version


@dataclass(frozen=True)
class ResultRoute:
    dst: str
    gw: str = ""


@dataclass(frozen=True)
class IpamResult:
    ips: tuple[ResultIP, ...]
    routes: tuple[ResultRoute, ...] = ()
    dns: Mapping[str, Any] = field(default_factory=dict)


class AllocatedIP(Protocol):
    """What the controller answers per IP (``ipam_pb2.IPConfig``)."""

    @property
    def nic(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def gateway(self) -> str: ...
    @property
    def clean_gateway(self) -> bool: ...


class AllocatedRoute(Protocol):
    @property
    def nic(self) -> str: ...
    @property
    def dst(self) -> str: ...
    @property
    def gw(self) -> str: ...


def _is_default(dst: str, family: int) -> bool:
    try:
        net = ipaddress.ip_network(dst, strict=False)
    except ValueError:
        return False
    return net.prefixlen == 0 and net.version == family


def ipam_result_for_interface(
    ips: Iterable[AllocatedIP], routes: Iterable[AllocatedRoute], ifname: str, *, clean_gateway: bool
) -> IpamResult:
    """Keep only ``ifname``'s IPs and routes and add the gateway default routes."""
    mine = [ip for ip in ips if ip.nic == ifname]
    pool_routes = [ResultRoute(r.dst, r.gw) for r in routes if r.nic == ifname]
    out_routes: list[ResultRoute] = []
    for ip in mine:
        if not ip.gateway or clean_gateway or ip.clean_gateway:
            continue
        family = ipaddress.ip_interface(ip.address).version
        if any(_is_default(r.dst, family) for r in pool_routes):
            continue
        out_routes.append(ResultRoute("0.0.0.0/0" if family == 4 else "::/0", ip.gateway))
    for route in pool_routes:
        if route not in out_routes:
            out_routes.append(route)
    return IpamResult(ips=tuple(ResultIP(ip.address, ip.gateway) for ip in mine), routes=tuple(out_routes))


def _legacy(cni_version: str) -> bool:
    """0.3.x and 0.4.0 results: each IP names its family."""
    return version_tuple(cni_version) < (1, 0, 0)


def ipam_result_dict(result: IpamResult, cni_version: str) -> dict[str, Any]:
    legacy = _legacy(cni_version)
    ips: list[dict[str, Any]] = []
    for ip in result.ips:
        entry: dict[str, Any] = {}
        if legacy:
            entry["version"] = str(ip.version)
        entry["address"] = ip.address
        if ip.gateway:
            entry["gateway"] = ip.gateway
        ips.append(entry)
    out: dict[str, Any] = {"cniVersion": cni_version}
    if ips:
        out["ips"] = ips
    if result.routes:
        out["routes"] = [{"dst": r.dst, "gw": r.gw} if r.gw else {"dst": r.dst} for r in result.routes]
    out["dns"] = dict(result.dns)
    return out


def render_ipam_result(result: IpamResult, cni_version: str) -> bytes:
    """The bytes the shim prints for an ADD, in ``cni_version``'s format."""
    return json.dumps(ipam_result_dict(result, cni_version), separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------
# reading results back


def _bad_prev(where: str, problem: str) -> CniError:
    return CniError(codes.INVALID_CONFIG, f"network config: prevResult.{where} {problem}")


def prev_result_ips(prev: Mapping[str, Any]) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The addresses a prevResult holds, in any supported version's format."""
    ips = prev.get("ips") or []
    if not isinstance(ips, list):
        raise _bad_prev("ips", "must be an array")
    out: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
    for i, entry in enumerate(ips):
        if not isinstance(entry, dict) or not isinstance(entry.get("address"), str):
            raise _bad_prev(f"ips[{i}].address", "must be a string")
        try:
            out.append(ipaddress.ip_interface(entry["address"]))
        except ValueError:
            raise _bad_prev(f"ips[{i}].address", f"{entry['address']!r} is not ip/prefix") from None
    return out


def convert_result(prev: Mapping[str, Any], cni_version: str) -> dict[str, Any]:
    """Re-render a full result (with interfaces) in ``cni_version``'s format.

    Between the supported versions only the per-IP ``version`` key differs: it is derived
    from the address for 0.3.x/0.4.0 and dropped for 1.x. Everything else passes through.
    """
    legacy = _legacy(cni_version)
    addresses = prev_result_ips(prev)
    out: dict[str, Any] = {"cniVersion": cni_version}
    for key, value in prev.items():
        if key == "cniVersion":
            continue
        if key == "ips":
            converted: list[dict[str, Any]] = []
            for entry, addr in zip(value or [], addresses, strict=True):
                new: dict[str, Any] = {}
                if legacy:
                    new["version"] = str(addr.version)
                new.update({k: v for k, v in entry.items() if k != "version"})
                converted.append(new)
            out["ips"] = converted
        else:
            out[key] = value
    out.setdefault("dns", {})
    return out


def render_converted(prev: Mapping[str, Any], cni_version: str) -> bytes:
    return json.dumps(convert_result(prev, cni_version), separators=(",", ":")).encode()


def addresses_of(ips: Sequence[ResultIP]) -> set[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    return {ipaddress.ip_interface(ip.address) for ip in ips}
