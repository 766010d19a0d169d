"""The leader's SpiderCoordinator reconciler against the test API server: the status of
``default`` follows the cluster's sources as they are created, changed and deleted (kubeadm
ConfigMap, control-plane pods, Calico IPPools whose CRD arrives later, the Cilium ConfigMap,
ServiceCIDR objects, the node's CNI configuration for auto), NotReady names what is missing,
nothing is written when nothing changed, and a replica that may not write writes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from spiderpool_controller.coordinator_reconciler import REASON_NOT_READY, CoordinatorReconciler
from spiderpool_controller.store.contract import Store
from spiderpool_controller.store.fenced import FencedStore

from tests.component.cluster_api import SPIDER, ClusterApi, cluster_api, eventually

SCC = f"{SPIDER}/spidercoordinators"
KUBE_SYSTEM_CM = "/api/v1/namespaces/kube-system/configmaps"


def coordinator(pod_cidr_type: str) -> dict[str, Any]:
    return {
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderCoordinator",
        "metadata": {"name": "default"},
        "spec": {"podCIDRType": pod_cidr_type},
    }


def kubeadm_config(pod: str | None, service: str | None, extra: str = "") -> dict[str, Any]:
    lines = [
        "apiVersion: kubeadm.k8s.io/v1beta3",
        "kind: ClusterConfiguration",
        "networking:",
        "  dnsDomain: cluster.local",
    ]
    lines += [f"  podSubnet: {pod}"] if pod else []
    lines += [f"  serviceSubnet: {service}"] if service else []
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
        "data": {"ClusterConfiguration": "\n".join(lines) + extra},
    }


def crd(group: str, version: str, plural: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


CALICO_CRD = crd("crd.projectcalico.org", "v1", "ippools", "IPPool")
# The test API server has no builtin ServiceCIDR (networking.k8s.io/v1): a CRD of the same group,
# version and plural stands in for it, found through the same discovery.
SERVICE_CIDR_CRD = crd("networking.k8s.io", "v1", "servicecidrs", "ServiceCIDR")


class Running:
    def __init__(self, api: ClusterApi, reconciler: CoordinatorReconciler) -> None:
        self.api = api
        self.reconciler = reconciler

    async def status(self) -> dict[str, Any]:
        obj = await self.api.get(f"{SCC}/default")
        return dict((obj or {}).get("status") or {})

    async def wait_status(self, want: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            status = await self.status()
            return status if want(status) else None

        result: dict[str, Any] = await eventually(check, what)
        return result


@contextlib.asynccontextmanager
async def running(
    *, cni_dir: str | None = None, fence: Callable[[Store], Store] | None = None
) -> AsyncIterator[Running]:
    async with cluster_api() as api:
        store: Store = api.store if fence is None else fence(api.store)
        reconciler = CoordinatorReconciler(api.rest, store, cni_config_dir=cni_dir, retry_s=0.1)
        task = asyncio.create_task(reconciler.run())
        try:
            yield Running(api, reconciler)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def synced(pod: list[str], service: list[str]) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s == {"phase": "Synced", "overlayPodCIDR": pod, "serviceCIDR": service}


async def test_cluster_type_follows_the_kubeadm_configmap_as_it_comes_changes_and_goes() -> None:
    """NotReady naming the missing sources, Synced once kubeadm-config exists, updated when it
    changes, NotReady again when it is deleted: every step from an informer event."""
    async with running() as run:
        await run.api.create(SCC, coordinator("cluster"))
        status = await run.wait_status(lambda s: s.get("phase") == "NotReady", "NotReady")
        assert status["overlayPodCIDR"] == [] and status["serviceCIDR"] == []
        assert status["reason"] == (
            "podCIDRType cluster: pod CIDR not found: ConfigMap kube-system/kubeadm-config does not exist; "
            "no kube-controller-manager pod (label component=kube-controller-manager)"
        )
        await run.api.create(KUBE_SYSTEM_CM, kubeadm_config("10.244.0.0/16,fd00:244::/56", "10.96.0.0/12"))
        await run.wait_status(synced(["10.244.0.0/16", "fd00:244::/56"], ["10.96.0.0/12"]), "Synced")
        await run.api.rest.replace(
            f"{KUBE_SYSTEM_CM}/kubeadm-config",
            {**kubeadm_config("10.244.0.0/16", "10.100.0.0/16"), "metadata": {"name": "kubeadm-config"}},
        )
        await run.wait_status(synced(["10.244.0.0/16"], ["10.100.0.0/16"]), "the new service subnet")
        await run.api.delete(f"{KUBE_SYSTEM_CM}/kubeadm-config")
        await run.wait_status(lambda s: s.get("phase") == "NotReady", "NotReady again")
        listing = await run.api.rest.get("/api/v1/namespaces/default/events")
        reasons = [e["reason"] for e in listing["items"] if e["involvedObject"]["name"] == "default"]
        assert REASON_NOT_READY in reasons


async def test_a_controller_manager_pod_fills_what_kubeadm_lacks() -> None:
    """kubeadm-config without podSubnet: the pod CIDR comes from the controller manager's
    --cluster-cidr (args, RKE2 style), the service subnet still from kubeadm (upstream #3210)."""
    async with running() as run:
        await run.api.create(KUBE_SYSTEM_CM, kubeadm_config(None, "10.96.0.0/12"))
        await run.api.create(SCC, coordinator("cluster"))
        await run.wait_status(lambda s: s.get("phase") == "NotReady", "NotReady")
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "kube-controller-manager-master1",
                "namespace": "kube-system",
                "labels": {"component": "kube-controller-manager", "tier": "control-plane"},
            },
            "spec": {
                "containers": [
                    {
                        "name": "kube-controller-manager",
                        "image": "registry.k8s.io/kube-controller-manager:v1.31.0",
                        "command": ["kube-controller-manager"],
                        "args": ["--allocate-node-cidrs=true", "--cluster-cidr", "10.42.0.0/16"],
                    }
                ]
            },
        }
        await run.api.create("/api/v1/namespaces/kube-system/pods", pod)
        await run.wait_status(synced(["10.42.0.0/16"], ["10.96.0.0/12"]), "Synced from the pod")


