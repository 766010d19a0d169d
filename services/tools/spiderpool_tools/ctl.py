"""``spiderpoolctl``: kubectl-like apply, get and delete against the controller's ResourceService.

Owns the command line a user meets without Kubernetes: the same manifests, the same
resource names (``spiderippool.spiderpool.spidernet.io/NAME created``), the same table
columns as upstream's CRD printer columns (charts/spiderpool/crds upstream) and kubectl's habits
(``-f -``, ``-o wide|json|yaml|name``, ``-n``/``-A``, ``Error from server (NotFound): ...``).
Validation happens in the controller, so its message (naming the object and the field)
is what the user reads.

Exit codes: 0 success, 1 a request (or reading a manifest) failed, 2 usage error.
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

import grpc
import yaml
from spiderpool.controller.v1 import resource_pb2, resource_pb2_grpc
from spiderpool_common import bounded_yaml
from spiderpool_common.addresses import DEFAULT_CONTROLLER
from spiderpool_common.channels import channel_target, open_sync_channel
from spiderpool_common.errors import InvalidObject
from spiderpool_common.grpc_errors import from_rpc_error
from spiderpool_common.tls import TlsFiles
from spiderpool_controller.domain import models, multus_config, nad_render

from spiderpool_tools import stranded_check

ENV_CONTROLLER = "SPIDERPOOL_CONTROLLER"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
NONE = "<none>"

Obj = dict[str, Any]


class UsageError(Exception):
    """A command line that cannot run (exit code 2)."""


class ControllerUnreachable(Exception):
    """The transport failed: no controller answers at the address (exit code 1)."""


# ---------------------------------------------------------------------------------------
# talking to the controller


_REASONS = {
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.INVALID_ARGUMENT: "BadRequest",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.FAILED_PRECONDITION: "Conflict",
    grpc.StatusCode.ABORTED: "Conflict",
    grpc.StatusCode.UNAVAILABLE: "ServiceUnavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "Timeout",
}


class RequestFailed(Exception):
    """The controller refused a request; ``str()`` is kubectl's ``Error from server (Reason): msg``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"Error from server ({reason}): {message}")
        self.reason = reason
        self.message = message


def _translate(exc: grpc.RpcError, address: str) -> Exception:
    from grpc_status import rpc_status  # noqa: PLC0415  (only needed on failure)

    code = exc.code() if isinstance(exc, grpc.Call) else None
    if rpc_status.from_call(exc) is None and code in (  # type: ignore[arg-type]
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ):
        detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        return ControllerUnreachable(f"cannot reach the controller at {address}: {detail}")
    err = from_rpc_error(exc)
    reason = "Invalid" if isinstance(err, InvalidObject) else _REASONS.get(code, "InternalError")  # type: ignore[arg-type]
    return RequestFailed(reason, err.message)


class Client:
    """A blocking ResourceService client; every call has a deadline and fails fast."""

    def __init__(
        self, address: str, timeout: float, tls: TlsFiles | None = None, server_name: str = ""
    ) -> None:
        self.address = address
        self._timeout = timeout
        self._channel = open_sync_channel(address, tls, server_name)
        self._stub = resource_pb2_grpc.ResourceServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., Any], request: Any) -> Any:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise _translate(exc, self.address) from None

    def apply(self, obj: Obj) -> resource_pb2.ApplyResponse:
        text = json.dumps(obj, default=str)  # YAML timestamps become strings, as kubectl sends them
        response: resource_pb2.ApplyResponse = self._call(
            self._stub.Apply, resource_pb2.ApplyRequest(object_json=text)
        )
        return response

    def get(self, kind: str, name: str, namespace: str) -> Obj:
        request = resource_pb2.GetRequest(kind=kind, name=name, namespace=namespace)
        response: resource_pb2.GetResponse = self._call(self._stub.Get, request)
        obj: Obj = json.loads(response.object_json)
        return obj

    def list(self, kind: str, namespace: str, selector: str) -> list[Obj]:
        request = resource_pb2.ListRequest(kind=kind, namespace=namespace, label_selector=selector)
        response: resource_pb2.ListResponse = self._call(self._stub.List, request)
        return [json.loads(text) for text in response.object_json]

    def delete(self, kind: str, name: str, namespace: str) -> Obj:
        request = resource_pb2.DeleteRequest(kind=kind, name=name, namespace=namespace)
        response: resource_pb2.DeleteResponse = self._call(self._stub.Delete, request)
        obj: Obj = json.loads(response.object_json)
        return obj


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


