"""Malformed messages to the controller's gRPC services: a clear INVALID_ARGUMENT, nothing changes.

A real controller process (SQLite, unix socket) with one pool and one bystander
allocation. Requests are sent as raw bytes through a generic unary call, so the client's
stubs check nothing: random bytes, fields of the wrong wire type, messages of another
type, empty messages (every field missing) and strings far beyond any Kubernetes name.
Each answer is a status the caller can act on (INVALID_ARGUMENT with the spiderpool
``ErrorInfo`` for what the request got wrong; gRPC's own RESOURCE_EXHAUSTED for a
message over the 4 MiB limit), never UNKNOWN or INTERNAL; the store (pools and
SpiderEndpoints, with their revision) is the same afterwards, and a real allocation
still succeeds.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spiderpool.controller.v1 import ipam_pb2, ipam_pb2_grpc, resource_pb2, resource_pb2_grpc
from spiderpool_cni import codes
from spiderpool_common.grpc_errors import from_rpc_error

from tests.component.agent_harness import DEADLINE, ServiceProcess, controller_process, pool_manifest
from tests.component.conformance_stack import _pods_by_endpoints, _pods_by_pools, start_service
from tests.waiting import wait_for

POOL = "grpc-v4"
METHODS: list[MethodDescriptor] = [
    *ipam_pb2.DESCRIPTOR.services_by_name["IpamService"].methods,
    *resource_pb2.DESCRIPTOR.services_by_name["ResourceService"].methods,
]
# What each method answers when every field is missing: the field it needs, named.
EMPTY_ANSWERS = {
    "Allocate": (grpc.StatusCode.INVALID_ARGUMENT, "an allocation needs a pod UID or a container ID"),
    "Release": (grpc.StatusCode.INVALID_ARGUMENT, "Release needs pod.uid or pod.container_id, and ifname"),
    "GetEndpoint": (grpc.StatusCode.INVALID_ARGUMENT, "GetEndpoint needs pod.uid or pod.container_id"),
    "ReleaseUnlisted": (grpc.StatusCode.INVALID_ARGUMENT, "ReleaseUnlisted needs the network name"),
    "CheckCapacity": (grpc.StatusCode.OK, ""),  # no default pools: nothing to be short of
    "GarbageCollect": (grpc.StatusCode.INVALID_ARGUMENT, "garbage collection needs the Kubernetes mode"),
    "Apply": (grpc.StatusCode.INVALID_ARGUMENT, "object_json is not JSON"),
    "Get": (grpc.StatusCode.INVALID_ARGUMENT, "unknown kind ''"),
    "List": (grpc.StatusCode.INVALID_ARGUMENT, "unknown kind ''"),
    "Delete": (grpc.StatusCode.INVALID_ARGUMENT, "unknown kind ''"),
}


def path_of(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


@dataclass
class Controller:
    service: ServiceProcess
    channel: grpc.Channel
    workdir: Path

    def raw(self, method: str, body: bytes) -> tuple[grpc.StatusCode, str, bytes]:
        """A unary call with ``body`` as the request bytes: (status, details, response bytes)."""
        call = self.channel.unary_unary(method)
        try:
            return grpc.StatusCode.OK, "", call(body, timeout=DEADLINE)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", b""

    def snapshot(self) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """The store's revision, pools and SpiderEndpoints, once the endpoints (written off the
        request path) agree with the pools' records."""
        stub = resource_pb2_grpc.ResourceServiceStub(self.channel)

        def settled() -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
            pools = stub.List(resource_pb2.ListRequest(kind="SpiderIPPool"), timeout=DEADLINE)
            endpoints = stub.List(resource_pb2.ListRequest(kind="SpiderEndpoint"), timeout=DEADLINE)
            if pools.resource_version != endpoints.resource_version or _pods_by_pools(
                pools.object_json
            ) != _pods_by_endpoints(endpoints.object_json):
                return None
            return (
                pools.resource_version,
                tuple(sorted(pools.object_json)),
                tuple(sorted(endpoints.object_json)),
            )

        return wait_for(settled, "SpiderEndpoints to settle to the pools' records")

    def allocate(self, name: str) -> ipam_pb2.AllocateResponse:
        pod = ipam_pb2.PodRef(namespace="ns", name=name, uid=f"uid-{name}", container_id=name, node="node-1")
        request = ipam_pb2.AllocateRequest(pod=pod, ifname="eth0", network="net", default_ipv4_ippools=[POOL])
        reply: ipam_pb2.AllocateResponse = ipam_pb2_grpc.IpamServiceStub(self.channel).Allocate(
            request, timeout=DEADLINE
        )
        return reply

    def serving(self) -> None:
        """The health service says SERVING and a new pod gets an address."""
        health = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert self.allocate("probe").ips
        release = ipam_pb2.ReleaseRequest(
            pod=ipam_pb2.PodRef(uid="uid-probe", container_id="probe"), ifname="eth0"
        )
        ipam_pb2_grpc.IpamServiceStub(self.channel).Release(release, timeout=DEADLINE)


