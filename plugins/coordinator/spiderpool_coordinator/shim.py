"""Entry of the coordinator shim, the ``coordinator`` executable chained after the main CNI.

The coordinator's routing work runs inside the agent (Multus' "thick plugin" model); this
shim only forwards the call with the stdlib-only client of ``spiderpool_cni.shim``. It must
import nothing else: it runs with ``python -IS`` on every CNI call.
"""

from spiderpool_cni.shim import run


def main() -> int:
    """Run one CNI call of the coordinator plugin and return its exit code."""
    return run("coordinator")
