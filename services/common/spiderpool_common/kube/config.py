"""Where a service's Kubernetes client comes from: a kubeconfig file, or the in-cluster
ServiceAccount (token, CA and ``KUBERNETES_SERVICE_HOST``) when none is given.

Whatever goes wrong while loading (a missing or malformed kubeconfig, no in-cluster
environment) is one ``KubeConfigError`` naming the source, so a service can refuse to
start with that message instead of a traceback.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

DISTRIBUTION = "spiderpool-py"


class KubeConfigError(ValueError):
    """The Kubernetes client configuration could not be loaded; the message names the source."""


def user_agent(program: str, instance: str) -> str:
    """``program/version (instance)``, as client-go names its binaries: the API server's audit log
    (and the field manager, the part before the slash) tell which program wrote, the parenthesis
    which replica or node."""
    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    return f"{program}/{version} ({instance})"


async def api_client(kubeconfig: str | None = None, agent: str = "") -> Any:
    """A configured ``kubernetes_asyncio.client.ApiClient`` (the caller closes it); ``agent``, when
    given, is its User-Agent (see ``user_agent``)."""
    from kubernetes_asyncio import client, config  # noqa: PLC0415 (heavy: ~0.5 s to import)

    configuration = client.Configuration()
    try:
        if kubeconfig:
            await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except Exception as exc:  # the loaders raise ConfigException, OSError, YAML and key errors
        source = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster configuration"
        raise KubeConfigError(f"{source}: {exc or type(exc).__name__}") from exc
    configuration.proxy = configuration.proxy or _env_proxy(configuration.host)
    api = client.ApiClient(configuration)
    # kubernetes-asyncio's session trusts the environment, so aiohttp looks the proxy variables
    # and ~/.netrc up again, in a worker thread, on every request (9% of the controller's CPU
    # under load). The proxy was read once above; a token-authenticated client needs no netrc.
    api.rest_client.pool_manager._trust_env = False
    if agent:
        api.user_agent = agent
    return api


def _env_proxy(server: str | None) -> str | None:
    """The proxy the environment names for the API server (HTTPS_PROXY/HTTP_PROXY, NO_PROXY), read once."""
    from urllib.parse import urlsplit  # noqa: PLC0415 (cluster mode only)
    from urllib.request import getproxies_environment, proxy_bypass  # noqa: PLC0415

    parts = urlsplit(server or "")
    if not parts.hostname or proxy_bypass(parts.hostname):
        return None
    proxies = getproxies_environment()
    return proxies.get(parts.scheme or "https") or None
