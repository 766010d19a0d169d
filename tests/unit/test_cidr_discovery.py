"""Pod and service CIDR discovery for the SpiderCoordinator: each source parsed, the order they
are tried in, podCIDRType auto, and the status written (Synced with both lists, or NotReady
with a reason that names what was looked for)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from spiderpool_controller.domain import cidr_discovery as cd
from spiderpool_controller.domain.cidr_discovery import Sources


def kubeadm(networking: dict[str, str] | None, *, extra: str = "") -> dict[str, Any]:
    lines = ["apiVersion: kubeadm.k8s.io/v1beta3", "kind: ClusterConfiguration", "clusterName: kubernetes"]
    if networking is not None:
        lines.append("networking:")
        lines += [f"  {k}: {v}" for k, v in networking.items()]
    return {
        "metadata": {"name": "kubeadm-config"},
        "data": {"ClusterConfiguration": "\n".join(lines) + extra},
    }


def static_pod(component: str, *flags: str, name: str = "", in_args: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": component}
    if in_args:  # RKE2 style: the flags in args (upstream #3211)
        container["command"], container["args"] = [component], list(flags)
    else:
        container["command"] = [component, *flags]
    return {
        "metadata": {"name": name or f"{component}-master1", "labels": {"component": component}},
        "spec": {"containers": [container]},
    }


def pool(
    name: str, cidr: str, created: str, *, disabled: bool = False, deleting: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "spec": {"cidr": cidr, "disabled": disabled}}


SVC_KUBEADM = kubeadm({"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12"})


# ---------------------------------------------------------------------------------------
# sources


def test_kubeadm_gives_dual_stack_pod_and_service_subnets() -> None:
    """networking.podSubnet/serviceSubnet are comma-separated; host bits are cleared."""
    cm = kubeadm(
        {"podSubnet": "10.244.1.0/16,fd00:10:244::/56", "serviceSubnet": "10.96.0.0/12, fd00:10:96::/112"}
    )
    assert cd.kubeadm_cidrs(cm, "podSubnet").cidrs == ("10.244.0.0/16", "fd00:10:244::/56")
    assert cd.kubeadm_cidrs(cm, "serviceSubnet").cidrs == ("10.96.0.0/12", "fd00:10:96::/112")


@pytest.mark.parametrize(
    ("cm", "why"),
    [
        (None, "ConfigMap kube-system/kubeadm-config does not exist"),
        ({"data": {}}, "has no ClusterConfiguration"),
        (kubeadm(None), "has no networking section"),
        (kubeadm({"serviceSubnet": "10.96.0.0/12"}), "has no networking.podSubnet"),
        (kubeadm({"podSubnet": "banana"}), "networking.podSubnet value 'banana' is not a CIDR"),
        (
            {"data": {"ClusterConfiguration": "networking: [unclosed"}},
            "ConfigMap kube-system/kubeadm-config:",
        ),
    ],
)
def test_kubeadm_says_what_it_lacks(cm: dict[str, Any] | None, why: str) -> None:
    """Each way the kubeadm ConfigMap can fail to give a pod subnet is named."""
    found = cd.kubeadm_cidrs(cm, "podSubnet")
    assert not found.ok
    assert why in found.missing[0]


def test_control_plane_flags_are_read_from_command_or_args_in_both_spellings() -> None:
    """--flag=V and --flag V, in the command (kubeadm) or the args (RKE2)."""
    kcm = static_pod("kube-controller-manager", "--cluster-cidr=10.244.0.0/16,fd00::/56", "--v=2")
    assert cd.pod_flag_cidrs([kcm], "kube-controller-manager", "--cluster-cidr").cidrs == (
        "10.244.0.0/16",
        "fd00::/56",
    )
    rke = static_pod("kube-controller-manager", "--service-cluster-ip-range", "10.43.0.0/16", in_args=True)
    assert cd.pod_flag_cidrs([rke], "kube-controller-manager", "--service-cluster-ip-range").cidrs == (
        "10.43.0.0/16",
    )
    other = static_pod("kube-scheduler", "--cluster-cidr=10.9.0.0/16")
    assert cd.pod_flag_cidrs([other], "kube-controller-manager", "--cluster-cidr").missing == (
        "no kube-controller-manager pod (label component=kube-controller-manager)",
    )


def test_calico_pools_enabled_and_live_oldest_first() -> None:
    """Disabled and terminating pools are skipped; the rest in creation order."""
    pools = [
        pool("b", "10.2.0.0/16", "2024-01-02T00:00:00Z"),
        pool("a", "10.1.0.0/16", "2024-01-01T00:00:00Z"),
        pool("off", "10.3.0.0/16", "2024-01-01T00:00:00Z", disabled=True),
        pool("gone", "10.4.0.0/16", "2023-01-01T00:00:00Z", deleting=True),
    ]
    assert cd.calico_cidrs(True, pools).cidrs == ("10.1.0.0/16", "10.2.0.0/16")
    assert cd.calico_cidrs(True, [pools[2]]).missing == ("no enabled Calico IPPool",)
    assert "no CRD ippools.crd.projectcalico.org" in cd.calico_cidrs(False, pools).missing[0]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"cluster-pool-ipv4-cidr": "10.0.0.0/8 11.0.0.0/8", "cluster-pool-ipv6-cidr": "fd00::/104"},
         ("10.0.0.0/8", "11.0.0.0/8", "fd00::/104")),
        ({"ipam": "cluster-pool", "cluster-pool-ipv4-cidr": "10.0.0.0/8"}, ("10.0.0.0/8",)),
        ({"ipam": "multi-pool"}, ("10.10.0.0/16", "fd10::/64")),
        ({"ipam": "kubernetes"}, ("10.244.0.0/16",)),
    ],
)  # fmt: skip
def test_cilium_cidrs_follow_its_ipam_mode(data: dict[str, str], expected: tuple[str, ...]) -> None:
    """cluster-pool (also when ipam is unset), multi-pool from CiliumPodIPPools, kubernetes: cluster."""
    cilium_pool = {
        "metadata": {"name": "p"},
        "spec": {"ipv4": {"cidrs": ["10.10.0.0/16"]}, "ipv6": {"cidrs": ["fd10::/64"]}},
    }
    sources = Sources(
        cilium_config={"data": data},
        cilium_pools_served=True,
        cilium_pools=[cilium_pool],
        kubeadm_config=SVC_KUBEADM,
    )
    assert cd.cilium_cidrs(sources, cd.cluster_pod_cidrs(sources)).cidrs == expected


def test_cilium_modes_it_cannot_read_are_named() -> None:
    """ENI-style modes are refused by name; a missing ConfigMap asks whether Cilium is installed."""
    eni = Sources(cilium_config={"data": {"ipam": "eni"}})
    assert "ipam mode 'eni' is not supported" in cd.cilium_cidrs(eni, cd.Found()).missing[0]
    absent = Sources(cilium_configmap="cilium/cilium-config")
    assert cd.cilium_cidrs(absent, cd.Found()).missing == (
        "ConfigMap cilium/cilium-config does not exist (is Cilium installed?)",
    )


# ---------------------------------------------------------------------------------------
# the decision


def test_cluster_type_takes_both_from_kubeadm() -> None:
    """podCIDRType cluster with a kubeadm ConfigMap: Synced, both lists from it."""
    result = cd.discover("cluster", Sources(kubeadm_config=SVC_KUBEADM))
    assert result.status() == {
        "phase": "Synced",
        "overlayPodCIDR": ["10.244.0.0/16"],
        "serviceCIDR": ["10.96.0.0/12"],
    }


def test_a_kubeadm_configmap_without_pod_subnet_falls_back_to_the_controller_manager_for_that_alone() -> None:
    """upstream #3210: each CIDR is looked up on its own; the service subnet still comes from kubeadm."""
    cm = kubeadm({"serviceSubnet": "10.96.0.0/12"})
    kcm = static_pod(
        "kube-controller-manager", "--cluster-cidr=10.244.0.0/16", "--service-cluster-ip-range=10.100.0.0/16"
    )
    result = cd.discover("cluster", Sources(kubeadm_config=cm, control_plane_pods=[kcm]))
    assert (result.phase, result.overlay_pod_cidr, result.service_cidr) == (
        "Synced",
        ("10.244.0.0/16",),
        ("10.96.0.0/12",),
    )


