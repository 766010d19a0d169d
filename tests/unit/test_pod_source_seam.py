"""Both plugins' verbs read pod facts through one ``PodContextSource``: annotations, readiness,
and the annotation checks the agent makes itself."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from spiderpool.controller.v1 import ipam_pb2
from spiderpool_agent.cni_call import Invocation, OwnerRef, Verb, parse_call
from spiderpool_agent.coordinator_handlers import CoordinatorHandlers
from spiderpool_agent.coordinator_source import CoordinatorSource
from spiderpool_agent.ipam_handlers import IpamHandlers, release_via
from spiderpool_agent.pod_annotations import DEFAULT_ROUTE_NIC, IPPOOL_IP_NUMBER, check_pod_annotations
from spiderpool_agent.pod_context import CniArgsContext, PodContext
from spiderpool_agent.release_journal import ReleaseJournal
from spiderpool_cni import codes
from spiderpool_common.errors import CniError, InvalidAnnotation
from spiderpool_coordinator.config import CoordinatorConfig

PREV = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "sandbox": "/run/netns/pod"}],
    "ips": [{"interface": 0, "address": "10.6.0.10/24", "gateway": "10.6.0.1"}],
}


@dataclass
class Call:
    config: bytes
    command: str = ""
    container_id: str = "ctr-1"
    netns: str = "/run/netns/pod"
    ifname: str = "eth0"
    args: str = "K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web-0;K8S_POD_UID=uid-1;IgnoreUnknown=1"
    present: list[str] = field(default_factory=lambda: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])


def coordinator_conf(version: str = "1.0.0", *, prev: bool = True, **extra: Any) -> bytes:
    obj: dict[str, Any] = {"cniVersion": version, "name": "net-a", "type": "coordinator", **extra}
    if prev:
        obj["prevResult"] = PREV
    return json.dumps(obj).encode()


class ClusterLikeSource:
    """A source that answers from "the API": annotations it holds, or an error, or not ready."""

    def __init__(
        self, annotations: Mapping[str, str], *, unready: str = "", error: CniError | None = None
    ) -> None:
        self.annotations = dict(annotations)
        self.unready = unready
        self.error = error
        self.asked: list[str] = []

    async def for_add(self, inv: Invocation) -> PodContext:
        raise AssertionError("not used by the coordinator")

    async def owner_for_release(self, inv: Invocation) -> OwnerRef | None:
        self.asked.append("owner")
        return None

    async def pod_annotations(self, inv: Invocation) -> Mapping[str, str]:
        self.asked.append(f"annotations {inv.args.pod_namespace}/{inv.args.pod_name}")
        if self.error is not None:
            raise self.error
        return self.annotations

    def unready_reason(self) -> str:
        return self.unready


class NoCoordinatorObject:
    async def get_object(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        return None


@dataclass
class FakeLibrary:
    calls: list[tuple[str, CoordinatorConfig]] = field(default_factory=list)

    async def add(self, netns: str, ifname: str, container_id: str, prev: Any, cfg: Any, **_: Any) -> Any:
        self.calls.append(("add", cfg))
        return prev

    async def del_(self, netns: str, ifname: str, container_id: str, prev: Any, cfg: Any, **_: Any) -> None:
        self.calls.append(("del", cfg))

    async def check(self, netns: str, ifname: str, container_id: str, prev: Any, cfg: Any, **_: Any) -> None:
        self.calls.append(("check", cfg))


def coordinator(source: Any, library: FakeLibrary) -> CoordinatorHandlers:
    return CoordinatorHandlers(
        CoordinatorSource(NoCoordinatorObject()),
        cast(Any, library),
        netns_exists=lambda _p: True,
        context=source,
    )


async def test_coordinator_add_and_check_take_the_default_route_nic_from_the_source() -> None:
    """The source's pod annotation picks the NIC, not what the runtime put in args.cni."""
    library = FakeLibrary()
    source = ClusterLikeSource({DEFAULT_ROUTE_NIC: "net5"})
    handlers = coordinator(source, library)
    in_args = {"cni": {"annotations": {DEFAULT_ROUTE_NIC: "net3"}}}
    await handlers.add(Call(coordinator_conf(args=in_args)))
    await handlers.check(Call(coordinator_conf(args=in_args), command="CHECK"))
    assert [(verb, cfg.pod_default_route_nic) for verb, cfg in library.calls] == [
        ("add", "net5"),
        ("check", "net5"),
    ]
    assert source.asked == ["annotations apps/web-0", "annotations apps/web-0"]


async def test_the_embedded_source_still_reads_args_cni() -> None:
    """Without a cluster, the coordinator's annotation is the one in args.cni, as before."""
    library = FakeLibrary()
    in_args = {"cni": {"annotations": {DEFAULT_ROUTE_NIC: "net3"}}}
    await coordinator(CniArgsContext(), library).add(Call(coordinator_conf(args=in_args)))
    assert library.calls[0][1].pod_default_route_nic == "net3"


