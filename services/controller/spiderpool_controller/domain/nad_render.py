"""The NetworkAttachmentDefinition a SpiderMultusConfig generates (upstream's
pkg/multuscniconfig generator).

Owns the translation of a defaulted SpiderMultusConfig (``multus_config.apply_defaults``) into
the Multus object: same namespace, named by the ``multus.spidernet.io/cr-name`` annotation or
the SpiderMultusConfig's name, a controller ``ownerReference`` to it (so the API server's
garbage collector deletes it with its owner), and ``spec.config``, a CNI conflist whose text is
byte for byte what upstream's controller writes for the same object:

- plugin order: [``ifacer`` (macvlan/ipvlan with a VLAN ID or two masters; vlan with two
  masters)] + the main plugin (with ``{"type": "spiderpool", default pools}`` as its IPAM
  unless ``disableIPAM``) + [``rdma`` (sriov with ``rdmaIsolation``)] + the
  ``chainCNIJsonData`` plugins + [``coordinator`` when ``enableCoordinator``] + [``tuning``
  with the MTU (sriov with an MTU above 0): last, after the coordinator, as upstream appends it].
  Upstream's code at v1.2 is the reference: its documentation still shows the chained plugins
  after the coordinator, the order before upstream #5290 moved them;
- keys in the order of upstream's Go structs, empty optional values left out as its
  ``omitempty`` tags do (an empty pool list is no key at all), the conflist's own keys sorted
  (a Go map), each ``chainCNIJsonData`` plugin re-encoded with sorted keys and Go's number
  format (upstream decodes it into ``interface{}`` and encodes it again);
- Go's ``encoding/json`` text: compact, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped.

``custom``: ``spec.config`` is ``customCNI`` unchanged (no ``spec.config`` when it is empty).
Annotations: the SpiderMultusConfig's own, plus ``k8s.v1.cni.cncf.io/resourceName`` for
sriov and ib-sriov (the resource name) and ovs with a ``deviceID``
(``ovs-cni.network.kubevirt.io/<bridge>``), so the device plugin's resource reaches the pod.

Two deliberate differences, both about values, never about names or order:

- ``podRPFilter`` of ``spec.coordinator`` is written when set. Upstream writes it only when
  ``spec.coordinator.podCIDRType`` is set (a slip in the commit that meant to pass it on:
  "coordinator should only set rp_filter for pod"), so a network's own ``podRPFilter`` was
  silently ignored.
- kubectl's ``kubectl.kubernetes.io/last-applied-configuration`` annotation is not copied:
  it describes the SpiderMultusConfig, and on the NetworkAttachmentDefinition it would make
  a later ``kubectl apply`` of that object diff against the wrong manifest.

Pure: no I/O. ``render`` raises ``InvalidObject`` for an object it cannot render (a
sub-configuration missing, a chained plugin that is not JSON); validation normally refuses
those first.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from spiderpool_common.errors import InvalidObject

from spiderpool_controller.domain import models
from spiderpool_controller.domain import multus_config as mc
from spiderpool_controller.domain.coordinator_spec import CoordinatorSpec

NAD_API_VERSION = "k8s.cni.cncf.io/v1"
NAD_KIND = "NetworkAttachmentDefinition"
RESOURCE_NAME_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"
OVS_RESOURCE_PREFIX = "ovs-cni.network.kubevirt.io"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

Plugin = dict[str, Any]


# ---------------------------------------------------------------------------------------
# Go's encoding/json


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")
_SHORT_ESCAPE_RE = re.compile(r"\\(.)")
_GO_NO_SHORT = {"b": "\\u0008", "f": "\\u000c"}  # Go writes only \" \\ \n \r \t short


class GoFloat(float):
    """A number decoded into Go's ``interface{}`` (a float64), written as Go writes it."""


def _go_float(value: float) -> str:
    """Go's float64 text: shortest digits, plain between 1e-6 and 1e21, else ``1e+21``/``1e-7``."""
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a JSON number")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    number = Decimal(repr(value))
    if 1e-6 <= abs(value) < 1e21:
        text = format(number, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    sign, digits, exponent = number.normalize().as_tuple()
    assert isinstance(exponent, int)
    shown = "".join(map(str, digits))
    power = exponent + len(digits) - 1
    mantissa = shown[0] + (f".{shown[1:]}" if len(shown) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'+' if power >= 0 else '-'}{abs(power)}"


def _go_string(text: str) -> str:
    out = json.dumps(text, ensure_ascii=False)
    out = _SHORT_ESCAPE_RE.sub(lambda m: _GO_NO_SHORT.get(m.group(1), m.group(0)), out)
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], out)


