"""IPAM verb handlers against an in-test fake controller: the paths a real controller rarely takes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from spiderpool.controller.v1 import ipam_pb2
from spiderpool_agent.cni_call import Verb
from spiderpool_agent.ipam_handlers import IpamHandlers, release_via
from spiderpool_agent.release_journal import ReleaseJournal
from spiderpool_cni import codes
from spiderpool_common.errors import CniError, NotFound, Unavailable


@dataclass
class Call:
    command: str = ""
    container_id: str = "ctr-1"
    netns: str = "/run/netns/pod"
    ifname: str = "eth0"
    args: str = ""
    config: bytes = json.dumps(
        {"cniVersion": "1.1.0", "name": "net-a", "ipam": {"type": "spiderpool", "default_ipv4_ippool": ["p"]}}
    ).encode()
    present: list[str] = field(default_factory=lambda: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])


class FakeController:
    """Answers Allocate with ``ips``; Release fails while ``release_down``; GC reports ``gc_errors``."""

    def __init__(self, ips: list[ipam_pb2.IPConfig]) -> None:
        self.ips = ips
        self.release_down = False
        self.released: list[tuple[str, str]] = []
        self.gc_errors: list[str] = []

    async def allocate(self, request: ipam_pb2.AllocateRequest) -> ipam_pb2.AllocateResponse:
        return ipam_pb2.AllocateResponse(ips=self.ips)

    async def release(self, request: ipam_pb2.ReleaseRequest) -> ipam_pb2.ReleaseResponse:
        if self.release_down:
            raise Unavailable("controller down")
        self.released.append((request.pod.container_id, request.ifname))
        return ipam_pb2.ReleaseResponse()

    async def get_endpoint(self, request: ipam_pb2.GetEndpointRequest) -> ipam_pb2.GetEndpointResponse:
        raise NotFound("no endpoint")

    async def release_unlisted(
        self, request: ipam_pb2.ReleaseUnlistedRequest
    ) -> ipam_pb2.ReleaseUnlistedResponse:
        return ipam_pb2.ReleaseUnlistedResponse(errors=self.gc_errors)

    async def check_capacity(self, request: ipam_pb2.CheckCapacityRequest) -> ipam_pb2.CheckCapacityResponse:
        return ipam_pb2.CheckCapacityResponse(ready=False, reason="pool p has no free IP")


async def handlers(tmp_path: Path, ctl: FakeController) -> tuple[IpamHandlers, ReleaseJournal]:
    journal = ReleaseJournal(tmp_path, release_via(ctl))
    await journal.load()
    return IpamHandlers(ctl, journal, "node-1", netns_exists=lambda _p: True), journal


async def test_add_without_an_ip_for_this_nic_fails_and_rolls_back(tmp_path: Path) -> None:
    """When the controller allocates only other NICs, ADD fails with 101 and releases what it got."""
    ctl = FakeController([ipam_pb2.IPConfig(nic="net1", version=4, address="10.0.0.2/24")])
    h, journal = await handlers(tmp_path, ctl)
    with pytest.raises(CniError) as info:
        await h.add(Call())
    assert info.value.cni_code == codes.NO_POOL_MATCHED
    assert "eth0" in info.value.message
    assert ctl.released == [("ctr-1", "eth0")]
    assert journal.pending() == []


async def test_rollback_that_cannot_reach_the_controller_is_journaled(tmp_path: Path) -> None:
    """A failed ADD whose rollback finds the controller gone leaves a durable release behind."""
    ctl = FakeController([])
    ctl.release_down = True
    h, journal = await handlers(tmp_path, ctl)
    with pytest.raises(CniError):
        await h.add(Call())
    assert [(i.container_id, i.ifname, i.network) for i in journal.pending()] == [("ctr-1", "eth0", "net-a")]


async def test_gc_reports_every_controller_error(tmp_path: Path) -> None:
    """GC surfaces all errors the controller collected, in one answer."""
    ctl = FakeController([])
    ctl.gc_errors = ["10.0.0.2: conflict", "10.0.0.3: conflict"]
    h, _ = await handlers(tmp_path, ctl)
    call = Call(
        config=json.dumps(
            {
                "cniVersion": "1.1.0",
                "name": "net-a",
                "ipam": {"type": "spiderpool"},
                "cni.dev/valid-attachments": [],
            }
        ).encode(),
        present=[],
    )
    with pytest.raises(CniError) as info:
        await h.gc(call)
    assert info.value.cni_code == codes.TRY_AGAIN_LATER
    assert "10.0.0.2: conflict" in info.value.details
    assert "10.0.0.3: conflict" in info.value.details


async def test_status_not_ready_and_check_without_endpoint(tmp_path: Path) -> None:
    """STATUS passes the controller's reason with code 50; CHECK without a reservation is 106."""
    h, _ = await handlers(tmp_path, FakeController([]))
    with pytest.raises(CniError) as info:
        await h.status(Call(present=[]))
    assert (info.value.cni_code, "no free IP" in info.value.message) == (codes.NOT_AVAILABLE, True)
    with pytest.raises(CniError) as info:
        await h.check(Call(command=Verb.CHECK.value))
    assert info.value.cni_code == codes.ALLOCATION_NOT_FOUND
