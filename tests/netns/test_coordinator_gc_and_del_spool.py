"""The coordinator's GC and a DEL made while the agent is down, through the real chain.

Same setup as ``test_coordinator_chain``: the controller (SQLite) and the agent run as
processes in the node namespace, the runtime execs Debian's macvlan (which execs our IPAM
shim) and then our coordinator shim. What the coordinator's ADD leaves on the node is the
host veth ``veth<cid[:11]>``, a route per pod address in table 500 through it (with a
neighbour entry) and a rule ``to <address> lookup 500``; its connmark nftables table lives
in the pod's namespace, never the node's. Both tests check exactly those objects with
iproute2 and nft.

* GC: two pods on one network and one on another; a runtime that lost its cache (so it
  synthesizes no DEL) sends GC for the first network listing only one of its two pods: the
  other pod's node-side state is gone, the listed pod and the other network's pod keep
  theirs and still ping the node and are pinged by it.
* DEL with the agent stopped: the chain's DEL succeeds (both shims spool), nothing is
  released yet; the agent's start replays the spool before it reports ready: the address is
  free at the controller, the node-side state is gone, the spool is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from spiderpool_tools.cni_runtime import CniRuntime, NetworkConfigList, RuntimeConf, load_config
from spiderpool_tools.netns import NetNs

from tests.netns.test_coordinator_chain import (  # noqa: F401  (chain_factory is a fixture)
    NODE_B,
    NODE_V4,
    NODE_V6,
    POOL_B4,
    Chain,
    attachment,
    bare,
    chain_factory,
    host_veth,
    rules_for,
)

pytestmark = pytest.mark.netns

NFT_TABLE = "spiderpool_coordinator"


def table_500(node: NetNs) -> str:
    return node.ip("-4", "route", "show", "table", "500") + node.ip("-6", "route", "show", "table", "500")


def nft_tables(ns: NetNs) -> str:
    return ns.run(["nft", "list", "tables"]).stdout


def node_side(chain: Chain, rt: RuntimeConf, ips: list[str]) -> dict[str, bool]:
    """Which of the attachment's node-side objects exist: the host veth, each address's table-500
    route through it, each address's rule."""
    veth = host_veth(rt.container_id)
    routes = table_500(chain.node)
    state = {"veth": veth in chain.node.links()}
    for ip in ips:
        state[f"route {ip}"] = f"{ip} dev {veth}" in routes
        state[f"rule {ip}"] = bool(rules_for(chain.node, ip))
    return state


def coordinator_only(network: NetworkConfigList, version: str = "1.1.0") -> NetworkConfigList:
    """The network's coordinator plugin alone at 1.1.0, for GC (Debian's macvlan speaks up to 1.0.0)."""
    return load_config({"cniVersion": version, "name": network.name, "plugins": [network.plugins[-1]]})


@pytest.fixture
def chain(chain_factory: Callable[..., Chain]) -> Chain:  # noqa: F811  (the imported fixture)
    return chain_factory()


def test_gc_removes_exactly_the_unlisted_attachments_node_side_state(chain: Chain, tmp_path: Path) -> None:
    """GC of network chain-a listing only pod "kept" removes pod "dropped"'s host veth, table-500
    routes and rules (its veth0 goes with the pair) and nothing else: "kept" and pod "other" of
    network chain-b keep all of theirs and ping the node both ways; no nftables table is on the node."""
    net_a = chain.network()
    net_b = chain.network("chain-b", master="master1", pools=([POOL_B4], []))
    pods = {name: chain.make_pod() for name in ("kept", "dropped", "other")}
    rts = {name: attachment(pod, name) for name, pod in pods.items()}
    ips = {
        "kept": bare(chain.runtime.add(net_a, rts["kept"])),
        "dropped": bare(chain.runtime.add(net_a, rts["dropped"])),
        "other": bare(chain.runtime.add(net_b, rts["other"])),
    }
    for name in pods:
        assert all(node_side(chain, rts[name], ips[name]).values()), name
    assert NFT_TABLE in nft_tables(pods["kept"])  # the connmark table is the pod's ...
    assert NFT_TABLE not in nft_tables(chain.node)  # ... never the node's

    # A runtime that lost its cache: no DEL is synthesized, only the plugins' GC runs.
    amnesiac = CniRuntime(
        [str(chain.stack.layout.bin_dir)], tmp_path / "empty-cache", exec_context=chain.node.entered
    )
    amnesiac.gc(coordinator_only(net_a), [(rts["kept"].container_id, "eth0")])

    assert not any(node_side(chain, rts["dropped"], ips["dropped"]).values())
    assert "veth0" not in pods["dropped"].links()
    for name in ("kept", "other"):
        assert all(node_side(chain, rts[name], ips[name]).values()), name
    assert NFT_TABLE not in nft_tables(chain.node)
    for node_ip in (NODE_V4, NODE_V6):
        pods["kept"].wait_ping(node_ip, deadline_s=5)
    pods["other"].wait_ping(NODE_B, deadline_s=5)
    chain.node.wait_ping(ips["kept"][0], deadline_s=5)
    chain.node.wait_ping(ips["other"][0], deadline_s=5)
    # The coordinator's GC is the coordinator's: the address stays with the IPAM plugin.
    assert set(ips["dropped"]) <= chain.allocated()

    # A second GC with the same list finds nothing more to do.
    amnesiac.gc(coordinator_only(net_a), [(rts["kept"].container_id, "eth0")])
    assert all(node_side(chain, rts["kept"], ips["kept"]).values())


def test_del_while_the_agent_is_down_succeeds_and_is_replayed_when_it_starts(chain: Chain) -> None:
    """With the agent stopped, the chain's DEL (coordinator, then macvlan with our IPAM) succeeds and
    both shims spool it, while the address is still allocated and the host veth, routes and rules are
    still there; once the agent is started (ready = replayed) the address is free, the node-side state
    is gone and the spool is empty."""
    config = chain.network()
    pod = chain.make_pod()
    rt = attachment(pod, "teardown")
    ips = bare(chain.runtime.add(config, rt))
    assert all(node_side(chain, rt, ips).values())
    spool = chain.stack.layout.spool_dir

    chain.stack.stop_agent()
    chain.runtime.delete(config, rt)  # would raise CniPluginError (code 11) without the spool
    spooled = sorted(p.name.rsplit("-", 1)[1] for p in spool.iterdir())
    assert spooled == ["coordinator.del", "ipam.del"]
    assert chain.allocated() == set(ips)
    assert all(node_side(chain, rt, ips).values())

    chain.stack.start_agent()
    assert chain.allocated() == set()
    assert not any(node_side(chain, rt, ips).values())
    assert table_500(chain.node).strip() == ""
    assert list(spool.iterdir()) == []
