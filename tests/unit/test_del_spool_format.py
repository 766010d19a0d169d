"""The DEL spool's file format: what the shim writes is exactly what the agent replays."""

from __future__ import annotations

import json
from typing import Any

import pytest
from spiderpool_agent.del_spool import SpoolCorrupt, attachment_key, parse
from spiderpool_cni import spool

PLUGINS = {"ipam": object(), "coordinator": object()}
ENV = {
    "CNI_COMMAND": "DEL",
    "CNI_CONTAINERID": "abc123",
    "CNI_NETNS": "",
    "CNI_IFNAME": "net1",
    "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p\u00e9;K8S_POD_UID=uid-7",
    "CNI_PATH": "/opt/cni/bin",
}
STDIN = b'{"cniVersion": "1.0.0", "name": "n\xc3\xa9t",\n "ipam": {"type": "spiderpool"}}\n'


def test_the_agent_rebuilds_the_exact_cni_call_the_shim_would_have_sent() -> None:
    """render -> parse gives a DEL CniCall with every variable, the present list in CNI order (an empty
    CNI_NETNS still present), the stdin bytes unchanged, and the pod-UID attachment key."""
    present = list(ENV)
    data = spool.render("ipam", ENV, present, STDIN, "agent unreachable \u00e9")
    assert data.isascii()
    entry = parse("f.del", data, PLUGINS)
    call = entry.call
    assert (entry.plugin, call.command, call.container_id, call.ifname, call.netns) == (
        "ipam", "DEL", "abc123", "net1", "",
    )  # fmt: skip
    assert call.args == ENV["CNI_ARGS"]
    assert call.path == "/opt/cni/bin"
    assert call.config == STDIN
    assert list(call.present) == present
    assert entry.key == ("uid-7", "net1")
    assert json.loads(data)["reason"] == "agent unreachable \u00e9"


def test_an_absent_variable_stays_absent() -> None:
    """A variable the runtime did not set is neither in the file's env nor in the rebuilt present list."""
    env = {k: v for k, v in ENV.items() if k not in ("CNI_NETNS", "CNI_ARGS")}
    entry = parse("f.del", spool.render("coordinator", env, list(env), STDIN, "x"), PLUGINS)
    assert list(entry.call.present) == ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"]
    assert entry.key == ("abc123", "net1")  # no pod UID: the container ID is the owner


def test_attachment_key_prefers_the_pod_uid() -> None:
    """The key is (K8S_POD_UID, ifname) when CNI_ARGS has one, else (container ID, ifname)."""
    assert attachment_key("c1", "eth0", "K8S_POD_NAME=x;K8S_POD_UID=u1") == ("u1", "eth0")
    assert attachment_key("c1", "eth0", "K8S_POD_NAME=x") == ("c1", "eth0")


def _good() -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(spool.render("ipam", ENV, list(ENV), STDIN, "x"))
    return obj


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda o: o.update(format=2), "format"),
        (lambda o: o.update(plugin="bridge"), "unknown plugin"),
        (lambda o: o.update(command="ADD"), "not a DEL"),
        (lambda o: o["env"].update(CNI_COMMAND="ADD"), "not a DEL"),
        (lambda o: o["env"].update(CNI_BOGUS="1"), "env"),
        (lambda o: o["env"].update(CNI_ARGS=3), "env"),
        (lambda o: o.update(config={"cniVersion": "1.0.0"}), "config"),
        (lambda o: o["env"].pop("CNI_CONTAINERID"), "CNI_CONTAINERID"),
        (lambda o: o.update(containerID="other"), "disagrees"),
    ],
)
def test_a_malformed_file_is_corrupt_with_a_reason(mutate: Any, fragment: str) -> None:
    """Each wrong field makes parse raise SpoolCorrupt naming the problem."""
    obj = _good()
    mutate(obj)
    with pytest.raises(SpoolCorrupt, match=fragment):
        parse("f.del", json.dumps(obj).encode(), PLUGINS)


@pytest.mark.parametrize("data", [b"", b"{not json", b"[1]", b"\xff\xfe"])
def test_bytes_that_are_not_a_json_object_are_corrupt(data: bytes) -> None:
    """Empty, non-JSON, non-object and non-UTF-8 content is corrupt, never an exception of another kind."""
    with pytest.raises(SpoolCorrupt):
        parse("f.del", data, PLUGINS)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0"}, ""),
        ({"CNI_CONTAINERID": "a_b.c-9", "CNI_IFNAME": "eth0"}, ""),
        ({"CNI_IFNAME": "eth0"}, "[CNI_CONTAINERID] missing"),
        ({"CNI_CONTAINERID": "c1", "CNI_IFNAME": ""}, "[CNI_IFNAME] missing"),
        ({"CNI_CONTAINERID": "_c1", "CNI_IFNAME": "eth0"}, "invalid characters"),
        ({"CNI_CONTAINERID": "c/1", "CNI_IFNAME": "eth0"}, "invalid characters"),
        ({"CNI_CONTAINERID": "c\u00e91", "CNI_IFNAME": "eth0"}, "invalid characters"),
    ],
)
def test_only_dels_with_a_usable_container_id_and_interface_are_spooled(
    env: dict[str, str], problem: str
) -> None:
    """The shim spools a DEL only with a container ID of the spec's alphabet and an interface."""
    found = spool.container_id_problem(env)
    assert (problem in found) if problem else found == ""
