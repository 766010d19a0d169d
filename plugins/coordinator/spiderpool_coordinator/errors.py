"""The coordinator library's own small error tree.

The plugins import nothing from the services, so this library cannot raise the shared
``spiderpool_common.errors`` classes. Each error carries the CNI code it maps to (the table
in ``spiderpool_cni.codes``, itself import-free); the agent translates these into its own
``CniError`` at the gRPC boundary.
"""

from __future__ import annotations

from typing import ClassVar

from spiderpool_cni import codes


class CoordinatorError(Exception):
    """Base of every error the coordinator library raises; ``cni_code`` says which."""

    cni_code: ClassVar[int] = codes.COORDINATOR_FAILED

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class InvalidCoordinatorConfig(CoordinatorError):
    """A coordinator field in the CNI config, the SpiderCoordinator or an annotation is invalid."""

    cni_code = codes.INVALID_CONFIG


class IPConflict(CoordinatorError):
    """Another host answered ARP/NDP for one of the pod's addresses (``address``)."""

    cni_code = codes.IP_CONFLICT

    def __init__(self, message: str, *, address: str = "", details: str = "") -> None:
        super().__init__(message, details=details)
        self.address = address


class GatewayUnreachable(CoordinatorError):
    """The gateway of one of the pod's addresses did not answer ARP/NDP."""

    cni_code = codes.GATEWAY_UNREACHABLE


class CheckFailed(CoordinatorError):
    """CHECK found a route, rule, neighbour or veth the ADD made missing."""

    cni_code = codes.COORDINATOR_FAILED
