"""The controller as a real process on a unix socket, driven over gRPC and by grpcurl."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc
from spiderpool_cni import codes
from spiderpool_common.grpc_errors import from_rpc_error

from tests.component.agent_harness import (
    ServiceProcess,
    apply,
    controller_process,
    pool_manifest,
    pool_records,
)

GRPCURL = str(Path(sys.executable).parent / "grpcurl")


@pytest.fixture
async def controller() -> AsyncIterator[ServiceProcess]:
    workdir = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))
    proc = controller_process(workdir)
    await proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def allocate_request(i: int, ifname: str = "eth0") -> ipam_pb2.AllocateRequest:
    return ipam_pb2.AllocateRequest(
        pod=ipam_pb2.PodRef(
            namespace="ns", name=f"pod-{i}", uid=f"uid-{i}", container_id=f"cid-{i}", node="n1"
        ),
        ifname=ifname,
        network="net",
    )


async def test_many_concurrent_clients_get_distinct_addresses_and_exhaustion_is_clean(
    controller: ServiceProcess,
) -> None:
    """40 clients race for 30 addresses: 30 distinct answers, 10 RESOURCE_EXHAUSTED with CNI code 100."""
    await apply(
        controller.target, pool_manifest("race", "10.50.0.0/24", ["10.50.0.1-10.50.0.30"], default=True)
    )
    channels = [grpc.aio.insecure_channel(controller.target) for _ in range(8)]
    try:
        stubs = [ipam_pb2_grpc.IpamServiceStub(c) for c in channels]
        results = await asyncio.gather(
            *(stubs[i % 8].Allocate(allocate_request(i), timeout=30) for i in range(40)),
            return_exceptions=True,
        )
    finally:
        for c in channels:
            await c.close()
    ok = [r for r in results if isinstance(r, ipam_pb2.AllocateResponse)]
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 30 and len(errors) == 10
    assert len({r.ips[0].address for r in ok}) == 30
    for err in errors:
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        domain = from_rpc_error(err)
        assert domain.cni_code == codes.POOL_EXHAUSTED
        assert "no free IPv4 address for eth0 in IPPools [race]" in domain.message
    records = await pool_records(controller.target, "race")
    assert len(records) == 30


@pytest.mark.parametrize(
    ("request_", "status", "cni_code", "text"),
    [
        (
            ipam_pb2.AllocateRequest(ifname="eth0"),
            grpc.StatusCode.INVALID_ARGUMENT,
            codes.INVALID_CONFIG,
            "needs a pod UID or a container ID",
        ),
        (
            ipam_pb2.AllocateRequest(
                pod=ipam_pb2.PodRef(uid="u", container_id="c"), ifname="eth0", default_ipv4_ippools=["nope"]
            ),
            grpc.StatusCode.NOT_FOUND,
            codes.POOL_NOT_FOUND,
            "nope",
        ),
        (
            ipam_pb2.AllocateRequest(
                pod=ipam_pb2.PodRef(uid="u", container_id="c"),
                ifname="eth0",
                pod_annotations={"ipam.spidernet.io/ippool": "{not json"},
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            codes.INVALID_ANNOTATION,
            "ipam.spidernet.io/ippool",
        ),
    ],
)
async def test_bad_requests_get_a_precise_status_and_change_nothing(
    controller: ServiceProcess,
    request_: ipam_pb2.AllocateRequest,
    status: grpc.StatusCode,
    cni_code: int,
    text: str,
) -> None:
    """Invalid identity, unknown pool, malformed annotation: the right gRPC status and CNI code, no record."""
    await apply(controller.target, pool_manifest("p", "10.51.0.0/24", ["10.51.0.1-10.51.0.9"], default=True))
    async with grpc.aio.insecure_channel(controller.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ipam_pb2_grpc.IpamServiceStub(channel).Allocate(request_, timeout=10)
    assert caught.value.code() == status
    err = from_rpc_error(caught.value)
    assert err.cni_code == cni_code
    assert text in err.message
    assert await pool_records(controller.target, "p") == {}


def grpcurl(*args: str) -> str:
    out = subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=30, check=True
    )
    return out.stdout


async def test_grpcurl_lists_describes_and_calls_the_controller(controller: ServiceProcess) -> None:
    """Reflection is on: grpcurl lists both services, describes a message, and makes a real call."""
    await apply(controller.target, pool_manifest("g", "10.52.0.0/24", ["10.52.0.7"], default=True))
    sock = str(controller.socket_path)
    listed = await asyncio.to_thread(grpcurl, "-unix", sock, "list")
    assert {
        "spiderpool.controller.v1.IpamService",
        "spiderpool.controller.v1.ResourceService",
        "grpc.health.v1.Health",
    } <= set(listed.split())
    described = await asyncio.to_thread(
        grpcurl, "-unix", sock, "describe", "spiderpool.controller.v1.AllocateRequest"
    )
    assert "default_ipv4_ippools" in described
    body = json.dumps(
        {"pod": {"uid": "u-g", "containerId": "c-g", "namespace": "ns", "name": "g"}, "ifname": "eth0"}
    )
    answered = await asyncio.to_thread(
        grpcurl, "-unix", "-d", body, sock, "spiderpool.controller.v1.IpamService/Allocate"
    )
    assert json.loads(answered)["ips"][0]["address"] == "10.52.0.7/24"
    health = await asyncio.to_thread(grpcurl, "-unix", sock, "grpc.health.v1.Health/Check")
    assert json.loads(health)["status"] == "SERVING"
