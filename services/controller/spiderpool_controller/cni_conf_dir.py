"""The node's default CNI, as ``podCIDRType: auto`` reads it from a CNI configuration directory.

Owns upstream's rule (``GetDefaultCniName``): the files of the directory ending in ``.conf``
or ``.conflist`` (libcni's ``ConfFiles``), those whose name contains ``00-multus`` skipped,
sorted by name; the first one's network ``name``. The controller reads it only when it has
the directory (``--cni-config-dir``, upstream's ``SPIDERPOOL_CNI_CONFIG_DIR``, mounted from
the node); a missing or empty directory answers None and discovery asks the API instead.
A file that is not a JSON object with a string ``name`` counts as a CNI of no known name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

EXTENSIONS = (".conf", ".conflist")
MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class DefaultCni:
    name: str
    file: str


def default_cni(directory: str | None) -> DefaultCni | None:
    if not directory:
        return None
    root = Path(directory)
    try:
        files = sorted(
            p.name
            for p in root.iterdir()
            if p.suffix in EXTENSIONS and "00-multus" not in p.name and p.is_file()
        )
    except OSError:
        return None
    if not files:
        return None
    path = root / files[0]
    try:
        with path.open("rb") as handle:
            conf = json.loads(handle.read(MAX_BYTES))
    except (OSError, ValueError) as exc:
        log.warning("cni_config_unreadable", file=str(path), error=str(exc))
        return DefaultCni("", str(path))
    name = conf.get("name") if isinstance(conf, dict) else None
    return DefaultCni(name if isinstance(name, str) else "", str(path))
