"""The agent's CNI service over real gRPC, against a real controller process on SQLite.

Every verb and every supported CNI version go through the generated client stub on the
agent's unix socket; bad input is answered with its CNI code and changes no pool (checked
by reading the pool from the controller).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from spiderpool.agent.v1 import cni_pb2, cni_pb2_grpc
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc
from spiderpool_agent.cni_call import SUPPORTED_VERSIONS
from spiderpool_agent.server import Agent
from spiderpool_agent.settings import AgentSettings
from spiderpool_cni import codes
from spiderpool_common.errors import SpiderpoolError
from spiderpool_common.grpc_errors import from_rpc_error

from tests.component.agent_harness import (
    ServiceProcess,
    apply,
    cni_call,
    controller_process,
    net_conf,
    pool_manifest,
    pool_records,
    wait_until,
)

NETNS = "/proc/self/ns/net"  # a netns path that exists
K8S_ARGS = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=ctr-1"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Env:
    workdir: Path
    controller: ServiceProcess
    agent: Agent
    stub: cni_pb2_grpc.CniServiceAsyncStub

    async def call(self, verb: str, call: cni_pb2.CniCall) -> bytes:
        requests: dict[str, Any] = {
            "ADD": (self.stub.IpamAdd, cni_pb2.IpamAddRequest),
            "DEL": (self.stub.IpamDel, cni_pb2.IpamDelRequest),
            "CHECK": (self.stub.IpamCheck, cni_pb2.IpamCheckRequest),
            "GC": (self.stub.IpamGc, cni_pb2.IpamGcRequest),
            "STATUS": (self.stub.IpamStatus, cni_pb2.IpamStatusRequest),
            "COORD_ADD": (self.stub.CoordinatorAdd, cni_pb2.CoordinatorAddRequest),
        }
        method, request_cls = requests[verb]
        reply = await method(request_cls(call=call), timeout=20)
        result: bytes = reply.result
        return result

    async def fails(self, verb: str, call: cni_pb2.CniCall) -> SpiderpoolError:
        with pytest.raises(grpc.RpcError) as info:
            await self.call(verb, call)
        return from_rpc_error(info.value)

    async def add(self, container_id: str = "ctr-1", version: str = "1.0.0", **kw: Any) -> dict[str, Any]:
        conf = kw.pop("conf", None) or net_conf(version)
        call = cni_call("ADD", conf, container_id=container_id, netns=NETNS, **kw)
        result: dict[str, Any] = json.loads(await self.call("ADD", call))
        return result

    async def records(self, pool: str = "v4-pool") -> dict[str, dict[str, str]]:
        return await pool_records(self.controller.target, pool)

    async def ipam(self) -> ipam_pb2_grpc.IpamServiceAsyncStub:
        channel = grpc.aio.insecure_channel(self.controller.target)
        return ipam_pb2_grpc.IpamServiceStub(channel)  # type: ignore[return-value]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    workdir = Path(tempfile.mkdtemp(prefix="spa-", dir="/tmp"))
    controller = controller_process(workdir)
    await controller.start()
    await apply(
        controller.target,
        pool_manifest(
            "v4-pool", "10.6.0.0/16", ["10.6.168.101-10.6.168.110"],
            gateway="10.6.0.1", routes=[{"dst": "10.7.0.0/16", "gw": "10.6.0.254"}],
        ),
    )  # fmt: skip
    await apply(
        controller.target, pool_manifest("v6-pool", "fd00::/64", ["fd00::65-fd00::6e"], gateway="fd00::1")
    )
    await apply(controller.target, pool_manifest("tiny", "10.9.0.0/24", ["10.9.0.10"], gateway="10.9.0.1"))
    settings = AgentSettings(
        controller=controller.target,
        socket=str(workdir / "agent.sock"),
        node="node-1",
        state_dir=str(workdir / "state"),
        controller_timeout=5.0,
        replay_initial_backoff=0.05,
        replay_max_backoff=0.2,
    )
    agent = Agent(settings)
    await agent.start()
    channel = grpc.aio.insecure_channel(f"unix:{settings.socket}")
    try:
        yield Env(workdir, controller, agent, cni_pb2_grpc.CniServiceStub(channel))  # type: ignore[arg-type]
    finally:
        await channel.close()
        await agent.stop()
        controller.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# -- ADD / CHECK / DEL, every version ------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
async def test_add_check_del_lifecycle(env: Env, version: str) -> None:
    """ADD answers this NIC's dual-stack IPs in the version's format; CHECK passes; DEL frees, twice."""
    conf = net_conf(version, default_ipv6_ippool=["v6-pool"])
    result = await env.add(version=version, conf=conf, args=K8S_ARGS)
    assert result["cniVersion"] == version
    legacy = version < "1.0.0"
    assert result["ips"] == [
        {**({"version": "4"} if legacy else {}), "address": "10.6.168.101/16", "gateway": "10.6.0.1"},
        {**({"version": "6"} if legacy else {}), "address": "fd00::65/64", "gateway": "fd00::1"},
    ]
    assert {"dst": "0.0.0.0/0", "gw": "10.6.0.1"} in result["routes"]
    assert {"dst": "::/0", "gw": "fd00::1"} in result["routes"]
    assert {"dst": "10.7.0.0/16", "gw": "10.6.0.254"} in result["routes"]
    assert "interfaces" not in result
    record = (await env.records())["10.6.168.101"]
    assert (record["cid"], record["nic"], record["node"], record["net"]) == (
        "ctr-1", "eth0", "node-1", "macvlan-a",
    )  # fmt: skip
    assert record["pod"] == "default/web-0"

    if version >= "0.4.0":
        check = cni_call("CHECK", {**conf, "prevResult": result}, netns=NETNS, args=K8S_ARGS)
        assert await env.call("CHECK", check) == b""

    delete = cni_call("DEL", {**conf, "prevResult": result}, args=K8S_ARGS)
    assert await env.call("DEL", delete) == b""
    assert await env.records() == {}
    assert await env.records("v6-pool") == {}
    assert await env.call("DEL", delete) == b""


async def test_add_is_idempotent_and_multi_nic_keys_by_interface(env: Env) -> None:
    """A repeated ADD for the same attachment returns the same IP; another interface gets another."""
    first = await env.add()
    again = await env.add()
    other = await env.add(ifname="net1")
    assert first["ips"] == again["ips"]
    assert other["ips"][0]["address"] != first["ips"][0]["address"]
    assert len(await env.records()) == 2


async def test_del_of_unknown_attachment_succeeds(env: Env) -> None:
    """DEL for an attachment that never had an IP succeeds and changes nothing."""
    await env.add("keep-me")
    before = await env.records()
    assert await env.call("DEL", cni_call("DEL", net_conf(), container_id="never-added")) == b""
    assert await env.records() == before


# -- bad input: right code, nothing changes -----------------------------------------------


def _without_ipam() -> dict[str, Any]:
    conf = net_conf()
    del conf["ipam"]
    return conf


BAD_INPUT: list[tuple[str, dict[str, Any], int]] = [
    ("empty stdin", {"config": b""}, codes.DECODING_FAILURE),
    ("non-JSON", {"config": b"{oops"}, codes.DECODING_FAILURE),
    ("JSON array", {"config": b"[]"}, codes.DECODING_FAILURE),
    ("missing ipam", {"config": _without_ipam()}, codes.INVALID_CONFIG),
    ("wrong type", {"config": net_conf(default_ipv4_ippool="v4-pool")}, codes.INVALID_CONFIG),
    ("unknown pool", {"config": net_conf(default_ipv4_ippool=["no-such-pool"])}, codes.POOL_NOT_FOUND),
    ("unsupported version", {"config": net_conf("0.2.0")}, codes.INCOMPATIBLE_VERSION),
    ("missing CNI_CONTAINERID", {"omit": ["CNI_CONTAINERID"]}, codes.INVALID_ENVIRONMENT),
    ("missing CNI_IFNAME", {"omit": ["CNI_IFNAME"]}, codes.INVALID_ENVIRONMENT),
    ("missing CNI_NETNS", {"omit": ["CNI_NETNS"]}, codes.INVALID_ENVIRONMENT),
    ("netns does not exist", {"netns": "/run/netns/spa-does-not-exist"}, codes.UNKNOWN_CONTAINER),
    ("unknown CNI_ARGS", {"args": "K8S_POD_NAME=a;COLOR=blue"}, codes.UNSUPPORTED_FIELD),
    ("bad container id", {"container_id": "-bad id"}, codes.INVALID_ENVIRONMENT),
    ("args not an object", {"config": {**net_conf(), "args": ["cni"]}}, codes.INVALID_CONFIG),
    (
        "annotations not strings",
        {"config": {**net_conf(), "args": {"cni": {"annotations": {"ipam.spidernet.io/ippool": 1}}}}},
        codes.INVALID_CONFIG,
    ),
    (
        "malformed ippool annotation",
        {"config": {**net_conf(), "args": {"cni": {"annotations": {"ipam.spidernet.io/ippool": "{oops"}}}}},
        codes.INVALID_ANNOTATION,
    ),
]


@pytest.mark.parametrize(("case", "overrides", "code"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
async def test_bad_add_input_gets_its_code_and_changes_nothing(
    env: Env, case: str, overrides: dict[str, Any], code: int
) -> None:
    """Each malformed ADD is answered with its CNI code and leaves every pool as it was."""
    await env.add("existing")
    before = (await env.records(), await env.records("v6-pool"), await env.records("tiny"))
    kw: dict[str, Any] = {"container_id": "ctr-bad", "netns": NETNS}
    kw.update(overrides)
    config = kw.pop("config", net_conf())
    err = await env.fails("ADD", cni_call("ADD", config, **kw))
    assert err.cni_code == code, f"{case}: {err}"
    assert err.message
    assert (await env.records(), await env.records("v6-pool"), await env.records("tiny")) == before


async def test_exhausted_pool_is_code_100_and_dual_stack_is_all_or_nothing(env: Env) -> None:
    """When the IPv6 side is exhausted, ADD fails with 100 and no IPv4 address stays allocated."""
    await apply(env.controller.target, pool_manifest("tiny6", "fd09::/64", ["fd09::10"]))
    conf = net_conf(default_ipv4_ippool=["v4-pool"], default_ipv6_ippool=["tiny6"])
    await env.add("first", conf=conf)
    before = await env.records()
    err = await env.fails("ADD", cni_call("ADD", conf, container_id="second", netns=NETNS))
    assert err.cni_code == codes.POOL_EXHAUSTED
    assert await env.records() == before


# -- pod metadata from args.cni (the embedded mode's pod annotations and labels) -----------


def _with_pod(conf: dict[str, Any], **cni: Any) -> dict[str, Any]:
    return {**conf, "args": {"cni": {"ips": ["ignored: another plugin's key"], **cni}}}


async def test_pod_annotation_in_args_outranks_the_config_defaults(env: Env) -> None:
    """args.cni.annotations reach pool selection: the pod's ippool annotation beats default_ipv4_ippool,
    and the namespace's default pool annotation beats it too; without them the defaults apply."""
    plain = await env.add("plain")
    assert plain["ips"][0]["address"] == "10.6.168.101/16"
    pod = _with_pod(net_conf(), annotations={"ipam.spidernet.io/ippool": '{"ipv4": ["tiny"]}'})
    result = await env.add("annotated", conf=pod)
    assert result["ips"][0]["address"] == "10.9.0.10/24"
    assert set(await env.records("tiny")) == {"10.9.0.10"}
    delete = cni_call("DEL", {**pod, "prevResult": result}, container_id="annotated")
    assert await env.call("DEL", delete) == b""

    default_pool = {"key": "ipam.spidernet.io/default-ipv4-ippool", "value": '["tiny"]'}
    namespace = _with_pod(net_conf(), namespaceAnnotations=[default_pool])
    result = await env.add("in-namespace", conf=namespace)
    assert result["ips"][0]["address"] == "10.9.0.10/24"


