"""Entry of the IPAM shim, the ``spiderpool`` executable a main CNI plugin delegates to.

Only dispatches: the shared shim logic lives in ``spiderpool_cni.shim``; the installed file
(written by ``spiderpool-install-cni``) puts this package on ``sys.path`` and calls ``main``.
"""

from spiderpool_cni.shim import run


def main() -> int:
    """Run one CNI call of the IPAM plugin and return its exit code."""
    return run("ipam")
