"""The checks of a pod's Spiderpool annotations that the agent makes before an ADD.

Owns the annotations whose value the controller's pool selection does not read but an ADD
must not silently accept when malformed (reference spiderpool.md 3.1):

- ``ipam.spidernet.io/ippool-ip-number``: ``N`` (a fixed number of addresses) or ``+N``
  (the workload's replicas plus N), N a non-negative integer (upstream's
  ``GetPoolIPNumber``: one '+' at most, then a number, negative refused);
- ``ipam.spidernet.io/default-route-nic``: an interface name (1-15 characters, none of
  '/', ':' or whitespace, as the kernel and libcni require).

The pool annotations (``ippool``, ``ippools``, ``routes``) and the namespace's default
pools are checked where they are used, by the controller, with the same kind of message.
A bad value raises ``InvalidAnnotation`` (code 105) naming the annotation and the fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from spiderpool_common.errors import InvalidAnnotation

IPPOOL_IP_NUMBER = "ipam.spidernet.io/ippool-ip-number"
DEFAULT_ROUTE_NIC = "ipam.spidernet.io/default-route-nic"

_IP_NUMBER = re.compile(r"^\+?[0-9]+$")
_IFNAME_MAX = 15


def check_pod_annotations(annotations: Mapping[str, str]) -> None:
    """Raise ``InvalidAnnotation`` for the first malformed annotation this module owns."""
    number = annotations.get(IPPOOL_IP_NUMBER)
    if number is not None and not _IP_NUMBER.match(number.strip()):
        raise InvalidAnnotation(
            f"annotation {IPPOOL_IP_NUMBER}: {number!r} is neither N (a fixed number of IPs) "
            "nor +N (replicas plus N), N a non-negative integer"
        )
    nic = annotations.get(DEFAULT_ROUTE_NIC)
    if nic is not None:
        name = nic.strip()
        if (
            not 0 < len(name) <= _IFNAME_MAX
            or name in (".", "..")
            or any(c.isspace() or c in "/:" for c in name)
        ):
            raise InvalidAnnotation(
                f"annotation {DEFAULT_ROUTE_NIC}: {nic!r} is not an interface name "
                f"(1-{_IFNAME_MAX} characters, no '/', ':' or whitespace)"
            )