def test_serviccidr_objects_come_before_kubeadm_and_the_api_server_comes_last() -> None:
    """Service CIDR order: ServiceCIDR objects, kubeadm, kube-controller-manager, kube-apiserver."""
    objects = [{"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.50.0.0/16", "fd50::/112"]}}]
    with_objects = Sources(
        kubeadm_config=SVC_KUBEADM, service_cidrs_served=True, service_cidr_objects=objects
    )
    assert cd.discover("cluster", with_objects).service_cidr == ("10.50.0.0/16", "fd50::/112")
    apiserver = static_pod("kube-apiserver", "--service-cluster-ip-range=10.60.0.0/16")
    only_apiserver = Sources(
        kubeadm_config=kubeadm({"podSubnet": "10.244.0.0/16"}), control_plane_pods=[apiserver]
    )
    assert cd.discover("cluster", only_apiserver).service_cidr == ("10.60.0.0/16",)


def test_nothing_found_is_not_ready_with_every_place_looked_at() -> None:
    """No kubeadm ConfigMap, no static pods: NotReady, both lists empty, a reason naming each source."""
    result = cd.discover("cluster", Sources())
    assert result.status() == {
        "phase": "NotReady",
        "overlayPodCIDR": [],
        "serviceCIDR": [],
        "reason": "podCIDRType cluster: pod CIDR not found: ConfigMap kube-system/kubeadm-config does not "
        "exist; no kube-controller-manager pod (label component=kube-controller-manager)",
    }