async def test_pod_labels_in_args_meet_a_pools_pod_affinity(env: Env) -> None:
    """args.cni.labels (CONVENTIONS.md's key/value array) are the pod labels a podAffinity matches."""
    await apply(
        env.controller.target,
        pool_manifest("web-only", "10.8.0.0/24", ["10.8.0.10"], podAffinity={"matchLabels": {"app": "web"}}),
    )
    conf = net_conf(default_ipv4_ippool=["web-only"])
    err = await env.fails("ADD", cni_call("ADD", conf, container_id="no-labels", netns=NETNS))
    assert err.cni_code == codes.NO_POOL_MATCHED
    labelled = _with_pod(conf, labels=[{"key": "app", "value": "web"}])
    result = await env.add("labelled", conf=labelled)
    assert result["ips"][0]["address"] == "10.8.0.10/24"


async def test_del_releases_even_when_the_pod_metadata_is_malformed(env: Env) -> None:
    """DEL does not use args.cni, so a malformed one never keeps an address allocated."""
    result = await env.add("to-free")
    broken = {**net_conf(), "args": {"cni": {"annotations": 7}}, "prevResult": result}
    assert await env.call("DEL", cni_call("DEL", broken, container_id="to-free")) == b""
    assert await env.records() == {}


# -- DEL with the controller down ---------------------------------------------------------