async def test_calico_pools_are_watched_once_their_crd_appears() -> None:
    """The Calico IPPool CRD installed after the reconciler started: its pools are listed and
    watched; disabling one drops it from overlayPodCIDR."""
    async with running() as run:
        await run.api.create(KUBE_SYSTEM_CM, kubeadm_config(None, "10.96.0.0/12"))
        await run.api.create(SCC, coordinator("calico"))
        status = await run.wait_status(lambda s: s.get("phase") == "NotReady", "NotReady")
        assert "Calico IPPools are not served" in status["reason"]
        await run.api.install_crd(CALICO_CRD)
        pools = "/apis/crd.projectcalico.org/v1/ippools"
        for name, cidr in (("default-ipv4-ippool", "10.233.64.0/18"), ("extra", "10.234.0.0/16")):
            body = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": name},
                    "spec": {"cidr": cidr}}  # fmt: skip
            await eventually(functools.partial(_posted, run.api, pools, body), f"pool {name}")
        await run.wait_status(synced(["10.233.64.0/18", "10.234.0.0/16"], ["10.96.0.0/12"]), "both pools")
        await run.api.rest.merge_patch(f"{pools}/extra", {"spec": {"disabled": True}})
        await run.wait_status(synced(["10.233.64.0/18"], ["10.96.0.0/12"]), "the disabled pool dropped")


async def test_serviccidr_objects_win_over_kubeadm_once_served() -> None:
    """ServiceCIDR objects (found through discovery when CRDs change) replace kubeadm's serviceSubnet."""
    async with running() as run:
        await run.api.create(KUBE_SYSTEM_CM, kubeadm_config("10.244.0.0/16", "10.96.0.0/12"))
        await run.api.create(SCC, coordinator("cluster"))
        await run.wait_status(synced(["10.244.0.0/16"], ["10.96.0.0/12"]), "Synced from kubeadm")
        await run.api.install_crd(SERVICE_CIDR_CRD)
        body = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "ServiceCIDR",
            "metadata": {"name": "kubernetes"},
            "spec": {"cidrs": ["10.50.0.0/16", "fd50::/112"]},
        }
        await eventually(
            lambda: _posted(run.api, "/apis/networking.k8s.io/v1/servicecidrs", body), "ServiceCIDR"
        )
        await run.wait_status(synced(["10.244.0.0/16"], ["10.50.0.0/16", "fd50::/112"]), "the ServiceCIDR")


