"""The cluster's pod and service CIDRs for the SpiderCoordinator's status (upstream's pkg/coordinatormanager).

Owns reading each source the controller knows and deciding ``status.phase``,
``status.reason``, ``status.overlayPodCIDR`` and ``status.serviceCIDR`` from them, as pure
functions over the objects the caller read (``coordinator_reconciler`` keeps them current
with informers). ``spec.podCIDRType`` says where the pod CIDRs come from:

- ``cluster``: the ``kube-system/kubeadm-config`` ConfigMap (``ClusterConfiguration``'s
  ``networking.podSubnet``), else a kube-controller-manager pod's ``--cluster-cidr``;
- ``calico``: the enabled Calico IPPools (``ippools.crd.projectcalico.org``), oldest first;
- ``cilium``: the cilium ConfigMap: ``cluster-pool-ipv4-cidr``/``cluster-pool-ipv6-cidr``
  in cluster-pool mode (Cilium's default when ``ipam`` is unset), the CiliumPodIPPools in
  multi-pool mode, the ``cluster`` CIDRs in kubernetes mode;
- ``none``: no pod CIDR (the coordinator routes ``spec.hijackCIDR`` only);
- ``auto``: the default CNI named by the first configuration file (``00-multus*`` skipped) of
  the CNI configuration directory when the controller has one (upstream's rule: calico or
  k8s-pod-network -> calico, cilium -> cilium, flannel -> cluster, anything else -> none);
  without one (a controller that does not run on a node), the API: Calico's IPPool CRD
  served -> calico, the cilium ConfigMap present -> cilium, else none.

The service CIDRs come, first found wins, from the ServiceCIDR objects (``networking.k8s.io``,
Kubernetes 1.29+, when served), the kubeadm ConfigMap's ``networking.serviceSubnet``, a
kube-controller-manager or kube-apiserver pod's ``--service-cluster-ip-range``. Each of the
two answers is looked up on its own: a kubeadm ConfigMap with a service subnet but no pod
subnet does not hide the controller manager's ``--cluster-cidr`` (upstream #3210).

Phase ``Synced`` carries both lists; anything required but not found is ``NotReady`` with a
reason naming every place looked at and what was missing there, and both lists empty (the
agent then fails ADD with that reason, as upstream's coordinator does). The status is never
left without a phase or a list (upstream #3015; #4307: a status without ``serviceCIDR``
failed every DEL). One deliberate difference (upstream #4954, managed control planes with no
kubeadm ConfigMap and no controller-manager pod): with ``podCIDRType: none`` a service CIDR
that is nowhere to be found is not fatal: the phase is ``Synced``, ``serviceCIDR`` empty, and
the reason says so, since ``none`` means the operator routes through ``spec.hijackCIDR``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spiderpool_common import bounded_yaml

from spiderpool_controller.domain.coordinator_spec import PHASE_NOT_READY, PHASE_SYNCED

AUTO, CLUSTER, CALICO, CILIUM, NONE = "auto", "cluster", "calico", "cilium", "none"
POD_CIDR_TYPES = (AUTO, CLUSTER, CALICO, CILIUM, NONE)

KUBEADM_CONFIGMAP = "kube-system/kubeadm-config"
DEFAULT_CILIUM_CONFIGMAP = "kube-system/cilium-config"
CALICO_IPPOOL_CRD = "ippools.crd.projectcalico.org"
CILIUM_IPPOOL_CRD = "ciliumpodippools.cilium.io"
CONTROLLER_MANAGER = "kube-controller-manager"
API_SERVER = "kube-apiserver"
COMPONENT_LABEL = "component"

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Sources:
    """What the controller read; ``None`` for an object that does not exist."""

    kubeadm_config: Obj | None = None
    control_plane_pods: Sequence[Obj] = ()  # pods labelled component=kube-controller-manager|kube-apiserver
    calico_served: bool = False
    calico_pools: Sequence[Obj] = ()
    cilium_config: Obj | None = None
    cilium_configmap: str = DEFAULT_CILIUM_CONFIGMAP
    cilium_pools_served: bool = False
    cilium_pools: Sequence[Obj] = ()
    service_cidrs_served: bool = False
    service_cidr_objects: Sequence[Obj] = ()
    # auto: the default CNI's name from the CNI configuration directory (None: no directory or
    # no file there), and where it was read (for the reason)
    default_cni_name: str | None = None
    default_cni_file: str = ""


@dataclass(frozen=True)
class Found:
    """CIDRs from one place, or why there are none (``missing``: what was looked at and not found)."""

    cidrs: tuple[str, ...] = ()
    source: str = ""
    missing: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return bool(self.cidrs)


@dataclass(frozen=True)
class Discovery:
    phase: str
    reason: str = ""
    overlay_pod_cidr: tuple[str, ...] = ()
    service_cidr: tuple[str, ...] = ()
    pod_cidr_type: str = ""  # auto resolved
    sources: tuple[str, ...] = field(default=(), compare=False)  # where the CIDRs came from (logs)

    def status(self) -> dict[str, Any]:
        """``status`` of the SpiderCoordinator: phase, both lists always, the reason when there is one."""
        out: dict[str, Any] = {
            "phase": self.phase,
            "overlayPodCIDR": list(self.overlay_pod_cidr),
            "serviceCIDR": list(self.service_cidr),
        }
        if self.reason:
            out["reason"] = self.reason
        return out


# ---------------------------------------------------------------------------------------
# CIDR text


def normalise(texts: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(valid CIDRs in network form, deduplicated, in order; the texts that are not CIDRs)."""
    good: dict[str, None] = {}
    bad: list[str] = []
    for raw in texts:
        text = str(raw).strip()
        if not text:
            continue
        try:
            good[str(ipaddress.ip_network(text, strict=False))] = None
        except ValueError:
            bad.append(text)
    return tuple(good), tuple(bad)