async def test_del_while_controller_down_is_journaled_and_replayed(env: Env) -> None:
    """DEL succeeds while the controller is down, is journaled durably, and is replayed once it is back."""
    await env.add("ctr-1")
    await env.add("ctr-2")
    env.controller.stop()
    assert await env.call("DEL", cni_call("DEL", net_conf(), container_id="ctr-1")) == b""
    assert [i.container_id for i in env.agent.journal.pending()] == ["ctr-1"]
    assert b'"container_id":"ctr-1"' in env.agent.journal.path.read_bytes()
    await env.controller.start()
    await wait_until(lambda: not env.agent.journal.pending(), "journal replay")
    assert [r["cid"] for r in (await env.records()).values()] == ["ctr-2"]
    assert env.agent.journal.path.read_bytes() == b""  # compacted


async def test_add_replays_a_pending_release_of_its_key_first(env: Env) -> None:
    """An ADD for a key with a journaled release replays that release before allocating."""
    first = await env.add("ctr-1")
    env.controller.stop()
    await env.call("DEL", cni_call("DEL", net_conf(), container_id="ctr-1"))
    await env.controller.start()
    # The replay loop may or may not have run yet: either way the ADD must see a clean key.
    second = await env.add("ctr-1")
    assert not env.agent.journal.pending()
    assert second["ips"] == first["ips"]
    assert len(await env.records()) == 1


