"""A macvlan pod that asks for its address gets exactly it, and the network reaches it there.

Real everything, as in ``test_spiderpool_macvlan``: controller and agent processes, the
installed shims, Debian's macvlan declaring the ``ips`` capability, and our runtime passing
the capability argument the way Multus does for a selection element's ``"ips"`` (it injects
``runtimeConfig.ips`` and strips ``capabilities``; macvlan hands its stdin to the IPAM).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from spiderpool_tools.cni_runtime import (
    CniPluginError,
    CniRuntime,
    NetworkConfigList,
    RuntimeConf,
    load_config,
)
from spiderpool_tools.netns import NetNs
from spiderpool_tools.node_stack import NodeStack

from tests.netns.test_spiderpool_macvlan import allocated, bare_ips, ipam_section, pod_attachment

pytestmark = pytest.mark.netns

NETWORK = "macvlan-ips"
ASKED_V4, ASKED_V6 = "172.30.0.55", "fd00:172:30::55"


def ips_capable_network(stack: NodeStack) -> NetworkConfigList:
    """Debian's macvlan delegating to spiderpool, declaring the ips capability."""
    plugin = {
        "type": "macvlan",
        "master": "master0",
        "mode": "bridge",
        "capabilities": {"ips": True},
        "ipam": ipam_section(stack),
    }
    return load_config({"cniVersion": "1.0.0", "name": NETWORK, "plugins": [plugin]})


def asking(pod: NetNs, name: str, ips: list[str]) -> RuntimeConf:
    plain = pod_attachment(pod, name)
    return RuntimeConf(
        plain.container_id, plain.ifname, plain.netns, plain.args, capability_args={"ips": ips}
    )


def test_a_pod_gets_the_address_it_asked_for_and_answers_pings_on_it(
    spiderpool_stack: NodeStack, spiderpool_runtime: CniRuntime, make_pod: Callable[[], NetNs]
) -> None:
    """Pod a asks for .55 and ::55 and has exactly them on eth0; pod b (no request) gets the lowest
    free addresses and pings a on the asked ones in both families; DEL frees them."""
    config = ips_capable_network(spiderpool_stack)
    a, b = make_pod(), make_pod()
    result_a = spiderpool_runtime.add(config, asking(a, "asker", [f"{ASKED_V4}/24", ASKED_V6]))
    result_b = spiderpool_runtime.add(config, pod_attachment(b, "plain"))
    assert bare_ips(result_a) == {ASKED_V4, ASKED_V6}
    assert {x.cidr.split("/")[0] for x in a.addresses("eth0") if x.scope == "global"} == {ASKED_V4, ASKED_V6}
    assert bare_ips(result_b) == {"172.30.0.10", "fd00:172:30::10"}
    for address in (ASKED_V4, ASKED_V6):
        b.wait_ping(address, deadline_s=5)
    spiderpool_runtime.delete(config, asking(a, "asker", [ASKED_V4, ASKED_V6]))
    assert allocated(spiderpool_stack) == bare_ips(result_b)


def test_asking_for_a_held_address_fails_with_109_and_its_del_frees_nothing_of_the_holder(
    spiderpool_stack: NodeStack, spiderpool_runtime: CniRuntime, make_pod: Callable[[], NetNs]
) -> None:
    """A second pod asking for the first pod's address fails with code 109 and is allocated
    nothing; the runtime's DEL after the failed ADD removes the link macvlan 1.1.1 leaves and
    frees nothing of the first pod, which still answers pings on the address."""
    config = ips_capable_network(spiderpool_stack)
    first, second = make_pod(), make_pod()
    held = spiderpool_runtime.add(config, asking(first, "first", [ASKED_V4]))
    rt = asking(second, "second", [ASKED_V4])
    with pytest.raises(CniPluginError) as caught:
        spiderpool_runtime.add(config, rt)
    assert caught.value.code == 109
    assert "gave it to pod netns-test/first" in caught.value.msg
    assert allocated(spiderpool_stack) == bare_ips(held)
    spiderpool_runtime.delete(config, rt)
    assert "eth0" not in second.links()
    assert allocated(spiderpool_stack) == bare_ips(held)
    witness = make_pod()
    spiderpool_runtime.add(config, pod_attachment(witness, "witness"))
    witness.wait_ping(ASKED_V4, deadline_s=5)
