"""SpiderEndpoints never go missing: valid names always, and written whatever the request's fate.

Two ways they went missing before: a container ID that CNI allows but object names do not
(uppercase, ``_``) was copied into the endpoint's name and the store refused it, so the
endpoint was never written; and an agent that died mid-ADD cancelled the controller's
request after the allocation was committed but before the endpoint was noted, so the pod
held an address with no endpoint until the controller restarted.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from spiderpool.controller.v1 import resource_pb2, resource_pb2_grpc

from tests.component.agent_harness import DEADLINE, pool_manifest
from tests.component.conformance_stack import Stack, running_stack, start_service
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    pools = [pool_manifest("ep-v4", "10.61.0.0/24", ["10.61.0.10-10.61.0.30"])]
    with running_stack("ep-", pools) as running:
        yield running


def endpoints(stack: Stack) -> dict[str, dict[str, Any]]:
    stub = resource_pb2_grpc.ResourceServiceStub(stack.channel)
    reply = stub.List(resource_pb2.ListRequest(kind="SpiderEndpoint"), timeout=DEADLINE)
    out = {}
    for text in reply.object_json:
        obj = json.loads(text)
        out[f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"] = obj
    return out


def wait_endpoints(stack: Stack, count: int) -> dict[str, dict[str, Any]]:
    """Wait for ``count`` endpoints, each with its status: the writer creates an endpoint and
    then writes its status (the status subresource), so one may be listed without it."""

    def counted() -> tuple[dict[str, dict[str, Any]]] | None:
        found = endpoints(stack)  # wrapped in a tuple: no endpoints at all is a truthy answer too
        complete = len(found) == count and all("status" in obj for obj in found.values())
        return (found,) if complete else None

    return wait_for(counted, f"{count} endpoints with their status")[0]


def conf(stack: Stack) -> dict[str, Any]:
    return stack.net_conf("1.1.0", "ep-net", v4=("ep-v4",), v6=())


def test_a_container_id_that_is_no_object_name_gets_an_endpoint_with_a_derived_name(stack: Stack) -> None:
    """Outside Kubernetes (no pod in CNI_ARGS), container ``ABC_def.1`` gets an endpoint whose
    name is a valid object name derived from it, listing its address; DEL removes it."""
    cid = "ABC_def.1"
    result = stack.run("ADD", conf(stack), cid, args="").result()
    ((name, obj),) = wait_endpoints(stack, 1).items()
    namespace, object_name = name.split("/")
    assert namespace == "default"
    assert object_name.startswith("abc-def.1-") and object_name == object_name.lower()
    assert [d["ipv4"] for d in obj["status"]["current"]["ips"]] == [result["ips"][0]["address"]]
    stack.run("DEL", conf(stack), cid, args="").succeeded_silently()
    assert wait_endpoints(stack, 0) == {}


def test_an_allocation_committed_after_the_agent_died_still_gets_its_endpoint(stack: Stack) -> None:
    """The agent is killed while the controller's pool write waits for the store's lock; the
    allocation commits anyway, and its endpoint appears without a controller restart."""
    blocker = sqlite3.connect(
        stack.workdir / "controller.db", isolation_level=None, timeout=5, check_same_thread=False
    )
    blocker.execute("BEGIN IMMEDIATE")
    agent = stack.agent.proc
    assert agent is not None
    shim = threading.Thread(target=lambda: stack.run("ADD", conf(stack), "crash-1"), daemon=True)
    try:
        shim.start()
        time.sleep(0.5)  # the ADD is at the controller, waiting for the lock
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        time.sleep(0.2)  # the controller sees the connection go and cancels the request
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    shim.join(timeout=DEADLINE)
    try:
        # the allocation commits once the lock goes
        wait_for(lambda: stack.ips_of("crash-1", "ep-v4"), "the allocation to be committed")
        assert list(wait_endpoints(stack, 1)) == ["conformance/crash-1"]
    finally:
        stack.agent.proc = None
        start_service(stack.agent)
    stack.run("DEL", conf(stack), "crash-1").succeeded_silently()
