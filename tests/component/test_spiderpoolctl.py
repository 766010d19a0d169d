"""spiderpoolctl as a user runs it: a subprocess against a real ResourceService gRPC server (unix socket)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import yaml
from spiderpool.controller.v1 import resource_pb2, resource_pb2_grpc
from spiderpool_common.grpc_server import start_server
from spiderpool_controller.domain import models
from spiderpool_controller.grpcapi import resource_servicer
from spiderpool_controller.resource_service import ResourceService
from spiderpool_controller.store.sqlite import SqliteStore

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
T = TypeVar("T")


class ControllerThread:
    """A grpc.aio server with the ResourceService over SQLite, on its own event loop in a thread."""

    def __init__(self, db: Path, socket: Path) -> None:
        self._db, self._socket = db, socket
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.address = ""

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _start(self) -> None:
        self.store = SqliteStore(self._db)
        resources = ResourceService(self.store)
        self.server, self.address = await start_server(
            f"unix:{self._socket}", lambda server: resource_servicer.register(server, resources)
        )

    async def _stop(self) -> None:
        await self.server.stop(None)
        await self.store.close()

    def __enter__(self) -> ControllerThread:
        self._thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[ControllerThread]:
    sock_dir = Path(tempfile.mkdtemp(prefix="spctl-", dir="/tmp"))  # unix socket paths are short
    try:
        with ControllerThread(tmp_path / "state.db", sock_dir / "controller.sock") as thread:
            yield thread
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


@dataclass
class Result:
    code: int
    out: str
    err: str


def ctl(address: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run spiderpoolctl in a subprocess, as a user would."""
    base = {k: v for k, v in os.environ.items() if k != "SPIDERPOOL_CONTROLLER"}
    command = [sys.executable, "-m", "spiderpool_tools.ctl"]
    if address:
        command += ["--controller", address]
    proc = subprocess.run(
        [*command, *args],
        check=False,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def rows(text: str) -> list[list[str]]:
    """A kubectl table split into cells (columns are separated by at least three spaces)."""
    return [[c.strip() for c in line.split("   ") if c.strip()] for line in text.splitlines()]


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """The example manifests as one multi-document YAML file."""
    path = tmp_path / "all.yaml"
    names = [
        "ippool-demo-v4.yaml",
        "ippool-demo-v6.yaml",
        "ippool-selectors.yaml",
        "subnet.yaml",
        "reservedip.yaml",
    ]
    path.write_text("---\n".join((EXAMPLES / name).read_text() for name in names))
    return path


def test_apply_multi_document_yaml_and_get_tables(controller: ControllerThread, manifest: Path) -> None:
    """apply reports each object like kubectl; get prints upstream's printer columns with live counts."""
    result = ctl(controller.address, "apply", "-f", str(manifest))
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "spiderippool.spiderpool.spidernet.io/demo-v4 created",
        "spiderippool.spiderpool.spidernet.io/demo-v6 created",
        "spiderippool.spiderpool.spidernet.io/web-v4 created",
        "spidersubnet.spiderpool.spidernet.io/subnet-10-6 created",
        "spiderreservedip.spiderpool.spidernet.io/demo-reserved created",
    ]

    pools = ctl(controller.address, "get", "ippool")
    assert pools.code == 0, pools.err
    assert rows(pools.out) == [
        ["NAME", "VERSION", "SUBNET", "ALLOCATED-IP-COUNT", "TOTAL-IP-COUNT", "DEFAULT"],
        ["demo-v4", "4", "172.30.0.0/24", "0", "49", "true"],  # 51 minus the 2 reserved
        ["demo-v6", "6", "fd00:172:30::/64", "0", "81", "true"],
        ["web-v4", "4", "10.6.0.0/16", "0", "20", "false"],
    ]

    wide = ctl(controller.address, "get", "sp", "-o", "wide")
    assert rows(wide.out)[0][-4:] == ["DISABLE", "NODENAME", "MULTUSNAME", "APP-NAMESPACE"]
    assert rows(wide.out)[3] == [
        "web-v4", "4", "10.6.0.0/16", "0", "20", "false",
        "false", '["node1"]', '["kube-system/macvlan-eth0"]', "<none>",
    ]  # fmt: skip

    subnets = ctl(controller.address, "get", "ss")
    assert rows(subnets.out) == [
        ["NAME", "VERSION", "SUBNET", "ALLOCATED-IP-COUNT", "TOTAL-IP-COUNT"],
        ["subnet-10-6", "4", "10.6.0.0/16", "0", "111"],
    ]
    reserved = ctl(controller.address, "get", "reservedip")
    assert rows(reserved.out) == [["NAME", "VERSION"], ["demo-reserved", "4"]]


