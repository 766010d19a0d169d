"""docs/conformance.md names only tests that exist: every pytest id in its table and text is
collected by pytest from the files the page names, so the table cannot claim a cell no test proves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "conformance.md"
FILES = (
    "tests/component/test_shim_conformance.py",
    "tests/component/test_shim_cni_errors.py",
    "tests/component/test_agent_del_spool.py",
    "tests/component/test_requested_ips_shim.py",
    "tests/netns/test_coordinator_gc_and_del_spool.py",
)


def collected() -> set[str]:
    """Every collected test id of ``FILES``: ``path::name[param]``."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *FILES],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {line.strip() for line in proc.stdout.splitlines() if "::" in line}


def named(text: str) -> list[str]:
    """The page's test references, shorthand ``[param]`` cells expanded with the test before them."""
    out: list[str] = []
    last = ""
    for token in re.findall(r"`([^`]+)`", text):
        if re.fullmatch(r"(\S+::)?test_\w+(\[[^\]]*\])?", token):
            last = token.split("::")[-1].split("[")[0]
            out.append(token)
        elif re.fullmatch(r"\[[^\]]+\]", token) and last:
            out.append(last + token)
    return out


def test_every_test_the_conformance_page_names_is_collected() -> None:
    """Full ids must be collected as written; a bare name or a ``[<case>]`` placeholder must name a
    collected test function; a ``path::name`` must be in that file."""
    ids = collected()
    by_name = {i.split("::")[-1] for i in ids}
    functions = {n.split("[")[0] for n in by_name}
    references = named(PAGE.read_text())
    assert len(references) > 40, "the page names fewer tests than its table has cells"
    missing = []
    for ref in references:
        if "::" in ref:
            ok = any(i == ref or i.startswith(ref + "[") for i in ids)
        elif "[<" in ref or "[" not in ref:
            ok = ref.split("[")[0] in functions
        else:
            ok = ref in by_name
        if not ok:
            missing.append(ref)
    assert missing == []
