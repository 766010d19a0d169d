"""``spiderpoolctl``: kubectl-like apply, get and delete, and the IPAM tools (gc, check, release,
explain, get endpoint NS/NAME), against the controller.

Owns the command line a user meets without Kubernetes: the same manifests, the same
resource names (``spiderippool.spiderpool.spidernet.io/NAME created``), the same table
columns as upstream's CRD printer columns (charts/spiderpool/crds upstream) and kubectl's habits
(``-f -``, ``-o wide|json|yaml|name``, ``-n``/``-A``, ``Error from server (NotFound): ...``).
Validation happens in the controller, so its message (naming the object and the field)
is what the user reads.

The IPAM tools live in ``ctl_ipam`` (gc, check, release), ``ctl_explain`` and
``ctl_endpoint``; this module is the command line and the object commands.

Exit codes: 0 success, 1 a request (or reading a manifest) failed, or ``check`` found
inconsistencies, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml
from spiderpool_common import bounded_yaml
from spiderpool_common.addresses import DEFAULT_CONTROLLER
from spiderpool_common.channels import channel_target
from spiderpool_common.errors import InvalidObject
from spiderpool_common.tls import TlsFiles
from spiderpool_controller.domain import models, multus_config, nad_render

from spiderpool_tools.ctl_client import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Client,
    ControllerUnreachable,
    Obj,
    RequestFailed,
    UsageError,
)
from spiderpool_tools.ctl_endpoint import show_endpoint
from spiderpool_tools.ctl_explain import add_arguments as add_explain_arguments
from spiderpool_tools.ctl_explain import cmd_explain
from spiderpool_tools.ctl_ipam import cmd_check, cmd_gc, cmd_release, pod_key
from spiderpool_tools.ctl_output import FORMATS, NONE, print_document, render_table
from spiderpool_tools.progress import Progress

ENV_CONTROLLER = "SPIDERPOOL_CONTROLLER"


def resource_name(kind: str) -> str:
    """kubectl's ``<kind>.<group>`` spelling: ``spiderippool.spiderpool.spidernet.io``."""
    return f"{kind.lower()}.{models.API_GROUP}"


# ---------------------------------------------------------------------------------------
# apply


@dataclass
class Document:
    source: str  # file name, "-" for stdin
    index: int  # 1-based position in the file
    obj: Any


def _read_source(path: str, stdin: TextIO) -> str:
    if path == "-":
        return stdin.read()
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f'the path "{path}" does not exist')
    return file.read_text()


def _expand(path: str) -> list[str]:
    if path != "-" and Path(path).is_dir():
        return sorted(str(p) for p in Path(path).iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    return [path]


def documents(text: str, source: str) -> Iterator[Document]:
    """The documents of a (multi-document) YAML or JSON text; ``kind: List`` is flattened.

    Raises ``bounded_yaml.YamlError`` (one line) for text that is not YAML, or that is
    refused before it could cost more than its size (an alias bomb, deep nesting).
    """
    index = 0
    for doc in bounded_yaml.load_all(text, source):
        if doc is None:
            continue
        index += 1
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            for item in doc["items"]:
                yield Document(source, index, item)
        else:
            yield Document(source, index, doc)


def _read_all(paths: list[str], stdin: TextIO, err: TextIO) -> tuple[list[Document], bool]:
    """Every document of every file; files that cannot be read or parsed are reported."""
    docs: list[Document] = []
    failed = False
    for path in paths:
        try:
            docs.extend(documents(_read_source(path, stdin), path))
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=err)
            failed = True
        except (OSError, UnicodeDecodeError) as exc:
            print(f'error: cannot read "{path}": {exc}', file=err)
            failed = True
        except bounded_yaml.YamlError as exc:
            print(f"error: error parsing {exc}", file=err)
            failed = True
    return docs, failed