def test_missing_service_cidr_is_not_ready_and_names_its_sources() -> None:
    """Calico pools found but no service CIDR anywhere: NotReady naming the four service sources."""
    sources = Sources(calico_served=True, calico_pools=[pool("a", "10.1.0.0/16", "t")])
    result = cd.discover("calico", sources)
    assert result.phase == "NotReady" and result.overlay_pod_cidr == () and result.service_cidr == ()
    assert result.reason == (
        "podCIDRType calico: service CIDR not found: ServiceCIDR objects (networking.k8s.io) are not served; "
        "ConfigMap kube-system/kubeadm-config does not exist; no kube-controller-manager pod (label "
        "component=kube-controller-manager); no kube-apiserver pod (label component=kube-apiserver)"
    )


def test_none_needs_no_pod_cidr_and_survives_a_missing_service_cidr() -> None:
    """none: no pod CIDR; without a service CIDR anywhere it is still Synced, with a reason (#4954)."""
    found = cd.discover("none", Sources(kubeadm_config=SVC_KUBEADM))
    assert found.status() == {"phase": "Synced", "overlayPodCIDR": [], "serviceCIDR": ["10.96.0.0/12"]}
    managed = cd.discover("none", Sources())
    assert (managed.phase, managed.service_cidr) == ("Synced", ())
    assert managed.reason.startswith("podCIDRType none: service CIDR not found: ")
    assert managed.reason.endswith("the coordinator routes only spec.hijackCIDR through veth0")


@pytest.mark.parametrize(
    ("name", "kind"),
    [("k8s-pod-network", "calico"), ("calico", "calico"), ("cilium", "cilium"), ("flannel", "cluster"),
     ("macvlan-standalone", "none")],
)  # fmt: skip
def test_auto_follows_the_default_cni_file_when_there_is_one(name: str, kind: str) -> None:
    """auto with a CNI configuration directory: upstream's mapping of the default network's name."""
    sources = Sources(
        default_cni_name=name, default_cni_file="/etc/cni/net.d/10-x.conflist", kubeadm_config=SVC_KUBEADM
    )
    assert cd.resolve_auto(sources)[0] == kind


def test_auto_without_a_cni_directory_probes_calico_then_cilium_then_none() -> None:
    """No CNI configuration file: Calico's CRD wins over Cilium's ConfigMap; neither: none."""
    both = Sources(calico_served=True, cilium_config={"data": {}})
    assert cd.resolve_auto(both)[0] == "calico"
    assert cd.resolve_auto(Sources(cilium_config={"data": {}}))[0] == "cilium"
    assert cd.resolve_auto(Sources())[0] == "none"
    result = cd.discover("auto", Sources(calico_served=True, kubeadm_config=SVC_KUBEADM))
    assert result.phase == "NotReady"
    assert result.reason.startswith(
        "podCIDRType auto (resolved to calico: CRD ippools.crd.projectcalico.org is served): "
        "pod CIDR not found: no enabled Calico IPPool"
    )


@pytest.mark.parametrize(
    ("value", "why"), [(None, "is not set"), ("", "is not set"), ("weave", "'weave' is not one of")]
)
def test_an_unset_or_unknown_pod_cidr_type_is_not_ready(value: str | None, why: str) -> None:
    """Without the webhook a SpiderCoordinator may lack podCIDRType: NotReady, never a crash."""
    result = cd.discover(value, Sources(kubeadm_config=SVC_KUBEADM))
    assert result.phase == "NotReady" and why in result.reason


def test_every_outcome_has_a_phase_both_lists_and_a_reason_unless_fully_synced() -> None:
    """Across every podCIDRType and source combination the status is complete (upstream #3015, #4307)."""
    kcm = static_pod("kube-controller-manager", "--cluster-cidr=10.244.0.0/16")
    options: dict[str, list[Any]] = {
        "kubeadm_config": [None, SVC_KUBEADM, kubeadm({"serviceSubnet": "10.96.0.0/12"})],
        "control_plane_pods": [(), (kcm,)],
        "calico_served": [False, True],
        "calico_pools": [(), (pool("a", "10.1.0.0/16", "t"),)],
        "cilium_config": [None, {"data": {"cluster-pool-ipv4-cidr": "10.0.0.0/8"}}],
    }
    for values in itertools.product(*options.values()):
        sources = Sources(**dict(zip(options, values, strict=True)))
        for kind in cd.POD_CIDR_TYPES:
            result = cd.discover(kind, sources)
            status = result.status()
            assert status["phase"] in ("Synced", "NotReady")
            assert isinstance(status["overlayPodCIDR"], list) and isinstance(status["serviceCIDR"], list)
            if status["phase"] == "NotReady":
                assert status["reason"] and status["overlayPodCIDR"] == status["serviceCIDR"] == []
            elif result.pod_cidr_type != "none":
                assert status["serviceCIDR"] and status["overlayPodCIDR"]
                assert "reason" not in status
