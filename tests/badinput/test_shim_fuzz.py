"""Fuzzing the shim -> agent -> controller path: whatever the runtime sends, a CNI answer comes back.

A real controller (SQLite) and agent run as processes (``conformance_stack.running_stack``);
the shims are run in-process through ``shim.handle`` (the function the installed
executable's ``main`` calls, minus reading fd 0 and writing fd 1) for the bulk of the
examples, and a smaller number as the installed executables in subprocesses. Inputs:
arbitrary stdin bytes, arbitrary CNI environment variables, and valid network
configurations with one to three fields replaced by arbitrary JSON or removed.

Every answer is checked against the CNI contract: exit code 1 with exactly
``{cniVersion, code, msg, details}`` and a code from the spec or this project's table
(``spiderpool_cni.codes``), or exit code 0 with nothing (DEL, CHECK, GC, STATUS) or a
result object; never a traceback. An error changes nothing: the controller's pools and
SpiderEndpoints (objects and store revision) and the agent's release journal are the same
before and after. A fuzzed ADD that succeeds is undone by its DEL, which must succeed.

The default agent socket and DEL spool directory are pointed into the stack's temporary
directory, so a config that loses its socket path still reaches this agent and a DEL the
agent cannot take is spooled there, never on the machine's real paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spiderpool_cni import codes, shim, spool

from tests.badinput.strategies import ANY_TEXT, ENV_TEXT, JSON, mutated
from tests.component.agent_harness import pool_manifest
from tests.component.conformance_stack import (
    ERROR_KEYS,
    MISSING_NETNS,
    NETNS,
    Stack,
    kubelet_args,
    run_executable,
    running_stack,
)

POOL = "fuzz-v4"
NETWORK = "fuzz-net"
KNOWN_CODES = frozenset(codes.DESCRIPTIONS)
VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
CNI_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
IPAM_PATHS: list[tuple[str, ...]] = [
    ("cniVersion",), ("name",), ("type",), ("ipam",), ("prevResult",), ("runtimeConfig",), ("args",),
    ("cni.dev/valid-attachments",), ("capabilities",),
    ("ipam", "type"), ("ipam", "default_ipv4_ippool"), ("ipam", "default_ipv6_ippool"),
    ("ipam", "clean_gateway"), ("ipam", "log_level"), ("ipam", "log_file_path"),
    ("ipam", "log_file_max_size"), ("ipam", "enable_ip_conflict_detection"),
    ("args", "cni"), ("args", "cni", "labels"), ("args", "cni", "owner"), ("args", "cni", "annotations"),
    ("args", "cni", "multusName"), ("runtimeConfig", "ips"),
]  # fmt: skip
COORDINATOR_PATHS: list[tuple[str, ...]] = [
    ("cniVersion",), ("name",), ("prevResult",), ("mode",), ("tunePodRoutes",), ("podDefaultRouteNic",),
    ("hijackCIDR",), ("podRPFilter",), ("hostRuleTable",), ("txQueueLen",), ("vethLinkAddress",),
    ("podMACPrefix",), ("logOptions",), ("prevResult", "ips"), ("prevResult", "interfaces"),
    ("cni.dev/valid-attachments",),
]  # fmt: skip


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Controller + agent with one roomy pool and a bystander allocation on another network."""
    pools = [pool_manifest(POOL, "10.40.0.0/16", ["10.40.0.10-10.40.255.250"], gateway="10.40.0.1")]
    with running_stack("spfz-", pools) as result:
        result.add("1.1.0", "resident", network="resident-net", v4=(POOL,), v6=())
        yield result


