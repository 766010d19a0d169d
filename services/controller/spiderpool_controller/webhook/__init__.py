"""The controller's admission webhooks (cluster mode): HTTPS, AdmissionReview v1.

Modules, each owning one thing:

    registration  upstream's paths, webhook names and rules; the webhook configurations
    review        AdmissionReview v1 parsing and responses
    json_patch    the JSONPatch a mutating webhook answers
    admission     what each kind's mutating and validating webhook decides (the embedded rules)
    nad_owners    which SpiderMultusConfig manages a NetworkAttachmentDefinition (API server read)
    tls           the serving certificate from files, reloaded when they change
    server        the aiohttp HTTPS server and its lifecycle (``WebhookServer``)
"""

from spiderpool_controller.webhook.admission import Admission, MultusConfigRules, NadOwnerLookup, ObjectReader
from spiderpool_controller.webhook.server import WebhookServer

__all__ = ["Admission", "MultusConfigRules", "NadOwnerLookup", "ObjectReader", "WebhookServer"]
