"""spiderpoolctl's IPAM tools as a user runs them, against real controller and agent processes with
addresses allocated through the installed shim: get endpoint NS/NAME, check, release, explain, gc."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from spiderpool_controller.domain.stranded import FORCE_ANNOTATION

from tests.component.agent_harness import pool_manifest
from tests.component.conformance_stack import POD_NAMESPACE, Stack, running_stack

CTL = Path(sys.executable).parent / "spiderpoolctl"
POOLS = [
    pool_manifest("ctl-v4", "10.95.0.0/24", ["10.95.0.10-10.95.0.40"], gateway="10.95.0.1"),
    pool_manifest("ctl-v6", "fd00:95::/64", ["fd00:95::10-fd00:95::40"]),
    pool_manifest("ctl-far", "10.96.0.0/24", ["10.96.0.10-10.96.0.20"], nodeName=["node-9"]),
]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("ctlipam-", POOLS) as running:
        yield running


def ctl(stack: Stack, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CTL), "--controller", stack.controller.target, *argv],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def add(stack: Stack, tag: str) -> tuple[str, dict[str, Any]]:
    pod = stack.new_id(tag)
    return pod, stack.add("1.1.0", pod, v4=("ctl-v4",), v6=("ctl-v6",))


def addresses(result: dict[str, Any]) -> list[str]:
    return sorted(ip["address"] for ip in result["ips"])


def test_get_endpoint_shows_a_pods_addresses_per_interface(stack: Stack) -> None:
    """The table lists each address with its pool, gateway, sandbox, network and node; -o json has the
    same per interface and the stored SpiderEndpoint beside it."""
    pod, result = add(stack, "show")
    stack.state()  # the SpiderEndpoint is written
    shown = ctl(stack, "get", "endpoint", f"{POD_NAMESPACE}/{pod}")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[:3] == [f"Pod:    {POD_NAMESPACE}/{pod}", f"UID:    uid-{pod}", "Owner:  Pod"]
    assert lines[3].split() == ["INTERFACE", "ADDRESS", "POOL", "GATEWAY", "CONTAINER", "NETWORK", "NODE"]
    v4, v6 = addresses(result)
    assert [line.split() for line in lines[4:]] == [
        ["eth0", v4, "ctl-v4", "10.95.0.1", pod, "conformance-net", "node-1"],
        ["eth0", v6, "ctl-v6", "<none>", pod, "conformance-net", "node-1"],
    ]
    doc = json.loads(ctl(stack, "get", "se", f"{POD_NAMESPACE}/{pod}", "-o", "json").stdout)
    (nic,) = doc["interfaces"]
    assert (nic["interface"], nic["containerID"], nic["identity"]) == ("eth0", pod, f"uid-{pod}")
    assert [a["address"] for a in nic["addresses"]] == [v4, v6]
    assert doc["spiderEndpoint"]["status"]["current"]["ips"][0]["ipv4"] == v4
    missing = ctl(stack, "get", "endpoint", f"{POD_NAMESPACE}/nobody")
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        f"Error from server (NotFound): no allocation of pod {POD_NAMESPACE}/nobody"
    )


def test_release_asks_first_and_a_no_changes_nothing(stack: Stack) -> None:
    """Declined, the release frees nothing (exit 1); accepted, both addresses are freed and an ADD
    of another pod can get them; --yes -o yaml releases without asking and prints what it freed."""
    pod, result = add(stack, "rel")
    before = stack.state()
    declined = ctl(stack, "release", "--pod", f"{POD_NAMESPACE}/{pod}", stdin="n\n")
    assert declined.returncode == 1
    assert "Release 2 address(es) of pod" in declined.stderr
    assert "release cancelled: nothing was released" in declined.stderr
    assert stack.state() == before
    accepted = ctl(stack, "release", "--pod", f"{POD_NAMESPACE}/{pod}", stdin="yes\n")
    assert accepted.returncode == 0, accepted.stderr
    assert sorted(line.split()[1] for line in accepted.stdout.splitlines()) == addresses(result)
    assert stack.ips_of(pod, "ctl-v4", "ctl-v6") == {}
    other, again = add(stack, "rel-next")
    assert addresses(again) == addresses(result)  # the lowest free addresses again
    quiet = ctl(
        stack, "release", "--pod", f"{POD_NAMESPACE}/{other}", "--interface", "eth0", "--yes", "-o", "yaml"
    )
    assert quiet.returncode == 0, quiet.stderr
    doc = yaml.safe_load(quiet.stdout)
    assert doc["pod"] == f"{POD_NAMESPACE}/{other}"
    assert sorted(r["address"] for r in doc["released"]) == addresses(again)
    assert quiet.stderr == ""


def test_release_refuses_bad_input_clearly(stack: Stack) -> None:
    """A malformed --pod is a usage error (exit 2); an interface the pod lacks and an unknown pod
    are refused naming them, and nothing changes."""
    pod, _ = add(stack, "rel-bad")
    before = stack.state()
    bad = ctl(stack, "release", "--pod", "a/b/c", "--yes")
    assert (bad.returncode, bad.stderr.strip()) == (2, "error: --pod 'a/b/c': expected NAMESPACE/NAME")
    nic = ctl(stack, "release", "--pod", f"{POD_NAMESPACE}/{pod}", "--interface", "net7", "--yes")
    assert nic.returncode == 2
    assert nic.stderr.strip() == f"error: pod {POD_NAMESPACE}/{pod} holds no address on net7 (it has: eth0)"
    ghost = ctl(stack, "release", "--pod", f"{POD_NAMESPACE}/ghost", "--yes")
    assert ghost.returncode == 1
    assert "no allocation of pod conformance/ghost" in ghost.stderr
    assert stack.state() == before


def test_explain_shows_every_candidate_and_the_address_the_add_then_gets(
    stack: Stack, tmp_path: Path
) -> None:
    """From the runtime's own conflist: the rule, the pool excluded by nodeName with its reason, the
    chosen pools and their next addresses, which the ADD that follows receives."""
    conflist = {
        "cniVersion": "1.1.0",
        "name": "conformance-net",
        "plugins": [
            {"type": "macvlan", "ipam": {"type": "spiderpool", "default_ipv4_ippool": ["ctl-far", "ctl-v4"],
                                         "default_ipv6_ippool": ["ctl-v6"]}},
            {"type": "coordinator"},
        ],
    }  # fmt: skip
    path = tmp_path / "net.conflist"
    path.write_text(json.dumps(conflist))
    pod = stack.new_id("explain")
    argv = ["explain", "--pod", f"{POD_NAMESPACE}/{pod}", "--cni-config", str(path), "--node", "node-1"]
    shown = ctl(stack, *argv)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"Pod {POD_NAMESPACE}/{pod}, interface eth0 (pod facts from the request)"
    assert lines[1] == "Selection rule: CNI config default_ipv4_ippool/default_ipv6_ippool"
    rows = [line.split(None, 6) for line in lines[3:6]]
    assert [r[:4] for r in rows] == [
        ["eth0", "IPv4", "ctl-far", "excluded"],
        ["eth0", "IPv4", "ctl-v4", "chosen"],
        ["eth0", "IPv6", "ctl-v6", "chosen"],
    ]
    assert rows[0][6] == "node node-1 is not in nodeName of IPPool ctl-far"
    planned = json.loads(ctl(stack, *argv, "-o", "json").stdout)
    picks = [(c["next"], c["pool"]) for f in planned["interfaces"][0]["families"] for c in f["candidates"]
             if c["verdict"] == "chosen"]  # fmt: skip
    assert [pool for _, pool in picks] == ["ctl-v4", "ctl-v6"]
    assert lines[-1] == "eth0: an ADD would allocate " + ", ".join(f"{ip} ({pool})" for ip, pool in picks)
    got = stack.add("1.1.0", pod, v4=("ctl-far", "ctl-v4"), v6=("ctl-v6",))
    assert [ip["address"].split("/")[0] for ip in got["ips"]] == [ip for ip, _ in picks]


def test_explain_reports_an_add_that_would_fail_with_its_code(stack: Stack) -> None:
    """A malformed pool annotation fails the dry run as it fails the ADD: code 105 and the message."""
    shown = ctl(
        stack, "explain", "--pod", f"{POD_NAMESPACE}/x", "--annotation", "ipam.spidernet.io/ippool=oops"
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[1].startswith(
        "An ADD would fail with code 105 (INVALID_ANNOTATION): annotation ipam.spidernet.io/ippool"
    )
    usage = ctl(stack, "explain", "--pod", f"{POD_NAMESPACE}/x", "--labels", "bad label")
    assert usage.returncode == 2
    assert usage.stderr.startswith("error: --labels: ")


def test_gc_without_kubernetes_says_why_in_one_line(stack: Stack) -> None:
    """The embedded controller has no pods to judge against: exit 1 and one line saying so."""
    gc = ctl(stack, "gc")
    assert gc.returncode == 1
    assert gc.stdout == ""
    assert gc.stderr.splitlines() == [
        "error: garbage collection needs the Kubernetes mode: without a pod API there is nothing to judge "
        "allocations against (the container runtime's CNI GC collects them)"
    ]


def excluding(addresses: list[str], *, force: bool) -> str:
    """ctl-v4 with ``addresses`` excluded, with the force annotation when ``force``."""
    manifest: dict[str, Any] = copy.deepcopy(POOLS[0])
    manifest["spec"]["excludeIPs"] = addresses
    if force:
        manifest["metadata"]["annotations"] = {FORCE_ANNOTATION: "true"}
    return json.dumps(manifest)


def test_check_is_clean_then_lists_a_reserved_and_stranded_addresses(stack: Stack) -> None:
    """A consistent store checks clean (exit 0). Excluding two held addresses is refused naming both
    pods and changes nothing; forced with the annotation it applies. check then lists them as stranded,
    and a SpiderReservedIP over a third held address as reserved, with pod, sandbox and the safe action
    (exit 1); -o json has the same findings; once the pods are released check is clean again."""
    clean = ctl(stack, "check")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.strip() == "No inconsistencies in 3 IPPool(s)."
    assert "0 finding(s)" in clean.stderr
    held = {}
    for tag in ("reserved", "stranded", "stranded"):
        pod, result = add(stack, tag)
        held[pod] = next(a for a in addresses(result) if "." in a).split("/")[0]
    pod_r, *stranded_pods = held
    reserved = {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderReservedIP",
                "metadata": {"name": "ctl-hold"}, "spec": {"ipVersion": 4, "ips": [held[pod_r]]}}  # fmt: skip
    assert ctl(stack, "apply", "-f", "-", stdin=json.dumps(reserved)).returncode == 0
    stranded_ips = [held[pod] for pod in stranded_pods]

    before = stack.state()
    refused = ctl(stack, "apply", "-f", "-", stdin=excluding(stranded_ips, force=False))
    assert refused.returncode == 1
    assert "remove 2 IP addresses that are being used" in refused.stderr
    for pod in stranded_pods:
        assert f"{held[pod]} (Pod {POD_NAMESPACE}/{pod}, excluded by spec.excludeIPs)" in refused.stderr
    assert stack.state() == before
    forced = ctl(stack, "apply", "-f", "-", stdin=excluding(stranded_ips, force=True))
    assert forced.returncode == 0, forced.stderr

    found = ctl(stack, "check")
    assert found.returncode == 1, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0].split() == ["KIND", "POOL", "IP", "POD", "CONTAINER", "INTERFACE", "DETAIL"]
    expected = [("stranded", pod) for pod in sorted(stranded_pods, key=lambda p: f"{POD_NAMESPACE}/{p}")]
    expected.append(("reserved", pod_r))
    assert [line.split()[:6] for line in lines[1:4]] == [
        [kind, "ctl-v4", held[pod], f"{POD_NAMESPACE}/{pod}", pod, "eth0"] for kind, pod in expected
    ]
    assert f"{held[expected[0][1]]} is excluded by spec.excludeIPs of IPPool ctl-v4" in lines[1]
    for pod in stranded_pods:
        assert f"spiderpoolctl release --pod {POD_NAMESPACE}/{pod} --interface eth0" in found.stdout
    assert "3 finding(s)" in found.stderr
    doc = json.loads(ctl(stack, "check", "-o", "json").stdout)
    assert [(f["kind"], f["ip"], f["containerID"]) for f in doc["findings"]] == [
        (kind, held[pod], pod) for kind, pod in expected
    ]
    assert doc["podsChecked"] is False

    for pod in held:
        assert ctl(stack, "release", "--pod", f"{POD_NAMESPACE}/{pod}", "--yes").returncode == 0
    assert ctl(stack, "delete", "reservedip", "ctl-hold").returncode == 0
    assert ctl(stack, "check").returncode == 0
    assert ctl(stack, "apply", "-f", "-", stdin=json.dumps(POOLS[0])).returncode == 0
