"""CNI conformance of the installed shims against a real agent and controller (issue 3).

Each case runs the ``spiderpool`` (or ``coordinator``) executable that
``spiderpool-install-cni`` wrote, as a runtime runs it, against a controller process on an
SQLite file and an agent process: every verb at every supported CNI version, and the bad
inputs the spec names, each with its exact code. Every run's stdout is one JSON object or
nothing (``conformance_stack.run_executable``); every failing call is shown to change no
state by comparing the controller's whole store (objects and revision) and the agent's
release journal before and after. The README's "CNI conformance" table names these tests.

Spec rules exercised (SPEC.md 1.1.0, libcni's skel): CHECK exists from 0.4.0, GC and STATUS
from 1.1.0, and a config below those versions is refused with code 1; results carry the
per-IP ``version`` key only below 1.0.0; DEL, CHECK, GC and STATUS print nothing on success.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from spiderpool_agent.cni_call import SUPPORTED_VERSIONS as AGENT_VERSIONS
from spiderpool_cni import codes
from spiderpool_cni.shim import SUPPORTED_VERSIONS as SHIM_VERSIONS

from tests.component.agent_harness import agent_process, controller_process, pool_manifest
from tests.component.conformance_stack import (
    MISSING_NETNS,
    NODE,
    POD_NAMESPACE,
    Stack,
    run_executable,
    start_service,
)

VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
WITH_CHECK = [v for v in VERSIONS if v >= "0.4.0"]
WITHOUT_CHECK = [v for v in VERSIONS if v < "0.4.0"]
BELOW_1_1 = [v for v in VERSIONS if v < "1.1.0"]
V4_GATEWAY = "10.20.0.1"
V6_GATEWAY = "fd20::1"
V4_POOL_ROUTE = {"dst": "10.21.0.0/16", "gw": "10.20.0.254"}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Controller + agent processes with three pools, the shims installed, one resident allocation."""
    workdir = Path(tempfile.mkdtemp(prefix="spc-", dir="/tmp"))  # short: unix socket paths
    controller = controller_process(workdir)
    agent = agent_process(workdir, controller, node=NODE)
    channel: grpc.Channel | None = None
    try:
        start_service(controller)
        channel = grpc.insecure_channel(controller.target)
        bin_dir = workdir / "cni-bin"
        installer = Path(sys.executable).parent / "spiderpool-install-cni"
        subprocess.run([str(installer), "--bin-dir", str(bin_dir)], check=True, capture_output=True)
        result = Stack(workdir, bin_dir, controller, agent, channel)
        result.apply(
            pool_manifest(
                "conf-v4", "10.20.0.0/16", ["10.20.1.1-10.20.1.250"],
                gateway=V4_GATEWAY, routes=[V4_POOL_ROUTE],
            )
        )  # fmt: skip
        result.apply(pool_manifest("conf-v6", "fd20::/64", ["fd20::100-fd20::1ff"], gateway=V6_GATEWAY))
        result.apply(pool_manifest("conf-tiny", "10.29.0.0/24", ["10.29.0.10"], gateway="10.29.0.1"))
        start_service(agent)
        # A bystander allocation: a bad call that released or rewrote anything would show.
        result.add("1.1.0", "resident")
        yield result
    finally:
        agent.stop()
        controller.stop()
        if channel is not None:
            channel.close()
        shutil.rmtree(workdir, ignore_errors=True)


def family_keys(version: str, family: str) -> dict[str, str]:
    """The per-IP ``version`` key: present for 0.3.x and 0.4.0 results, gone from 1.0.0."""
    return {"version": family} if version < "1.0.0" else {}


