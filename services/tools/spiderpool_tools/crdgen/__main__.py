"""``python -m spiderpool_tools.crdgen --out DIR [--out DIR ...] [--check]``: write or verify the CRDs.

Writes one file per kind into every ``--out`` directory (``deploy/crds``, and the Helm chart's
``crds/`` once it exists: ``make crds`` passes both), removing files this generator wrote for a
kind that no longer exists and leaving every other file alone. ``--check`` writes nothing and
exits 1 naming each stale, missing or leftover file (``make crds-verify``, run by CI). Either
way, a CRD that breaks a structural-schema rule is refused before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from spiderpool_common import bounded_yaml

from spiderpool_tools.crdgen import render
from spiderpool_tools.crdgen.structural import crd_errors


def _ours(path: Path) -> bool:
    try:
        return path.read_text().startswith(render.HEADER.splitlines()[0])
    except OSError:
        return False


def problems(files: dict[str, str], out: Path) -> list[str]:
    """What differs between the generated ``files`` and directory ``out``."""
    found: list[str] = []
    for name, text in files.items():
        path = out / name
        if not path.exists():
            found.append(f"{path} is missing")
        elif path.read_text() != text:
            found.append(f"{path} is stale")
    if out.is_dir():
        found += [f"{p} was generated for a kind that no longer exists" for p in _leftovers(files, out)]
    return found


def _leftovers(files: dict[str, str], out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*.yaml") if p.name not in files and _ours(p))


def write(files: dict[str, str], out: Path) -> list[str]:
    """Bring ``out`` in line with ``files``; return what changed."""
    out.mkdir(parents=True, exist_ok=True)
    changed: list[str] = []
    for name, text in files.items():
        path = out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(f"wrote {path}")
    for path in _leftovers(files, out):
        path.unlink()
        changed.append(f"removed {path}")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=render.GENERATOR, description=__doc__.splitlines()[0])
    parser.add_argument("--out", action="append", type=Path, required=True, help="directory (repeatable)")
    parser.add_argument("--check", action="store_true", help="verify only; exit 1 when a file is not current")
    args = parser.parse_args(argv)
    files = render.render_all()
    refused = [
        f"{name}: {e}" for name, text in files.items() for e in crd_errors(bounded_yaml.load(text, name))
    ]
    if refused:
        print(
            "crds: refusing to write CRDs the API server would reject:", *refused, sep="\n  ", file=sys.stderr
        )
        return 1
    if args.check:
        found = [p for out in args.out for p in problems(files, out)]
        for problem in found:
            print(f"crds: {problem}; run make crds", file=sys.stderr)
        if not found:
            print(f"crds: {len(files)} CRDs current in {', '.join(map(str, args.out))}")
        return 1 if found else 0
    for out in args.out:
        for line in write(files, out) or [f"{out}: {len(files)} CRDs already current"]:
            print(f"crds: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
