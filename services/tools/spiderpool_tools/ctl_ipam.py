"""spiderpoolctl's IPAM operations: ``gc``, ``check`` and ``release``.

- ``gc``: a full garbage-collection scan now (``IpamService.GarbageCollect``). In a cluster
  the leader judges every allocation against the pods; without Kubernetes the controller
  answers that there is nothing to judge against, and this says so in one line.
- ``check``: the online consistency check (``AdminService.Check``): findings in a table
  (kind, pool, address, pod, sandbox, interface, what is wrong) and the safe action for
  each, on stdout; a one-line summary on stderr. Exit 0 when consistent, 1 with findings (a
  script can wait for a forced range change to drain, or alert).
- ``release --pod NS/NAME``: a forced release of every address the pod holds (or one
  interface's), after showing them and asking; ``--yes`` skips the question. It releases
  whoever holds the addresses (no container ID), so it is for pods that are gone or
  wedged: a running pod keeps using an address that another pod may then get.

All three print ``-o json|yaml`` documents on request.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from spiderpool.controller.v1 import admin_pb2, ipam_pb2

from spiderpool_tools.ctl_client import EXIT_FAILED, EXIT_OK, Client, RequestFailed, UsageError
from spiderpool_tools.ctl_output import NONE, print_document, render_table
from spiderpool_tools.progress import Progress

# ---------------------------------------------------------------------------------------
# gc


def cmd_gc(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    try:
        report = client.garbage_collect(Progress(err, "garbage collection: scanning"))
    except RequestFailed as exc:
        if exc.reason == "BadRequest":  # the embedded mode: nothing to judge allocations against
            print(f"error: {exc.message}", file=err)
            return EXIT_FAILED
        raise
    reasons = dict(sorted(report.reasons.items()))
    if args.output:
        doc = {
            "judged": report.judged,
            "released": report.released,
            "skippedNewer": report.skipped_newer,
            "reasons": reasons,
        }
        print_document(doc, args.output, out)
        return EXIT_OK
    print(
        f"Judged {report.judged} allocation(s): released {report.released} address(es), skipped "
        f"{report.skipped_newer} newer than the pod data.",
        file=out,
    )
    if reasons:
        print(render_table(["REASON", "RELEASED"], [[r, str(n)] for r, n in reasons.items()]), file=out)
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# check


def finding_doc(f: admin_pb2.Finding) -> dict[str, str]:
    return {
        "kind": f.kind,
        "pool": f.pool,
        "ip": f.ip,
        "pod": f.pod,
        "podUID": f.pod_uid,
        "containerID": f.container_id,
        "interface": f.interface,
        "detail": f.detail,
        "action": f.action,
    }


def _short(container_id: str) -> str:
    return container_id[:12] if len(container_id) > 12 else container_id


def cmd_check(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    report = client.check(Progress(err, "consistency check"))
    pods = f", {report.pods} live pods" if report.pods_checked else ""
    summary = (
        f"checked {report.pools} IPPool(s), {report.addresses} allocated address(es), "
        f"{report.endpoints} SpiderEndpoint(s){pods}: {len(report.findings)} finding(s)"
    )
    if not report.pods_checked:
        summary += (
            " (live pods not cross-referenced: the controller has no pod API (embedded mode) "
            "or its pod cache has not synced yet)"
        )
    if report.skipped_newer:
        summary += f"; {report.skipped_newer} address(es) allocated during the check not judged"
    if args.output:
        doc: dict[str, Any] = {
            "pools": report.pools,
            "addresses": report.addresses,
            "endpoints": report.endpoints,
            "podsChecked": report.pods_checked,
            "pods": report.pods,
            "skippedNewer": report.skipped_newer,
            "findings": [finding_doc(f) for f in report.findings],
        }
        print_document(doc, args.output, out)
    elif report.findings:
        rows = [
            [f.kind, f.pool or NONE, f.ip or NONE, f.pod or NONE, _short(f.container_id) or NONE,
             f.interface or NONE, f.detail]
            for f in report.findings
        ]  # fmt: skip
        print(render_table(["KIND", "POOL", "IP", "POD", "CONTAINER", "INTERFACE", "DETAIL"], rows), file=out)
        actions = list(dict.fromkeys(f.action for f in report.findings if f.action))
        if actions:
            print("\nSafe actions:", file=out)
            for action in actions:
                print(f"  {action}", file=out)
    else:
        print(f"No inconsistencies in {report.pools} IPPool(s).", file=out)
    print(summary, file=err)
    return EXIT_FAILED if report.findings else EXIT_OK


# ---------------------------------------------------------------------------------------
# release


def pod_key(text: str) -> tuple[str, str]:
    """``NS/NAME`` (or ``NAME``, in ``default``) as (namespace, name); a usage error otherwise."""
    namespace, sep, name = text.rpartition("/")
    if not name or (sep and not namespace) or "/" in namespace:
        raise UsageError(f"--pod {text!r}: expected NAMESPACE/NAME")
    return (namespace or "default", name)


def _addresses(interface: admin_pb2.EndpointInterface) -> str:
    return ", ".join(f"{a.address} ({a.pool})" for a in interface.addresses)


def _confirm(question: str, stdin: TextIO, err: TextIO) -> bool:
    print(f"{question} [y/N]: ", end="", file=err, flush=True)
    answer = stdin.readline()
    if not _is_tty(stdin):  # the answer was not echoed: end the question's line
        print("", file=err)
    return answer.strip().lower() in ("y", "yes")


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def cmd_release(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    namespace, name = pod_key(args.pod)
    detail = client.describe_endpoint(namespace, name)
    interfaces = [i for i in detail.interfaces if not args.interface or i.interface == args.interface]
    if not interfaces:
        held = ", ".join(i.interface for i in detail.interfaces)
        raise UsageError(f"pod {namespace}/{name} holds no address on {args.interface} (it has: {held})")
    count = sum(len(i.addresses) for i in interfaces)
    if not args.yes:
        rows = [
            [i.interface, _addresses(i), _short(i.container_id) or NONE, i.node or NONE] for i in interfaces
        ]
        print(render_table(["INTERFACE", "ADDRESSES", "CONTAINER", "NODE"], rows), file=err)
        question = (
            f"Release {count} address(es) of pod {namespace}/{name}? If the pod still runs, it keeps "
            "using them while another pod may get them."
        )
        if not _confirm(question, stdin, err):
            print("error: release cancelled: nothing was released", file=err)
            return EXIT_FAILED
    released: list[dict[str, str]] = []
    for interface in interfaces:
        uid = detail.pod_uid if interface.identity == detail.pod_uid else ""
        ref = ipam_pb2.PodRef(
            namespace=namespace,
            name=name,
            uid=uid,
            container_id="" if uid else interface.identity,  # no pod UID: the identity is the sandbox
        )
        reply = client.release(ipam_pb2.ReleaseRequest(pod=ref, ifname=interface.interface, force=True))
        for ip in reply.released:
            released.append({"interface": ip.nic, "address": ip.address, "pool": ip.pool})
            if not args.output:
                print(f"released {ip.address} ({ip.pool}) of {namespace}/{name} {ip.nic}", file=out)
    if args.output:
        print_document({"pod": f"{namespace}/{name}", "released": released}, args.output, out)
    return EXIT_OK
