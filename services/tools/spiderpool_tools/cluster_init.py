"""``spiderpool-init``: the Helm chart's hook jobs (upstream's spiderpool-init and uninstall cleanup).

``spiderpool-init apply --manifests DIR`` (post-install, post-upgrade) creates each object of the
YAML files in DIR (the SpiderCoordinator ``default``, the default pools and subnets the values ask
for) through the Kubernetes API. An object that exists is left as it is (409: a user may have
changed it since). A write the API server refuses for now (unreachable, 5xx such as an admission
webhook whose controller is not up yet, 429) is retried with backoff until ``--timeout``; any other
refusal (400, 403, 422: a bad manifest, missing RBAC) stops it at once, naming the object.

``spiderpool-init cleanup`` (pre-delete) deletes the named webhook configurations first (a
registered webhook whose controller is going away would refuse every later write of the spiderpool
kinds), then every spiderpool object, dropping its finalizers (the controller that would have
removed them is going away) until none is left, and with ``--delete-crds`` the CRDs, which Helm
never deletes. Everything already gone counts as done, so the hook can run twice.

Both use the in-cluster ServiceAccount (or ``--kubeconfig``); the chart grants each only what it
does here (create; list, patch and delete; delete by name).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from spiderpool_common import bounded_yaml
from spiderpool_common.kube.config import KubeConfigError, api_client
from spiderpool_common.kube.rest import KubeError, KubeRest
from spiderpool_controller.domain.models import API_GROUP
from spiderpool_controller.store.kubernetes import RESOURCES, VERSION

T = TypeVar("T")
GROUP_VERSION = f"{API_GROUP}/{VERSION}"
WEBHOOK_KINDS = ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")
RETRY_CODES = frozenset({0, 429, 500, 502, 503, 504})


class InitError(Exception):
    """The job cannot do its work (a bad manifest, a refusal that retrying will not change, timeout)."""


def object_path(obj: dict[str, Any]) -> tuple[str, str]:
    """The collection path to POST ``obj`` to, and its name (spiderpool kinds only)."""
    kind = obj.get("kind")
    if obj.get("apiVersion") != GROUP_VERSION or kind not in RESOURCES:
        raise InitError(f"{kind or '(no kind)'}: only {GROUP_VERSION} objects are created by spiderpool-init")
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InitError(f"{kind} without metadata.name")
    res = RESOURCES[kind]
    namespace = meta.get("namespace") or ("default" if res.namespaced else "")
    prefix = f"/apis/{GROUP_VERSION}" + (f"/namespaces/{namespace}" if res.namespaced else "")
    return f"{prefix}/{res.plural}", name


def load_manifests(directory: Path) -> list[dict[str, Any]]:
    """Every object of the ``*.yaml`` files in ``directory`` (sorted by file name, then in order)."""
    objects: list[dict[str, Any]] = []
    if not directory.is_dir():
        raise InitError(f"{directory} is not a directory")
    for path in sorted(directory.glob("*.yaml")):
        text = path.read_text()
        for index, chunk in enumerate(text.split("\n---")):
            doc = bounded_yaml.load(chunk, f"{path}[{index}]")
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise InitError(f"{path}: document {index} is not an object")
            object_path(doc)  # refuse a foreign kind before anything is created
            objects.append(doc)
    return objects


async def retrying(
    what: str, call: Callable[[], Awaitable[T]], deadline: float, out: Callable[[str], None]
) -> T:
    """``call()``, retried while the API server refuses for a passing reason, until ``deadline``."""
    delay = 0.5
    while True:
        try:
            return await call()
        except KubeError as err:
            if err.code not in RETRY_CODES or time.monotonic() + delay > deadline:
                raise InitError(f"{what}: {err.message}") from None
            out(f"{what}: {err.message}; retrying in {delay:g}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)


async def apply(
    rest: KubeRest, objects: list[dict[str, Any]], within_s: float, out: Callable[[str], None]
) -> None:
    deadline = time.monotonic() + within_s
    for obj in objects:
        path, name = object_path(obj)
        what = f"{obj['kind']} {name}"

        async def create(path: str = path, obj: dict[str, Any] = obj) -> str:
            try:
                await rest.create(path, obj)
            except KubeError as err:
                if err.code == 409:
                    return "exists, left as it is"
                raise
            return "created"

        out(f"{what}: {await retrying(what, create, deadline, out)}")


def _items(reply: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for item in reply.get("items") or []:
        meta = item.get("metadata") or {}
        yield str(meta.get("namespace") or ""), str(meta.get("name") or "")


async def _delete(rest: KubeRest, path: str) -> bool:
    """Delete ``path``; False when it was not there."""
    try:
        await rest.delete(path)
    except KubeError as err:
        if err.not_found:
            return False
        raise
    return True


async def _list(rest: KubeRest, path: str) -> dict[str, Any]:
    """The collection's objects; none when the resource is not served (its CRD is gone)."""
    try:
        return await rest.get(path)
    except KubeError as err:
        if err.not_found:
            return {"items": []}
        raise