# -- ADD -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_add_prints_the_result_in_the_versions_format(stack: Stack, version: str) -> None:
    """ADD prints exactly the abbreviated IPAM result for the held addresses in the requested version."""
    cid = stack.new_id("add")
    result = stack.add(version, cid)
    held = stack.ips_of(cid, "conf-v4", "conf-v6")
    v4 = [ip for ip, pool in held.items() if pool == "conf-v4"]
    v6 = [ip for ip, pool in held.items() if pool == "conf-v6"]
    assert (len(v4), len(v6)) == (1, 1), held
    assert result == {
        "cniVersion": version,
        "ips": [
            {**family_keys(version, "4"), "address": f"{v4[0]}/16", "gateway": V4_GATEWAY},
            {**family_keys(version, "6"), "address": f"{v6[0]}/64", "gateway": V6_GATEWAY},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": V4_GATEWAY},
            {"dst": "::/0", "gw": V6_GATEWAY},
            V4_POOL_ROUTE,
        ],
        "dns": {},
    }
    record = stack.records("conf-v4")[v4[0]]
    assert (record["nic"], record["node"], record["net"], record["pod"]) == (
        "eth0", NODE, "conformance-net", f"{POD_NAMESPACE}/{cid}",
    )  # fmt: skip
    stack.run("DEL", stack.net_conf(version), cid).succeeded_silently()


# -- DEL -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_del_releases_and_a_repeated_del_succeeds(stack: Stack, version: str) -> None:
    """DEL prints nothing and frees the attachment's addresses; a second DEL, netns gone, changes nothing."""
    cid = stack.new_id("del")
    result = stack.add(version, cid)
    assert stack.ips_of(cid, "conf-v4", "conf-v6")
    conf = stack.net_conf(version)
    if version >= "0.4.0":
        conf["prevResult"] = result  # passed on DEL from 0.4.0
    stack.run("DEL", conf, cid).succeeded_silently()
    assert stack.ips_of(cid, "conf-v4", "conf-v6") == {}
    after_first = stack.state()
    stack.run("DEL", conf, cid, omit=("CNI_NETNS",)).succeeded_silently()
    assert stack.state() == after_first


# -- CHECK -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", WITH_CHECK)
def test_check_passes_after_add_and_fails_106_after_release_behind_its_back(
    stack: Stack, version: str
) -> None:
    """CHECK with ADD's prevResult prints nothing; once the reservation is released at the controller
    directly, CHECK fails with 106 and changes nothing."""
    cid = stack.new_id("check")
    conf = stack.net_conf(version)
    result = stack.add(version, cid)
    checked = {**conf, "prevResult": result}
    stack.run("CHECK", checked, cid).succeeded_silently()
    assert stack.release_behind_its_back(cid) == 2
    before = stack.state()
    error = stack.run("CHECK", checked, cid).cni_error(codes.ALLOCATION_NOT_FOUND, version)
    assert cid in error["msg"]
    assert stack.state() == before
    stack.run("DEL", checked, cid).succeeded_silently()


@pytest.mark.parametrize("version", WITHOUT_CHECK)
def test_check_is_refused_below_0_4_0(stack: Stack, version: str) -> None:
    """CHECK with a config below 0.4.0 is code 1 (as libcni's skel answers) and changes nothing."""
    cid = stack.new_id("check-old")
    result = stack.add(version, cid)
    before = stack.state()
    stack.run("CHECK", {**stack.net_conf(version), "prevResult": result}, cid).cni_error(
        codes.INCOMPATIBLE_VERSION, version
    )
    assert stack.state() == before
    stack.run("DEL", stack.net_conf(version), cid).succeeded_silently()


# -- GC --------------------------------------------------------------------------------------


def gc_conf(stack: Stack, version: str, network: str, valid: list[str]) -> dict[str, Any]:
    attachments = [{"containerID": cid, "ifname": "eth0"} for cid in valid]
    return {**stack.net_conf(version, network), "cni.dev/valid-attachments": attachments}


