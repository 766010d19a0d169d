"""Each RPC's log context: bound once per call by ``translate_errors``, reset after it.

The servicers say which keys a request has (``log_fields``); the decorator binds them with
``rpc`` to structlog's contextvars, so any line logged while serving the call carries them,
logs a failure once with its reason, and leaves the context as it found it.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import grpc
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from spiderpool.agent.v1 import cni_pb2
from spiderpool.controller.v1 import admin_pb2, ipam_pb2
from spiderpool_agent.cni_servicer import call_log_fields
from spiderpool_common.errors import NotFound, PoolExhausted
from spiderpool_common.grpc_server import translate_errors
from spiderpool_controller.grpcapi.admin_servicer import admin_log_fields
from spiderpool_controller.grpcapi.log_fields import ipam_log_fields

log = structlog.get_logger("test")


class FakeContext:
    """The part of a grpc.aio ServicerContext that translate_errors uses."""

    def __init__(self) -> None:
        self.aborted: list[Any] = []

    async def abort_with_status(self, status: Any) -> None:
        self.aborted.append(status)
        raise grpc.aio.AbortError()


class Servicer:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def log_fields(self, request: Mapping[str, str]) -> Mapping[str, str]:
        return request

    @translate_errors
    async def Allocate(self, request: Mapping[str, str], context: grpc.aio.ServicerContext) -> str:
        log.info("working")
        if self.error is not None:
            raise self.error
        return "done"


async def call(servicer: Servicer, request: Mapping[str, str]) -> list[MutableMapping[str, Any]]:
    """Serve one request; return what was logged (context merged in)."""
    context: Any = FakeContext()
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        try:
            await servicer.Allocate(request, context)
        except grpc.aio.AbortError:
            pass
    return logs


POD = {"pod": "team-a/web-0", "container_id": "c1", "ifname": "net1", "network": "blue"}


async def test_lines_logged_during_a_call_carry_rpc_and_the_requests_fields() -> None:
    """A line the handler logs names the rpc and the request's pod, container, interface and network."""
    logs = await call(Servicer(), POD)
    assert logs == [{"event": "working", "log_level": "info", "rpc": "Allocate", **POD}]


async def test_empty_fields_are_left_out() -> None:
    """A field the request does not have (an empty value) is not logged as an empty string."""
    logs = await call(Servicer(), {**POD, "pod": "", "network": ""})
    assert logs[0] == {
        "event": "working",
        "log_level": "info",
        "rpc": "Allocate",
        "container_id": "c1",
        "ifname": "net1",
    }


@pytest.mark.parametrize("error", [None, PoolExhausted("pool blue exhausted"), RuntimeError("bug")])
async def test_the_context_is_restored_after_the_call(error: Exception | None) -> None:
    """After a call, succeeded, refused or crashed, the task's context holds what it held before."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(ifname="outer")
    await call(Servicer(error), POD)
    assert structlog.contextvars.get_contextvars() == {"ifname": "outer"}
    structlog.contextvars.clear_contextvars()


async def test_a_refused_call_is_one_error_line_with_its_reason_and_a_status() -> None:
    """A domain error is logged once, at error, with reason and CNI code, and leaves as a gRPC status."""
    logs = await call(Servicer(PoolExhausted("pool blue exhausted", details="0 of 254 free")), POD)
    failed = [line for line in logs if line["event"] == "request_failed"]
    assert failed == [
        {
            "event": "request_failed",
            "log_level": "error",
            "reason": "POOL_EXHAUSTED",
            "cni_code": 100,
            "error": "pool blue exhausted",
            "details": "0 of 254 free",
            "rpc": "Allocate",
            **POD,
        }
    ]


async def test_a_not_found_answer_is_logged_at_info() -> None:
    """A lookup answered "not found" is an answer, not an operator's problem: info, not error."""
    logs = await call(Servicer(NotFound("no such endpoint")), POD)
    assert [line["log_level"] for line in logs if line["event"] == "request_failed"] == ["info"]


