"""``spiderpool-demo-cluster`` (``make demo-cluster``): the Kubernetes mode on one machine, without a cluster.

The simulated cluster is test code (``tests/simcluster``: its kubelet, scheduler and workload controllers are
stand-ins no product would ship), so this command is only a launcher: it finds the repository this module was
installed from (an editable install, which ``make setup`` makes: the module lives in
``<repo>/services/tools/spiderpool_tools``) and runs ``python -m tests.simcluster`` there with the same
interpreter and arguments (see ``tests/simcluster/demo.py`` for what it shows). An installation without the
repository's ``tests/`` directory gets a message saying so, and exit code 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
HARNESS = REPO_ROOT / "tests" / "simcluster" / "demo.py"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not HARNESS.is_file():
        print(
            f"spiderpool-demo-cluster: {HARNESS} is missing: the cluster demo runs from a checkout of the "
            "repository (make setup installs it in editable mode)",
            file=sys.stderr,
        )
        return 2
    os.chdir(REPO_ROOT)
    os.execv(sys.executable, [sys.executable, "-m", "tests.simcluster", *args])  # noqa: S606 (replaces this process)
    return 1  # not reached: execv replaces the process or raises


if __name__ == "__main__":
    sys.exit(main())