@pytest.fixture(scope="module")
def controller() -> Iterator[Controller]:
    workdir = Path(tempfile.mkdtemp(prefix="spgm-", dir="/tmp"))
    service = controller_process(workdir)
    try:
        start_service(service)
        with grpc.insecure_channel(service.target) as channel:
            stub = resource_pb2_grpc.ResourceServiceStub(channel)
            manifest = pool_manifest(POOL, "10.50.0.0/16", ["10.50.0.10-10.50.0.250"])
            stub.Apply(resource_pb2.ApplyRequest(object_json=json.dumps(manifest)), timeout=DEADLINE)
            result = Controller(service, channel, workdir)
            result.allocate("resident")
            yield result
    finally:
        service.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def assert_invalid_argument(status: grpc.StatusCode, details: str, method: str) -> None:
    assert status == grpc.StatusCode.INVALID_ARGUMENT, (method, status, details)
    assert details, method


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(METHODS), body=st.binary(max_size=64))
def test_random_bytes_get_a_clear_status_and_change_nothing(
    controller: Controller, method: MethodDescriptor, body: bytes
) -> None:
    """Random request bytes: INVALID_ARGUMENT when they are not the method's message, else the
    method's own answer; never UNKNOWN or INTERNAL, and the store is unchanged."""
    before = controller.snapshot()
    status, details, _ = controller.raw(path_of(method), body)
    message_class = message_factory.GetMessageClass(method.input_type)
    try:
        message_class.FromString(body)
        decodable = True
    except Exception:
        decodable = False
    if not decodable:
        assert_invalid_argument(status, details, method.name)
        assert f"not a valid {method.input_type.full_name}" in details
    assert status not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (method.name, details)
    assert controller.snapshot() == before


def test_undecodable_bodies_carry_the_decoding_failure_code(controller: Controller) -> None:
    """A body that is not protobuf is INVALID_ARGUMENT with ErrorInfo CNI code 6, on every service,
    the health and reflection services included."""
    for method in [*(path_of(m) for m in METHODS), "/grpc.health.v1.Health/Check"]:
        call = controller.channel.unary_unary(method)
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\xff\xff\xff", timeout=DEADLINE)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, caught.value.details())
        assert from_rpc_error(caught.value).cni_code == codes.DECODING_FAILURE
    reflection = controller.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    )
    with pytest.raises(grpc.RpcError) as caught:
        list(reflection(iter([b"\xff\xff\xff"]), timeout=DEADLINE))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    controller.serving()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_an_empty_message_names_the_missing_field(controller: Controller, method: MethodDescriptor) -> None:
    """Every field missing: each method says which one it needs (or answers, when none is needed)."""
    before = controller.snapshot()
    status, details, _ = controller.raw(path_of(method), b"")
    expected_status, fragment = EMPTY_ANSWERS[method.name]
    assert status == expected_status, (status, details)
    assert fragment in details
    assert controller.snapshot() == before