def test_get_json_and_yaml(controller: ControllerThread, manifest: Path) -> None:
    """-o json prints one object; -o yaml of a list prints a kubectl List with every item."""
    ctl(controller.address, "apply", "-f", str(manifest))
    one = ctl(controller.address, "get", "ippool", "demo-v6", "-o", "json")
    assert one.code == 0, one.err
    obj = json.loads(one.out)
    assert obj["kind"] == "SpiderIPPool" and obj["spec"]["gateway"] == "fd00:172:30::1"
    assert obj["metadata"]["labels"]["ipam.spidernet.io/ippool-cidr"] == "fd00-172-30---64"
    listed = yaml.safe_load(ctl(controller.address, "get", "subnet", "-o", "yaml").out)
    assert listed["kind"] == "List"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["subnet-10-6"]
    names = ctl(controller.address, "get", "sp", "-l", "team=web", "-o", "name")
    assert names.out.splitlines() == ["spiderippool.spiderpool.spidernet.io/web-v4"]


def test_apply_again_is_unchanged(controller: ControllerThread, manifest: Path) -> None:
    """Re-applying the same file changes nothing and says so."""
    ctl(controller.address, "apply", "-f", str(manifest))
    again = ctl(controller.address, "apply", "-f", str(manifest))
    assert again.code == 0, again.err
    assert all(line.endswith(" unchanged") for line in again.out.splitlines())
    assert len(again.out.splitlines()) == 5


def test_changed_subnet_fails_with_the_field_named_and_nothing_changes(
    controller: ControllerThread, manifest: Path, tmp_path: Path
) -> None:
    """An immutable-field change exits 1 naming the object and field; the other documents still apply."""
    ctl(controller.address, "apply", "-f", str(manifest))
    before = json.loads(ctl(controller.address, "get", "ippool", "demo-v4", "-o", "json").out)
    changed = tmp_path / "changed.yaml"
    text = (EXAMPLES / "ippool-demo-v4.yaml").read_text().replace("172.30.0.", "172.31.0.")
    changed.write_text(text + "---\n" + (EXAMPLES / "reservedip.yaml").read_text().replace("59-", "58-"))
    result = ctl(controller.address, "apply", "-f", str(changed))
    assert result.code == 1
    assert result.err.strip() == (
        f'Error from server (Invalid): error when applying "{changed}" (document 1): '
        'SpiderIPPool "demo-v4": spec.subnet: is immutable '
        "(stored: 172.30.0.0/24, requested: 172.31.0.0/24); "
        "create a new object for another subnet"
    )
    assert result.out.splitlines() == ["spiderreservedip.spiderpool.spidernet.io/demo-reserved configured"]
    after = json.loads(ctl(controller.address, "get", "ippool", "demo-v4", "-o", "json").out)
    assert after["spec"] == before["spec"]
    assert after["status"]["totalIPCount"] == 48  # the reservation grew by one, the pool did not change


def test_invalid_manifest_from_stdin(controller: ControllerThread) -> None:
    """A validation error from `apply -f -` names the object and the field."""
    text = (
        (EXAMPLES / "ippool-demo-v4.yaml").read_text().replace("gateway: 172.30.0.1", "gateway: 172.30.1.1")
    )
    result = ctl(controller.address, "apply", "-f", "-", stdin=text)
    assert result.code == 1
    assert result.err.strip() == (
        'Error from server (Invalid): error when applying "-" (document 1): '
        'SpiderIPPool "demo-v4": spec.gateway: 172.30.1.1 is not inside spec.subnet 172.30.0.0/24'
    )


def test_delete_and_not_found(controller: ControllerThread, manifest: Path) -> None:
    """delete prints kubectl's line; a later get exits 1 with Error from server (NotFound)."""
    ctl(controller.address, "apply", "-f", str(manifest))
    deleted = ctl(controller.address, "delete", "ippool", "demo-v4")
    assert deleted.code == 0, deleted.err
    assert deleted.out.strip() == 'spiderippool.spiderpool.spidernet.io "demo-v4" deleted'
    missing = ctl(controller.address, "get", "ippool", "demo-v4")
    assert missing.code == 1
    assert missing.err.strip() == 'Error from server (NotFound): SpiderIPPool "demo-v4" not found'
    again = ctl(controller.address, "delete", "sp", "demo-v4")
    assert again.code == 1 and "(NotFound)" in again.err


