"""An operator can follow one failed CNI call through the shim's, the agent's and the controller's logs.

A real controller and a real agent run as processes logging JSON lines to stderr; the
installed IPAM shim makes the call, as a runtime would. A failed ADD is logged once, as an
error, by each service, carrying the same ``pod``, ``container_id``, ``ifname``,
``network`` and the failure's ``reason``; the shim's own line uses the same keys.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from spiderpool_cni import codes
from spiderpool_cni.install import install

from tests.component.agent_harness import (
    ServiceProcess,
    agent_process,
    apply,
    controller_process,
    pool_manifest,
)

POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-{n};K8S_POD_UID=uid-{n}"
KEYS = ("pod", "container_id", "ifname", "network")


@dataclass
class Stack:
    workdir: Path
    bin_dir: Path
    controller: ServiceProcess
    agent: ServiceProcess

    def add(self, n: int, pool: str) -> dict[str, Any]:
        """Run the installed shim's ADD for pod web-<n> (container ctr-<n>, net1) on ``pool``."""
        config = {
            "cniVersion": "1.0.0",
            "name": "blue-net",
            "type": "macvlan",
            "ipam": {
                "type": "spiderpool",
                "default_ipv4_ippool": [pool],
                "ipam_unix_socket_path": str(self.agent.socket_path),
                "log_file_path": str(self.workdir / "shim.log"),
            },
        }
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": f"ctr-{n}",
            "CNI_NETNS": "/proc/self/ns/net",
            "CNI_IFNAME": "net1",
            "CNI_ARGS": POD_ARGS.format(n=n),
            "CNI_PATH": "/opt/cni/bin",
        }
        proc = subprocess.run(
            [str(self.bin_dir / "spiderpool")],
            input=json.dumps(config).encode(),
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        result: dict[str, Any] = json.loads(proc.stdout)
        return result


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a service's stderr, each parsed as one JSON object."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def errors_about(lines: list[dict[str, Any]], container_id: str) -> list[dict[str, Any]]:
    return [
        line for line in lines if line.get("level") == "error" and line.get("container_id") == container_id
    ]


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="splog-", dir="/tmp"))
    bin_dir = workdir / "bin"
    install(str(bin_dir))
    controller = controller_process(workdir, log_format="json")
    agent = agent_process(workdir, controller, log_format="json")
    try:
        await controller.start()
        await apply(
            controller.target, pool_manifest("one-ip", "10.9.0.0/24", ["10.9.0.10"], gateway="10.9.0.1")
        )
        await agent.start()
        yield Stack(workdir, bin_dir, controller, agent)
    finally:
        agent.stop()
        controller.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize(
    ("pool", "code", "reason"),
    [
        ("one-ip", codes.POOL_EXHAUSTED, "POOL_EXHAUSTED"),
        ("no-such-pool", codes.POOL_NOT_FOUND, "POOL_NOT_FOUND"),
    ],
)
async def test_a_failed_add_is_one_error_line_per_service_naming_the_pod_and_the_reason(
    stack: Stack, pool: str, code: int, reason: str
) -> None:
    """Each service logs the failed ADD once, at error, with pod, container_id, ifname, network and reason."""
    if pool == "one-ip":
        assert "ips" in stack.add(1, pool)  # takes the pool's only address
    assert stack.add(2, pool)["code"] == code
    expected = {"pod": "team-a/web-2", "container_id": "ctr-2", "ifname": "net1", "network": "blue-net"}
    for service, rpc in ((stack.agent, "IpamAdd"), (stack.controller, "Allocate")):
        lines = errors_about(json_lines(service.log_path), "ctr-2")
        assert len(lines) == 1, lines
        line = lines[0]
        assert {k: line.get(k) for k in KEYS} == expected
        assert (line["event"], line["rpc"], line["reason"], line["cni_code"]) == (
            "request_failed",
            rpc,
            reason,
            code,
        )
    shim_line = (stack.workdir / "shim.log").read_text().splitlines()[-1]
    for key, value in {**expected, "rpc": "IpamAdd"}.items():
        assert f"{key}={json.dumps(value)}" in shim_line
    assert re.search(rf"result=error code={code}\b", shim_line)


async def test_lines_logged_while_serving_a_call_carry_its_context(stack: Stack) -> None:
    """The agent's ip_allocated line names the pod, network and rpc, which its handler never passes itself."""
    assert "ips" in stack.add(1, "one-ip")
    allocated = [line for line in json_lines(stack.agent.log_path) if line["event"] == "ip_allocated"]
    assert len(allocated) == 1
    assert {k: allocated[0].get(k) for k in (*KEYS, "rpc")} == {
        "pod": "team-a/web-1",
        "container_id": "ctr-1",
        "ifname": "net1",
        "network": "blue-net",
        "rpc": "IpamAdd",
    }
