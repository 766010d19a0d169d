"""The agent's coordinator verbs against a fake controller and a fake coordinator library:
where the configuration comes from, how it merges, caching, how errors leave, and how the
per-attachment host records flow between ADD, DEL and GC."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from spiderpool_agent.coordinator_errors import to_cni_error
from spiderpool_agent.coordinator_handlers import CoordinatorHandlers
from spiderpool_agent.coordinator_source import CoordinatorSource, base_config
from spiderpool_cni import codes
from spiderpool_common.errors import CniError, Unavailable
from spiderpool_coordinator.config import CoordinatorConfig, PolicyRoute
from spiderpool_coordinator.errors import CheckFailed, CoordinatorError, InvalidCoordinatorConfig, IPConflict
from spiderpool_coordinator.host_records import HostRecords, HostSide

PREV = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "sandbox": "/run/netns/pod"}],
    "ips": [{"interface": 0, "address": "10.6.0.10/24", "gateway": "10.6.0.1"}],
    "dns": {},
}
SCC = {
    "apiVersion": "spiderpool.spidernet.io/v2beta1",
    "kind": "SpiderCoordinator",
    "metadata": {"name": "default"},
    "spec": {
        "mode": "underlay",
        "podCIDRType": "none",
        "hijackCIDR": ["169.254.0.0/16"],
        "hostRuleTable": 600,
        "vethMTU": 1400,
        "podDefaultRouteNIC": "net1",
        "policyRoutes": [{"dst": "172.16.0.0/24", "gw": "10.6.0.254"}],
    },
    "status": {"phase": "Synced", "serviceCIDR": ["10.96.0.0/12"], "overlayPodCIDR": ["10.244.0.0/16"]},
}


class Reader:
    """The controller's ResourceService Get: ``obj`` (None: not found), or down."""

    def __init__(self, obj: dict[str, Any] | None) -> None:
        self.obj = obj
        self.down = False
        self.reads = 0

    async def get_object(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        assert (kind, name) == ("SpiderCoordinator", "default")
        if self.down:
            raise Unavailable("controller down")
        self.reads += 1
        return self.obj


SIDE = HostSide(host_dev="vethctr-1", owns_dev=True, ips=("10.6.0.10",), table=500)


@dataclass
class FakeApi:
    """Records the configuration each verb ran with; ADD reports ``side`` to its sink; raises
    ``fail`` when set (``remove`` fails for the host devices in ``fail_remove``)."""

    calls: list[tuple[str, str, CoordinatorConfig, Any]] = field(default_factory=list)
    fail: CoordinatorError | None = None
    side: HostSide = SIDE
    known: list[HostSide | None] = field(default_factory=list)
    removed: list[HostSide] = field(default_factory=list)
    fail_remove: set[str] = field(default_factory=set)

    async def add(
        self,
        netns: str,
        ifname: str,
        container_id: str,
        prev_result: dict[str, Any],
        cfg: CoordinatorConfig,
        *,
        on_host_side: Callable[[HostSide], None] | None = None,
    ) -> dict[str, Any]:
        self.calls.append(("add", ifname, cfg, prev_result))
        if on_host_side is not None:
            on_host_side(self.side)
        if self.fail:
            raise self.fail
        return prev_result

    async def del_(
        self,
        netns: str,
        ifname: str,
        container_id: str,
        prev_result: dict[str, Any] | None,
        cfg: CoordinatorConfig,
        *,
        known: HostSide | None = None,
    ) -> None:
        self.calls.append(("del", ifname, cfg, prev_result))
        self.known.append(known)

    async def remove(self, side: HostSide) -> None:
        if side.host_dev in self.fail_remove:
            raise CoordinatorError(f"deleting link {side.host_dev}: busy")
        self.removed.append(side)

    async def check(
        self, netns: str, ifname: str, container_id: str, prev_result: dict[str, Any], cfg: CoordinatorConfig
    ) -> None:
        self.calls.append(("check", ifname, cfg, prev_result))
        if self.fail:
            raise self.fail


@dataclass
class Call:
    config: bytes
    command: str = ""
    container_id: str = "ctr-1"
    netns: str = "/run/netns/pod"
    ifname: str = "eth0"
    args: str = ""
    present: list[str] = field(default_factory=lambda: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])


