"""The controller's detection switches over real gRPC: settings, the flags stamped on allocated IPs,
and the release after a failed detection (stateless released, StatefulSet member kept)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc
from spiderpool_common.grpc_server import start_server
from spiderpool_controller.grpcapi import ipam_servicer
from spiderpool_controller.grpcapi.ipam_servicer import Detection
from spiderpool_controller.ipam_engine import IpamEngine
from spiderpool_controller.settings import load_settings

from tests.component.engine_fixtures import new_engine, pool_manifest


def test_detection_is_off_by_default_and_switched_by_flag_or_environment() -> None:
    """Both switches default to false (upstream Helm); a flag or a SPIDERPOOL_* variable turns each on,
    and a value that is not a boolean is refused naming the setting."""
    default = load_settings([], environ={})
    assert (default.enable_ip_conflict_detection, default.enable_gateway_detection) == (False, False)
    on = load_settings(
        ["--enable-ip-conflict-detection", "true"], environ={"SPIDERPOOL_ENABLE_GATEWAY_DETECTION": "1"}
    )
    assert (on.enable_ip_conflict_detection, on.enable_gateway_detection) == (True, True)
    with pytest.raises(ValueError, match="enable_gateway_detection"):
        load_settings(["--enable-gateway-detection", "maybe"], environ={})


@pytest.fixture
async def engine() -> AsyncIterator[IpamEngine]:
    workdir = Path(tempfile.mkdtemp(prefix="spdet-", dir="/tmp"))
    engine, store = await new_engine(workdir / "store.db")
    await store.create(pool_manifest("p4", "10.6.0.0/24", ["10.6.0.10-10.6.0.20"], gateway="10.6.0.1"))
    await engine.pool_changed(await store.get("SpiderIPPool", "p4"))
    try:
        yield engine
    finally:
        await engine.close()
        await store.close()
        shutil.rmtree(workdir, ignore_errors=True)


async def serve(
    engine: IpamEngine, detection: Detection, sock: Path
) -> tuple[grpc.aio.Server, grpc.aio.Channel]:
    server, address = await start_server(
        f"unix:{sock}", lambda s: ipam_servicer.register(s, engine, None, detection)
    )
    return server, grpc.aio.insecure_channel(address)


def allocate_request(name: str, owner: ipam_pb2.Owner | None = None) -> ipam_pb2.AllocateRequest:
    return ipam_pb2.AllocateRequest(
        pod=ipam_pb2.PodRef(namespace="ns", name=name, uid=f"uid-{name}", container_id=f"cid-{name}"),
        ifname="eth0",
        network="net-a",
        default_ipv4_ippools=["p4"],
        owner=owner,
    )


@pytest.mark.parametrize("switches", [Detection(True, False), Detection(False, True), Detection()])
async def test_allocated_ips_carry_the_controllers_switches(engine: IpamEngine, switches: Detection) -> None:
    """Every IP Allocate answers carries the controller's two switches as they are set."""
    sock = Path(tempfile.mkdtemp(prefix="spdet-", dir="/tmp")) / "c.sock"
    server, channel = await serve(engine, switches, sock)
    try:
        reply = await ipam_pb2_grpc.IpamServiceStub(channel).Allocate(allocate_request("web"), timeout=10)
    finally:
        await channel.close()
        await server.stop(None)
        shutil.rmtree(sock.parent, ignore_errors=True)
    assert [(i.detect_ip_conflict, i.detect_gateway) for i in reply.ips] == [
        (switches.ip_conflict, switches.gateway)
    ]


async def test_release_after_failed_detection_frees_stateless_and_keeps_statefulset_members(
    engine: IpamEngine,
) -> None:
    """Release marked detection_failed frees a stateless pod's IPs, but keeps (kept=true) those of a
    StatefulSet member, whether the request names the owner or only the allocation recorded it."""
    sock = Path(tempfile.mkdtemp(prefix="spdet-", dir="/tmp")) / "c.sock"
    server, channel = await serve(engine, Detection(True, True), sock)
    stub = ipam_pb2_grpc.IpamServiceStub(channel)
    sts = ipam_pb2.Owner(kind="StatefulSet", name="db", replicas=3, exists=True)
    try:
        for name, owner in (("web", None), ("db-0", sts), ("db-1", sts)):
            await stub.Allocate(allocate_request(name, owner), timeout=10)

        def release(name: str, owner: ipam_pb2.Owner | None) -> ipam_pb2.ReleaseRequest:
            pod = ipam_pb2.PodRef(namespace="ns", name=name, uid=f"uid-{name}", container_id=f"cid-{name}")
            return ipam_pb2.ReleaseRequest(pod=pod, ifname="eth0", owner=owner, detection_failed=True)

        stateless = await stub.Release(release("web", None), timeout=10)
        named = await stub.Release(release("db-0", sts), timeout=10)
        recorded = await stub.Release(release("db-1", None), timeout=10)
    finally:
        await channel.close()
        await server.stop(None)
        shutil.rmtree(sock.parent, ignore_errors=True)
    assert [a.address for a in stateless.released] == ["10.6.0.10/24"] and not stateless.kept
    assert named.kept and not named.released
    assert recorded.kept and not recorded.released
    assert engine.attachment("uid-web", "eth0") == []
    assert [a.address for a in engine.lookup("uid-db-0", "eth0")] == ["10.6.0.11/24"]
    assert [a.address for a in engine.lookup("uid-db-1", "eth0")] == ["10.6.0.12/24"]


async def test_conflicting_ips_in_a_release_are_not_handed_out_to_the_retry(engine: IpamEngine) -> None:
    """Release naming 10.6.0.10 as conflicting frees it, and the pod's retry over gRPC gets 10.6.0.11."""
    sock = Path(tempfile.mkdtemp(prefix="spdet-", dir="/tmp")) / "c.sock"
    server, channel = await serve(engine, Detection(True, False), sock)
    stub = ipam_pb2_grpc.IpamServiceStub(channel)
    try:
        first = await stub.Allocate(allocate_request("web"), timeout=10)
        pod = ipam_pb2.PodRef(namespace="ns", name="web", uid="uid-web", container_id="cid-web")
        await stub.Release(
            ipam_pb2.ReleaseRequest(
                pod=pod, ifname="eth0", detection_failed=True, conflicting_ips=["10.6.0.10"]
            ),
            timeout=10,
        )
        retry = await stub.Allocate(allocate_request("web"), timeout=10)
    finally:
        await channel.close()
        await server.stop(None)
        shutil.rmtree(sock.parent, ignore_errors=True)
    assert [i.address for i in first.ips] == ["10.6.0.10/24"]
    assert [i.address for i in retry.ips] == ["10.6.0.11/24"]