async def _posted(api: ClusterApi, path: str, body: dict[str, Any]) -> bool:
    """Create ``body`` (a new CRD's resource may take a moment to be served): True once created."""
    try:
        await api.create(path, body)
    except Exception:
        return False
    return True


async def test_cilium_cluster_pool_and_a_change_of_pod_cidr_type() -> None:
    """cilium reads cilium-config's cluster-pool CIDRs; switching the spec to none empties overlayPodCIDR."""
    async with running() as run:
        await run.api.create(KUBE_SYSTEM_CM, kubeadm_config("10.244.0.0/16", "10.96.0.0/12"))
        cilium = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "cilium-config", "namespace": "kube-system"},
                  "data": {"ipam": "cluster-pool", "cluster-pool-ipv4-cidr": "10.0.0.0/8"}}  # fmt: skip
        await run.api.create(KUBE_SYSTEM_CM, cilium)
        await run.api.create(SCC, coordinator("cilium"))
        await run.wait_status(synced(["10.0.0.0/8"], ["10.96.0.0/12"]), "Cilium's pool")
        await run.api.rest.merge_patch(f"{SCC}/default", {"spec": {"podCIDRType": "none"}})
        await run.wait_status(synced([], ["10.96.0.0/12"]), "none")


async def test_auto_reads_the_default_cni_from_the_configuration_directory(tmp_path: Path) -> None:
    """auto with a CNI directory whose first file (00-multus skipped) is Calico's: calico."""
    (tmp_path / "00-multus.conf").write_text(json.dumps({"name": "multus-cni-network", "type": "multus"}))
    (tmp_path / "10-calico.conflist").write_text(json.dumps({"name": "k8s-pod-network", "plugins": []}))
    (tmp_path / "20-flannel.conflist").write_text(json.dumps({"name": "flannel", "plugins": []}))
    async with running(cni_dir=str(tmp_path)) as run:
        await run.api.create(KUBE_SYSTEM_CM, kubeadm_config("10.244.0.0/16", "10.96.0.0/12"))
        await run.api.create(SCC, coordinator("auto"))
        status = await run.wait_status(lambda s: s.get("phase") == "NotReady", "NotReady")
        chosen = f"the default CNI 'k8s-pod-network' ({tmp_path}/10-calico.conflist)"
        assert status["reason"].startswith(f"podCIDRType auto (resolved to calico: {chosen})")


async def test_an_unchanged_cluster_costs_no_status_writes() -> None:
    """A source event that changes nothing relevant recomputes but does not write."""
    async with running() as run:
        await run.api.create(KUBE_SYSTEM_CM, kubeadm_config("10.244.0.0/16", "10.96.0.0/12"))
        await run.api.create(SCC, coordinator("cluster"))
        await run.wait_status(synced(["10.244.0.0/16"], ["10.96.0.0/12"]), "Synced")
        writes, computed = run.reconciler.writes, run.reconciler.computed
        assert writes == 1
        await run.api.rest.replace(
            f"{KUBE_SYSTEM_CM}/kubeadm-config",
            {**kubeadm_config("10.244.0.0/16", "10.96.0.0/12", extra="\nclusterName: renamed"),
             "metadata": {"name": "kubeadm-config"}},
        )  # fmt: skip
        await eventually(lambda: run.reconciler.computed > computed, "the change considered")
        assert run.reconciler.writes == writes


async def test_a_replica_that_may_not_write_leaves_the_status_alone() -> None:
    """Behind the write fence of a replica that lost the Lease, the reconciler writes nothing
    (it keeps trying, as it would once it leads again)."""
    async with running(fence=lambda store: FencedStore(store, lambda: False)) as run:
        await run.api.create(KUBE_SYSTEM_CM, kubeadm_config("10.244.0.0/16", "10.96.0.0/12"))
        await run.api.create(SCC, coordinator("cluster"))
        await eventually(lambda: run.reconciler.computed >= 3, "several attempts")
        assert await run.status() == {} and run.reconciler.writes == 0
