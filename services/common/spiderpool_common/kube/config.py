"""Where a service's Kubernetes client comes from: a kubeconfig file, or the in-cluster
ServiceAccount (token, CA and ``KUBERNETES_SERVICE_HOST``) when none is given."""

from __future__ import annotations

from typing import Any


async def api_client(kubeconfig: str | None = None) -> Any:
    """A configured ``kubernetes_asyncio.client.ApiClient`` (the caller closes it)."""
    from kubernetes_asyncio import client, config  # noqa: PLC0415 (heavy: ~0.5 s to import)

    configuration = client.Configuration()
    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)
