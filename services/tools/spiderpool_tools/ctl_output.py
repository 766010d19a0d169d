"""How spiderpoolctl prints: kubectl's tables, and documents as JSON or YAML.

Owns the two output habits every command shares. A table has upper-case headers and
columns three spaces apart, trailing blanks trimmed, ``<none>`` for an empty cell (kubectl's
``get``). ``-o json`` is indented, ``-o yaml`` block style, both with sorted keys so that two
runs on the same state print the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

import yaml

NONE = "<none>"
FORMATS = ("json", "yaml")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows as given (a caller writes ``NONE`` where it wants kubectl's ``<none>``)."""
    table = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    )


def dump(doc: Any, fmt: str) -> str:
    """``doc`` as ``json`` or ``yaml`` text (no trailing newline)."""
    if fmt == "json":
        return json.dumps(doc, indent=4, sort_keys=True)
    if fmt == "yaml":
        return yaml.safe_dump(doc, default_flow_style=False, sort_keys=True).rstrip("\n")
    raise ValueError(f"unknown output format {fmt!r}")


def print_document(doc: Any, fmt: str, out: TextIO) -> None:
    print(dump(doc, fmt), file=out)