def test_gc_releases_unlisted_attachments_and_keeps_listed_ones(stack: Stack) -> None:
    """GC at 1.1.0 prints nothing, frees this network's attachment missing from the valid list, and
    keeps the listed one and another network's."""
    network, other = stack.new_id("gc-net"), stack.new_id("gc-other")
    keep, stale, elsewhere = stack.new_id("gc-keep"), stack.new_id("gc-stale"), stack.new_id("gc-else")
    stack.add("1.1.0", keep, network=network)
    stack.add("1.1.0", stale, network=network)
    stack.add("1.1.0", elsewhere, network=other)
    stack.run("GC", gc_conf(stack, "1.1.0", network, [keep])).succeeded_silently()
    assert stack.ips_of(stale, "conf-v4", "conf-v6") == {}
    assert len(stack.ips_of(keep, "conf-v4", "conf-v6")) == 2
    assert len(stack.ips_of(elsewhere, "conf-v4", "conf-v6")) == 2
    stack.run("DEL", stack.net_conf("1.1.0", network), keep).succeeded_silently()
    stack.run("DEL", stack.net_conf("1.1.0", other), elsewhere).succeeded_silently()


@pytest.mark.parametrize("version", BELOW_1_1)
def test_gc_is_refused_below_1_1_0(stack: Stack, version: str) -> None:
    """GC with a config below 1.1.0 is code 1 and releases nothing, not even an unlisted attachment."""
    network, stale = stack.new_id("gc-old"), stack.new_id("gc-old-stale")
    stack.add(version, stale, network=network)
    before = stack.state()
    stack.run("GC", gc_conf(stack, version, network, [])).cni_error(codes.INCOMPATIBLE_VERSION, version)
    assert stack.state() == before
    assert len(stack.ips_of(stale, "conf-v4", "conf-v6")) == 2
    stack.run("DEL", stack.net_conf(version, network), stale).succeeded_silently()


# -- STATUS ----------------------------------------------------------------------------------


def test_status_is_ready_at_1_1_0(stack: Stack) -> None:
    """STATUS at 1.1.0 prints nothing and exits 0 while the agent, controller and pools can serve ADD."""
    before = stack.state()
    stack.run("STATUS", stack.net_conf("1.1.0")).succeeded_silently()
    assert stack.state() == before


@pytest.mark.parametrize("version", BELOW_1_1)
def test_status_is_refused_below_1_1_0(stack: Stack, version: str) -> None:
    """STATUS with a config below 1.1.0 is code 1."""
    before = stack.state()
    stack.run("STATUS", stack.net_conf(version)).cni_error(codes.INCOMPATIBLE_VERSION, version)
    assert stack.state() == before


def test_status_reports_an_exhausted_pool_as_50(stack: Stack) -> None:
    """STATUS is code 50 naming the pool while its only address is held, and ready again after DEL."""
    conf = stack.net_conf("1.1.0", "tiny-net", v4=("conf-tiny",), v6=())
    stack.run("STATUS", conf).succeeded_silently()
    cid = stack.new_id("fill-tiny")
    stack.run("ADD", conf, cid).result()
    before = stack.state()
    error = stack.run("STATUS", conf).cni_error(codes.NOT_AVAILABLE, "1.1.0")
    assert "conf-tiny" in error["msg"]
    assert stack.state() == before
    stack.run("DEL", conf, cid).succeeded_silently()
    stack.run("STATUS", conf).succeeded_silently()


def test_an_oversized_error_keeps_its_cni_code_and_is_cut_with_a_marker(stack: Stack) -> None:
    """100 pool patterns of 250 characters that match nothing (a 25 KB message listing them) are
    still code 101 through controller, agent and shim (gRPC trailers have a size limit): the
    message starts as the controller wrote it, is cut to at most 1,000 bytes with a marker, and
    nothing changed. (A single longer name is refused by the request bounds, code 7.)"""
    before = stack.state()
    patterns = tuple(f"{i:03d}" + "p" * 246 + "*" for i in range(100))
    conf = stack.net_conf("1.0.0", v4=patterns, v6=())
    error = stack.run("ADD", conf, stack.new_id("huge-name")).cni_error(codes.NO_POOL_MATCHED, "1.0.0")
    assert error["msg"].startswith("no IPv4 IPPool matches [000" + "p" * 100)
    assert error["msg"].endswith("bytes truncated]")
    assert len(error["msg"].encode()) <= 1000
    assert stack.state() == before