# -- CHECK ----------------------------------------------------------------------------------


async def test_check_detects_mismatch_and_release_behind_its_back(env: Env) -> None:
    """CHECK fails with 107 when prevResult differs and with 106 once the reservation is gone."""
    conf = net_conf()
    result = await env.add(conf=conf)
    assert await env.call("CHECK", cni_call("CHECK", {**conf, "prevResult": result}, netns=NETNS)) == b""
    wrong = json.loads(json.dumps(result))
    wrong["ips"][0]["address"] = "10.6.168.200/16"
    err = await env.fails("CHECK", cni_call("CHECK", {**conf, "prevResult": wrong}, netns=NETNS))
    assert err.cni_code == codes.ALLOCATION_MISMATCH
    ipam = await env.ipam()
    await ipam.Release(ipam_pb2.ReleaseRequest(pod=ipam_pb2.PodRef(container_id="ctr-1"), ifname="eth0"))
    err = await env.fails("CHECK", cni_call("CHECK", {**conf, "prevResult": result}, netns=NETNS))
    assert err.cni_code == codes.ALLOCATION_NOT_FOUND
    assert "ctr-1" in err.message


async def test_check_fails_for_a_reservation_made_through_another_network(env: Env) -> None:
    """CHECK through network B of an attachment ADDed through network A fails with 107 naming both."""
    conf = net_conf(name="macvlan-a")
    result = await env.add(conf=conf)
    other = net_conf(name="macvlan-b")
    err = await env.fails("CHECK", cni_call("CHECK", {**other, "prevResult": result}, netns=NETNS))
    assert err.cni_code == codes.ALLOCATION_MISMATCH
    assert "'macvlan-a'" in err.message and "'macvlan-b'" in err.message


# -- GC -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
async def test_gc_releases_only_unlisted_attachments_of_this_node_and_network(env: Env, key: str) -> None:
    """GC frees this node's and network's allocations missing from the list; other networks and nodes stay."""
    for cid in ("c1", "c2", "c3"):
        await env.add(cid)
    await env.add("c4", conf=net_conf(name="macvlan-b"))
    ipam = await env.ipam()
    await ipam.Allocate(
        ipam_pb2.AllocateRequest(
            pod=ipam_pb2.PodRef(container_id="c5", node="node-2"), ifname="eth0", network="macvlan-a",
            default_ipv4_ippools=["v4-pool"],
        )
    )  # fmt: skip
    gc_conf = {**net_conf("1.1.0"), key: [{"containerID": "c1", "ifname": "eth0"}]}
    assert await env.call("GC", cni_call("GC", gc_conf)) == b""
    left = sorted(r["cid"] for r in (await env.records()).values())
    assert left == ["c1", "c4", "c5"]


