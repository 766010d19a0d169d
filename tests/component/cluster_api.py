"""The test API server with the generated CRDs, for the leader's reconcilers in-process.

``cluster_api()`` starts a ``KubeApiServer`` (which installs Multus' NetworkAttachmentDefinition
CRD as a cluster with Multus has it), creates the CRDs of ``deploy/crds`` (the generated ones,
with their schemas and defaults) and yields a ``ClusterApi``: a ``KubeRest`` for plain JSON
calls, a ``KubernetesStore`` (what the leader's fenced Store wraps), and small helpers to write
objects as a user's client would. ``eventually`` waits on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from spiderpool_common.kube.config import api_client
from spiderpool_common.kube.rest import KubeError, KubeRest
from spiderpool_controller.store.kubernetes import KubernetesStore

from tests.kubeapi import KubeApiServer, ServerConfig

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "deploy" / "crds"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
SPIDER = "/apis/spiderpool.spidernet.io/v2beta1"
NADS = "/apis/k8s.cni.cncf.io/v1"


@dataclass
class ClusterApi:
    server: KubeApiServer
    rest: KubeRest
    store: KubernetesStore

    async def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.rest.create(path, obj)

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.rest.get(path)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    async def delete(self, path: str) -> None:
        await self.rest.delete(path)

    async def namespace(self, name: str) -> None:
        await self.create(
            "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )

    async def install_crd(self, crd: dict[str, Any]) -> None:
        await self.create(CRDS, crd)


def generated_crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(CRD_DIR.glob("*.yaml"))]


@asynccontextmanager
async def cluster_api(config: ServerConfig | None = None) -> AsyncIterator[ClusterApi]:
    server = KubeApiServer(config or ServerConfig())
    await server.start()
    client = None
    store = None
    try:
        client = await api_client(str(server.kubeconfig_path))
        rest = KubeRest(client, timeout_s=5.0)
        for crd in generated_crds():
            await rest.create(CRDS, crd)
        store = KubernetesStore(kubeconfig=str(server.kubeconfig_path))
        yield ClusterApi(server, rest, store)
    finally:
        if store is not None:
            await store.close()
        if client is not None:
            await client.close()
        await server.stop()


async def eventually(
    predicate: Callable[[], Awaitable[Any] | Any], what: str, deadline: float = 10.0, interval: float = 0.02
) -> Any:
    """Wait until ``predicate`` (sync or async) returns something truthy; return it."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"timed out after {deadline} s waiting for {what}")
        await asyncio.sleep(interval)