async def _drop_finalizers(rest: KubeRest, path: str) -> bool:
    try:
        await rest.merge_patch(path, {"metadata": {"finalizers": None}})
    except KubeError as err:
        if err.not_found:
            return False
        raise
    return True


async def cleanup(
    rest: KubeRest,
    webhook_configurations: list[str],
    delete_crds: bool,
    within_s: float,
    out: Callable[[str], None],
) -> None:
    deadline = time.monotonic() + within_s
    for name in webhook_configurations:
        for kind in WEBHOOK_KINDS:
            path = f"/apis/admissionregistration.k8s.io/v1/{kind}/{name}"
            gone = await retrying(f"delete {kind} {name}", partial(_delete, rest, path), deadline, out)
            out(f"{kind} {name}: {'deleted' if gone else 'not found'}")
    for kind, res in RESOURCES.items():
        collection = f"/apis/{GROUP_VERSION}/{res.plural}"
        while True:
            reply = await retrying(f"list {res.plural}", partial(_list, rest, collection), deadline, out)
            left = list(_items(reply))
            if not left:
                break
            if time.monotonic() > deadline:
                raise InitError(f"{len(left)} {kind} objects are still there after {within_s:g}s")
            for namespace, name in left:
                prefix = f"/apis/{GROUP_VERSION}" + (f"/namespaces/{namespace}" if res.namespaced else "")
                path = f"{prefix}/{res.plural}/{name}"
                await retrying(f"{kind} {name}", partial(_drop_finalizers, rest, path), deadline, out)
                await retrying(f"{kind} {name}", partial(_delete, rest, path), deadline, out)
                out(f"{kind} {namespace + '/' if namespace else ''}{name}: deleted")
    if delete_crds:
        for res in RESOURCES.values():
            name = f"{res.plural}.{API_GROUP}"
            path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            gone = await retrying(f"delete crd {name}", partial(_delete, rest, path), deadline, out)
            out(f"customresourcedefinition {name}: {'deleted' if gone else 'not found'}")


async def run(args: argparse.Namespace, out: Callable[[str], None]) -> None:
    objects = load_manifests(Path(args.manifests)) if args.command == "apply" else []
    client = await api_client(args.kubeconfig or None)
    try:
        rest = KubeRest(client, timeout_s=args.request_timeout)
        if args.command == "apply":
            await apply(rest, objects, args.timeout, out)
        else:
            await cleanup(rest, args.webhook_configuration, args.delete_crds, args.timeout, out)
    finally:
        await client.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spiderpool-init", description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--kubeconfig", default="", help="kubeconfig file (default: the in-cluster ServiceAccount)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to keep retrying (default 300)")
    parser.add_argument(
        "--request-timeout", type=float, default=10.0, help="seconds per API request (default 10)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("apply", help="create the objects of DIR/*.yaml that do not exist")
    create.add_argument("--manifests", required=True, help="directory of YAML manifests")
    clean = commands.add_parser(
        "cleanup", help="delete webhook configurations, every spiderpool object, the CRDs"
    )
    clean.add_argument(
        "--webhook-configuration",
        action="append",
        default=[],
        help="name of our webhook configurations (repeat)",
    )
    clean.add_argument("--delete-crds", action="store_true", help="also delete the spiderpool CRDs")
    # The options are accepted after the command too, as the chart writes them.
    for sub in (create, clean):
        sub.add_argument("--kubeconfig", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument("--request-timeout", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        asyncio.run(run(args, out))
    except (InitError, KubeConfigError, KubeError, OSError, ValueError) as exc:
        print(f"spiderpool-init: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