@pytest.fixture
def sandboxed_defaults(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shim's default socket is this agent's; its default spool is in the stack's directory."""
    monkeypatch.setattr(shim, "DEFAULT_SOCKET", str(stack.agent.socket_path))
    monkeypatch.setattr(spool, "DEFAULT_DIR", str(stack.workdir / "default-spool"))


def base_config(stack: Stack, kind: str, version: str) -> dict[str, Any]:
    """A valid config for ``kind`` whose socket and spool paths point into the stack."""
    spool_dir = str(stack.workdir / "spool")
    if kind == "ipam":
        conf = stack.net_conf(version, NETWORK, v4=(POOL,), v6=())
        conf["ipam"]["del_spool_dir"] = spool_dir
        return conf
    conf = stack.coordinator_conf(version, del_spool_dir=spool_dir)
    conf["name"] = NETWORK
    conf["prevResult"] = {"cniVersion": version, "ips": [{"address": "10.40.9.9/16"}]}
    return conf


def check_answer(command: str, exit_code: int, output: bytes) -> dict[str, Any] | None:
    """The CNI output contract; returns the error object, or None for a success."""
    assert b"Traceback" not in output
    if exit_code == 0:
        if output == b"":
            assert command in ("DEL", "CHECK", "GC", "STATUS"), (command, output)
            return None
        assert output.endswith(b"\n")
        obj = json.loads(output)
        assert isinstance(obj, dict) and "code" not in obj, obj
        if command == "VERSION":
            assert obj["supportedVersions"] == list(CNI_VERSIONS)
        else:
            assert command == "ADD", (command, obj)
            assert isinstance(obj.get("ips"), list) and obj["ips"], obj
        return None
    assert exit_code == 1, (exit_code, output)
    assert output.endswith(b"\n")
    obj = json.loads(output)
    assert isinstance(obj, dict) and set(obj) == ERROR_KEYS, obj
    assert obj["code"] in KNOWN_CODES, obj
    assert isinstance(obj["cniVersion"], str)
    assert isinstance(obj["msg"], str) and obj["msg"], obj
    assert isinstance(obj["details"], str)
    return obj


def env_strategy(
    text: st.SearchStrategy[str], netns: st.SearchStrategy[str]
) -> st.SearchStrategy[dict[str, str]]:
    """A CNI environment: each variable mostly plausible, sometimes absent or arbitrary text."""

    def var(plausible: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
        def pick(i: int) -> st.SearchStrategy[str | None]:
            return st.none() if i == 0 else text if i == 1 else plausible

        return st.integers(0, 7).flatmap(pick)

    ids = st.sampled_from(["fz-a", "fz-b", "fz-c"])
    return st.fixed_dictionaries(
        {
            "CNI_COMMAND": var(st.sampled_from(VERBS)),
            "CNI_CONTAINERID": var(ids),
            "CNI_NETNS": var(netns),
            "CNI_IFNAME": var(st.sampled_from(["eth0", "net1", "x" * 16])),
            "CNI_ARGS": var(st.one_of(ids.map(kubelet_args), st.just("IgnoreUnknown=1;IP=10.40.0.99"))),
            "CNI_PATH": var(st.just("/opt/cni/bin")),
            shim.TIMEOUT_ENV: st.one_of(st.none(), st.sampled_from(["", "abc", "-1", "1e-9", "nan", "5"])),
        }
    ).map(lambda env: {k: v for k, v in env.items() if v is not None})


# The IPAM plugin may be given the agent's own namespace (IPAM does nothing in it); the
# coordinator never is: it would route in the agent's, i.e. this machine's, namespace.
IPAM_NETNS = st.sampled_from([NETNS, NETNS, NETNS, MISSING_NETNS, "/tmp", "", "relative/path"])
COORDINATOR_NETNS = st.sampled_from([MISSING_NETNS, "/tmp", "", "relative/path", "/dev/null"])


@st.composite
def stdin_strategy(draw: st.DrawFn, stack: Stack, kind: str) -> bytes:
    """Arbitrary bytes, an arbitrary JSON value, or a mutated valid config."""
    version = draw(st.sampled_from(CNI_VERSIONS))
    base = base_config(stack, kind, version)
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return json.dumps(draw(JSON)).encode()
    if choice == 2:  # a valid config cut short, or with a byte changed
        raw = json.dumps(base).encode()
        cut = draw(st.integers(0, len(raw) - 1))
        return raw[:cut] + draw(st.binary(max_size=3))
    if choice == 6:
        return json.dumps(base).encode()
    doc = draw(mutated(base, IPAM_PATHS if kind == "ipam" else COORDINATOR_PATHS))
    if choice == 3:  # the socket or spool path of a wrong type, missing, or a dead socket
        section = doc.get("ipam") if kind == "ipam" else doc
        if isinstance(section, dict):
            key = draw(st.sampled_from(["ipam_unix_socket_path", "del_spool_dir"]))
            section[key] = draw(
                st.sampled_from([None, 5, ["x"], "relative", str(stack.workdir / "dead.sock")])
            )
    return json.dumps(doc).encode()


def run_in_process(stack: Stack, kind: str, env: dict[str, str], stdin: bytes) -> None:
    before = stack.state()
    reply = shim.handle(kind, env, stdin)
    error = check_answer(env.get("CNI_COMMAND", ""), reply.exit_code, reply.output)
    if error is not None:
        assert stack.state() == before, (error, env, stdin)
    elif env.get("CNI_COMMAND") == "ADD":
        undo = shim.handle(kind, {**env, "CNI_COMMAND": "DEL"}, stdin)
        assert (undo.exit_code, undo.output) == (0, b""), undo.output


FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.usefixtures("sandboxed_defaults")
@FUZZ
@given(data=st.data(), env=env_strategy(ANY_TEXT, IPAM_NETNS))
def test_the_ipam_shim_answers_any_input_with_a_cni_answer(
    stack: Stack, data: st.DataObject, env: dict[str, str]
) -> None:
    """Any stdin and CNI environment given to the IPAM shim get a CNI answer; an error changes nothing."""
    stdin = data.draw(stdin_strategy(stack, "ipam"), label="stdin")
    run_in_process(stack, "ipam", env, stdin)


@pytest.mark.usefixtures("sandboxed_defaults")
@FUZZ
@given(data=st.data(), env=env_strategy(ANY_TEXT, COORDINATOR_NETNS))
def test_the_coordinator_shim_answers_any_input_with_a_cni_answer(
    stack: Stack, data: st.DataObject, env: dict[str, str]
) -> None:
    """Any stdin and CNI environment given to the coordinator shim get a CNI answer; errors change nothing."""
    stdin = data.draw(stdin_strategy(stack, "coordinator"), label="stdin")
    run_in_process(stack, "coordinator", env, stdin)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(["ipam", "coordinator"]))
def test_the_installed_shims_answer_fuzzed_calls_on_stdout_with_a_matching_exit_code(
    stack: Stack, data: st.DataObject, kind: str
) -> None:
    """The installed executables, run as a runtime runs them, print one CNI answer whose exit code agrees."""
    netns = IPAM_NETNS if kind == "ipam" else COORDINATOR_NETNS
    env = data.draw(env_strategy(ENV_TEXT, netns), label="env")
    env.pop(shim.TIMEOUT_ENV, None)
    stdin = data.draw(stdin_strategy(stack, kind), label="stdin")
    # The runtime's parse of stdin: a config that loses its socket path must still not
    # reach the machine's default socket or spool; those cases are the in-process tests'.
    try:
        doc = json.loads(stdin)
    except ValueError:
        doc = None
    section = (doc.get("ipam") if kind == "ipam" else doc) if isinstance(doc, dict) else None
    if isinstance(section, dict):
        if not isinstance(section.get("ipam_unix_socket_path"), str):
            section["ipam_unix_socket_path"] = str(stack.agent.socket_path)
        log_file = str(stack.workdir / "fuzz-shim.log")  # never a fuzzed path on this machine
        if kind == "ipam":
            section["log_file_path"] = log_file
        else:
            section["logOptions"] = {"logFile": log_file}
        stdin = json.dumps(doc).encode()
    before = stack.state()
    executable = stack.bin_dir / ("spiderpool" if kind == "ipam" else "coordinator")
    outcome = run_executable(executable, env, stdin)
    error = check_answer(env.get("CNI_COMMAND", ""), outcome.rc, outcome.stdout)
    if error is not None:
        assert stack.state() == before, (error, env, stdin)
    elif env.get("CNI_COMMAND") == "ADD":
        undo = run_executable(executable, {**env, "CNI_COMMAND": "DEL"}, stdin)
        undo.succeeded_silently()


@pytest.mark.usefixtures("sandboxed_defaults")
@pytest.mark.parametrize("kind", ["ipam", "coordinator"])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_a_config_nested_too_deep_is_a_decoding_failure_at_either_end(
    stack: Stack, kind: str, command: str
) -> None:
    """A config nested 990 levels deep (the shim decodes it, the agent's deeper stack could not)
    and one nested 200 levels deep are code 6, not an internal error, and change nothing."""
    for depth in (200, 990):
        conf = base_config(stack, kind, "1.0.0")
        raw = json.dumps(conf).encode()[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
        netns = NETNS if kind == "ipam" else MISSING_NETNS
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "fz-deep", "CNI_NETNS": netns, "CNI_IFNAME": "eth0"}
        before = stack.state()
        reply = shim.handle(kind, env, raw)
        error = check_answer(command, reply.exit_code, reply.output)
        assert error is not None and error["code"] == codes.DECODING_FAILURE, (depth, error)
        assert "nested" in error["msg"] + error["details"], error
        assert stack.state() == before


@pytest.mark.usefixtures("sandboxed_defaults")
@pytest.mark.parametrize(
    ("command", "code"), [("ADD", codes.INVALID_CONFIG), ("STATUS", codes.NOT_AVAILABLE)]
)
def test_a_pool_name_beyond_any_kubernetes_name_is_an_invalid_config(
    stack: Stack, command: str, code: int
) -> None:
    """A 300 KiB default pool name (it held the controller's event loop for seconds) is code 7
    naming the field (STATUS: 50, cannot serve ADD, with the same reason), and changes nothing."""
    conf = base_config(stack, "ipam", "1.1.0")
    conf["ipam"]["default_ipv4_ippool"] = ["p" * (300 * 1024)]
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "fz-huge", "CNI_NETNS": NETNS, "CNI_IFNAME": "eth0"}
    before = stack.state()
    reply = shim.handle("ipam", env, json.dumps(conf).encode())
    error = check_answer(command, reply.exit_code, reply.output)
    assert error is not None and error["code"] == code, error
    assert "default_ipv4_ippools[0] is 307200 characters long; at most 253" in error["msg"], error
    assert stack.state() == before