def conf(version: str = "1.0.0", prev: dict[str, Any] | None = PREV, **fields: Any) -> bytes:
    obj: dict[str, Any] = {"cniVersion": version, "name": "macvlan-a", "type": "coordinator", **fields}
    if prev is not None:
        obj["prevResult"] = prev
    return json.dumps(obj).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def handlers(
    reader: Reader, api: FakeApi, clock: Clock | None = None, records: HostRecords | None = None
) -> CoordinatorHandlers:
    source = CoordinatorSource(reader, ttl=2.0, clock=clock or Clock())
    return CoordinatorHandlers(source, api, netns_exists=lambda _p: True, records=records)


# -- the base configuration ------------------------------------------------------------------------


def test_missing_spider_coordinator_means_upstream_defaults() -> None:
    """Without a SpiderCoordinator the base is mode auto, tunePodRoutes, table 500, MTU 1500, rp_filter 0."""
    cfg = base_config(None)
    assert cfg == CoordinatorConfig()
    assert (cfg.mode, cfg.tune_pod_routes, cfg.host_rule_table, cfg.veth_mtu, cfg.pod_rp_filter) == (
        "auto",
        True,
        500,
        1500,
        0,
    )


def test_spider_coordinator_spec_and_status_become_the_base() -> None:
    """The object's spec fields and its status CIDRs fill the base configuration."""
    cfg = base_config(SCC)
    assert cfg.mode == "underlay"
    assert cfg.hijack_cidr == ("169.254.0.0/16",)
    assert (cfg.host_rule_table, cfg.veth_mtu, cfg.pod_default_route_nic) == (600, 1400, "net1")
    assert cfg.policy_routes == (PolicyRoute("172.16.0.0/24", "10.6.0.254"),)
    assert cfg.service_cidr == ("10.96.0.0/12",)
    assert cfg.overlay_pod_cidr == ("10.244.0.0/16",)


def test_not_ready_spider_coordinator_fails_add_with_try_again_later() -> None:
    """A NotReady object fails ADD with code 11 naming its reason; DEL still uses its spec."""
    obj = {**SCC, "status": {"phase": "NotReady", "reason": "ClusterNotReady"}}
    with pytest.raises(CniError) as caught:
        base_config(obj)
    assert caught.value.cni_code == codes.TRY_AGAIN_LATER
    assert "ClusterNotReady" in caught.value.message
    assert base_config(obj, require_ready=False).host_rule_table == 600


async def test_the_object_is_read_once_per_ttl() -> None:
    """Calls within the TTL reuse one read; after it the object is read again (and changes show)."""
    reader, clock = Reader(SCC), Clock()
    source = CoordinatorSource(reader, ttl=2.0, clock=clock)
    assert (await source.for_add()).host_rule_table == 600
    reader.obj = None
    clock.now += 1.9
    assert (await source.for_add()).host_rule_table == 600
    assert reader.reads == 1
    clock.now += 0.2
    assert await source.for_add() == CoordinatorConfig()
    assert reader.reads == 2


async def test_del_falls_back_to_the_last_read_then_to_defaults_when_the_controller_is_down() -> None:
    """With the controller down, DEL's base is the last object read, or the defaults if none was."""
    reader, clock = Reader(SCC), Clock()
    source = CoordinatorSource(reader, ttl=2.0, clock=clock)
    await source.for_add()
    reader.down = True
    clock.now += 10
    assert (await source.for_del()).host_rule_table == 600
    with pytest.raises(Unavailable):
        await source.for_add()
    cold = CoordinatorSource(reader, ttl=2.0, clock=clock)
    assert await cold.for_del() == CoordinatorConfig()