async def test_coordinator_add_fails_with_the_sources_error_and_runs_nothing() -> None:
    """A pod the source cannot find fails ADD with its code; the library is not called."""
    library = FakeLibrary()
    gone = ClusterLikeSource({}, error=CniError(codes.UNKNOWN_CONTAINER, "pod apps/web-0 does not exist"))
    with pytest.raises(CniError) as err:
        await coordinator(gone, library).add(Call(coordinator_conf()))
    assert (err.value.cni_code, err.value.message) == (
        codes.UNKNOWN_CONTAINER,
        "pod apps/web-0 does not exist",
    )
    assert library.calls == []


async def test_coordinator_del_does_not_ask_the_source() -> None:
    """DEL works with a pod that is gone: it never reads annotations."""
    library = FakeLibrary()
    gone = ClusterLikeSource({}, error=CniError(codes.UNKNOWN_CONTAINER, "gone"))
    assert await coordinator(gone, library).delete(Call(coordinator_conf(prev=False))) == b""
    assert [verb for verb, _ in library.calls] == ["del"]
    assert gone.asked == []


async def test_coordinator_status_is_50_while_the_source_is_not_ready() -> None:
    """STATUS names the source's reason with code 50; a ready source passes."""
    status = Call(coordinator_conf("1.1.0", prev=False), container_id="", netns="", ifname="", present=[])
    unready = ClusterLikeSource({}, unready="the agent's Kubernetes caches of pods have not synced yet")
    with pytest.raises(CniError) as err:
        await coordinator(unready, FakeLibrary()).status(status)
    assert err.value.cni_code == codes.NOT_AVAILABLE
    assert "caches of pods have not synced" in err.value.message
    assert await coordinator(ClusterLikeSource({}), FakeLibrary()).status(status) == b""


class ReadyController:
    async def check_capacity(self, request: ipam_pb2.CheckCapacityRequest) -> ipam_pb2.CheckCapacityResponse:
        return ipam_pb2.CheckCapacityResponse(ready=True)

    async def release(self, request: ipam_pb2.ReleaseRequest) -> ipam_pb2.ReleaseResponse:
        return ipam_pb2.ReleaseResponse()


async def test_ipam_status_is_50_while_the_source_is_not_ready(tmp_path: Path) -> None:
    """The IPAM STATUS says not ready, with the source's reason, before asking the controller."""
    controller = cast(Any, ReadyController())
    journal = ReleaseJournal(tmp_path, release_via(controller))
    await journal.load()
    config = json.dumps({"cniVersion": "1.1.0", "name": "net-a", "ipam": {"type": "spiderpool"}}).encode()
    status = Call(config, container_id="", netns="", ifname="", present=[])
    unready = ClusterLikeSource({}, unready="the agent has not connected to the Kubernetes API yet")
    with pytest.raises(CniError) as err:
        await IpamHandlers(controller, journal, "n1", context=unready).status(status)
    assert err.value.cni_code == codes.NOT_AVAILABLE
    assert "not connected to the Kubernetes API" in err.value.message
    assert await IpamHandlers(controller, journal, "n1", context=ClusterLikeSource({})).status(status) == b""


@pytest.mark.parametrize("value", ["0", "3", "+0", "+2", " 4 "])
def test_well_formed_ip_numbers_pass(value: str) -> None:
    """N and +N with N a non-negative integer are upstream's two forms."""
    check_pod_annotations({IPPOOL_IP_NUMBER: value})


@pytest.mark.parametrize("value", ["", "-1", "++1", "+-1", "two", "1.5", "+"])
def test_a_malformed_ip_number_is_code_105_naming_it(value: str) -> None:
    """Anything else names the annotation and both accepted forms."""
    with pytest.raises(InvalidAnnotation) as err:
        check_pod_annotations({IPPOOL_IP_NUMBER: value})
    assert err.value.cni_code == codes.INVALID_ANNOTATION
    assert str(err.value).startswith(f"annotation {IPPOOL_IP_NUMBER}: {value!r} is neither N")


@pytest.mark.parametrize("value", ["", "net 1", "a/b", "eth:0", "sixteen-chars-xx", ".."])
def test_a_default_route_nic_that_is_no_interface_name_is_code_105(value: str) -> None:
    """The NIC must be a name the kernel accepts."""
    with pytest.raises(InvalidAnnotation, match=f"^annotation {DEFAULT_ROUTE_NIC}: "):
        check_pod_annotations({DEFAULT_ROUTE_NIC: value})
    check_pod_annotations({DEFAULT_ROUTE_NIC: "net1"})


async def test_the_embedded_source_checks_the_annotations_too() -> None:
    """args.cni annotations get the same checks before an ADD reaches the controller."""
    config = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "net-a",
            "ipam": {"type": "spiderpool"},
            "args": {"cni": {"annotations": {IPPOOL_IP_NUMBER: "-3"}}},
        }
    ).encode()
    inv = parse_call(Call(config), Verb.ADD)
    with pytest.raises(InvalidAnnotation, match=IPPOOL_IP_NUMBER):
        await CniArgsContext().for_add(inv)
