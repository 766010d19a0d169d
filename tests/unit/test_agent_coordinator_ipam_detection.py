"""IP-conflict and gateway detection in the agent's IPAM ADD, against a fake controller and a fake
detector: which probes the controller's switches ask for, and what a failed probe does."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from spiderpool.controller.v1 import ipam_pb2
from spiderpool_agent.ip_detection import Probes, plan_probes
from spiderpool_agent.ipam_handlers import IpamHandlers, release_via
from spiderpool_agent.release_journal import ReleaseJournal
from spiderpool_cni import codes
from spiderpool_common.errors import CniError, NotFound, Unavailable
from spiderpool_coordinator.detection import IPAddress
from spiderpool_coordinator.errors import CoordinatorError, GatewayUnreachable, IPConflict


def ip(
    nic: str, address: str, gateway: str = "", *, conflict: bool = True, gw: bool = True
) -> ipam_pb2.IPConfig:
    version = ipaddress.ip_interface(address).version
    return ipam_pb2.IPConfig(
        nic=nic,
        version=version,
        address=address,
        gateway=gateway,
        detect_ip_conflict=conflict,
        detect_gateway=gw,
    )


V4 = ip("eth0", "10.6.0.10/24", "10.6.0.1")
V6 = ip("eth0", "fd00::10/64", "fd00::1")


@dataclass
class Call:
    command: str = ""
    container_id: str = "ctr-1"
    netns: str = "/run/netns/pod"
    ifname: str = "eth0"
    args: str = ""
    clean_gateway: bool = False
    present: list[str] = field(default_factory=lambda: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])

    @property
    def config(self) -> bytes:
        ipam = {"type": "spiderpool", "default_ipv4_ippool": ["p"], "clean_gateway": self.clean_gateway}
        return json.dumps({"cniVersion": "1.0.0", "name": "net-a", "ipam": ipam}).encode()


class Controller:
    """Allocate answers ``ips``; Release records the request and answers ``kept`` or the IPs."""

    def __init__(self, ips: list[ipam_pb2.IPConfig]) -> None:
        self.ips = ips
        self.releases: list[ipam_pb2.ReleaseRequest] = []
        self.kept = False
        self.down = False

    async def allocate(self, request: ipam_pb2.AllocateRequest) -> ipam_pb2.AllocateResponse:
        return ipam_pb2.AllocateResponse(ips=self.ips)

    async def release(self, request: ipam_pb2.ReleaseRequest) -> ipam_pb2.ReleaseResponse:
        if self.down:
            raise Unavailable("controller down")
        self.releases.append(request)
        if self.kept:
            return ipam_pb2.ReleaseResponse(kept=True)
        return ipam_pb2.ReleaseResponse(released=[i for i in self.ips if i.nic == request.ifname])

    async def get_endpoint(self, request: ipam_pb2.GetEndpointRequest) -> ipam_pb2.GetEndpointResponse:
        raise NotFound("no endpoint")

    async def release_unlisted(
        self, request: ipam_pb2.ReleaseUnlistedRequest
    ) -> ipam_pb2.ReleaseUnlistedResponse:
        return ipam_pb2.ReleaseUnlistedResponse()

    async def check_capacity(self, request: ipam_pb2.CheckCapacityRequest) -> ipam_pb2.CheckCapacityResponse:
        return ipam_pb2.CheckCapacityResponse(ready=True)


@dataclass
class Detector:
    """Records probes and announcements; ``fail`` is raised by verify, ``announce_fails`` by announce."""

    verified: list[tuple[str, str, Probes]] = field(default_factory=list)
    announced: list[list[IPAddress]] = field(default_factory=list)
    fail: BaseException | None = None
    announce_fails: bool = False

    async def verify(self, netns: str, ifname: str, probes: Probes) -> None:
        self.verified.append((netns, ifname, probes))
        if self.fail is not None:
            raise self.fail

    async def announce(self, netns: str, ifname: str, ips: list[IPAddress]) -> None:
        if self.announce_fails:
            raise OSError("network is down")
        self.announced.append(ips)


async def make(tmp_path: Path, ctl: Controller, det: Detector) -> IpamHandlers:
    journal = ReleaseJournal(tmp_path, release_via(ctl))
    await journal.load()
    return IpamHandlers(ctl, journal, "node-1", netns_exists=lambda _p: True, detector=det)


def test_probes_follow_the_switches_and_skip_other_nics_and_cleaned_gateways() -> None:
    """Conflict probes for flagged addresses, gateway probes for flagged ones with a gateway that is not
    cleaned; another NIC's IPs are not this NIC's business; no switch means no probe at all."""
    net1 = ip("net1", "10.7.0.10/24", "10.7.0.1")
    no_gw_check = ip("eth0", "fd00::10/64", "fd00::1", gw=False)
    probes = plan_probes([V4, no_gw_check, net1], "eth0")
    assert probes.conflicts == (ipaddress.ip_address("10.6.0.10"), ipaddress.ip_address("fd00::10"))
    assert probes.gateways == ((ipaddress.ip_address("10.6.0.10"), ipaddress.ip_address("10.6.0.1")),)
    assert plan_probes([V4], "eth0", clean_gateway=True).gateways == ()
    cleaned = ipam_pb2.IPConfig(nic="eth0", address="10.6.0.10/24", gateway="10.6.0.1", clean_gateway=True)
    cleaned.detect_gateway = True
    assert not plan_probes([cleaned], "eth0")
    assert not plan_probes([ip("eth0", "10.6.0.10/24", "10.6.0.1", conflict=False, gw=False)], "eth0")


async def test_switches_off_mean_no_probe_and_no_announcement(tmp_path: Path) -> None:
    """With the controller's switches off, ADD never enters the pod's namespace."""
    det = Detector()
    quiet = [ip("eth0", "10.6.0.10/24", "10.6.0.1", conflict=False, gw=False)]
    out = json.loads(await (await make(tmp_path, Controller(quiet), det)).add(Call()))
    assert out["ips"][0]["address"] == "10.6.0.10/24"
    assert det.verified == [] and det.announced == []


async def test_passing_probes_answer_the_result_and_announce_the_addresses(tmp_path: Path) -> None:
    """When every probe passes, ADD answers the result and announces both addresses in the pod."""
    det, ctl = Detector(), Controller([V4, V6])
    out = json.loads(await (await make(tmp_path, ctl, det)).add(Call()))
    assert [i["address"] for i in out["ips"]] == ["10.6.0.10/24", "fd00::10/64"]
    assert det.verified[0][:2] == ("/run/netns/pod", "eth0")
    assert det.announced == [[ipaddress.ip_address("10.6.0.10"), ipaddress.ip_address("fd00::10")]]
    assert ctl.releases == []


async def test_a_failed_announcement_does_not_fail_the_add(tmp_path: Path) -> None:
    """The announcement is best effort: its failure leaves ADD successful and the IPs allocated."""
    det, ctl = Detector(announce_fails=True), Controller([V4])
    out = json.loads(await (await make(tmp_path, ctl, det)).add(Call()))
    assert out["ips"][0]["address"] == "10.6.0.10/24"
    assert ctl.releases == []


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            IPConflict(
                "IP conflict: 10.6.0.10 of pod interface eth0 is used by 02:00:00:00:00:99",
                address="10.6.0.10",
            ),
            103,
        ),
        (GatewayUnreachable("gateway 10.6.0.1 of pod interface eth0 did not answer ARP"), 104),
        (CoordinatorError("interface eth0 not found in /run/netns/pod"), 120),
    ],
)
async def test_failed_probe_releases_for_a_retry_and_fails_with_its_code(
    tmp_path: Path, error: CoordinatorError, code: int
) -> None:
    """A conflict (103), a silent gateway (104) or a broken probe (120) fails ADD with that code and the
    probe's message, after a Release marked detection_failed; nothing is announced or journaled."""
    det, ctl = Detector(fail=error), Controller([V4])
    h = await make(tmp_path, ctl, det)
    with pytest.raises(CniError) as caught:
        await h.add(Call())
    assert caught.value.cni_code == code
    assert caught.value.message.startswith(error.message)
    assert "released 10.6.0.10/24" in caught.value.message
    assert [(r.ifname, r.detection_failed, r.pod.container_id) for r in ctl.releases] == [
        ("eth0", True, "ctr-1")
    ]
    # only a conflict names the address, so the controller sets it aside for the retry
    expected = ["10.6.0.10"] if isinstance(error, IPConflict) else []
    assert [list(r.conflicting_ips) for r in ctl.releases] == [expected]
    assert det.announced == []


async def test_a_statefulset_member_keeps_its_addresses_and_is_told_so(tmp_path: Path) -> None:
    """When the controller keeps the addresses (StatefulSet member), the error says they stay reserved."""
    det, ctl = Detector(fail=IPConflict("IP conflict: 10.6.0.10")), Controller([V4])
    ctl.kept = True
    with pytest.raises(CniError) as caught:
        await (await make(tmp_path, ctl, det)).add(Call())
    assert caught.value.cni_code == codes.IP_CONFLICT
    assert "stay reserved" in caught.value.message


async def test_an_unreachable_controller_after_a_conflict_still_fails_the_add_with_103(
    tmp_path: Path,
) -> None:
    """If the release cannot reach the controller the ADD still fails with 103 and says DEL will release."""
    det, ctl = Detector(fail=IPConflict("IP conflict: 10.6.0.10")), Controller([V4])
    ctl.down = True
    with pytest.raises(CniError) as caught:
        await (await make(tmp_path, ctl, det)).add(Call())
    assert caught.value.cni_code == codes.IP_CONFLICT
    assert "DEL will release" in caught.value.message