# -- VERSION ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shim", ["spiderpool", "coordinator"])
@pytest.mark.parametrize("version", VERSIONS)
def test_version_lists_every_supported_version(stack: Stack, version: str, shim: str) -> None:
    """VERSION (only CNI_COMMAND set) answers the requested version and the five supported ones."""
    assert SHIM_VERSIONS == AGENT_VERSIONS  # the shim advertises exactly what the agent accepts
    out = run_executable(
        stack.bin_dir / shim, {"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"%s"}' % version.encode()
    )
    assert out.result() == {"cniVersion": version, "supportedVersions": list(VERSIONS)}


# -- bad input: the right code, and nothing changes ------------------------------------------


def _conf(version: str = "1.0.0", **changes: Any) -> Callable[[Stack], dict[str, Any]]:
    """A config builder: the standard network config with top-level keys changed (None deletes)."""

    def build(stack: Stack) -> dict[str, Any]:
        conf = stack.net_conf(version)
        for key, value in changes.items():
            if value is None:
                del conf[key]
            else:
                conf[key] = value
        return conf

    return build


def _ipam(**changes: Any) -> Callable[[Stack], dict[str, Any]]:
    """A config builder with keys of the ``ipam`` section changed."""

    def build(stack: Stack) -> dict[str, Any]:
        conf = stack.net_conf("1.0.0")
        conf["ipam"].update(changes)
        return conf

    return build


def _raw(data: bytes) -> Callable[[Stack], bytes]:
    return lambda _stack: data


@dataclass(frozen=True)
class BadCall:
    """One malformed CNI call: what goes on stdin and in the environment, and the code it earns."""

    name: str
    code: int
    stdin: Callable[[Stack], dict[str, Any] | bytes] = field(default_factory=_conf)
    command: str = "ADD"
    env: dict[str, Any] = field(default_factory=dict)
    error_version: str = "1.0.0"  # the error object's cniVersion: the request's, when readable
    shim: str = "spiderpool"


def _gc_without_attachments(stack: Stack) -> dict[str, Any]:
    return stack.net_conf("1.1.0")


def _gc_with_bad_attachments(stack: Stack) -> dict[str, Any]:
    return {**stack.net_conf("1.1.0"), "cni.dev/valid-attachments": {"containerID": "resident"}}


def _coordinator(version: str = "1.0.0", **extra: Any) -> Callable[[Stack], dict[str, Any]]:
    return lambda stack: stack.coordinator_conf(version, **extra)


_NO_ATTACHMENTS: dict[str, Any] = {"cni.dev/valid-attachments": []}
_PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}], "ips": [{"address": "10.20.9.9/16"}]}