# -- the verbs -------------------------------------------------------------------------------------


async def test_add_merges_cni_config_over_the_spider_coordinator_and_answers_prev_result() -> None:
    """Fields set in the CNI config beat the object's, unset or empty ones keep it; ADD answers
    prevResult rendered in the config's version (0.4.0 adds each IP's version)."""
    api = FakeApi()
    h = handlers(Reader(SCC), api)
    legacy_prev = {**PREV, "cniVersion": "0.4.0"}
    out = await h.add(
        Call(conf("0.4.0", legacy_prev, hostRuleTable=700, hijackCIDR=[], podDefaultCniNic="", vethMTU=None))
    )
    _, ifname, cfg, prev = api.calls[0]
    assert (ifname, cfg.host_rule_table, cfg.hijack_cidr, cfg.veth_mtu) == (
        "eth0",
        700,
        ("169.254.0.0/16",),
        1400,
    )
    assert cfg.pod_default_cni_nic == "eth0"
    assert prev == legacy_prev
    assert json.loads(out)["ips"][0] == {"version": "4", **PREV["ips"][0]}  # type: ignore[index]


async def test_pod_annotation_in_args_picks_the_default_route_nic_over_every_config() -> None:
    """The pod's ipam.spidernet.io/default-route-nic annotation (args.cni.annotations, the embedded
    mode's source) beats both the SpiderCoordinator's and the CNI config's podDefaultRouteNic."""
    api = FakeApi()
    h = handlers(Reader(SCC), api)
    await h.add(Call(conf(podDefaultRouteNic="net2")))
    annotated = {"cni": {"annotations": {"ipam.spidernet.io/default-route-nic": "net3"}}}
    await h.add(Call(conf(podDefaultRouteNic="net2", args=annotated)))
    assert [cfg.pod_default_route_nic for _, _, cfg, _ in api.calls] == ["net2", "net3"]


async def test_add_without_prev_result_is_invalid_config() -> None:
    """The coordinator must be chained after a main plugin: no prevResult is code 7, nothing runs."""
    api = FakeApi()
    with pytest.raises(CniError) as caught:
        await handlers(Reader(None), api).add(Call(conf(prev=None)))
    assert caught.value.cni_code == codes.INVALID_CONFIG
    assert "prevResult" in caught.value.message
    assert api.calls == []


async def test_invalid_coordinator_field_is_code_7_naming_it() -> None:
    """A bad field in the CNI config (podRPFilter 5) fails ADD with code 7 naming the field."""
    with pytest.raises(CniError) as caught:
        await handlers(Reader(None), FakeApi()).add(Call(conf(podRPFilter=5)))
    assert caught.value.cni_code == codes.INVALID_CONFIG
    assert "podRPFilter" in caught.value.message


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (IPConflict("IP conflict: 10.6.0.10 used by 02:00:00:00:00:99"), codes.IP_CONFLICT),
        (CoordinatorError("interface eth0 not found"), codes.COORDINATOR_FAILED),
        (InvalidCoordinatorConfig("bad"), codes.INVALID_CONFIG),
    ],
)
async def test_library_errors_leave_with_their_own_code_and_message(
    error: CoordinatorError, code: int
) -> None:
    """A library error reaches the shim as a CniError with the library's code and message."""
    with pytest.raises(CniError) as caught:
        await handlers(Reader(None), FakeApi(fail=error)).add(Call(conf()))
    assert caught.value.cni_code == code
    assert caught.value.message == error.message


