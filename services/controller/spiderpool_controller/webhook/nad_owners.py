"""Who manages a NetworkAttachmentDefinition: the SpiderMultusConfig webhook's one read outside the Store.

Owns the lookup ``Admission`` uses to refuse a SpiderMultusConfig that would take over the
NetworkAttachmentDefinition another SpiderMultusConfig generated (upstream's pkg/multuscniconfig
reads it uncached). The answer is the name in the NAD's ``ownerReferences`` entry of kind
SpiderMultusConfig; an absent NAD, or one no SpiderMultusConfig owns (a user's own, which the
new config may take over, as upstream allows), is None. Read through ``KubeRest`` so the
webhook sees the API server's current state, not an informer's.
"""

from __future__ import annotations

from urllib.parse import quote

from spiderpool_common.kube.rest import KubeError, KubeRest

from spiderpool_controller.domain import models
from spiderpool_controller.webhook.admission import StoreReadFailed

NAD_PATH = "/apis/k8s.cni.cncf.io/v1/namespaces/{namespace}/network-attachment-definitions/{name}"


class KubeNadOwners:
    """``NadOwnerLookup`` on the API server."""

    def __init__(self, rest: KubeRest) -> None:
        self._rest = rest

    async def __call__(self, namespace: str, name: str) -> str | None:
        path = NAD_PATH.format(namespace=quote(namespace, safe=""), name=quote(name, safe=""))
        try:
            nad = await self._rest.get(path)
        except KubeError as err:
            if err.not_found:
                return None
            raise StoreReadFailed(
                f"cannot check who manages NetworkAttachmentDefinition {namespace}/{name}: {err.message}; "
                "try again"
            ) from err
        for ref in (nad.get("metadata") or {}).get("ownerReferences") or []:
            if (
                isinstance(ref, dict)
                and ref.get("kind") == models.KIND_MULTUS_CONFIG
                and str(ref.get("apiVersion", "")).startswith(f"{models.API_GROUP}/")
            ):
                return str(ref.get("name", ""))
        return None