async def test_gc_and_status_refuse_configs_below_1_1(env: Env) -> None:
    """GC and STATUS with a 1.0.0 config answer code 1."""
    conf = {**net_conf("1.0.0"), "cni.dev/valid-attachments": []}
    for verb in ("GC", "STATUS"):
        err = await env.fails(verb, cni_call(verb, conf))
        assert err.cni_code == codes.INCOMPATIBLE_VERSION


# -- STATUS ---------------------------------------------------------------------------------


async def test_status_reports_controller_and_pool_readiness(env: Env) -> None:
    """STATUS passes when ADD can be served, and is 50 with a full default pool or the controller down."""
    assert await env.call("STATUS", cni_call("STATUS", net_conf("1.1.0"))) == b""
    tiny = net_conf("1.1.0", default_ipv4_ippool=["tiny"])
    assert await env.call("STATUS", cni_call("STATUS", tiny)) == b""
    await env.add("fills-tiny", conf=net_conf(default_ipv4_ippool=["tiny"]))
    err = await env.fails("STATUS", cni_call("STATUS", tiny))
    assert err.cni_code == codes.NOT_AVAILABLE
    assert "tiny" in err.message
    env.controller.stop()
    err = await env.fails("STATUS", cni_call("STATUS", net_conf("1.1.0")))
    assert err.cni_code == codes.NOT_AVAILABLE
    assert "unreachable" in err.message


async def test_add_with_controller_down_is_try_again_later_and_journals_its_release(env: Env) -> None:
    """ADD while the controller is unreachable answers code 11; the outcome is unknown to the
    agent, so it journals a release of the attachment before answering."""
    env.controller.stop()
    err = await env.fails("ADD", cni_call("ADD", net_conf(), netns=NETNS))
    assert err.cni_code == codes.TRY_AGAIN_LATER
    assert [(i.container_id, i.ifname) for i in env.agent.journal.pending()] == [("ctr-1", "eth0")]


# -- coordinator ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.4.0", "1.1.0"])
async def test_coordinator_add_answers_prev_result_and_needs_one(env: Env, version: str) -> None:
    """CoordinatorAdd (mode disabled: no netns work) answers prevResult in the requested version, and
    without prevResult fails with code 7 (the netns tests cover the routing itself)."""
    prev = {
        "cniVersion": version,
        "interfaces": [{"name": "eth0", "sandbox": NETNS}],
        "ips": [{"interface": 0, "address": "10.6.168.101/16", "gateway": "10.6.0.1"}],
        "dns": {},
    }
    if version == "0.4.0":
        prev["ips"][0]["version"] = "4"  # type: ignore[index]
    conf = {"cniVersion": version, "name": "macvlan-a", "type": "coordinator", "mode": "disabled"}
    out = json.loads(await env.call("COORD_ADD", cni_call("ADD", {**conf, "prevResult": prev}, netns=NETNS)))
    assert out == prev
    err = await env.fails("COORD_ADD", cni_call("ADD", conf, netns=NETNS))
    assert err.cni_code == codes.INVALID_CONFIG
    assert "prevResult" in err.message


# -- the socket -----------------------------------------------------------------------------------


async def test_grpcurl_lists_the_service_and_the_socket_is_0600(env: Env) -> None:
    """grpcurl lists the CNI service through reflection, and the socket is mode 0600 owned by us (root)."""
    sock = env.agent.settings.socket
    # The agent serves in this event loop: run grpcurl without blocking it.
    proc = await asyncio.create_subprocess_exec(
        str(REPO / ".venv" / "bin" / "grpcurl"), "-plaintext", "-unix", sock, "list",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, stderr.decode()
    out = stdout.decode().split()
    assert "spiderpool.agent.v1.CniService" in out
    assert "grpc.health.v1.Health" in out
    info = os.stat(sock)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.getuid()
