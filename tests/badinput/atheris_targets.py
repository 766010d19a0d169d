"""Coverage-guided fuzz targets (atheris, libFuzzer) for the parsers bad input reaches first.

Run as ``python -m tests.badinput.atheris_targets TARGET [libFuzzer flags] [corpus dirs]``;
``test_atheris.py`` runs each for a bounded number of inputs from the seed configs below.
hypothesis (the other tests here) generates inputs from strategies; libFuzzer mutates bytes
towards new branches of the instrumented code, which finds what no strategy thought of.

Targets, each checking the same contract as the hypothesis tests:

- ``shim``: ``spiderpool_cni.shim.handle`` for both shims with the bytes as stdin and the
  command and environment drawn from them. The call to the agent and the DEL spool are
  replaced by stand-ins that fail (the agent unreachable, the spool unwritable), so the
  fuzzer never connects to or writes at a path it made up; everything up to them runs. The
  answer is one CNI JSON document (or nothing) whose exit code agrees; nothing raises.
- ``agent``: ``spiderpool_agent.cni_call.parse_call``, the agent's CNI input rules, for
  every verb: a checked invocation or a ``CniError`` with a spec or project code.
- ``review``: ``parse_review`` and the webhooks' decisions (``Admission``) over a store that
  holds nothing: a 400 for a malformed review, else a verdict; nothing raises.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

# Third-party modules are imported first, uninstrumented (instrumenting them all took minutes);
# then only this project's packages are instrumented for coverage.
import aiohttp  # noqa: F401  (imported by the webhook package)
import atheris
import structlog
from spiderpool_common.errors import CniError

with atheris.instrument_imports(
    include=["spiderpool_agent", "spiderpool_cni", "spiderpool_common", "spiderpool_controller"]
):
    from spiderpool_agent import cni_call
    from spiderpool_cni import cnijson, codes, h2unary, shim, spool
    from spiderpool_controller.domain import models
    from spiderpool_controller.webhook.admission import Admission
    from spiderpool_controller.webhook.review import MalformedReview, parse_review

DEAD_SOCKET = "/run/spiderpool-atheris/agent.sock"  # never connected to: see _unreachable
VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
KNOWN_CODES = frozenset(codes.DESCRIPTIONS)
ERROR_KEYS = {"cniVersion", "code", "msg", "details"}

SEEDS: dict[str, list[dict[str, Any]]] = {
    "shim": [
        {
            "cniVersion": "1.0.0",
            "name": "net",
            "type": "macvlan",
            "ipam": {
                "type": "spiderpool",
                "default_ipv4_ippool": ["p"],
                "ipam_unix_socket_path": DEAD_SOCKET,
            },
        },
        {"cniVersion": "1.1.0", "name": "net", "type": "coordinator", "ipam_unix_socket_path": DEAD_SOCKET},
    ],
    "agent": [
        {
            "cniVersion": "1.1.0",
            "name": "net",
            "type": "macvlan",
            "ipam": {
                "type": "spiderpool",
                "default_ipv4_ippool": ["p"],
                "default_ipv6_ippool": ["q"],
                "clean_gateway": True,
                "log_level": "INFO",
            },
            "runtimeConfig": {"ips": ["10.0.0.5/24"]},
            "args": {"cni": {"labels": {"app": "web"}, "owner": {"kind": "StatefulSet", "name": "s"}}},
            "prevResult": {"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.5/24"}]},
            "cni.dev/valid-attachments": [{"containerID": "c", "ifname": "eth0"}],
        }
    ],
    "review": [
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u",
                "operation": "UPDATE",
                "kind": {"group": models.API_GROUP, "version": "v2beta1", "kind": models.KIND_IPPOOL},
                "object": models.new_object(
                    models.KIND_IPPOOL,
                    "p",
                    spec={
                        "ipVersion": 4,
                        "subnet": "10.0.0.0/24",
                        "ips": ["10.0.0.10"],
                        "gateway": "10.0.0.1",
                    },
                ),
                "oldObject": models.new_object(
                    models.KIND_IPPOOL,
                    "p",
                    spec={"ipVersion": 4, "subnet": "10.0.0.0/24", "ips": ["10.0.0.10"]},
                ),
            },
        },
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u",
                "operation": "DELETE",
                "kind": {"group": models.API_GROUP, "version": "v2beta1", "kind": models.KIND_IPPOOL},
                "oldObject": models.new_object(
                    models.KIND_IPPOOL,
                    "p",
                    spec={"ipVersion": 4, "subnet": "10.0.0.0/24", "ips": ["10.0.0.10"]},
                )
                | {"status": {"allocatedIPs": '{"10.0.0.10": {"pod": "n/p"}}', "allocatedIPCount": 1}},
            },
        },
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u",
                "operation": "UPDATE",
                "kind": {"group": models.API_GROUP, "version": "v2beta1", "kind": models.KIND_MULTUS_CONFIG},
                "object": models.new_object(
                    models.KIND_MULTUS_CONFIG,
                    "m",
                    "ns",
                    spec={
                        "cniType": "macvlan",
                        "macvlan": {"master": ["eth0"]},
                        "coordinator": {"mode": "auto"},
                    },
                ),
                "oldObject": models.new_object(
                    models.KIND_MULTUS_CONFIG,
                    "m",
                    "ns",
                    spec={"cniType": "macvlan", "macvlan": {"master": ["eth0"]}},
                ),
            },
        },
    ],
}


def fuzz_shim(data: bytes) -> None:
    if not data:
        return
    kind = "ipam" if data[0] & 1 else "coordinator"
    command = VERBS[data[0] % len(VERBS)] if data[0] < 240 else data[1:4].decode("latin-1")
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"}
    if data[0] & 2:
        env["CNI_ARGS"] = data[1:9].decode("utf-8", "surrogateescape")
    reply = shim.handle(kind, env, data[1:])
    if reply.output:
        obj = json.loads(reply.output)
        if reply.exit_code == 1:
            assert set(obj) == ERROR_KEYS and obj["code"] in KNOWN_CODES, obj
        else:
            assert reply.exit_code == 0 and "code" not in obj, obj
    else:
        assert reply.exit_code == 0 and command in ("DEL", "CHECK", "GC", "STATUS"), command


class _Call:
    def __init__(self, command: str, config: bytes) -> None:
        self.command = command
        self.container_id = "c1"
        self.netns = "/x"
        self.ifname = "eth0"
        self.args = "K8S_POD_NAME=p;K8S_POD_NAMESPACE=n;IgnoreUnknown=1"
        self.config = config
        self.present = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS")


def fuzz_agent(data: bytes) -> None:
    for verb in cni_call.Verb:
        try:
            cni_call.parse_call(_Call(verb.value, data), verb)
        except CniError as err:
            assert err.cni_code in KNOWN_CODES, err.cni_code


class _EmptyStore:
    async def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any]:
        raise KeyError(name)

    async def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        return [], "1"


_ADMISSION = Admission(_EmptyStore())
_LOOP = asyncio.new_event_loop()


def fuzz_review(data: bytes) -> None:
    try:
        review = parse_review(data)
    except MalformedReview:
        return
    for decide in (_ADMISSION.mutate, _ADMISSION.validate):
        verdict = _LOOP.run_until_complete(decide(review.kind, review))
        assert verdict.allowed or verdict.code in (400, 403, 422), verdict


TARGETS = {"shim": fuzz_shim, "agent": fuzz_agent, "review": fuzz_review}


def write_seeds(target: str, directory: Path) -> None:
    """The seed corpus of ``target``: its valid documents, one file each."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(SEEDS[target]):
        prefix = b"\x00" if target == "shim" else b""  # the shim target's first byte picks the call
        (directory / f"seed-{i}").write_bytes(prefix + json.dumps(doc).encode())


def _unreachable(socket_path: str, *args: Any, **kwargs: Any) -> Any:
    raise h2unary.Unreachable("[Errno 2] No such file or directory (atheris stand-in)")


def _unwritable(*args: Any, **kwargs: Any) -> str:
    raise spool.SpoolError("the spool is not written while fuzzing (atheris stand-in)")


def main() -> None:
    target = sys.argv[1]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    h2unary.unary_call = _unreachable
    spool.spool_del = _unwritable
    assert cnijson.decode(b"{}") == {}
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