@pytest.mark.parametrize(
    ("method", "body", "fragment"),
    [
        # ApplyRequest.object_json (field 1, a string) sent as a varint: an unknown field, so missing
        ("/spiderpool.controller.v1.ResourceService/Apply", b"\x08\x01", "object_json is not JSON"),
        # GetRequest.kind as a nested message of garbage bytes: not a string
        ("/spiderpool.controller.v1.ResourceService/Get", b"\x0a\x02\xff\xfe", "not a valid"),
        # an AllocateRequest sent to Release: its ifname decodes, clean_gateway is an unknown field
        (
            "/spiderpool.controller.v1.IpamService/Release",
            ipam_pb2.AllocateRequest(ifname="eth0", clean_gateway=True).SerializeToString(),
            "Release needs pod.uid or pod.container_id, and ifname",
        ),
        # PodRef.uid as a 64-bit varint instead of a string
        ("/spiderpool.controller.v1.IpamService/Allocate", b"\x0a\x03\x18\xff\x01", "an allocation needs"),
    ],
    ids=["varint-for-string", "invalid-utf8-string", "message-of-another-type", "varint-in-nested"],
)
def test_fields_of_the_wrong_type_are_refused(
    controller: Controller, method: str, body: bytes, fragment: str
) -> None:
    """Fields of the wrong wire type or message type: INVALID_ARGUMENT naming the problem, nothing changes."""
    before = controller.snapshot()
    status, details, _ = controller.raw(method, body)
    assert_invalid_argument(status, details, method)
    assert fragment in details
    assert controller.snapshot() == before


HUGE = "x" * (256 * 1024)


def _allocate(pod: dict[str, str] | None = None, **fields: object) -> bytes:
    """An AllocateRequest for a fresh pod, with ``pod`` fields and request ``fields`` replaced."""
    ref = {"namespace": "ns", "name": "huge", "uid": "uid-huge", "container_id": "huge", "node": "node-1"}
    request = ipam_pb2.AllocateRequest(
        pod=ipam_pb2.PodRef(**{**ref, **(pod or {})}),
        **{"ifname": "eth0", "network": "net", "default_ipv4_ippools": [POOL], **fields},  # type: ignore[arg-type]
    )
    return request.SerializeToString()