def _split(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", text) if part]


def _found(texts: Iterable[str], source: str, what: str) -> Found:
    cidrs, bad = normalise(texts)
    if cidrs:
        return Found(cidrs, source)
    if bad:
        return Found(missing=(f"{source} {what} {', '.join(repr(b) for b in bad)} is not a CIDR",))
    return Found(missing=(f"{source} has no {what}",))


# ---------------------------------------------------------------------------------------
# the sources


def _data(obj: Obj | None) -> Mapping[str, Any]:
    data = (obj or {}).get("data")
    return data if isinstance(data, Mapping) else {}


def kubeadm_networking(configmap: Obj | None) -> tuple[Mapping[str, Any] | None, str]:
    """``ClusterConfiguration.networking`` of the kubeadm ConfigMap, or None and why not."""
    if configmap is None:
        return None, f"ConfigMap {KUBEADM_CONFIGMAP} does not exist"
    text = _data(configmap).get("ClusterConfiguration")
    if not isinstance(text, str):
        return None, f"ConfigMap {KUBEADM_CONFIGMAP} has no ClusterConfiguration"
    try:
        config = bounded_yaml.load(text, f"{KUBEADM_CONFIGMAP} ClusterConfiguration")
    except bounded_yaml.YamlError as exc:
        return None, f"ConfigMap {KUBEADM_CONFIGMAP}: {exc}"
    networking = config.get("networking") if isinstance(config, Mapping) else None
    if not isinstance(networking, Mapping):
        return None, f"ConfigMap {KUBEADM_CONFIGMAP} ClusterConfiguration has no networking section"
    return networking, ""


def kubeadm_cidrs(configmap: Obj | None, key: str) -> Found:
    """``networking.<key>`` (podSubnet, serviceSubnet) of the kubeadm ConfigMap: comma-separated CIDRs."""
    networking, why = kubeadm_networking(configmap)
    if networking is None:
        return Found(missing=(why,))
    value = networking.get(key)
    source = f"ConfigMap {KUBEADM_CONFIGMAP} networking.{key}"
    if not isinstance(value, str) or not value.strip():
        return Found(missing=(f"ConfigMap {KUBEADM_CONFIGMAP} ClusterConfiguration has no networking.{key}",))
    return _found(_split(value), source, "value")


def flag_values(pod: Obj, flag: str) -> list[str]:
    """The values of ``--flag=V`` or ``--flag V`` in any container's command and args."""
    out: list[str] = []
    for container in ((pod.get("spec") or {}).get("containers")) or []:
        words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
        for i, word in enumerate(words):
            if word.startswith(f"{flag}="):
                out.append(word.split("=", 1)[1])
            elif word == flag and i + 1 < len(words):
                out.append(words[i + 1])
    return out


def _component(pod: Obj) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(COMPONENT_LABEL, ""))