BAD_CALLS = [
    # stdin (decoded by the shim: code 6 before any call; the error's cniVersion is the default)
    BadCall("empty stdin", codes.DECODING_FAILURE, _raw(b""), error_version="1.1.0"),
    BadCall("non-JSON", codes.DECODING_FAILURE, _raw(b"{not json"), error_version="1.1.0"),
    BadCall("JSON array", codes.DECODING_FAILURE, _raw(b'[{"cniVersion": "1.0.0"}]'), error_version="1.1.0"),
    BadCall("JSON string", codes.DECODING_FAILURE, _raw(b'"1.0.0"'), error_version="1.1.0"),
    # network config
    BadCall("missing ipam", codes.INVALID_CONFIG, _conf(ipam=None)),
    BadCall("ipam not an object", codes.INVALID_CONFIG, _conf(ipam="spiderpool")),
    BadCall("missing name", codes.INVALID_CONFIG, _conf(name=None)),
    BadCall("name of wrong type", codes.INVALID_CONFIG, _conf(name=42)),
    BadCall("cniVersion of wrong type", codes.INVALID_CONFIG, _conf(cniVersion=1.0), error_version="1.1.0"),
    BadCall("pool list of wrong type", codes.INVALID_CONFIG, _ipam(default_ipv4_ippool="conf-v4")),
    BadCall("clean_gateway of wrong type", codes.INVALID_CONFIG, _ipam(clean_gateway="yes")),
    BadCall("socket path of wrong type", codes.INVALID_CONFIG, _ipam(ipam_unix_socket_path=["/run/x.sock"])),
    BadCall("spool dir not an absolute path", codes.INVALID_CONFIG, _ipam(del_spool_dir="spool")),
    BadCall("prevResult of wrong type", codes.INVALID_CONFIG, _conf(prevResult=[])),
    BadCall("unknown pool", codes.POOL_NOT_FOUND, _ipam(default_ipv4_ippool=["no-such-pool"])),
    BadCall("unsupported version 0.2.0", codes.INCOMPATIBLE_VERSION, _conf("0.2.0"), error_version="0.2.0"),
    BadCall("unsupported version 2.0.0", codes.INCOMPATIBLE_VERSION, _conf("2.0.0"), error_version="2.0.0"),
    # environment
    BadCall("missing CNI_CONTAINERID", codes.INVALID_ENVIRONMENT, env={"omit": ("CNI_CONTAINERID",)}),
    BadCall("missing CNI_IFNAME", codes.INVALID_ENVIRONMENT, env={"omit": ("CNI_IFNAME",)}),
    BadCall("missing CNI_NETNS", codes.INVALID_ENVIRONMENT, env={"omit": ("CNI_NETNS",)}),
    BadCall("invalid CNI_CONTAINERID", codes.INVALID_ENVIRONMENT, env={"container_id": "-not valid"}),
    BadCall("netns does not exist", codes.UNKNOWN_CONTAINER, env={"netns": MISSING_NETNS}),
    BadCall("netns is a directory", codes.INVALID_ENVIRONMENT, env={"netns": "/tmp"}),
    BadCall("netns is a regular file", codes.INVALID_ENVIRONMENT, env={"netns": "/etc/passwd"}),
    BadCall("netns is a mount namespace", codes.INVALID_ENVIRONMENT, env={"netns": "/proc/self/ns/mnt"}),
    BadCall("CNI_IFNAME of 16 UTF-8 bytes", codes.INVALID_ENVIRONMENT, env={"ifname": "\u00e9" * 8}),
    BadCall("unknown CNI_ARGS key", codes.UNSUPPORTED_FIELD, env={"args": "K8S_POD_NAME=x;COLOR=blue"}),
    BadCall("unknown CNI_COMMAND", codes.INVALID_ENVIRONMENT, command="ATTACH"),
    # other verbs
    BadCall(
        "DEL missing CNI_CONTAINERID",
        codes.INVALID_ENVIRONMENT,
        command="DEL",
        env={"omit": ("CNI_CONTAINERID",)},
    ),
    BadCall(
        "DEL missing CNI_IFNAME", codes.INVALID_ENVIRONMENT, command="DEL", env={"omit": ("CNI_IFNAME",)}
    ),
    BadCall("DEL missing ipam", codes.INVALID_CONFIG, _conf(ipam=None), command="DEL"),
    BadCall(
        "CHECK missing CNI_NETNS",
        codes.INVALID_ENVIRONMENT,
        _conf(prevResult=_PREV),
        command="CHECK",
        env={"omit": ("CNI_NETNS",)},
    ),
    BadCall(
        "CHECK of an unknown attachment", codes.ALLOCATION_NOT_FOUND, _conf(prevResult=_PREV), command="CHECK"
    ),
    BadCall(
        "CHECK netns does not exist",
        codes.UNKNOWN_CONTAINER,
        _conf(prevResult=_PREV),
        command="CHECK",
        env={"netns": MISSING_NETNS},
    ),
    BadCall(
        "CHECK netns is a directory",
        codes.INVALID_ENVIRONMENT,
        _conf(prevResult=_PREV),
        command="CHECK",
        env={"netns": "/tmp"},
    ),
    BadCall(
        "GC without valid-attachments",
        codes.INVALID_CONFIG,
        _gc_without_attachments,
        command="GC",
        error_version="1.1.0",
    ),
    BadCall(
        "GC attachments not an array",
        codes.INVALID_CONFIG,
        _gc_with_bad_attachments,
        command="GC",
        error_version="1.1.0",
    ),
    BadCall(
        "STATUS non-JSON", codes.DECODING_FAILURE, _raw(b"status?"), command="STATUS", error_version="1.1.0"
    ),
    # the coordinator shim (its routing needs a real netns: the netns tests cover the rest)
    BadCall(
        "coordinator empty stdin",
        codes.DECODING_FAILURE,
        _raw(b""),
        error_version="1.1.0",
        shim="coordinator",
    ),
    BadCall(
        "coordinator JSON array",
        codes.DECODING_FAILURE,
        _raw(b"[]"),
        error_version="1.1.0",
        shim="coordinator",
    ),
    BadCall(
        "coordinator unsupported version",
        codes.INCOMPATIBLE_VERSION,
        _coordinator("0.2.0", prevResult=_PREV),
        error_version="0.2.0",
        shim="coordinator",
    ),
    BadCall(
        "coordinator ADD missing CNI_NETNS",
        codes.INVALID_ENVIRONMENT,
        _coordinator(prevResult=_PREV),
        env={"omit": ("CNI_NETNS",)},
        shim="coordinator",
    ),
    BadCall(
        "coordinator netns does not exist",
        codes.UNKNOWN_CONTAINER,
        _coordinator(prevResult=_PREV),
        env={"netns": MISSING_NETNS},
        shim="coordinator",
    ),
    BadCall(
        "coordinator netns is a regular file",
        codes.INVALID_ENVIRONMENT,
        _coordinator(prevResult=_PREV),
        env={"netns": "/etc/passwd"},
        shim="coordinator",
    ),
    BadCall("coordinator ADD without prevResult", codes.INVALID_CONFIG, _coordinator(), shim="coordinator"),
    BadCall(
        "coordinator spool dir of wrong type",
        codes.INVALID_CONFIG,
        _coordinator(prevResult=_PREV, del_spool_dir=["/var/lib/spool"]),
        command="DEL",
        shim="coordinator",
    ),
    BadCall(
        "coordinator CHECK below 0.4.0",
        codes.INCOMPATIBLE_VERSION,
        _coordinator("0.3.1", prevResult=_PREV),
        command="CHECK",
        error_version="0.3.1",
        shim="coordinator",
    ),
    BadCall(
        "coordinator GC below 1.1.0",
        codes.INCOMPATIBLE_VERSION,
        _coordinator("1.0.0", **_NO_ATTACHMENTS),
        command="GC",
        shim="coordinator",
    ),
    BadCall(
        "coordinator STATUS below 1.1.0",
        codes.INCOMPATIBLE_VERSION,
        _coordinator("0.4.0"),
        command="STATUS",
        error_version="0.4.0",
        shim="coordinator",
    ),
]


@pytest.mark.parametrize("bad", BAD_CALLS, ids=[bad.name for bad in BAD_CALLS])
def test_bad_input_gets_its_code_and_changes_nothing(stack: Stack, bad: BadCall) -> None:
    """Each malformed call exits 1 with the spec's error object and its exact code, and the store
    and the agent's journal are exactly as before."""
    env = {"container_id": stack.new_id("bad"), **bad.env}
    before = stack.state()
    out = stack.run(bad.command, bad.stdin(stack), shim=bad.shim, **env)
    out.cni_error(bad.code, bad.error_version)
    assert stack.state() == before
    assert len(stack.ips_of("resident", "conf-v4", "conf-v6")) == 2
