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
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spiderpool_coordinator import api
from spiderpool_coordinator.config import CoordinatorConfig
from spiderpool_tools.cni_runtime import CniRuntime, NetworkConfigList, RuntimeConf, load_config
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
        verbs: dict[str, Callable[..., Coroutine[Any, Any, Any]]] = {
            "add": api.add,
            "del": api.del_,
            "check": api.check,
        }
        fn = verbs[verb]
        return asyncio.run(fn(pod.path, ifname, cid, prev or {}, cfg, host_netns=self.node.path))


def routes(ns: NetNs, *args: str) -> str:
    return ns.ip("route", "show", *args)


# -- the same lab driven through the chain (installed shims -> agent -> coordinator library) ------

POD_NAMESPACE = "lab"


def spider_pool(
    sn: Subnet, version: int = 4, *, first: int = 10, last: int = 40, gateway: bool = True, name: str = ""
) -> dict[str, Any]:
    """A SpiderIPPool on ``sn`` handing out ``.first``-``.last``, gateway ``.1`` unless told not to."""
    spec: dict[str, Any] = {
        "subnet": sn.v4 if version == 4 else sn.v6,
        "ips": [f"{sn.host(first, version)}-{sn.host(last, version)}"],
    }
    if gateway:
        spec["gateway"] = sn.host(1, version)
    if version == 6:
        spec["ipVersion"] = 6
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": name or f"lab-{sn.letter}-v{version}"},
        "spec": spec,
    }


def spiderpool_network(
    agent_socket: Path,
    log_dir: Path,
    name: str,
    master: str,
    pools: tuple[list[str], list[str]],
    coordinator: dict[str, Any] | None = None,
) -> NetworkConfigList:
    """[Debian's macvlan on ``master`` with spiderpool IPAM, our coordinator] as a CNI 1.0.0 conflist;
    ``coordinator`` holds the coordinator's own fields (camelCase, as in a NetworkAttachmentDefinition)."""
    ipam = {
        "type": "spiderpool",
        "default_ipv4_ippool": pools[0],
        "default_ipv6_ippool": pools[1],
        "ipam_unix_socket_path": str(agent_socket),
        "log_file_path": str(log_dir / "ipam-shim.log"),
    }
    plugins: list[dict[str, Any]] = [
        {"type": "macvlan", "master": master, "mode": "bridge", "ipam": ipam},
        {
            "type": "coordinator",
            "ipam_unix_socket_path": str(agent_socket),
            "logOptions": {"logFile": str(log_dir / "coordinator-shim.log")},
            **(coordinator or {}),
        },
    ]
    return load_config({"cniVersion": "1.0.0", "name": name, "plugins": plugins})


def pod_attachment(pod: NetNs, name: str, ifname: str = "eth0") -> RuntimeConf:
    """The runtime's view of attaching ``ifname`` of pod ``name`` (Kubernetes CNI_ARGS, one UID per name)."""
    args = (
        ("IgnoreUnknown", "true"),
        ("K8S_POD_NAMESPACE", POD_NAMESPACE),
        ("K8S_POD_NAME", name),
        ("K8S_POD_UID", f"uid-{name}"),
    )
    return RuntimeConf(f"ctr-{name}", ifname, pod.path, args)


def strict_ipv6_rp_filter(ns: NetNs) -> None:
    """IPv6 has no rp_filter sysctl: an nftables fib check in ``ns`` drops a packet whose source is
    not routed back through the interface it came in on, as ``rp_filter=1`` does for IPv4."""
    ns.run(
        ["nft", "-f", "-"],
        input_text=(
            "table ip6 lab_rpf {\n"
            "  chain prerouting {\n"
            "    type filter hook prerouting priority raw; policy accept;\n"
            "    fib saddr . iif oif missing drop\n"
            "  }\n"
            "}\n"
        ),
    )
