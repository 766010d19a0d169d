"""The README's grpcurl examples (and docs/troubleshooting.md's) run as written against a live
controller and agent.

The first ``sh`` block of the README's "Debugging" section is read from README.md: each
``grpcurl`` command (continuation lines joined) is run through bash with the two default
socket paths replaced by the test's, after the state the README describes: its demo pool
applied and one ADD of pod ``default/web-0`` (the UID and sandbox the README names) through
the network ``macvlan-demo``, by the installed shim. Every command must succeed, and the
``# `` lines right below a command are its expected stdout, compared line by line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.component.agent_harness import DEADLINE
from tests.component.conformance_stack import Stack, running_stack

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "### Debugging"
CONTROLLER_SOCKET = "/run/spiderpool/controller.sock"
AGENT_SOCKET = "/var/run/spidernet/spiderpool.sock"
POD_UID = "5f3c7a8e-0d1b-4a8e-9a55-2b6f0f1e3d21"
SANDBOX = "c0ffee"


@dataclass
class Example:
    line: str
    expected: list[str] = field(default_factory=list)


def readme_examples(path: Path = README, section: str = SECTION) -> list[Example]:
    """The grpcurl commands of the section's sh block, each with the ``# `` lines right below it
    (a blank line ends them; comments after a blank line describe the next command)."""
    text = path.read_text()
    block = re.search(r"```sh\n(.*?)```", text[text.index(section) :], re.S)
    assert block is not None, f"{path.name}: the {section} section has no sh block"
    examples: list[Example] = []
    pending = ""
    collecting = False
    for source_line in block.group(1).splitlines():
        raw, pending = (pending + " " + source_line.strip(), "") if pending else (source_line, "")
        if raw.endswith("\\"):
            pending = raw[:-1].rstrip()
            continue
        if not raw.strip():
            collecting = False
        elif raw.startswith("#"):
            if collecting:
                examples[-1].expected.append(raw[2:].rstrip())
        else:
            examples.append(Example(raw.strip()))
            collecting = True
    return examples


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    pool = yaml.safe_load((ROOT / "deploy/examples/ippool-demo-v4.yaml").read_text())
    with running_stack("rgrpc-", [pool]) as running:
        conf = running.net_conf("1.1.0", "macvlan-demo", v4=("demo-v4",), v6=())
        args = f"K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID={POD_UID}"
        running.run("ADD", conf, SANDBOX, args=args).result()
        yield running


def test_the_readme_grpcurl_examples_print_what_the_readme_shows(stack: Stack) -> None:
    """list, describe, health of both services and the pod's allocation, each exactly as shown."""
    examples = readme_examples()
    assert [e.line.split()[0] for e in examples] == ["grpcurl"] * len(examples)
    verbs = " ".join(e.line for e in examples)
    for needed in (" list", " describe ", "Health/Check", "IpamService/GetEndpoint"):
        assert needed in verbs, f"the README shows no grpcurl{needed} example"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for example in examples:
        line = example.line.replace(CONTROLLER_SOCKET, str(stack.controller.socket_path))
        line = line.replace(AGENT_SOCKET, str(stack.agent.socket_path))
        proc = subprocess.run(
            ["bash", "-c", line], env=env, capture_output=True, text=True, timeout=DEADLINE, check=False
        )
        assert proc.returncode == 0, f"{example.line}\n{proc.stderr}"
        if example.expected:
            assert proc.stdout.rstrip("\n").splitlines() == example.expected, example.line
        elif " describe " in line:
            assert proc.stdout.startswith(f"{line.split()[-1]} is a service:"), proc.stdout
        else:
            reply = json.loads(proc.stdout)
            assert (reply["namespace"], reply["name"], reply["pod_uid"]) == ("default", "web-0", POD_UID)
            assert [a["address"] for a in reply["interfaces"][0]["addresses"]] == ["172.30.0.10/24"]


def test_the_troubleshooting_pages_grpcurl_examples_run(stack: Stack) -> None:
    """docs/troubleshooting.md's grpcurl block (the pod's UID put in for ``UID``): every call
    succeeds and answers what it asked about."""
    examples = readme_examples(ROOT / "docs" / "troubleshooting.md", "## Are the services up? grpcurl")
    assert len(examples) >= 8
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    answers = {}
    for example in examples:
        line = example.line.replace(CONTROLLER_SOCKET, str(stack.controller.socket_path))
        line = line.replace(AGENT_SOCKET, str(stack.agent.socket_path)).replace('"UID"', f'"{POD_UID}"')
        proc = subprocess.run(
            ["bash", "-c", line], env=env, capture_output=True, text=True, timeout=DEADLINE, check=False
        )
        assert proc.returncode == 0, f"{example.line}\n{proc.stderr}"
        answers[line.split()[-1].rsplit("/", 1)[-1]] = proc.stdout
    assert json.loads(answers["GetEndpoint"])["ips"][0]["address"] == "172.30.0.10/24"
    assert json.loads(answers["DescribeEndpoint"])["pod_uid"] == POD_UID
    assert json.loads(answers["Check"])["addresses"] == 1
    explained = json.loads(answers["Explain"])
    assert explained["nics"][0]["held"][0]["address"] == "172.30.0.10/24"
