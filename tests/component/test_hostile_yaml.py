"""Every program that reads YAML refuses an alias bomb and deep nesting at once, in one line.

Each case runs the real command as a user would, with its address space capped
(``RLIMIT_AS``) so a program that expands the bomb fails here with a MemoryError instead
of eating the machine; a small wrapper measures the program's own peak RSS and CPU time,
which bound what the refusal may cost.
"""

from __future__ import annotations

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


# Sets the cap, then runs the program as its own child and writes the program's peak RSS
# (KiB) and CPU seconds to the file named first. The extra process matters: a child's
# ru_maxrss starts at the RSS of the process it was forked from, so a program forked
# straight from a long-running pytest would report pytest's size; forked from this small
# wrapper, it reports its own.
CAPPED_RUN = f"""
import os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_CAP}, {ADDRESS_SPACE_CAP}))
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{{usage.ru_maxrss}} {{usage.ru_utime + usage.ru_stime}}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_capped(argv: list[str], usage_file: Path) -> tuple[int, str, int, float]:
    """Run ``argv`` under the address-space cap: exit code, stderr, peak RSS (KiB), CPU seconds."""
    proc = subprocess.run(
        [sys.executable, "-c", CAPPED_RUN, str(usage_file), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=300,
        check=False,
    )
    rss, cpu = usage_file.read_text().split()
    return proc.returncode, proc.stderr.decode(), int(rss), float(cpu)


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
    code, err, rss_kib, cpu_s = run_capped(commands(path, tmp_path)[program], tmp_path / "usage")
    assert code in (1, 2), err
    assert err.count("\n") == 1, err
    assert str(path) in err and refusal in err, err
    assert "Traceback" not in err
    assert rss_kib < MAX_RSS_KB, rss_kib
    assert cpu_s < MAX_CPU_S, cpu_s
    assert not (tmp_path / "state.db").exists()  # refused before anything was opened
