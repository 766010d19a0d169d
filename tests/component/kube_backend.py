"""The Kubernetes Store against the project's test API server, for store-level tests.

The contract suite checks store semantics with free-form specs and statuses, so the CRDs
installed here have the real names, scopes and status subresources but permissive schemas
(``x-kubernetes-preserve-unknown-fields``); the generated CRDs with full schemas are tested
where schemas matter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from spiderpool_controller.store.kubernetes import RESOURCES, KubernetesStore

from tests.kubeapi import KubeApiServer, ServerConfig

GROUP = "spiderpool.spidernet.io"


def permissive_crd(kind: str) -> dict[str, Any]:
    res = RESOURCES[kind]
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    version: dict[str, Any] = {
        "name": "v2beta1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
    }
    if res.status_subresource:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{res.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "plural": res.plural,
                "singular": kind.lower(),
                "listKind": f"{kind}List",
            },
            "scope": "Namespaced" if res.namespaced else "Cluster",
            "versions": [version],
        },
    }


async def install(
    server: KubeApiServer, crds: Iterable[dict[str, Any]], namespaces: Iterable[str] = ()
) -> None:
    store = KubernetesStore(kubeconfig=str(server.kubeconfig_path))
    try:
        api = await store.custom_objects()
        client = api.api_client
        for crd in crds:
            await client.call_api(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                "POST",
                body=crd,
                header_params={"Content-Type": "application/json"},
                auth_settings=["BearerToken"],
                response_types_map={201: "object"},
            )
        for ns in namespaces:
            await client.call_api(
                "/api/v1/namespaces",
                "POST",
                body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                header_params={"Content-Type": "application/json"},
                auth_settings=["BearerToken"],
                response_types_map={201: "object"},
            )
    finally:
        await store.close()


@asynccontextmanager
async def kube_store(
    history: int = 10_000, namespaces: Iterable[str] = ("a", "b", "c", "ns", "ns1", "ns2")
) -> AsyncIterator[KubernetesStore]:
    """A running test API server with every spiderpool CRD, and a KubernetesStore on it."""
    server = KubeApiServer(ServerConfig(history_size=history))
    await server.start()
    try:
        await install(server, (permissive_crd(kind) for kind in RESOURCES), namespaces)
        store = KubernetesStore(kubeconfig=str(server.kubeconfig_path))
        try:
            yield store
        finally:
            await store.close()
    finally:
        await server.stop()
