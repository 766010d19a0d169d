"""The webhooks' contract with the API server: paths, names, rules (upstream's
charts/spiderpool/templates/tls.yaml).

Owns upstream's routes (``/mutate-spiderpool-spidernet-io-v2beta1-<kind>`` and
``/validate-...``, served on port 5722), the webhook names (``<kind>.spiderpool.spidernet.io``)
and the operations each kind is validated for (DELETE only for pools and subnets), and renders
the Mutating/ValidatingWebhookConfigurations the Helm chart registers (``failurePolicy: Fail``,
``sideEffects: None``, AdmissionReview v1), so the chart, the tests and the server share one
table.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from spiderpool_controller.domain import models

DEFAULT_PORT = 5722
HEALTH_CHECK_PATH = "/webhook-health-check"  # upstream's readiness probe of the webhook (GET, 200)
HEALTHZ_PATH = "/healthz"
_PREFIX = "spiderpool-spidernet-io-v2beta1-"


@dataclass(frozen=True)
class WebhookKind:
    """One kind's webhooks: its resource, paths, name and validated operations."""

    kind: str
    plural: str
    validate_operations: tuple[str, ...]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def mutate_path(self) -> str:
        return f"/mutate-{_PREFIX}{self.singular}"

    @property
    def validate_path(self) -> str:
        return f"/validate-{_PREFIX}{self.singular}"

    @property
    def webhook_name(self) -> str:
        return f"{self.singular}.{models.API_GROUP}"


KINDS: tuple[WebhookKind, ...] = (
    WebhookKind(models.KIND_IPPOOL, "spiderippools", ("CREATE", "UPDATE", "DELETE")),
    WebhookKind(models.KIND_SUBNET, "spidersubnets", ("CREATE", "UPDATE", "DELETE")),
    WebhookKind(models.KIND_RESERVED_IP, "spiderreservedips", ("CREATE", "UPDATE")),
    WebhookKind(models.KIND_COORDINATOR, "spidercoordinators", ("CREATE", "UPDATE")),
    WebhookKind(models.KIND_MULTUS_CONFIG, "spidermultusconfigs", ("CREATE", "UPDATE")),
)
MUTATE_OPERATIONS = ("CREATE", "UPDATE")


def _webhook(
    entry: WebhookKind,
    path: str,
    operations: tuple[str, ...],
    *,
    ca_pem: bytes,
    service: tuple[str, str],
    port: int,
) -> dict[str, Any]:
    namespace, name = service
    return {
        "name": entry.webhook_name,
        "admissionReviewVersions": ["v1"],
        "clientConfig": {
            "service": {"namespace": namespace, "name": name, "path": path, "port": port},
            "caBundle": base64.b64encode(ca_pem).decode(),
        },
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "rules": [
            {
                "apiGroups": [models.API_GROUP],
                "apiVersions": ["v2beta1"],
                "operations": list(operations),
                "resources": [entry.plural],
            }
        ],
    }


def webhook_configurations(
    ca_pem: bytes, service: tuple[str, str], *, port: int = DEFAULT_PORT, name: str = "spiderpool-controller"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The MutatingWebhookConfiguration and ValidatingWebhookConfiguration the chart installs.

    ``service`` is the controller Service's ``(namespace, name)``; ``ca_pem`` certifies the
    serving certificate (for the name ``<service>.<namespace>.svc``).
    """
    mutating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            _webhook(k, k.mutate_path, MUTATE_OPERATIONS, ca_pem=ca_pem, service=service, port=port)
            for k in KINDS
        ],
    }
    validating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            _webhook(k, k.validate_path, k.validate_operations, ca_pem=ca_pem, service=service, port=port)
            for k in KINDS
        ],
    }
    return mutating, validating
