"""``spiderpoolctl explain``: which pools an ADD of a pod's interface would try, and what it would get.

A dry run of pool selection at the controller (``AdminService.Explain``; nothing is
allocated): the rule that decided (pod annotation, namespace default, CNI config, cluster
default), then every candidate pool of each interface and family in the order an ADD
tries them, with the filter that excluded it or what it matched, its free addresses, and
the address it would give; the verdict ``chosen`` marks where the ADD would take its
address. An ADD that would fail says so with its CNI code and message.

Where the pod's facts come from: in a cluster the controller reads the pod, its namespace
and its node from the API server. Without Kubernetes there is no pod to read, so they are
given here as the runtime would give them: ``--cni-config FILE`` (the network config or
conflist the runtime uses, its spiderpool ``ipam`` section and ``args.cni``, parsed by the
agent's own parser) and flags (labels, annotations, node, default pools) that add to it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from spiderpool.controller.v1 import admin_pb2, ipam_pb2
from spiderpool_agent.cni_call import NetworkConfig, parse_network_config
from spiderpool_agent.pod_context import parse_labels
from spiderpool_common.errors import SpiderpoolError

from spiderpool_tools.ctl_client import EXIT_OK, Client, UsageError
from spiderpool_tools.ctl_ipam import pod_key
from spiderpool_tools.ctl_output import NONE, print_document, render_table


def add_arguments(explain: argparse.ArgumentParser) -> None:
    explain.add_argument("--pod", required=True, help="NAMESPACE/NAME of the pod")
    explain.add_argument(
        "--interface", default="eth0", help="the interface an ADD would be for (default eth0)"
    )
    explain.add_argument(
        "--cni-config",
        help="the network config or conflist the runtime uses (its spiderpool ipam section and args.cni)",
    )
    explain.add_argument("--node", default="", help="the node the pod runs on")
    explain.add_argument(
        "--node-labels", default="", help="the node's labels, k=v,k2=v2 (the agent's --node-labels)"
    )
    explain.add_argument("--labels", default="", help="the pod's labels, k=v,k2=v2")
    explain.add_argument(
        "--annotation", action="append", default=[], metavar="KEY=VALUE", help="a pod annotation (repeatable)"
    )
    explain.add_argument("--namespace-labels", default="", help="the namespace's labels, k=v,k2=v2")
    explain.add_argument(
        "--namespace-annotation",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a namespace annotation (repeatable)",
    )
    explain.add_argument(
        "--default-ipv4-ippool", action="append", default=[], help="CNI config default pool (repeatable)"
    )
    explain.add_argument(
        "--default-ipv6-ippool", action="append", default=[], help="CNI config default pool (repeatable)"
    )
    explain.add_argument(
        "--multus-name", default="", help="the NetworkAttachmentDefinition NS/NAME of the interface"
    )
    explain.add_argument("-o", "--output", choices=("json", "yaml"))


def _annotations(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _labels(text: str, flag: str) -> dict[str, str]:
    try:
        return parse_labels(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def network_config(path: str) -> NetworkConfig:
    """The spiderpool plugin's config from a network config or a conflist (name and version
    from the list, as libcni hands them to each plugin), checked as an ADD checks it."""
    try:
        obj = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"--cni-config: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"--cni-config: {path} is not JSON: {exc}") from None
    if isinstance(obj, dict) and isinstance(obj.get("plugins"), list):
        plugin = next(
            (
                p
                for p in obj["plugins"]
                if isinstance(p, dict)
                and isinstance(p.get("ipam"), dict)
                and p["ipam"].get("type") == "spiderpool"
            ),
            None,
        )
        if plugin is None:
            raise UsageError(f"--cni-config: no plugin of {path} has an ipam section of type spiderpool")
        obj = {**plugin, "name": obj.get("name"), "cniVersion": obj.get("cniVersion")}
    try:
        return parse_network_config(json.dumps(obj).encode(), None)
    except SpiderpoolError as exc:
        raise UsageError(f"--cni-config: {path}: {exc.message}") from None


def build_request(args: argparse.Namespace) -> ipam_pb2.AllocateRequest:
    namespace, name = pod_key(args.pod)
    config = network_config(args.cni_config) if args.cni_config else None
    pod = config.pod if config is not None else None
    ipam = config.ipam if config is not None else None
    return ipam_pb2.AllocateRequest(
        pod=ipam_pb2.PodRef(namespace=namespace, name=name, node=args.node),
        ifname=args.interface,
        network=config.name if config is not None else "",
        pod_labels={**(pod.labels if pod else {}), **_labels(args.labels, "--labels")},
        pod_annotations={**(pod.annotations if pod else {}), **_annotations(args.annotation, "--annotation")},
        namespace_labels={
            **(pod.namespace_labels if pod else {}),
            **_labels(args.namespace_labels, "--namespace-labels"),
        },
        namespace_annotations={
            **(pod.namespace_annotations if pod else {}),
            **_annotations(args.namespace_annotation, "--namespace-annotation"),
        },
        node_labels=_labels(args.node_labels, "--node-labels"),
        default_ipv4_ippools=[*(ipam.default_ipv4_ippool if ipam else ()), *args.default_ipv4_ippool],
        default_ipv6_ippools=[*(ipam.default_ipv6_ippool if ipam else ()), *args.default_ipv6_ippool],
        clean_gateway=bool(ipam and ipam.clean_gateway),
        multus_name=args.multus_name or (pod.multus_name if pod else ""),
    )


def explanation_doc(reply: admin_pb2.ExplainResponse, pod: str) -> dict[str, Any]:
    return {
        "pod": pod,
        "podSource": reply.pod_source,
        "source": reply.source,
        "error": {"message": reply.error, "reason": reply.error_reason, "cniCode": reply.error_cni_code}
        if reply.error
        else None,
        "interfaces": [
            {
                "interface": nic.nic,
                "cleanGateway": nic.clean_gateway,
                "held": [{"address": ip.address, "pool": ip.pool} for ip in nic.held],
                "families": [
                    {
                        "ipVersion": family.version,
                        "error": family.error or None,
                        "candidates": [
                            {
                                "pool": c.pool,
                                "verdict": _verdict(c),
                                "reason": c.reason,
                                "free": c.free if c.kept else None,
                                "next": c.lowest_free or None,
                            }
                            for c in family.candidates
                        ],
                    }
                    for family in nic.families
                ],
            }
            for nic in reply.nics
        ],
    }


def _verdict(c: admin_pb2.PoolCandidate) -> str:
    return "chosen" if c.chosen else "kept" if c.kept else "excluded"


def cmd_explain(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    request = build_request(args)
    pod = f"{request.pod.namespace}/{request.pod.name}"
    reply = client.explain(request)
    if args.output:
        print_document(explanation_doc(reply, pod), args.output, out)
        return EXIT_OK
    print(f"Pod {pod}, interface {args.interface} (pod facts from the {reply.pod_source})", file=out)
    if reply.error:
        print(
            f"An ADD would fail with code {reply.error_cni_code} ({reply.error_reason}): {reply.error}",
            file=out,
        )
        return EXIT_OK
    print(f"Selection rule: {reply.source}", file=out)
    rows: list[list[str]] = []
    for nic in reply.nics:
        for family in nic.families:
            for c in family.candidates:
                rows.append(
                    [nic.nic, f"IPv{family.version}", c.pool, _verdict(c), str(c.free) if c.kept else NONE,
                     c.lowest_free or NONE, c.reason]
                )  # fmt: skip
    if rows:
        print(
            render_table(["INTERFACE", "FAMILY", "POOL", "VERDICT", "FREE", "NEXT", "REASON"], rows), file=out
        )
    print("", file=out)
    for nic in reply.nics:
        if nic.held:
            held = ", ".join(f"{ip.address} ({ip.pool})" for ip in nic.held)
            print(f"{nic.nic}: already holds {held}; an ADD returns these", file=out)
            continue
        errors = [f.error for f in nic.families if f.error]
        if errors:
            print(f"{nic.nic}: an ADD would fail: {'; '.join(errors)}", file=out)
            continue
        chosen = [
            f"{c.lowest_free} ({c.pool})" for family in nic.families for c in family.candidates if c.chosen
        ]
        print(f"{nic.nic}: an ADD would allocate {', '.join(chosen)}", file=out)
    return EXIT_OK