def test_delete_of_a_pool_in_use_says_it_is_kept(controller: ControllerThread, manifest: Path) -> None:
    """A pool with allocations is marked for deletion and the user is told why it stays."""
    ctl(controller.address, "apply", "-f", str(manifest))

    async def allocate() -> None:
        current = await controller.store.get(models.KIND_IPPOOL, "demo-v4")
        record = models.AllocationRecord(pod="default/web-0", pod_uid="u1")
        await controller.store.update_status(
            {**current, "status": models.pool_status_dict({"172.30.0.10": record}, 49)}
        )

    controller.call(allocate())
    result = ctl(controller.address, "delete", "ippool", "demo-v4")
    assert result.code == 0
    assert "is kept until its finalizers ['spiderpool.spidernet.io'] are removed" in result.err
    kept = json.loads(ctl(controller.address, "get", "ippool", "demo-v4", "-o", "json").out)
    assert kept["metadata"]["deletionTimestamp"]


def test_bad_yaml_is_a_clear_error(controller: ControllerThread, tmp_path: Path) -> None:
    """Unparsable YAML exits 1 naming the file and the position."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: spiderpool.spidernet.io/v2beta1\nkind: [SpiderIPPool\n")
    result = ctl(controller.address, "apply", "-f", str(bad))
    assert result.code == 1
    assert result.err.startswith(f"error: error parsing {bad}: ")
    assert "line 3" in result.err
    listed = ctl(controller.address, "apply", "-f", "-", stdin="- a\n- b\n")
    assert listed.code == 1
    assert listed.err.strip() == 'error: "-" (document 1): a manifest must be a mapping, got list'
    missing = ctl(controller.address, "apply", "-f", str(tmp_path / "nope.yaml"))
    assert missing.code == 1 and "does not exist" in missing.err


def test_endpoints_by_namespace(controller: ControllerThread) -> None:
    """Endpoints list in the default namespace, -n picks one, -A adds the NAMESPACE column."""

    async def seed() -> None:
        for ns, name, ip in (("default", "web-0", "172.30.0.10/24"), ("other", "db-0", "172.30.0.11/24")):
            status = models.EndpointStatus(
                uid=f"uid-{name}", node="node1",
                ips=[models.IPAllocationDetail(interface="eth0", ipv4=ip, ipv4_pool="demo-v4")],
            )  # fmt: skip
            created = await controller.store.create(models.new_object(models.KIND_ENDPOINT, name, ns))
            await controller.store.update_status(
                {**created, "status": status.to_dict()}
            )  # create ignores status

    controller.call(seed())
    default = ctl(controller.address, "get", "se")
    assert rows(default.out) == [
        ["NAME", "INTERFACE", "IPV4POOL", "IPV4", "IPV6POOL", "IPV6", "NODE"],
        ["web-0", "eth0", "demo-v4", "172.30.0.10/24", "<none>", "<none>", "node1"],
    ]
    other = ctl(controller.address, "get", "endpoint", "-n", "other")
    assert [r[0] for r in rows(other.out)] == ["NAME", "db-0"]
    every = ctl(controller.address, "get", "se", "-A")
    assert [r[:2] for r in rows(every.out)] == [
        ["NAMESPACE", "NAME"],
        ["default", "web-0"],
        ["other", "db-0"],
    ]
    empty = ctl(controller.address, "get", "se", "-n", "nobody")
    assert empty.code == 0 and empty.err.strip() == "No resources found in nobody namespace."


def test_address_from_environment_and_unreachable_controller(controller: ControllerThread) -> None:
    """SPIDERPOOL_CONTROLLER sets the address; a dead address exits 1 with a clear message."""
    ok = ctl("", "get", "ippool", env={"SPIDERPOOL_CONTROLLER": controller.address})
    assert ok.code == 0 and "No resources found." in ok.err
    dead = ctl("unix:/tmp/spiderpool-no-such.sock", "get", "ippool")
    assert dead.code == 1
    assert dead.err.startswith("error: cannot reach the controller at unix:/tmp/spiderpool-no-such.sock")


def test_usage_errors_exit_2(controller: ControllerThread) -> None:
    """Unknown kinds, missing arguments and bad addresses are usage errors (exit 2)."""
    unknown = ctl(controller.address, "get", "pools")
    assert unknown.code == 2 and "unknown kind 'pools'" in unknown.err
    assert ctl(controller.address).code == 2
    assert ctl(controller.address, "apply").code == 2
    assert ctl("nowhere", "get", "sp").code == 2


def test_servicer_rejects_malformed_requests(controller: ControllerThread) -> None:
    """Raw gRPC callers (grpcurl) get INVALID_ARGUMENT for bad JSON or kinds, not a crash."""
    with grpc.insecure_channel(controller.address) as channel:
        stub = resource_pb2_grpc.ResourceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Apply(resource_pb2.ApplyRequest(object_json="{not json"), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "object_json is not JSON" in (info.value.details() or "")
        with pytest.raises(grpc.RpcError) as info:
            stub.List(resource_pb2.ListRequest(kind="pools"), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
