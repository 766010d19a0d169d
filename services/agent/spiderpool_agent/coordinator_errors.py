"""The one translation of the coordinator library's errors into the agent's ``CniError``.

The coordinator library (``plugins/coordinator``) may import nothing from the services, so
it raises its own ``CoordinatorError`` tree, each class carrying its CNI code (103 IP
conflict, 104 gateway unreachable, 7 invalid configuration, 120 routing failed). Both
places that run the library, the coordinator verbs and the IPAM ADD's detection, hand its
errors to ``to_cni_error`` so the code, message and details reach the shim unchanged.
"""

from __future__ import annotations

from spiderpool_common.errors import CniError
from spiderpool_coordinator.errors import CoordinatorError


def to_cni_error(exc: CoordinatorError, *, note: str = "") -> CniError:
    """``exc`` as a ``CniError`` with the library's code; ``note`` is appended to the message."""
    message = f"{exc.message}; {note}" if note else exc.message
    return CniError(exc.cni_code, message, details=exc.details)
