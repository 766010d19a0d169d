"""Requested addresses and the reuse delay on the Kubernetes store, with the generated CRDs.

The API server prunes status fields its CRD schema does not declare, so the pool's
``releasedIPs`` survives only because ``deploy/crds`` declares it: here the engine runs on the
Kubernetes store against the test API server with those CRDs (full schemas, not the
permissive ones of the store contract tests), and a second engine on the same server still
keeps a released address out of circulation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from spiderpool_controller.domain.released_ips import ANNOTATION
from spiderpool_controller.ipam_engine import EngineSettings, IpamEngine
from spiderpool_controller.store.kubernetes import KubernetesStore

from tests.component.engine_fixtures import pool_manifest, request
from tests.component.kube_backend import install
from tests.kubeapi import KubeApiServer, ServerConfig

CRD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "crds"
T0 = 1_767_225_600.0


def generated_crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted(CRD_DIR.glob("*.yaml"))]


async def engine_on(store: KubernetesStore, now: list[float]) -> IpamEngine:
    engine = IpamEngine(store, EngineSettings(endpoint_resync_s=0), wall_clock=lambda: now[0])
    await engine.start()
    return engine


async def test_released_ips_and_requested_marks_survive_the_api_servers_schema_and_a_restart() -> None:
    """A requested address is recorded as such; its release time is stored in status.releasedIPs (not
    pruned), and a new engine on the same API server skips it until the pool's delay has passed."""
    server = KubeApiServer(ServerConfig())
    await server.start()
    now = [T0]
    try:
        await install(server, generated_crds(), namespaces=("ns",))
        store = KubernetesStore(kubeconfig=str(server.kubeconfig_path))
        manifest = pool_manifest("p", "10.80.0.0/24", ["10.80.0.10-10.80.0.20"], default=True)
        manifest["metadata"]["annotations"] = {ANNOTATION: "120"}
        await store.create(manifest)
        engine = await engine_on(store, now)
        got = await engine.allocate(request(1, requested_ips=("10.80.0.15",)))
        assert [a.address for a in got.ips] == ["10.80.0.15/24"]
        status = (await store.get("SpiderIPPool", "p"))["status"]
        assert json.loads(status["allocatedIPs"])["10.80.0.15"]["requested"] is True
        await engine.release("uid-1", "eth0")
        await engine.close()
        await store.close()

        store = KubernetesStore(kubeconfig=str(server.kubeconfig_path))
        status = (await store.get("SpiderIPPool", "p"))["status"]
        assert json.loads(status["releasedIPs"]) == {"10.80.0.15": T0}
        now[0] = T0 + 60
        restarted = await engine_on(store, now)
        for n in range(2, 8):  # .10-.14 are free and not cooling, then .16
            await restarted.allocate(request(n))
        assert {a.address for n in range(2, 8) for a in restarted.attachment(f"uid-{n}", "eth0")} == {
            f"10.80.0.{i}/24" for i in (10, 11, 12, 13, 14, 16)
        }
        now[0] = T0 + 120
        assert [a.address for a in (await restarted.allocate(request(8))).ips] == ["10.80.0.15/24"]
        await restarted.close()
        await store.close()
    finally:
        await server.stop()