def _live(obj: Obj) -> bool:
    return not (obj.get("metadata") or {}).get("deletionTimestamp")


def pod_flag_cidrs(pods: Sequence[Obj], component: str, flag: str) -> Found:
    """CIDRs of ``flag`` on the first pod of ``component`` that has it (kubeadm's static pods)."""
    candidates = sorted(
        (p for p in pods if _component(p) == component and _live(p)),
        key=lambda p: str((p.get("metadata") or {}).get("name", "")),
    )
    if not candidates:
        return Found(missing=(f"no {component} pod (label {COMPONENT_LABEL}={component})",))
    for pod in candidates:
        values = flag_values(pod, flag)
        if values:
            name = (pod.get("metadata") or {}).get("name", "")
            return _found([c for v in values for c in _split(v)], f"pod {name} {flag}", "value")
    return Found(missing=(f"no {component} pod has {flag}",))


def _by_age(objs: Sequence[Obj]) -> list[Obj]:
    return sorted(
        (o for o in objs if _live(o)),
        key=lambda o: (
            str((o.get("metadata") or {}).get("creationTimestamp", "")),
            str((o.get("metadata") or {}).get("name", "")),
        ),
    )


def calico_cidrs(served: bool, pools: Sequence[Obj]) -> Found:
    """``spec.cidr`` of the enabled Calico IPPools, oldest first."""
    if not served:
        return Found(
            missing=(
                f"Calico IPPools are not served (no CRD {CALICO_IPPOOL_CRD}: Calico is not installed, or it "
                "keeps its pools in etcd)",
            )
        )
    texts = [
        str((p.get("spec") or {}).get("cidr", ""))
        for p in _by_age(pools)
        if not (p.get("spec") or {}).get("disabled")
    ]
    if not texts:
        return Found(missing=("no enabled Calico IPPool",))
    return _found(texts, "Calico IPPools", "spec.cidr")


def cilium_pool_cidrs(served: bool, pools: Sequence[Obj]) -> Found:
    """``spec.ipv4.cidrs`` and ``spec.ipv6.cidrs`` of the CiliumPodIPPools (multi-pool mode), oldest first."""
    if not served:
        return Found(missing=(f"CiliumPodIPPools are not served (no CRD {CILIUM_IPPOOL_CRD})",))
    texts: list[str] = []
    for pool in _by_age(pools):
        spec = pool.get("spec") or {}
        for family in ("ipv4", "ipv6"):
            texts += [str(c) for c in ((spec.get(family) or {}).get("cidrs") or [])]
    if not texts:
        return Found(missing=("no CiliumPodIPPool with a CIDR",))
    return _found(texts, "CiliumPodIPPools", "spec.ipv4/ipv6.cidrs")


CILIUM_CLUSTER_POOL_MODES = ("cluster-pool", "cluster-pool-v2beta")


def cilium_cidrs(sources: Sources, cluster_pod: Found) -> Found:
    """The pod CIDRs of Cilium per its ``ipam`` mode."""
    name = sources.cilium_configmap
    if sources.cilium_config is None:
        return Found(missing=(f"ConfigMap {name} does not exist (is Cilium installed?)",))
    data = _data(sources.cilium_config)
    mode = str(data.get("ipam") or "cluster-pool").strip()
    if mode in CILIUM_CLUSTER_POOL_MODES:
        texts = [
            c
            for key in ("cluster-pool-ipv4-cidr", "cluster-pool-ipv6-cidr")
            for c in _split(str(data.get(key) or ""))
        ]
        return _found(texts, f"ConfigMap {name} cluster-pool-ipv4-cidr/cluster-pool-ipv6-cidr", "CIDR")
    if mode == "multi-pool":
        return cilium_pool_cidrs(sources.cilium_pools_served, sources.cilium_pools)
    if mode == "kubernetes":
        return cluster_pod
    return Found(
        missing=(
            f"ConfigMap {name} ipam mode {mode!r} is not supported (cluster-pool, multi-pool, kubernetes)",
        )
    )


def service_cidr_object_cidrs(served: bool, objs: Sequence[Obj]) -> Found:
    """``spec.cidrs`` of the ServiceCIDR objects, oldest first."""
    if not served:
        return Found(missing=("ServiceCIDR objects (networking.k8s.io) are not served",))
    texts = [str(c) for o in _by_age(objs) for c in ((o.get("spec") or {}).get("cidrs") or [])]
    if not texts:
        return Found(missing=("no ServiceCIDR object",))
    return _found(texts, "ServiceCIDR objects", "spec.cidrs")