async def test_a_crash_is_logged_with_its_traceback_in_the_calls_context() -> None:
    """An unexpected exception is logged as request_crashed, with exc_info and the call's keys."""
    logs = await call(Servicer(RuntimeError("bug")), POD)
    crashed = [line for line in logs if line["event"] == "request_crashed"]
    assert len(crashed) == 1
    assert crashed[0]["log_level"] == "error"
    assert crashed[0]["exc_info"] is True
    assert crashed[0]["container_id"] == "c1"


# -- what each service finds in its requests --------------------------------------------


def test_a_cni_call_names_the_pod_from_cni_args_and_the_network_from_the_config() -> None:
    """pod is K8S_POD_NAMESPACE/K8S_POD_NAME; network is the config's name."""
    call = cni_pb2.CniCall(
        container_id="c1",
        ifname="net1",
        args="IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_UID=u",
        config=b'{"cniVersion": "1.0.0", "name": "blue", "ipam": {}}',
    )
    assert call_log_fields(call) == {
        "pod": "team-a/web-0",
        "container_id": "c1",
        "ifname": "net1",
        "network": "blue",
    }


@pytest.mark.parametrize(
    ("args", "config"),
    [
        ("K8S_POD_NAME=web-0", b"not json"),
        ("=;;x", b"[1]"),
        ("", b'{"name": 7}'),
        ("K8S_POD_NAMESPACE=a", b"\xff"),
    ],
)
def test_a_malformed_cni_call_logs_what_it_can(args: str, config: bytes) -> None:
    """Without both pod keys, or with a config that is no object with a string name, those keys are empty."""
    fields = call_log_fields(cni_pb2.CniCall(container_id="c1", args=args, config=config))
    assert (fields["pod"], fields["network"], fields["container_id"]) == ("", "", "c1")


@given(args=st.text(), config=st.binary())
def test_reading_log_fields_never_fails(args: str, config: bytes) -> None:
    """Any CNI_ARGS and stdin yield log fields: the call is validated later, by the handler."""
    assert set(call_log_fields(cni_pb2.CniCall(args=args, config=config))) == {
        "pod",
        "container_id",
        "ifname",
        "network",
    }


def test_ipam_requests_name_pod_container_interface_and_network_where_they_have_them() -> None:
    """Allocate has all four; Release has no network; CheckCapacity has none."""
    pod = ipam_pb2.PodRef(namespace="team-a", name="web-0", container_id="c1", uid="u")
    allocate = ipam_pb2.AllocateRequest(pod=pod, ifname="net1", network="blue")
    assert ipam_log_fields(allocate) == {
        "pod": "team-a/web-0",
        "container_id": "c1",
        "ifname": "net1",
        "network": "blue",
    }
    release = ipam_pb2.ReleaseRequest(pod=ipam_pb2.PodRef(container_id="c1"), ifname="net1")
    assert ipam_log_fields(release) == {"container_id": "c1", "ifname": "net1"}
    assert ipam_log_fields(ipam_pb2.CheckCapacityRequest()) == {}


def test_admin_requests_name_the_pod_they_are_about() -> None:
    """Explain: its AllocateRequest's keys; DescribeEndpoint: its pod (default namespace); Check: none."""
    pod = ipam_pb2.PodRef(namespace="team-a", name="web-0", container_id="c1")
    explain = admin_pb2.ExplainRequest(request=ipam_pb2.AllocateRequest(pod=pod, ifname="eth0"))
    assert admin_log_fields(explain) == {
        "pod": "team-a/web-0",
        "container_id": "c1",
        "ifname": "eth0",
        "network": "",
    }
    assert admin_log_fields(admin_pb2.DescribeEndpointRequest(name="web-0")) == {"pod": "default/web-0"}
    assert admin_log_fields(admin_pb2.DescribeEndpointRequest(namespace="x", name="y")) == {"pod": "x/y"}
    assert admin_log_fields(admin_pb2.CheckRequest()) == {}
