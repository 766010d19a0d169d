"""Comments and docs cite what a reader can open: upstream file names and issue numbers, never a
section number of a document outside the repository or a path on the machine it was written on."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("services", "plugins", "tests", "bench", "deploy", "proto", "docs")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".proto", ".toml"}
# "reference 3.5", "reference section 2", "§3.6", "/work/shared/...", "shared/reference/x.md"
UNOPENABLE = re.compile(r"§\s*\d|\breference (section )?\d|shared/reference/|/work/(shared|main)\b")


def cited_lines() -> list[str]:
    found = []
    files = [ROOT / "README.md"] + [
        p for top in SCANNED if (ROOT / top).is_dir() for p in (ROOT / top).rglob("*") if p.suffix in SUFFIXES
    ]
    for path in files:
        if ".venv" in path.parts or path == Path(__file__).resolve():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if UNOPENABLE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    return found


def test_no_comment_cites_a_document_outside_the_repository() -> None:
    """Every citation names something a reader of the repository can open."""
    assert cited_lines() == []


def test_the_rule_sees_each_kind_of_unopenable_citation() -> None:
    """The pattern catches section numbers and machine paths, and lets upstream file names pass."""
    for bad in ("(reference 3.5 step 8)", "upstream §3.6", "see /work/shared/x.md", "reference section 2"):
        assert UNOPENABLE.search(bad), bad
    for good in ("upstream's pkg/ipam/allocate.go", "issues #2526, #3778", "RFC 5227 section 2.1.1"):
        assert not UNOPENABLE.search(good), good