def _first(*candidates: Found) -> Found:
    missing: list[str] = []
    for found in candidates:
        if found.ok:
            return found
        missing += found.missing
    return Found(missing=tuple(missing))


def cluster_pod_cidrs(sources: Sources) -> Found:
    return _first(
        kubeadm_cidrs(sources.kubeadm_config, "podSubnet"),
        pod_flag_cidrs(sources.control_plane_pods, CONTROLLER_MANAGER, "--cluster-cidr"),
    )


def service_cidrs(sources: Sources) -> Found:
    return _first(
        service_cidr_object_cidrs(sources.service_cidrs_served, sources.service_cidr_objects),
        kubeadm_cidrs(sources.kubeadm_config, "serviceSubnet"),
        pod_flag_cidrs(sources.control_plane_pods, CONTROLLER_MANAGER, "--service-cluster-ip-range"),
        pod_flag_cidrs(sources.control_plane_pods, API_SERVER, "--service-cluster-ip-range"),
    )


# ---------------------------------------------------------------------------------------
# auto


def cni_type_of(name: str) -> str:
    """Upstream's mapping of the default CNI's network name to a podCIDRType."""
    if name in ("calico", "k8s-pod-network"):
        return CALICO
    if name == CILIUM:
        return CILIUM
    if name == "flannel":
        return CLUSTER
    return NONE


def resolve_auto(sources: Sources) -> tuple[str, str]:
    """The podCIDRType ``auto`` stands for, and why."""
    if sources.default_cni_name is not None:
        kind = cni_type_of(sources.default_cni_name)
        return kind, f"the default CNI {sources.default_cni_name!r} ({sources.default_cni_file})"
    if sources.calico_served:
        return CALICO, f"CRD {CALICO_IPPOOL_CRD} is served"
    if sources.cilium_config is not None:
        return CILIUM, f"ConfigMap {sources.cilium_configmap} exists"
    return NONE, "no CNI configuration file, no Calico IPPools, no Cilium ConfigMap"


# ---------------------------------------------------------------------------------------
# the decision


def _not_ready(reason: str, pod_cidr_type: str) -> Discovery:
    return Discovery(PHASE_NOT_READY, reason, pod_cidr_type=pod_cidr_type)


def _missing(what: str, found: Found) -> str:
    return f"{what} not found: {'; '.join(found.missing)}"


def discover(pod_cidr_type: str | None, sources: Sources) -> Discovery:
    """The SpiderCoordinator status for ``spec.podCIDRType`` and what the sources hold."""
    if not pod_cidr_type:
        return _not_ready(f"spec.podCIDRType is not set (one of {', '.join(POD_CIDR_TYPES)})", "")
    if pod_cidr_type not in POD_CIDR_TYPES:
        return _not_ready(
            f"spec.podCIDRType {pod_cidr_type!r} is not one of {', '.join(POD_CIDR_TYPES)}", pod_cidr_type
        )
    kind, why = (pod_cidr_type, "") if pod_cidr_type != AUTO else resolve_auto(sources)
    label = f"podCIDRType {pod_cidr_type}" + (f" (resolved to {kind}: {why})" if why else "")
    cluster_pod = cluster_pod_cidrs(sources)
    if kind == CLUSTER:
        pod = cluster_pod
    elif kind == CALICO:
        pod = calico_cidrs(sources.calico_served, sources.calico_pools)
    elif kind == CILIUM:
        pod = cilium_cidrs(sources, cluster_pod)
    else:
        pod = Found(source="none")
    service = service_cidrs(sources)
    if kind != NONE and not pod.ok:
        return _not_ready(f"{label}: {_missing('pod CIDR', pod)}", kind)
    if not service.ok:
        if kind != NONE:
            return _not_ready(f"{label}: {_missing('service CIDR', service)}", kind)
        reason = (
            f"{label}: {_missing('service CIDR', service)}; with podCIDRType none the coordinator routes "
            "only spec.hijackCIDR through veth0"
        )
        return Discovery(PHASE_SYNCED, reason, (), (), kind, ("none",))
    return Discovery(PHASE_SYNCED, "", pod.cidrs, service.cidrs, kind, (pod.source, service.source))