def _release(pod: dict[str, str] | None = None, **fields: object) -> bytes:
    """A ReleaseRequest of the pod ``_allocate`` names, ``pod`` fields and request ``fields`` replaced."""
    ref = {"namespace": "ns", "name": "huge", "uid": "uid-huge", "container_id": "huge"}
    request = ipam_pb2.ReleaseRequest(
        pod=ipam_pb2.PodRef(**{**ref, **(pod or {})}),
        **{"ifname": "eth0", **fields},  # type: ignore[arg-type]
    )
    return request.SerializeToString()


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("/spiderpool.controller.v1.IpamService/Allocate", _allocate({"namespace": HUGE}), "pod.namespace"),
        ("/spiderpool.controller.v1.IpamService/Allocate", _allocate({"name": HUGE}), "pod.name"),
        ("/spiderpool.controller.v1.IpamService/Allocate", _allocate({"uid": HUGE}), "pod.uid"),
        (
            "/spiderpool.controller.v1.IpamService/Allocate",
            _allocate({"container_id": HUGE}),
            "pod.container_id",
        ),
        ("/spiderpool.controller.v1.IpamService/Allocate", _allocate({"node": HUGE}), "pod.node"),
        ("/spiderpool.controller.v1.IpamService/Allocate", _allocate(ifname=HUGE), "ifname"),
        ("/spiderpool.controller.v1.IpamService/Allocate", _allocate(network=HUGE), "network"),
        ("/spiderpool.controller.v1.IpamService/Allocate", _allocate(multus_name=HUGE), "multus_name"),
        (
            "/spiderpool.controller.v1.IpamService/Allocate",
            _allocate(default_ipv4_ippools=[HUGE]),
            "default_ipv4_ippools",
        ),
        (
            "/spiderpool.controller.v1.IpamService/Allocate",
            _allocate(default_ipv4_ippools=[POOL] * 5000),
            "default_ipv4_ippools",
        ),
        (
            "/spiderpool.controller.v1.IpamService/Allocate",
            _allocate(owner=ipam_pb2.Owner(kind="StatefulSet", name=HUGE)),
            "owner.name",
        ),
        (
            "/spiderpool.controller.v1.IpamService/Allocate",
            _allocate(pod_annotations={"a": HUGE * 2}),
            "pod_annotations",
        ),
        (
            "/spiderpool.controller.v1.IpamService/Allocate",
            _allocate(
                pod_annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["p" * 100_000 + "*"]})}
            ),
            "pool name for eth0 is 100001 characters long; at most 253",
        ),
        (
            "/spiderpool.controller.v1.IpamService/CheckCapacity",
            ipam_pb2.CheckCapacityRequest(default_ipv4_ippools=[HUGE]).SerializeToString(),
            "default_ipv4_ippools",
        ),
        (
            "/spiderpool.controller.v1.IpamService/CheckCapacity",
            ipam_pb2.CheckCapacityRequest(default_ipv6_ippools=["p"] * 5000).SerializeToString(),
            "default_ipv6_ippools",
        ),
        ("/spiderpool.controller.v1.IpamService/Release", _release({"uid": HUGE}), "pod.uid"),
        (
            "/spiderpool.controller.v1.IpamService/Release",
            _release({"container_id": HUGE}),
            "pod.container_id",
        ),
        ("/spiderpool.controller.v1.IpamService/Release", _release(ifname=HUGE), "ifname"),
        (
            "/spiderpool.controller.v1.IpamService/Release",
            _release(owner=ipam_pb2.Owner(kind="StatefulSet", name=HUGE)),
            "owner.name",
        ),
        (
            "/spiderpool.controller.v1.IpamService/Release",
            _release(conflicting_ips=[HUGE]),
            "conflicting_ips",
        ),
        (
            "/spiderpool.controller.v1.IpamService/GetEndpoint",
            ipam_pb2.GetEndpointRequest(pod=ipam_pb2.PodRef(uid=HUGE)).SerializeToString(),
            "pod.uid",
        ),
        (
            "/spiderpool.controller.v1.IpamService/ReleaseUnlisted",
            ipam_pb2.ReleaseUnlistedRequest(
                network="net", valid=[ipam_pb2.Attachment(container_id=HUGE, ifname="eth0")]
            ).SerializeToString(),
            "valid[0].container_id",
        ),
    ],
    ids=[
        "pod.namespace",
        "pod.name",
        "pod.uid",
        "pod.container_id",
        "pod.node",
        "ifname",
        "network",
        "multus_name",
        "pool-name",
        "5000-pools",
        "owner.name",
        "annotations",
        "annotation-pool-pattern",
        "capacity-pool-name",
        "capacity-5000-pools",
        "release-pod.uid",
        "release-container_id",
        "release-ifname",
        "release-owner.name",
        "release-conflicting_ips",
        "get-endpoint-pod.uid",
        "release-unlisted-valid",
    ],
)
def test_huge_strings_are_refused_naming_the_field(
    controller: Controller, method: str, body: bytes, field: str
) -> None:
    """Values far beyond Kubernetes' own limits (names, identifiers, pool lists, metadata) are
    INVALID_ARGUMENT naming the field, before anything is read or stored."""
    before = controller.snapshot()
    status, details, _ = controller.raw(method, body)
    assert_invalid_argument(status, details, method)
    assert field in details, details
    assert len(details) < 2000  # the status is bounded, whatever the request carried
    assert controller.snapshot() == before


def test_a_message_over_the_size_limit_is_resource_exhausted_and_the_service_goes_on(
    controller: Controller,
) -> None:
    """A 6 MiB request is refused by gRPC itself (RESOURCE_EXHAUSTED), and the service keeps serving."""
    before = controller.snapshot()
    body = resource_pb2.ApplyRequest(object_json="x" * (6 << 20)).SerializeToString()
    status, details, _ = controller.raw("/spiderpool.controller.v1.ResourceService/Apply", body)
    assert status == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert controller.snapshot() == before
    controller.serving()


def test_a_manifest_nested_too_deep_is_invalid_argument(controller: Controller) -> None:
    """An Apply whose object_json nests 5,000 levels (a RecursionError in the decoder) or 200 levels
    is INVALID_ARGUMENT saying so, not INTERNAL, and nothing is stored."""
    before = controller.snapshot()
    for depth in (200, 5000):
        text = '{"kind": "SpiderIPPool", "spec": ' + "[" * depth + "]" * depth + "}"
        body = resource_pb2.ApplyRequest(object_json=text).SerializeToString()
        status, details, _ = controller.raw("/spiderpool.controller.v1.ResourceService/Apply", body)
        assert_invalid_argument(status, details, "Apply")
        assert "nested" in details, details
    assert controller.snapshot() == before