def cmd_apply(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    docs, failed = _read_all([p for given in args.filename for p in _expand(given)], stdin, err)
    progress = Progress(err, "applying", len(docs))
    for doc in docs:
        where = f'"{doc.source}" (document {doc.index})'
        progress.advance()
        if not isinstance(doc.obj, dict):
            progress.print(f"error: {where}: a manifest must be a mapping, got {type(doc.obj).__name__}", err)
            failed = True
            continue
        try:
            response = client.apply(doc.obj)
        except RequestFailed as exc:
            progress.print(
                f"Error from server ({exc.reason}): error when applying {where}: {exc.message}", err
            )
            failed = True
            continue
        stored = json.loads(response.object_json)
        verb = "created" if response.created else "unchanged" if response.unchanged else "configured"
        progress.print(f"{resource_name(stored['kind'])}/{stored['metadata']['name']} {verb}", out)
    progress.close()
    return EXIT_FAILED if failed else EXIT_OK


# ---------------------------------------------------------------------------------------
# get: tables after upstream's printer columns


def _path(obj: Any, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(key, int):
            if not isinstance(obj, list) or len(obj) <= key:
                return None
            obj = obj[key]
        else:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(key)
    return obj


def cell(value: Any) -> str:
    """kubectl's rendering of a printer-column value."""
    if value is None or value == []:
        return NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def age(obj: Obj, now: datetime | None = None) -> str:
    created = _path(obj, "metadata", "creationTimestamp")
    if not isinstance(created, str):
        return NONE
    try:
        moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return NONE
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Column = tuple[str, Callable[[Obj], Any]]
APP_NAMESPACE = "ipam.spidernet.io/app-namespace"

_COUNT_COLUMNS: list[Column] = [
    ("VERSION", lambda o: _path(o, "spec", "ipVersion")),
    ("SUBNET", lambda o: _path(o, "spec", "subnet")),
    ("ALLOCATED-IP-COUNT", lambda o: _path(o, "status", "allocatedIPCount")),
    ("TOTAL-IP-COUNT", lambda o: _path(o, "status", "totalIPCount")),
]
COLUMNS: dict[str, list[Column]] = {
    models.KIND_IPPOOL: [*_COUNT_COLUMNS, ("DEFAULT", lambda o: _path(o, "spec", "default"))],
    models.KIND_SUBNET: _COUNT_COLUMNS,
    models.KIND_RESERVED_IP: [("VERSION", lambda o: _path(o, "spec", "ipVersion"))],
    models.KIND_ENDPOINT: [
        ("INTERFACE", lambda o: _path(o, "status", "current", "ips", 0, "interface")),
        ("IPV4POOL", lambda o: _path(o, "status", "current", "ips", 0, "ipv4Pool")),
        ("IPV4", lambda o: _path(o, "status", "current", "ips", 0, "ipv4")),
        ("IPV6POOL", lambda o: _path(o, "status", "current", "ips", 0, "ipv6Pool")),
        ("IPV6", lambda o: _path(o, "status", "current", "ips", 0, "ipv6")),
        ("NODE", lambda o: _path(o, "status", "current", "node")),
    ],
    models.KIND_COORDINATOR: [("AGE", age)],
    models.KIND_MULTUS_CONFIG: [("AGE", age)],  # upstream's CRD has no printer columns
}
WIDE_COLUMNS: dict[str, list[Column]] = {
    models.KIND_IPPOOL: [
        ("DISABLE", lambda o: _path(o, "spec", "disable")),
        ("NODENAME", lambda o: _path(o, "spec", "nodeName")),
        ("MULTUSNAME", lambda o: _path(o, "spec", "multusName")),
        ("APP-NAMESPACE", lambda o: _path(o, "spec", "podAffinity", "matchLabels", APP_NAMESPACE)),
    ],
}


def table(kind: str, objs: Sequence[Obj], *, wide: bool = False, with_namespace: bool = False) -> str:
    """The objects as kubectl prints them: upper-case headers, columns three spaces apart."""
    columns: list[Column] = [("NAME", lambda o: _path(o, "metadata", "name"))]
    if with_namespace:
        columns.insert(0, ("NAMESPACE", lambda o: _path(o, "metadata", "namespace")))
    columns += COLUMNS.get(kind, [])
    if wide:
        columns += WIDE_COLUMNS.get(kind, [])
    return render_table([title for title, _ in columns], [[cell(get(o)) for _, get in columns] for o in objs])


def _resolve(text: str) -> str:
    try:
        return models.resolve_kind(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_get(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    kind = _resolve(args.kind)
    namespaced = kind in models.NAMESPACED_KINDS
    namespace = "" if not namespaced or args.all_namespaces else (args.namespace or "default")
    if args.name and namespaced and "/" in args.name:  # NS/NAME, as the other commands take a pod
        if args.namespace:
            raise UsageError(f"{args.name!r} names its namespace: drop -n, or give NAME alone")
        namespace, args.name = pod_key(args.name)
    if args.name:
        if args.all_namespaces:
            raise UsageError("a resource cannot be retrieved by name across all namespaces")
        if kind == models.KIND_ENDPOINT and args.output != "name":
            return show_endpoint(client, namespace, args.name, args.output, out)
        objs = [client.get(kind, args.name, namespace)]
    else:
        objs = client.list(kind, namespace, args.selector or "")
    if args.output in ("json", "yaml"):
        doc: Any = objs[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": objs}
        print_document(doc, args.output, out)
        return EXIT_OK
    if args.output == "name":
        for obj in objs:
            print(f"{resource_name(kind)}/{obj['metadata']['name']}", file=out)
        return EXIT_OK
    if not objs:
        where = f" in {namespace} namespace" if namespace else ""
        print(f"No resources found{where}.", file=err)
        return EXIT_OK
    with_ns = namespaced and args.all_namespaces
    print(table(kind, objs, wide=args.output == "wide", with_namespace=with_ns), file=out)
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# delete


def cmd_delete(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    kind = _resolve(args.kind)
    namespace = (args.namespace or "default") if kind in models.NAMESPACED_KINDS else ""
    failed = False
    for name in args.names:
        try:
            obj = client.delete(kind, name, namespace)
        except RequestFailed as exc:
            print(exc, file=err)
            failed = True
            continue
        print(f'{resource_name(kind)} "{name}" deleted', file=out)
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp") and meta.get("finalizers"):
            print(
                f'{kind} "{name}" is kept until its finalizers {meta["finalizers"]} are removed '
                "(a pool or subnet leaves once its allocated IPs are released)",
                file=err,
            )
    return EXIT_FAILED if failed else EXIT_OK


# ---------------------------------------------------------------------------------------
# multus render: the network configuration a SpiderMultusConfig generates


def cmd_multus_render(
    args: argparse.Namespace, client: Client, out: TextIO, err: TextIO, stdin: TextIO
) -> int:
    """Print the conflist (or the whole NetworkAttachmentDefinition) a SpiderMultusConfig generates.

    Without Kubernetes there is no Multus to read a NetworkAttachmentDefinition: the conflist is
    what a CNI runtime takes (``/etc/cni/net.d/NAME.conflist``), byte for byte what the cluster
    mode's controller writes into ``spec.config``.
    """
    obj = client.get(models.KIND_MULTUS_CONFIG, args.name, args.namespace or "default")
    try:
        nad = nad_render.render(multus_config.apply_defaults(obj))
    except InvalidObject as exc:
        print(f"error: {exc.message}", file=err)
        return EXIT_FAILED
    if args.output == "json":
        print(json.dumps(nad, indent=4), file=out)
    elif args.output == "yaml":
        print(yaml.safe_dump(nad, default_flow_style=False, sort_keys=False).rstrip("\n"), file=out)
    else:
        config = (nad.get("spec") or {}).get("config")
        if config is None:
            print(
                f'error: SpiderMultusConfig "{args.name}" generates no configuration (custom, empty)',
                file=err,
            )
            return EXIT_FAILED
        print(config, file=out)
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own usage errors exit 2, as kubectl's do
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spiderpoolctl", description="Manage spiderpool objects through the controller.")
    parser.add_argument(
        "--controller",
        default=os.environ.get(ENV_CONTROLLER, DEFAULT_CONTROLLER),
        help=f"unix:PATH or HOST:PORT of the controller (env {ENV_CONTROLLER}; default {DEFAULT_CONTROLLER})",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each request")
    tls = parser.add_argument_group("mutual TLS to a controller on HOST:PORT (env SPIDERPOOL_TLS_*)")
    for name, what in (
        ("cert", "PEM certificate"),
        ("key", "PEM private key"),
        ("ca", "PEM CA of the controller"),
    ):
        tls.add_argument(
            f"--tls-{name}", default=os.environ.get(f"SPIDERPOOL_TLS_{name.upper()}", ""), help=what
        )
    tls.add_argument(
        "--tls-server-name",
        default=os.environ.get("SPIDERPOOL_TLS_SERVER_NAME", ""),
        help="the name the controller's certificate carries",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    apply = commands.add_parser("apply", help="create or update objects from YAML/JSON manifests")
    apply.add_argument(
        "-f", "--filename", action="append", required=True, help="manifest file, directory, or - for stdin"
    )
    apply.set_defaults(run=cmd_apply)

    get = commands.add_parser(
        "get", help="show objects (ippool|sp, subnet|ss, reservedip|sr, endpoint|se, coordinator|scc, smc)"
    )
    get.add_argument("kind", help="the kind, by name or short name")
    get.add_argument(
        "name", nargs="?", help="one object (default: all); endpoint NS/NAME shows a pod's addresses per NIC"
    )
    get.add_argument("-o", "--output", choices=("wide", "json", "yaml", "name"))
    get.add_argument("-n", "--namespace", help="namespace of namespaced kinds (default: default)")
    get.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    get.add_argument("-l", "--selector", help="label selector, e.g. team=web,tier in (a,b)")
    get.set_defaults(run=cmd_get)

    delete = commands.add_parser("delete", help="delete objects by name")
    delete.add_argument("kind", help="the kind, by name or short name")
    delete.add_argument("names", nargs="+", metavar="NAME", help="the objects to delete")
    delete.add_argument("-n", "--namespace", help="namespace of namespaced kinds (default: default)")
    delete.set_defaults(run=cmd_delete)

    gc = commands.add_parser("gc", help="run a full IP garbage-collection scan now (cluster mode)")
    gc.add_argument("-o", "--output", choices=FORMATS)
    gc.set_defaults(run=cmd_gc)

    check = commands.add_parser(
        "check",
        help="cross-reference pool records, SpiderEndpoints and live pods; list leaks, duplicates, "
        "orphans and stranded addresses (exit 1 when any)",
    )
    check.add_argument("-o", "--output", choices=FORMATS)
    check.set_defaults(run=cmd_check)

    release = commands.add_parser(
        "release",
        help="force the release of a pod's addresses (asks first; for pods that are gone or wedged)",
    )
    release.add_argument("--pod", required=True, help="NAMESPACE/NAME of the pod")
    release.add_argument("--interface", help="only this interface's addresses (default: every interface)")
    release.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    release.add_argument("-o", "--output", choices=FORMATS)
    release.set_defaults(run=cmd_release)

    explain = commands.add_parser(
        "explain", help="dry-run pool selection for a pod's interface: every candidate pool and why"
    )
    add_explain_arguments(explain)
    explain.set_defaults(run=cmd_explain)
    multus = commands.add_parser("multus", help="SpiderMultusConfig tools")
    multus_commands = multus.add_subparsers(dest="multus_command", required=True, parser_class=_Parser)
    render = multus_commands.add_parser(
        "render", help="print the CNI conflist a SpiderMultusConfig generates (its NAD's spec.config)"
    )
    render.add_argument("name", help="the SpiderMultusConfig")
    render.add_argument("-n", "--namespace", help="namespace of the SpiderMultusConfig (default: default)")
    render.add_argument(
        "-o", "--output", choices=("json", "yaml"), help="the whole NetworkAttachmentDefinition instead"
    )
    render.set_defaults(run=cmd_multus_render)
    return parser


def run(
    argv: Sequence[str],
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run one command line; return the exit code."""
    out, err, stdin = out or sys.stdout, err or sys.stderr, stdin or sys.stdin
    args = build_parser().parse_args(argv)
    try:
        channel_target(args.controller)
    except ValueError as exc:
        print(f"error: --controller: {exc}", file=err)
        return EXIT_USAGE
    files = (args.tls_cert, args.tls_key, args.tls_ca)
    tls = TlsFiles(*files) if any(files) else None
    if tls is not None:
        try:
            tls.validate()
        except ValueError as exc:
            print(f"error: --tls-*: {exc}", file=err)
            return EXIT_USAGE
    client = Client(args.controller, args.timeout, tls, args.tls_server_name)
    try:
        code: int = args.run(args, client, out, err, stdin)
        return code
    except UsageError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    except RequestFailed as exc:
        print(exc, file=err)
        return EXIT_FAILED
    except ControllerUnreachable as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    finally:
        client.close()


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