async def test_check_failure_names_what_is_missing() -> None:
    """CHECK relays the library's list of missing routes with code 120; it needs prevResult too."""
    missing = CheckFailed(
        "coordinator CHECK for eth0: missing host route 10.6.0.10/32 dev vethctr-1 table 500"
    )
    h = handlers(Reader(None), FakeApi(fail=missing))
    with pytest.raises(CniError) as caught:
        await h.check(Call(conf(), command="CHECK"))
    assert caught.value.cni_code == codes.COORDINATOR_FAILED
    assert "host route 10.6.0.10/32" in caught.value.message
    with pytest.raises(CniError) as no_prev:
        await h.check(Call(conf(prev=None)))
    assert no_prev.value.cni_code == codes.INVALID_CONFIG


async def test_del_succeeds_with_the_controller_down_and_without_prev_result_or_netns() -> None:
    """DEL with the controller unreachable, no prevResult and no CNI_NETNS runs with the defaults."""
    reader, api = Reader(SCC), FakeApi()
    reader.down = True
    out = await handlers(reader, api).delete(
        Call(conf(prev=None), netns="", present=["CNI_CONTAINERID", "CNI_IFNAME"])
    )
    assert out == b""
    verb, _, cfg, prev = api.calls[0]
    assert (verb, cfg, prev) == ("del", CoordinatorConfig(), None)


async def test_status_is_50_when_the_spider_coordinator_cannot_be_read_or_is_not_ready() -> None:
    """STATUS succeeds with a readable object, answers 50 when the controller is down or it is NotReady."""
    reader = Reader(SCC)
    call = Call(conf("1.1.0", prev=None), container_id="", netns="", ifname="", present=[])
    assert await handlers(reader, FakeApi()).status(call) == b""
    reader.down = True
    with pytest.raises(CniError) as down:
        await handlers(reader, FakeApi()).status(call)
    assert down.value.cni_code == codes.NOT_AVAILABLE
    not_ready = Reader({**SCC, "status": {"phase": "NotReady", "reason": "ClusterNotReady"}})
    with pytest.raises(CniError) as caught:
        await handlers(not_ready, FakeApi()).status(call)
    assert caught.value.cni_code == codes.NOT_AVAILABLE
    assert "ClusterNotReady" in caught.value.message


async def test_gc_without_a_record_store_succeeds_and_still_validates_its_input() -> None:
    """GC with no record store has nothing to collect; a GC config without the valid-attachments key
    is code 7."""
    h = handlers(Reader(None), FakeApi())
    empty = Call(b"", container_id="", netns="", ifname="", present=[])
    ok = json.dumps(
        {"cniVersion": "1.1.0", "name": "n", "type": "coordinator", "cni.dev/valid-attachments": []}
    )
    assert await h.gc(Call(ok.encode(), container_id="", netns="", ifname="", present=[])) == b""
    with pytest.raises(CniError) as caught:
        await h.gc(Call(conf("1.1.0", prev=None), container_id="", netns="", ifname="", present=[]))
    assert caught.value.cni_code == codes.INVALID_CONFIG
    with pytest.raises(CniError):
        await h.gc(empty)


def test_translation_keeps_code_message_and_details() -> None:
    """to_cni_error carries the library's code, message (plus a note) and details."""
    err = to_cni_error(IPConflict("IP conflict: x", details="d"), note="released y")
    assert (err.cni_code, err.message, err.details) == (codes.IP_CONFLICT, "IP conflict: x; released y", "d")


# -- host records: ADD writes, DEL uses and forgets, GC collects its own network's -----------------


def gc_call(network: str, valid: list[tuple[str, str]], *, legacy: bool = False) -> Call:
    key = "cni.dev/attachments" if legacy else "cni.dev/valid-attachments"
    listed = [{"containerID": c, "ifname": i} for c, i in valid]
    body = {"cniVersion": "1.1.0", "name": network, "type": "coordinator", key: listed}
    return Call(json.dumps(body).encode(), container_id="", netns="", ifname="", present=[])


def conf_on(network: str, prev: dict[str, Any] | None = PREV) -> bytes:
    obj = json.loads(conf(prev=prev))
    obj["name"] = network
    return json.dumps(obj).encode()


