"""A small routed network for the coordinator's netns tests.

Namespaces (all created here, all deleted by ``Lab.close``):

* ``node``: the host side of the coordinator. For each subnet it holds the macvlan master
  ``ens<x>`` with the node's own address ``.2`` (a macvlan pod cannot reach its master's
  address directly: that is what veth0 is for). Debian's macvlan/ptp/bridge plugins run here.
* ``router``: the subnets' gateways ``.1`` on ``gw<x>`` (peers of ``ens<x>``), forwarding,
  with strict ``rp_filter`` so a reply that leaves the pod by the wrong NIC is dropped: a
  ping that succeeds proves the reply took the NIC the request came in on.
* ``ext``: a client behind the router at 172.16.0.2 (fd16::2), on no pod subnet.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spiderpool_coordinator import api
from spiderpool_coordinator.config import CoordinatorConfig
from spiderpool_tools.cni_runtime import CniRuntime, RuntimeConf, load_config
from spiderpool_tools.netns import NetNs

EXT_V4, EXT_V6 = "172.16.0.2", "fd16::2"
_ids = itertools.count()


@dataclass(frozen=True)
class Subnet:
    letter: str  # "a", "b", ...
    octet: int  # 10.<octet>.0.0/24 and fd<octet>::/64

    @property
    def v4(self) -> str:
        return f"10.{self.octet}.0.0/24"

    @property
    def v6(self) -> str:
        return f"fd{self.octet}::/64"

    def host(self, n: int, version: int = 4) -> str:
        return f"10.{self.octet}.0.{n}" if version == 4 else f"fd{self.octet}::{n}"

    @property
    def master(self) -> str:
        return f"ens{self.letter}"


SUBNETS = [Subnet("a", 6), Subnet("b", 7), Subnet("c", 8)]


@dataclass
class Lab:
    node: NetNs
    router: NetNs
    ext: NetNs
    runtime: CniRuntime
    data_dir: Path
    pods: list[NetNs] = field(default_factory=list)

    @classmethod
    def create(cls, node: NetNs, runtime: CniRuntime, tmp: Path, subnets: int = 1) -> Lab:
        """Build the router, the client and ``subnets`` subnets; on failure nothing is left behind."""
        router = NetNs.create("sprtr")
        try:
            ext = NetNs.create("spext")
        except BaseException:
            router.delete()
            raise
        lab = cls(node, router, ext, runtime, tmp / "ipam")
        try:
            lab._wire(subnets)
        except BaseException:
            lab.close()
            raise
        return lab

    def _wire(self, subnets: int) -> None:
        router, ext, node = self.router, self.ext, self.node
        for ns in (router, ext, node):
            ns.disable_dad()
        for key in ("all", "default"):
            router.sysctl(f"net.ipv4.conf.{key}.rp_filter", 1)
        router.sysctl("net.ipv4.conf.all.forwarding", 1)
        router.sysctl("net.ipv6.conf.all.forwarding", 1)
        router.add_veth("gwext", "eth0", ext)
        router.add_address("gwext", "172.16.0.1/24")
        router.add_address("gwext", "fd16::1/64", nodad=True)
        ext.add_address("eth0", f"{EXT_V4}/24")
        ext.add_address("eth0", f"{EXT_V6}/64", nodad=True)
        ext.ip("route", "add", "default", "via", "172.16.0.1")
        ext.ip("-6", "route", "add", "default", "via", "fd16::1")
        for sn in SUBNETS[:subnets]:
            node.add_veth(sn.master, f"gw{sn.letter}", router)
            router.add_address(f"gw{sn.letter}", f"{sn.host(1)}/24")
            router.add_address(f"gw{sn.letter}", f"{sn.host(1, 6)}/64", nodad=True)
            node.add_address(sn.master, f"{sn.host(2)}/24")
            node.add_address(sn.master, f"{sn.host(2, 6)}/64", nodad=True)

    def close(self) -> None:
        for ns in (*self.pods, self.ext, self.router):
            ns.delete()

    def pod(self) -> NetNs:
        pod = NetNs.create("sppod")
        self.pods.append(pod)
        pod.disable_dad()
        return pod

    def macvlan(
        self,
        pod: NetNs,
        cid: str,
        ifname: str,
        sn: Subnet,
        *,
        ip: int,
        dual: bool = False,
        default_route: bool = True,
    ) -> dict[str, Any]:
        """Run Debian's macvlan + host-local (address .ip) for ``ifname``; return the result."""
        ranges: list[Any] = [
            [{"subnet": sn.v4, "rangeStart": sn.host(ip), "rangeEnd": sn.host(ip), "gateway": sn.host(1)}]
        ]
        routes: list[Any] = [{"dst": "0.0.0.0/0"}] if default_route else []
        if dual:
            ranges.append(
                [
                    {
                        "subnet": sn.v6,
                        "rangeStart": sn.host(ip, 6),
                        "rangeEnd": sn.host(ip, 6),
                        "gateway": sn.host(1, 6),
                    }
                ]
            )
            routes += [{"dst": "::/0"}] if default_route else []
        conf = {
            "cniVersion": "1.0.0",
            "name": f"mv{sn.letter}{next(_ids)}",
            "plugins": [
                {
                    "type": "macvlan",
                    "master": sn.master,
                    "mode": "bridge",
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.data_dir),
                        "ranges": ranges,
                        "routes": routes,
                    },
                }
            ],
        }
        return self.runtime.add(load_config(conf), RuntimeConf(cid, ifname, pod.path))

    def overlay(self, pod: NetNs, cid: str, plugin: str = "ptp") -> dict[str, Any]:
        """eth0 from Debian's ptp (or bridge) + host-local on 10.244.0.0/24: the overlay CNI stand-in."""
        plugin_conf: dict[str, Any] = {"type": plugin, "ipMasq": False}
        if plugin == "bridge":
            plugin_conf.update(bridge="cni0", isGateway=True)
        plugin_conf["ipam"] = {
            "type": "host-local",
            "dataDir": str(self.data_dir),
            "ranges": [[{"subnet": "10.244.0.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
        }
        conf = {"cniVersion": "1.0.0", "name": f"ov{next(_ids)}", "plugins": [plugin_conf]}
        return self.runtime.add(load_config(conf), RuntimeConf(cid, "eth0", pod.path))

    def coordinator(
        self,
        verb: str,
        pod: NetNs,
        cid: str,
        ifname: str,
        prev: dict[str, Any] | None,
        cfg: CoordinatorConfig,
    ) -> Any:
        fn = {"add": api.add, "del": api.del_, "check": api.check}[verb]
        return asyncio.run(fn(pod.path, ifname, cid, prev or {}, cfg, host_netns=self.node.path))


def routes(ns: NetNs, *args: str) -> str:
    return ns.ip("route", "show", *args)