def go_json(value: Any) -> str:
    """``value`` as Go's ``json.Marshal`` writes it (dict keys in the order given)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, GoFloat):
        return _go_float(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_go_string(str(k))}:{go_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON")


def _sorted_generic(value: Any) -> Any:
    """A JSON value decoded into Go's ``interface{}``: maps sorted by key, numbers float64."""
    if isinstance(value, dict):
        return {k: _sorted_generic(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_generic(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return GoFloat(value)
    return value


# ---------------------------------------------------------------------------------------
# plugins


def _ipam(pools: mc.SpiderpoolPools | None, *, match_master_subnet: bool = False) -> Plugin:
    """spiderpool's ``IPAMConfig``: empty lists and a false flag are left out (``omitempty``)."""
    out: Plugin = {"type": "spiderpool"}
    if pools is not None and pools.ipv4:
        out["default_ipv4_ippool"] = list(pools.ipv4)
    if pools is not None and pools.ipv6:
        out["default_ipv6_ippool"] = list(pools.ipv6)
    if match_master_subnet and pools is not None and pools.match_master_subnet:
        out["match_master_subnet"] = True
    return out


def _bond(bond: mc.BondConfig) -> Plugin:
    out: Plugin = {"name": bond.name, "mode": bond.mode}
    if bond.options is not None:
        out["options"] = bond.options
    return out


def _master_name(sub: mc.MasterNicConfig, *, with_vlan: bool) -> str:
    name = sub.master[0] if len(sub.master) == 1 else (sub.bond.name if sub.bond is not None else "")
    if with_vlan and sub.vlan_id:
        name = f"{name}.{sub.vlan_id}"
    return name


def _ifacer(sub: mc.MasterNicConfig, vlan_id: int) -> Plugin:
    out: Plugin = {}
    if vlan_id:
        out["vlanID"] = vlan_id
    out["type"] = "ifacer"
    if sub.master:
        out["interfaces"] = list(sub.master)
    if sub.bond is not None:
        out["bond"] = _bond(sub.bond)
    return out


def _macvlan(sub: mc.MacvlanConfig, disable_ipam: bool) -> Plugin:
    out: Plugin = {"type": mc.CNI_MACVLAN, "master": _master_name(sub, with_vlan=True), "mode": "bridge"}
    if sub.mtu is not None:
        out["mtu"] = sub.mtu
    if not disable_ipam:
        out["ipam"] = _ipam(sub.ippools)
    return out


def _ipvlan(sub: mc.IPvlanConfig, disable_ipam: bool) -> Plugin:
    out: Plugin = {"type": mc.CNI_IPVLAN, "master": _master_name(sub, with_vlan=True)}
    if sub.mtu is not None:
        out["mtu"] = sub.mtu
    if not disable_ipam:
        out["ipam"] = _ipam(sub.ippools)
    return out


def _vlan(sub: mc.VlanConfig, disable_ipam: bool) -> Plugin:
    out: Plugin = {"type": mc.CNI_VLAN, "master": _master_name(sub, with_vlan=False)}
    if sub.vlan_mode is not None:
        out["vlanMode"] = sub.vlan_mode
    if sub.vlan_mode == mc.VLAN_MODE_MANUAL and sub.vlan_id is not None:
        out["vlanId"] = sub.vlan_id
    if sub.mtu is not None:
        out["mtu"] = sub.mtu
    if not disable_ipam:
        out["ipam"] = _ipam(sub.ippools)
    return out


def _sriov(sub: mc.SriovConfig, disable_ipam: bool) -> Plugin:
    out: Plugin = {}
    if sub.vlan_id is not None:
        out["vlan"] = sub.vlan_id
    if sub.min_tx_rate_mbps is not None:
        out["min_tx_rate"] = sub.min_tx_rate_mbps
    if sub.max_tx_rate_mbps is not None:
        out["max_tx_rate"] = sub.max_tx_rate_mbps
    out["type"] = mc.CNI_SRIOV
    if not disable_ipam:
        out["ipam"] = _ipam(sub.ippools, match_master_subnet=True)
    return out


def _ib_sriov(sub: mc.IBSriovConfig, disable_ipam: bool) -> Plugin:
    out: Plugin = {"type": mc.CNI_IB_SRIOV}
    for key, value in (
        ("pkey", sub.pkey),
        ("link_state", sub.link_state),
        ("rdmaIsolation", sub.rdma_isolation),
        ("ibKubernetesEnabled", sub.enable_ib_kubernetes),
    ):
        if value is not None:
            out[key] = value
    if not disable_ipam:
        out["ipam"] = _ipam(sub.ippools)
    return out


def _ipoib(sub: mc.IpoibConfig, disable_ipam: bool) -> Plugin:
    out: Plugin = {"type": mc.CNI_IPOIB}
    if sub.master:
        out["master"] = sub.master
    if not disable_ipam:
        out["ipam"] = _ipam(sub.ippools)
    return out


def _trunk(trunk: mc.Trunk) -> Plugin:
    out: Plugin = {}
    for key, value in (("minID", trunk.min_id), ("maxID", trunk.max_id), ("id", trunk.id)):
        if value is not None:
            out[key] = value
    return out


def _ovs(sub: mc.OvsConfig, disable_ipam: bool) -> Plugin:
    out: Plugin = {}
    if sub.vlan is not None:
        out["vlan"] = sub.vlan
    out["type"] = mc.CNI_OVS
    out["bridge"] = sub.bridge
    if sub.device_id:
        out["deviceID"] = sub.device_id
    if not disable_ipam:
        out["ipam"] = _ipam(sub.ippools)
    if sub.trunk:
        out["trunk"] = [_trunk(t) for t in sub.trunk]
    return out


def coordinator_plugin(spec: CoordinatorSpec | None) -> Plugin:
    """The chained coordinator: the SpiderMultusConfig's ``spec.coordinator`` as its CNI fields
    (unset and empty ones left out, so the SpiderCoordinator ``default`` fills them)."""
    if spec is None:
        return {"type": "coordinator"}
    out: Plugin = {}
    if spec.tx_queue_len is not None:
        out["txQueueLen"] = spec.tx_queue_len
    if spec.veth_link_address:
        out["vethLinkAddress"] = spec.veth_link_address
    if spec.veth_mtu is not None:
        out["vethMTU"] = spec.veth_mtu
    if spec.tune_pod_routes is not None:
        out["tunePodRoutes"] = spec.tune_pod_routes
    if spec.pod_mac_prefix:
        out["podMACPrefix"] = spec.pod_mac_prefix
    if spec.mode:
        out["mode"] = spec.mode
    out["type"] = "coordinator"
    if spec.pod_default_route_nic:
        out["podDefaultRouteNic"] = spec.pod_default_route_nic
    if spec.pod_rp_filter is not None:
        out["podRPFilter"] = spec.pod_rp_filter
    if spec.hijack_cidr:
        out["hijackCIDR"] = list(spec.hijack_cidr)
    if spec.policy_routes:
        out["policyRoutes"] = [
            {"dst": str(r.get("dst", "")), "gw": str(r.get("gw", ""))} for r in spec.policy_routes
        ]
    return out


def _chained(report: _Reporter, texts: list[str] | None) -> list[Any]:
    out = []
    for i, text in enumerate(texts or ()):
        try:
            out.append(_sorted_generic(json.loads(text)))
        except ValueError as exc:
            report.fail(f"spec.chainCNIJsonData[{i}]", f"is not valid JSON: {exc}")
    return out


class _Reporter:
    def __init__(self, config: mc.SpiderMultusConfig) -> None:
        meta = config.meta
        self.name = f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name

    def fail(self, path: str, message: str) -> Any:
        raise InvalidObject(f'{mc.KIND} "{self.name}": {path}: {message}', details=path)


def _sub(report: _Reporter, spec: mc.MultusConfigSpec, cls: type[Any]) -> Any:
    sub = spec.sub_config
    if not isinstance(sub, cls):
        key = mc.SUB_CONFIG_KEYS.get(spec.cni_type or "", "cniType")
        report.fail(f"spec.{key}", f"required when spec.cniType is {spec.cni_type}")
    return sub


def _needs_ifacer(sub: mc.MasterNicConfig) -> bool:
    return bool(sub.vlan_id) or len(sub.master) >= 2


def render_config(config: mc.SpiderMultusConfig) -> tuple[str | None, dict[str, str]]:
    """``spec.config`` of the NetworkAttachmentDefinition (None: none) and the annotations it adds."""
    report = _Reporter(config)
    spec = config.spec
    cni_type = spec.cni_type or mc.CNI_CUSTOM
    if cni_type == mc.CNI_CUSTOM:
        return (spec.custom_cni or None), {}
    disable_ipam = bool(spec.disable_ipam)
    tail: list[Any] = _chained(report, spec.chain_cni_json_data)
    if spec.enable_coordinator is None or spec.enable_coordinator:
        tail.append(coordinator_plugin(spec.coordinator))
    annotations: dict[str, str] = {}
    plugins: list[Any]
    if cni_type == mc.CNI_MACVLAN:
        macvlan: mc.MacvlanConfig = _sub(report, spec, mc.MacvlanConfig)
        plugins = [_macvlan(macvlan, disable_ipam), *tail]
        if _needs_ifacer(macvlan):
            plugins.insert(0, _ifacer(macvlan, macvlan.vlan_id or 0))
    elif cni_type == mc.CNI_IPVLAN:
        ipvlan: mc.IPvlanConfig = _sub(report, spec, mc.IPvlanConfig)
        plugins = [_ipvlan(ipvlan, disable_ipam), *tail]
        if _needs_ifacer(ipvlan):
            plugins.insert(0, _ifacer(ipvlan, ipvlan.vlan_id or 0))
    elif cni_type == mc.CNI_VLAN:
        vlan: mc.VlanConfig = _sub(report, spec, mc.VlanConfig)
        plugins = [_vlan(vlan, disable_ipam), *tail]
        if len(vlan.master) >= 2:
            plugins.insert(0, _ifacer(vlan, 0))
    elif cni_type == mc.CNI_SRIOV:
        sriov: mc.SriovConfig = _sub(report, spec, mc.SriovConfig)
        annotations[RESOURCE_NAME_ANNOTATION] = sriov.resource_name or ""
        rdma = [{"type": "rdma"}] if sriov.rdma_isolation else []
        plugins = [_sriov(sriov, disable_ipam), *rdma, *tail]
        if sriov.mtu is not None and sriov.mtu > 0:
            plugins.append({"type": "tuning", "mtu": sriov.mtu})
    elif cni_type == mc.CNI_IB_SRIOV:
        ib: mc.IBSriovConfig = _sub(report, spec, mc.IBSriovConfig)
        annotations[RESOURCE_NAME_ANNOTATION] = ib.resource_name or ""
        plugins = [_ib_sriov(ib, disable_ipam), *tail]
    elif cni_type == mc.CNI_IPOIB:
        ipoib: mc.IpoibConfig = _sub(report, spec, mc.IpoibConfig)
        plugins = [_ipoib(ipoib, disable_ipam), *tail]
    elif cni_type == mc.CNI_OVS:
        ovs: mc.OvsConfig = _sub(report, spec, mc.OvsConfig)
        plugins = [_ovs(ovs, disable_ipam), *tail]
        if ovs.device_id:
            annotations[RESOURCE_NAME_ANNOTATION] = f"{OVS_RESOURCE_PREFIX}/{ovs.bridge}"
    else:
        report.fail("spec.cniType", f"{cni_type!r} is not one of {', '.join(mc.CNI_TYPES)}")
    conflist = {"cniVersion": config.cni_version, "name": config.cni_config_name, "plugins": plugins}
    return go_json(conflist), annotations


def owner_reference(config: mc.SpiderMultusConfig) -> dict[str, Any]:
    """The controller reference a generated object carries (``SetControllerReference``)."""
    return {
        "apiVersion": models.API_VERSION,
        "kind": mc.KIND,
        "name": config.meta.name,
        "uid": config.meta.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def render(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The NetworkAttachmentDefinition of a defaulted SpiderMultusConfig manifest."""
    config = mc.SpiderMultusConfig.from_dict(obj)
    text, extra = render_config(config)
    annotations = {k: v for k, v in config.meta.annotations.items() if k != LAST_APPLIED_ANNOTATION}
    annotations.update(extra)
    metadata: dict[str, Any] = {"name": config.nad_name, "namespace": config.meta.namespace}
    if annotations:
        metadata["annotations"] = annotations
    metadata["ownerReferences"] = [owner_reference(config)]
    nad: dict[str, Any] = {"apiVersion": NAD_API_VERSION, "kind": NAD_KIND, "metadata": metadata}
    nad["spec"] = {"config": text} if text is not None else {}
    return nad