def cmd_apply(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    failed = False
    for path in [p for given in args.filename for p in _expand(given)]:
        try:
            docs = list(documents(_read_source(path, stdin), path))
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=err)
            failed = True
            continue
        except (OSError, UnicodeDecodeError) as exc:
            print(f'error: cannot read "{path}": {exc}', file=err)
            failed = True
            continue
        except bounded_yaml.YamlError as exc:
            print(f"error: error parsing {exc}", file=err)
            failed = True
            continue
        for doc in docs:
            where = f'"{doc.source}" (document {doc.index})'
            if not isinstance(doc.obj, dict):
                print(f"error: {where}: a manifest must be a mapping, got {type(doc.obj).__name__}", file=err)
                failed = True
                continue
            try:
                response = client.apply(doc.obj)
            except RequestFailed as exc:
                print(
                    f"Error from server ({exc.reason}): error when applying {where}: {exc.message}", file=err
                )
                failed = True
                continue
            stored = json.loads(response.object_json)
            verb = "created" if response.created else "unchanged" if response.unchanged else "configured"
            print(f"{resource_name(stored['kind'])}/{stored['metadata']['name']} {verb}", file=out)
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
    rows = [[title for title, _ in columns]] + [[cell(get(o)) for _, get in columns] for o in objs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _resolve(text: str) -> str:
    try:
        return models.resolve_kind(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_get(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    kind = _resolve(args.kind)
    namespaced = kind in models.NAMESPACED_KINDS
    namespace = "" if not namespaced or args.all_namespaces else (args.namespace or "default")
    if args.name:
        if args.all_namespaces:
            raise UsageError("a resource cannot be retrieved by name across all namespaces")
        objs = [client.get(kind, args.name, namespace)]
    else:
        objs = client.list(kind, namespace, args.selector or "")
    if args.output in ("json", "yaml"):
        doc: Any = objs[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": objs}
        if args.output == "json":
            print(json.dumps(doc, indent=4, sort_keys=True), file=out)
        else:
            print(yaml.safe_dump(doc, default_flow_style=False, sort_keys=True).rstrip("\n"), file=out)
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
    get.add_argument("kind")
    get.add_argument("name", nargs="?")
    get.add_argument("-o", "--output", choices=("wide", "json", "yaml", "name"))
    get.add_argument("-n", "--namespace", help="namespace of namespaced kinds (default: default)")
    get.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    get.add_argument("-l", "--selector", help="label selector, e.g. team=web,tier in (a,b)")
    get.set_defaults(run=cmd_get)

    delete = commands.add_parser("delete", help="delete objects by name")
    delete.add_argument("kind")
    delete.add_argument("names", nargs="+", metavar="NAME")
    delete.add_argument("-n", "--namespace", help="namespace of namespaced kinds (default: default)")
    delete.set_defaults(run=cmd_delete)

    check = commands.add_parser(
        "check", help="list allocated addresses outside their pool's ranges (exit 1 when any)"
    )
    check.set_defaults(run=stranded_check.cmd_check)
    multus = commands.add_parser("multus", help="SpiderMultusConfig tools")
    multus_commands = multus.add_subparsers(dest="multus_command", required=True, parser_class=_Parser)
    render = multus_commands.add_parser(
        "render", help="print the CNI conflist a SpiderMultusConfig generates (its NAD's spec.config)"
    )
    render.add_argument("name")
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
