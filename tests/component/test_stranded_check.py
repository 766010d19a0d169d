"""A range change never strands an address silently: refused with the list, or forced and reported by
``spiderpoolctl check``. Real controller and agent processes, the installed shim, spiderpoolctl as a user
runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spiderpool_controller.domain.stranded import FORCE_ANNOTATION

from tests.component.agent_harness import pool_manifest
from tests.component.conformance_stack import Stack, running_stack

CTL = Path(sys.executable).parent / "spiderpoolctl"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack(
        "strand-", [pool_manifest("conf-v4", "10.70.0.0/24", ["10.70.0.10-10.70.0.30"])]
    ) as running:
        yield running


def ctl(stack: Stack, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CTL), "--controller", stack.controller.target, *argv],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def shrunk(annotations: dict[str, str] | None = None) -> str:
    manifest: dict[str, Any] = pool_manifest("conf-v4", "10.70.0.0/24", ["10.70.0.12-10.70.0.30"])
    if annotations:
        manifest["metadata"]["annotations"] = annotations
    return json.dumps(manifest)


def test_a_stranding_change_is_refused_then_forced_and_check_reports_until_released(stack: Stack) -> None:
    """Shrinking below two held addresses fails naming both pods and changes nothing; with the force
    annotation it applies, check lists both (exit 1), and once their pods are deleted check is clean."""
    pods = [stack.new_id("strand") for _ in range(2)]
    config = stack.net_conf("1.1.0", v6=())
    held = {pod: stack.add("1.1.0", pod, v6=())["ips"][0]["address"] for pod in pods}
    assert sorted(held.values()) == ["10.70.0.10/24", "10.70.0.11/24"]
    before = stack.state()

    refused = ctl(stack, "apply", "-f", "-", stdin=shrunk())
    assert refused.returncode == 1
    assert "remove 2 IP addresses that are being used" in refused.stderr
    for pod in pods:
        assert f"(Pod conformance/{pod}, outside spec.ips)" in refused.stderr
    assert stack.state() == before
    assert ctl(stack, "check").returncode == 0

    forced = ctl(stack, "apply", "-f", "-", stdin=shrunk({FORCE_ANNOTATION: "true"}))
    assert forced.returncode == 0, forced.stderr
    report = ctl(stack, "check")
    assert report.returncode == 1
    lines = report.stdout.splitlines()
    assert lines[0].split() == ["POOL", "IP", "POD", "CONTAINER", "INTERFACE", "REASON"]
    assert [line.split()[:5] for line in lines[1:]] == [
        ["conf-v4", held[pod].split("/")[0], f"conformance/{pod}", pod, "eth0"] for pod in pods
    ]
    assert "2 allocated address(es) lie outside" in report.stderr
    assert set(stack.ips_of(pods[0], "conf-v4")) | set(stack.ips_of(pods[1], "conf-v4")) == {
        "10.70.0.10", "10.70.0.11",
    }  # fmt: skip

    for pod in pods:
        stack.run("DEL", config, pod).succeeded_silently()
    clean = ctl(stack, "check")
    assert clean.returncode == 0
    assert clean.stdout.strip() == "No stranded addresses in 1 IPPool(s)."
