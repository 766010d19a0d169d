"""``spiderpoolctl check``: allocated addresses outside their pool's current ranges.

A minimal check (a fuller, cross-referencing ``check`` is another issue's): after a range
change forced with ``ipam.spidernet.io/ippool-force-range-change`` (``domain/stranded``),
the pods keep addresses their pool no longer contains; this lists them, one line per
address with its pool, pod (or container), interface and why, read from the pools'
records through the controller. Exit 0 when there are none, 1 when some are listed, so a
script can wait for a forced change to drain.
"""

from __future__ import annotations

import argparse
from typing import Any, Protocol, TextIO

from spiderpool_controller.domain import models
from spiderpool_controller.domain.stranded import Stranded, stranded_in

EXIT_OK, EXIT_FOUND = 0, 1
COLUMNS = ("POOL", "IP", "POD", "CONTAINER", "INTERFACE", "REASON")


class PoolLister(Protocol):
    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]: ...


def rows(found: list[Stranded]) -> list[tuple[str, ...]]:
    return [
        (
            s.pool,
            s.ip,
            s.record.pod or "<none>",
            s.record.container_id or "<none>",
            s.record.interface or "<none>",
            s.reason,
        )
        for s in found
    ]


def cmd_check(args: argparse.Namespace, client: PoolLister, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    pools = sorted(client.list(models.KIND_IPPOOL, "", ""), key=lambda obj: obj["metadata"]["name"])
    found = [s for obj in pools for s in stranded_in(obj)]
    if not found:
        print(f"No stranded addresses in {len(pools)} IPPool(s).", file=out)
        return EXIT_OK
    table = [COLUMNS, *rows(found)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    for row in table:
        print(
            "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out
        )
    print(
        f"{len(found)} allocated address(es) lie outside their IPPool's spec.ips minus spec.excludeIPs; "
        "they stay with their pods until released.",
        file=err,
    )
    return EXIT_FOUND
