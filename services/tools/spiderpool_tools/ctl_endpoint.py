"""``spiderpoolctl get endpoint NS/NAME``: one pod's addresses per interface, in detail.

The list form (``get endpoints``) prints SpiderEndpoint objects with upstream's printer
columns; asked for one pod, this prints what an operator debugging it needs, read from the
pools' records (``AdminService.DescribeEndpoint``, the source the SpiderEndpoint is written
from a moment later): per interface its addresses with their pools and gateways, the
sandbox (container ID) holding them now, the CNI network and node, the routes the ADD
answered, and the pod's owner. ``-o json|yaml`` prints the same as a document, with the
stored SpiderEndpoint object beside it (``null`` while it has not been written).
"""

from __future__ import annotations

from typing import Any, TextIO

from spiderpool.controller.v1 import admin_pb2
from spiderpool_controller.domain import models

from spiderpool_tools.ctl_client import EXIT_OK, Client, RequestFailed
from spiderpool_tools.ctl_output import NONE, print_document, render_table


def detail_doc(reply: admin_pb2.DescribeEndpointResponse, stored: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "namespace": reply.namespace,
        "name": reply.name,
        "podUID": reply.pod_uid,
        "owner": {"kind": reply.owner_kind, "name": reply.owner_name},
        "interfaces": [
            {
                "interface": i.interface,
                "containerID": i.container_id,
                "identity": i.identity,
                "network": i.network,
                "node": i.node,
                "cleanGateway": i.clean_gateway,
                "addresses": [
                    {
                        "ipVersion": a.version,
                        "address": a.address,
                        "pool": a.pool,
                        "gateway": a.gateway or None,
                    }
                    for a in i.addresses
                ],
                "routes": [{"dst": r.dst, "gw": r.gw} for r in i.routes],
            }
            for i in reply.interfaces
        ],
        "spiderEndpoint": stored,
    }


def show_endpoint(client: Client, namespace: str, name: str, output: str | None, out: TextIO) -> int:
    reply = client.describe_endpoint(namespace, name)
    if output in ("json", "yaml"):
        try:
            stored: dict[str, Any] | None = client.get(models.KIND_ENDPOINT, name, namespace)
        except RequestFailed as exc:
            if exc.reason != "NotFound":
                raise
            stored = None
        print_document(detail_doc(reply, stored), output, out)
        return EXIT_OK
    owner = f"{reply.owner_kind} {reply.owner_name}".strip() if reply.owner_name else reply.owner_kind
    print(f"Pod:    {reply.namespace}/{reply.name}", file=out)
    print(f"UID:    {reply.pod_uid or NONE}", file=out)
    print(f"Owner:  {owner or NONE}", file=out)
    rows = [
        [
            i.interface,
            a.address,
            a.pool,
            a.gateway or NONE,
            i.container_id or NONE,
            i.network or NONE,
            i.node or NONE,
        ]
        for i in reply.interfaces
        for a in i.addresses
    ]
    print(
        render_table(["INTERFACE", "ADDRESS", "POOL", "GATEWAY", "CONTAINER", "NETWORK", "NODE"], rows),
        file=out,
    )
    routes = [[i.interface, r.dst, r.gw] for i in reply.interfaces for r in i.routes]
    if routes:
        print("", file=out)
        print(render_table(["INTERFACE", "ROUTE", "VIA"], routes), file=out)
    cleaned = [i.interface for i in reply.interfaces if i.clean_gateway]
    if cleaned:
        print(
            f"\nClean gateway (no default route through the pool's gateway) on: {', '.join(cleaned)}",
            file=out,
        )
    return EXIT_OK
