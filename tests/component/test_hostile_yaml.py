"""Every program that reads YAML refuses an alias bomb and deep nesting at once, in one line.

Each case runs the real command as a user would, in a child process whose address space
is capped (``RLIMIT_AS``, set by a tiny exec wrapper) so a program that expands the bomb fails here with a
MemoryError instead of eating the machine; ``os.wait4`` gives that child's own peak RSS
and CPU time, which bound what the refusal may cost.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ADDRESS_SPACE_CAP = 1 << 30  # 1 GiB: grpc and yaml import well within it
MAX_RSS_KB = 200_000  # the programs idle at 40-90 MB; expanding the bomb takes gigabytes
MAX_CPU_S = 5.0  # what the refusal may cost in CPU time (the bomb takes minutes)

# "Billion laughs": nine levels of nine aliases of the level below, 9^9 strings expanded.
BOMB = "\n".join(
    [
        'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 9)),
        "kind: SpiderIPPool",
    ]
)
DEEP = "a: " + "[" * 10_000 + "]" * 10_000 + "\n"


# Sets the cap, then becomes the program (same pid, so wait4 measures the program).
CAPPED_EXEC = (
    "import os, resource, sys; "
    f"resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_CAP}, {ADDRESS_SPACE_CAP})); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def run_capped(argv: list[str]) -> tuple[int, str, resource.struct_rusage]:
    """Run ``argv`` under the address-space cap; return exit code, stderr and its own rusage."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CAPPED_EXEC, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stderr is not None
    err = proc.stderr.read().decode()  # the pipe closes when the child exits
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err, usage


def commands(path: Path, workdir: Path) -> dict[str, list[str]]:
    controller = f"unix:{workdir / 'c.sock'}"
    return {
        "spiderpoolctl apply": [
            str(BIN / "spiderpoolctl"), "--controller", controller, "apply", "-f", str(path),
        ],
        "spiderpool-controller --config": [
            str(BIN / "spiderpool-controller"), "--config", str(path),
            "--store", f"sqlite://{workdir / 'state.db'}", "--listen", controller,
        ],
        "spiderpool-agent --config": [
            str(BIN / "spiderpool-agent"), "--config", str(path), "--controller", controller,
            "--socket", str(workdir / "a.sock"), "--state-dir", str(workdir / "agent"),
        ],
    }  # fmt: skip


PROGRAMS = ["spiderpoolctl apply", "spiderpool-controller --config", "spiderpool-agent --config"]


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize(
    ("document", "refusal"), [(BOMB, "alias"), (DEEP, "nested deeper")], ids=["bomb", "deep"]
)
def test_hostile_yaml_is_refused_in_one_line_with_bounded_memory(
    tmp_path: Path, program: str, document: str, refusal: str
) -> None:
    """The alias bomb and 10,000-deep nesting get a one-line error naming the file, in bounded
    memory and CPU time."""
    path = tmp_path / "hostile.yaml"
    path.write_text(document)
    code, err, usage = run_capped(commands(path, tmp_path)[program])
    assert code in (1, 2), err
    assert err.count("\n") == 1, err
    assert str(path) in err and refusal in err, err
    assert "Traceback" not in err
    assert usage.ru_maxrss < MAX_RSS_KB, usage.ru_maxrss
    assert usage.ru_utime + usage.ru_stime < MAX_CPU_S
    assert not (tmp_path / "state.db").exists()  # refused before anything was opened