async def test_add_records_what_it_leaves_on_the_node_and_del_uses_then_forgets_it(tmp_path: Path) -> None:
    """ADD writes the library's host side under (network, container ID, interface); DEL hands that
    record to the library and removes it; a second DEL has no record to hand."""
    records = HostRecords(tmp_path)
    api = FakeApi()
    h = handlers(Reader(None), api, records=records)
    await h.add(Call(conf_on("net-a")))
    assert records.get("net-a", "ctr-1", "eth0") == SIDE
    assert records.get("net-b", "ctr-1", "eth0") is None
    await h.delete(Call(conf_on("net-a", prev=None)))
    await h.delete(Call(conf_on("net-a", prev=None)))
    assert api.known == [SIDE, None]
    assert records.get("net-a", "ctr-1", "eth0") is None


async def test_add_that_cannot_record_fails_with_the_coordinators_code(tmp_path: Path) -> None:
    """When the record cannot be written (its directory is a file), ADD fails with code 120 before the
    library makes any host route or rule, since GC could not find the attachment otherwise."""
    (tmp_path / "net-a").write_text("in the way")
    h = handlers(Reader(None), FakeApi(), records=HostRecords(tmp_path))
    with pytest.raises(CniError) as caught:
        await h.add(Call(conf_on("net-a")))
    assert caught.value.cni_code == codes.COORDINATOR_FAILED
    assert "cannot record" in caught.value.message


@pytest.mark.parametrize("legacy", [False, True], ids=["valid-attachments", "legacy-attachments"])
async def test_gc_removes_only_this_networks_unlisted_attachments(tmp_path: Path, legacy: bool) -> None:
    """GC of net-a removes (through the library) and forgets the record of the attachment its list
    omits, keeps the listed one, and never touches net-b's record; the legacy key works the same."""
    records = HostRecords(tmp_path)
    keep = HostSide("vethkeep", True, ("10.6.0.11",), 500)
    stale = HostSide("vethstale", True, ("10.6.0.12",), 500)
    other = HostSide("vethother", True, ("10.6.0.13",), 500)
    records.write("net-a", "keep", "eth0", keep)
    records.write("net-a", "stale", "eth0", stale)
    records.write("net-b", "other", "eth0", other)
    api = FakeApi()
    out = await handlers(Reader(None), api, records=records).gc(
        gc_call("net-a", [("keep", "eth0")], legacy=legacy)
    )
    assert out == b""
    assert api.removed == [stale]
    assert records.get("net-a", "stale", "eth0") is None
    assert records.get("net-a", "keep", "eth0") == keep
    assert records.get("net-b", "other", "eth0") == other


async def test_gc_reports_every_failure_as_code_11_and_keeps_those_records(tmp_path: Path) -> None:
    """A removal that fails does not stop GC: the others are removed, the failure is reported (code 11,
    naming the attachment) and its record stays for the next GC, which then succeeds."""
    records = HostRecords(tmp_path)
    records.write("net-a", "busy", "eth0", HostSide("vethbusy", True, ("10.6.0.21",), 500))
    records.write("net-a", "gone", "eth0", HostSide("vethgone", True, ("10.6.0.22",), 500))
    api = FakeApi(fail_remove={"vethbusy"})
    h = handlers(Reader(None), api, records=records)
    with pytest.raises(CniError) as caught:
        await h.gc(gc_call("net-a", []))
    assert caught.value.cni_code == codes.TRY_AGAIN_LATER
    assert "busy/eth0" in caught.value.details
    assert [s.host_dev for s in api.removed] == ["vethgone"]
    assert records.get("net-a", "busy", "eth0") is not None
    api.fail_remove.clear()
    assert await h.gc(gc_call("net-a", [])) == b""
    assert records.get("net-a", "busy", "eth0") is None
