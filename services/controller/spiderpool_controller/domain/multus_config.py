"""The SpiderMultusConfig object: its model, its defaults and its validation (upstream's pkg/multuscniconfig).

Owns the typed value of a SpiderMultusConfig (one sub-configuration per ``cniType``: macvlan,
ipvlan, vlan, sriov, ib-sriov as ``ibsriov``, ipoib, ovs, custom; the per-network coordinator
override, chained plugins and a custom CNI configuration), the mutating webhook's defaults
(``apply_defaults``) and the validating webhook's rules (``validate``), as pure functions over
manifest dicts so the embedded mode and the admission webhooks apply the same rules. The
NetworkAttachmentDefinition generator reads a defaulted object through ``SpiderMultusConfig``.

Defaulting follows what a cluster does to a request (upstream pkg/multuscniconfig): the CRD
schema's defaults (``crd_schema``), then upstream's mutating webhook, then the schema's defaults
again (the API server re-defaults after a mutating patch). So ``spec.coordinator`` given without
``tunePodRoutes`` gets the schema's ``true``: upstream's webhook would write ``false`` there, a
quirk no request through an API server ever reaches.

Validation reports the first failing rule, in upstream's order (annotations, then the rules of
the ``cniType``, then ``spec.coordinator``, then ``chainCNIJsonData``), as an ``InvalidObject``
naming the object and the field by its JSON path (upstream names the Go fields, e.g.
``spec.macvlanConfig``, which no manifest contains). One deliberate difference: an SR-IOV
``maxTxRateMbps`` of 0 means "no limit", so it never makes ``minTxRateMbps`` invalid (upstream
defaults the maximum to 0 and then refuses any minimum above it).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from spiderpool_common.errors import InvalidObject

from spiderpool_controller.domain import coordinator_spec, crd_schema
from spiderpool_controller.domain.coordinator_spec import CoordinatorSpec
from spiderpool_controller.domain.models import ObjectMeta
from spiderpool_controller.domain.openapi_fields import schema_errors

KIND = "SpiderMultusConfig"

CNI_MACVLAN = "macvlan"
CNI_IPVLAN = "ipvlan"
CNI_VLAN = "vlan"
CNI_SRIOV = "sriov"
CNI_OVS = "ovs"
CNI_IB_SRIOV = "ib-sriov"
CNI_IPOIB = "ipoib"
CNI_CUSTOM = "custom"
CNI_TYPES = crd_schema.CNI_TYPES
# cniType -> the spec key of its sub-configuration (custom has none: customCNI is the whole config)
SUB_CONFIG_KEYS: dict[str, str] = {
    CNI_MACVLAN: "macvlan",
    CNI_IPVLAN: "ipvlan",
    CNI_VLAN: "vlan",
    CNI_SRIOV: "sriov",
    CNI_OVS: "ovs",
    CNI_IB_SRIOV: "ibsriov",
    CNI_IPOIB: "ipoib",
}
_MASTER_NIC_TYPES = (CNI_MACVLAN, CNI_IPVLAN, CNI_VLAN)

VLAN_MODE_MANUAL = "manual"
VLAN_MODE_AUTO = "auto"
MAX_VLAN_ID = 4094

ANNO_CR_NAME = "multus.spidernet.io/cr-name"
ANNO_CNI_VERSION = "multus.spidernet.io/cni-version"
ANNO_CNICONFIG_NAME = "cni.spidernet.io/cniconfig-name"
ANNO_RDMA_RESOURCE_INJECT = "cni.spidernet.io/rdma-resource-inject"
ANNO_NETWORK_RESOURCE_INJECT = "cni.spidernet.io/network-resource-inject"
INJECT_ANNOTATIONS = (ANNO_RDMA_RESOURCE_INJECT, ANNO_NETWORK_RESOURCE_INJECT)
CNI_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
DEFAULT_CNI_VERSION = "0.3.1"

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*")


# ---------------------------------------------------------------------------------------
# model


def _opt_int(value: Any) -> int | None:
    return int(value) if value is not None else None


def _opt_str(value: Any) -> str | None:
    return str(value) if value is not None else None


def _opt_bool(value: Any) -> bool | None:
    return bool(value) if value is not None else None


def _opt_strs(value: Any) -> list[str] | None:
    return [str(v) for v in value] if value is not None else None


def _compact(pairs: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """The manifest dict of a model: unset (None) fields are left out, as upstream's omitempty."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if value is None:
            continue
        if hasattr(value, "to_dict"):
            out[key] = value.to_dict()
        elif isinstance(value, list):
            out[key] = [v.to_dict() if hasattr(v, "to_dict") else v for v in value]
        else:
            out[key] = value
    return out


@dataclass
class SpiderpoolPools:
    """``ippools``: the network's default pools, written into its IPAM configuration."""

    ipv4: list[str] | None = None
    ipv6: list[str] | None = None
    match_master_subnet: bool | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SpiderpoolPools | None:
        if data is None:
            return None
        return cls(
            _opt_strs(data.get("ipv4")), _opt_strs(data.get("ipv6")), _opt_bool(data.get("matchMasterSubnet"))
        )

    def to_dict(self) -> dict[str, Any]:
        return _compact(
            (("ipv4", self.ipv4), ("ipv6", self.ipv6), ("matchMasterSubnet", self.match_master_subnet))
        )

    @property
    def pool_count(self) -> int:
        return len(self.ipv4 or ()) + len(self.ipv6 or ())


@dataclass
class BondConfig:
    name: str
    mode: int
    options: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> BondConfig | None:
        if data is None:
            return None
        return cls(str(data.get("name", "")), int(data.get("mode", 0)), _opt_str(data.get("options")))

    def to_dict(self) -> dict[str, Any]:
        return _compact((("name", self.name), ("mode", self.mode), ("options", self.options)))


@dataclass
class MasterNicConfig:
    """The shape macvlan, ipvlan and vlan share: master NIC(s), optional bond and VLAN."""

    master: list[str] = field(default_factory=list)
    mtu: int | None = None
    vlan_id: int | None = None
    bond: BondConfig | None = None
    rdma_resource_name: str | None = None
    ippools: SpiderpoolPools | None = None

    @classmethod
    def _fields(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "master": [str(m) for m in data.get("master") or ()],
            "mtu": _opt_int(data.get("mtu")),
            "vlan_id": _opt_int(data.get("vlanID")),
            "bond": BondConfig.from_dict(data.get("bond")),
            "rdma_resource_name": _opt_str(data.get("rdmaResourceName")),
            "ippools": SpiderpoolPools.from_dict(data.get("ippools")),
        }

    def _pairs(self) -> tuple[tuple[str, Any], ...]:
        return (
            ("master", list(self.master)),
            ("mtu", self.mtu),
            ("vlanID", self.vlan_id),
            ("bond", self.bond),
            ("rdmaResourceName", self.rdma_resource_name),
            ("ippools", self.ippools),
        )

    def to_dict(self) -> dict[str, Any]:
        return _compact(self._pairs())


@dataclass
class MacvlanConfig(MasterNicConfig):
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MacvlanConfig:
        return cls(**cls._fields(data))


@dataclass
class IPvlanConfig(MasterNicConfig):
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IPvlanConfig:
        return cls(**cls._fields(data))


@dataclass
class VlanConfig(MasterNicConfig):
    vlan_mode: str | None = None  # manual (vlanID required) or auto (vlanID forbidden)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VlanConfig:
        return cls(**cls._fields(data), vlan_mode=_opt_str(data.get("vlanMode")))

    def to_dict(self) -> dict[str, Any]:
        return _compact((*self._pairs(), ("vlanMode", self.vlan_mode)))


@dataclass
class SriovConfig:
    resource_name: str | None = None
    vlan_id: int | None = None
    mtu: int | None = None
    min_tx_rate_mbps: int | None = None
    max_tx_rate_mbps: int | None = None
    rdma_isolation: bool | None = None
    ippools: SpiderpoolPools | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SriovConfig:
        return cls(
            resource_name=_opt_str(data.get("resourceName")),
            vlan_id=_opt_int(data.get("vlanID")),
            mtu=_opt_int(data.get("mtu")),
            min_tx_rate_mbps=_opt_int(data.get("minTxRateMbps")),
            max_tx_rate_mbps=_opt_int(data.get("maxTxRateMbps")),
            rdma_isolation=_opt_bool(data.get("rdmaIsolation")),
            ippools=SpiderpoolPools.from_dict(data.get("ippools")),
        )

    def to_dict(self) -> dict[str, Any]:
        return _compact(
            (
                ("resourceName", self.resource_name),
                ("vlanID", self.vlan_id),
                ("mtu", self.mtu),
                ("minTxRateMbps", self.min_tx_rate_mbps),
                ("maxTxRateMbps", self.max_tx_rate_mbps),
                ("rdmaIsolation", self.rdma_isolation),
                ("ippools", self.ippools),
            )
        )


@dataclass
class IBSriovConfig:
    resource_name: str | None = None
    pkey: str | None = None
    link_state: str | None = None  # auto, enable, disable
    rdma_isolation: bool | None = None
    enable_ib_kubernetes: bool | None = None
    ippools: SpiderpoolPools | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IBSriovConfig:
        return cls(
            resource_name=_opt_str(data.get("resourceName")),
            pkey=_opt_str(data.get("pkey")),
            link_state=_opt_str(data.get("linkState")),
            rdma_isolation=_opt_bool(data.get("rdmaIsolation")),
            enable_ib_kubernetes=_opt_bool(data.get("enableIbKubernetes")),
            ippools=SpiderpoolPools.from_dict(data.get("ippools")),
        )

    def to_dict(self) -> dict[str, Any]:
        return _compact(
            (
                ("resourceName", self.resource_name),
                ("pkey", self.pkey),
                ("linkState", self.link_state),
                ("rdmaIsolation", self.rdma_isolation),
                ("enableIbKubernetes", self.enable_ib_kubernetes),
                ("ippools", self.ippools),
            )
        )


@dataclass
class IpoibConfig:
    master: str | None = None
    ippools: SpiderpoolPools | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IpoibConfig:
        return cls(_opt_str(data.get("master")), SpiderpoolPools.from_dict(data.get("ippools")))

    def to_dict(self) -> dict[str, Any]:
        return _compact((("master", self.master), ("ippools", self.ippools)))


@dataclass
class Trunk:
    min_id: int | None = None
    max_id: int | None = None
    id: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trunk:
        return cls(_opt_int(data.get("minID")), _opt_int(data.get("maxID")), _opt_int(data.get("id")))

    def to_dict(self) -> dict[str, Any]:
        return _compact((("minID", self.min_id), ("maxID", self.max_id), ("id", self.id)))


@dataclass
class OvsConfig:
    bridge: str
    vlan: int | None = None
    trunk: list[Trunk] | None = None
    device_id: str | None = None
    ippools: SpiderpoolPools | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OvsConfig:
        trunk = data.get("trunk")
        return cls(
            bridge=str(data.get("bridge", "")),
            vlan=_opt_int(data.get("vlan")),
            trunk=[Trunk.from_dict(t) for t in trunk] if trunk is not None else None,
            device_id=_opt_str(data.get("deviceID")),
            ippools=SpiderpoolPools.from_dict(data.get("ippools")),
        )

    def to_dict(self) -> dict[str, Any]:
        return _compact(
            (
                ("bridge", self.bridge),
                ("vlan", self.vlan),
                ("trunk", self.trunk),
                ("deviceID", self.device_id),
                ("ippools", self.ippools),
            )
        )


SubConfig = MacvlanConfig | IPvlanConfig | VlanConfig | SriovConfig | OvsConfig | IBSriovConfig | IpoibConfig


def _sub(cls: Any, data: Any) -> Any:
    return cls.from_dict(data) if data is not None else None


@dataclass
class MultusConfigSpec:
    """``spec`` of a SpiderMultusConfig; ``None`` means unset (``apply_defaults`` fills it)."""

    cni_type: str | None = None
    macvlan: MacvlanConfig | None = None
    ipvlan: IPvlanConfig | None = None
    vlan: VlanConfig | None = None
    sriov: SriovConfig | None = None
    ovs: OvsConfig | None = None
    ibsriov: IBSriovConfig | None = None
    ipoib: IpoibConfig | None = None
    enable_coordinator: bool | None = None
    disable_ipam: bool | None = None
    coordinator: CoordinatorSpec | None = None
    chain_cni_json_data: list[str] | None = None
    custom_cni: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MultusConfigSpec:
        coordinator = data.get("coordinator")
        return cls(
            cni_type=_opt_str(data.get("cniType")),
            macvlan=_sub(MacvlanConfig, data.get("macvlan")),
            ipvlan=_sub(IPvlanConfig, data.get("ipvlan")),
            vlan=_sub(VlanConfig, data.get("vlan")),
            sriov=_sub(SriovConfig, data.get("sriov")),
            ovs=_sub(OvsConfig, data.get("ovs")),
            ibsriov=_sub(IBSriovConfig, data.get("ibsriov")),
            ipoib=_sub(IpoibConfig, data.get("ipoib")),
            enable_coordinator=_opt_bool(data.get("enableCoordinator")),
            disable_ipam=_opt_bool(data.get("disableIPAM")),
            coordinator=CoordinatorSpec.from_dict(coordinator) if coordinator is not None else None,
            chain_cni_json_data=_opt_strs(data.get("chainCNIJsonData")),
            custom_cni=_opt_str(data.get("customCNI")),
        )

    def to_dict(self) -> dict[str, Any]:
        return _compact(
            (
                ("cniType", self.cni_type),
                ("macvlan", self.macvlan),
                ("ipvlan", self.ipvlan),
                ("vlan", self.vlan),
                ("sriov", self.sriov),
                ("ovs", self.ovs),
                ("ibsriov", self.ibsriov),
                ("ipoib", self.ipoib),
                ("enableCoordinator", self.enable_coordinator),
                ("disableIPAM", self.disable_ipam),
                ("coordinator", self.coordinator),
                ("chainCNIJsonData", self.chain_cni_json_data),
                ("customCNI", self.custom_cni),
            )
        )

    @property
    def sub_config(self) -> SubConfig | None:
        """The sub-configuration ``cniType`` selects (None for custom, or when it is missing)."""
        key = SUB_CONFIG_KEYS.get(self.cni_type or "")
        value = getattr(self, key) if key is not None else None
        assert value is None or isinstance(value, SubConfig)
        return value


@dataclass
class SpiderMultusConfig:
    meta: ObjectMeta
    spec: MultusConfigSpec

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SpiderMultusConfig:
        return cls(
            ObjectMeta.from_dict(obj.get("metadata") or {}), MultusConfigSpec.from_dict(obj.get("spec") or {})
        )

    @property
    def nad_name(self) -> str:
        """Name of the generated NetworkAttachmentDefinition: the cr-name annotation, else ours."""
        return self.meta.annotations.get(ANNO_CR_NAME) or self.meta.name

    @property
    def cni_version(self) -> str:
        return self.meta.annotations.get(ANNO_CNI_VERSION) or DEFAULT_CNI_VERSION

    @property
    def cni_config_name(self) -> str:
        """``name`` inside the generated CNI configuration (annotation, else the NAD's name)."""
        return self.meta.annotations.get(ANNO_CNICONFIG_NAME) or self.nad_name


# ---------------------------------------------------------------------------------------
# the mutating webhook

_EMPTY_POOLS: dict[str, Any] = {"ipv4": [], "ipv6": []}
_COORDINATOR_DEFAULTS: dict[str, Any] = {
    "mode": "auto",
    "hijackCIDR": [],
    "policyRoutes": [],
    "vethLinkAddress": "",
    "podMACPrefix": "",
    "podDefaultRouteNIC": "",
    "podRPFilter": 0,
    "tunePodRoutes": True,
}


def _default_sub_config(cni_type: str, sub: dict[str, Any]) -> None:
    """Upstream's per-type defaults beyond the schema's (multusconfig_mutate.go)."""
    sub.setdefault("ippools", copy.deepcopy(_EMPTY_POOLS))
    if isinstance(sub.get("bond"), dict):
        sub["bond"].setdefault("options", "")
    if cni_type in (CNI_MACVLAN, CNI_IPVLAN):
        sub.setdefault("vlanID", 0)
    if cni_type == CNI_VLAN and sub.get("vlanMode", VLAN_MODE_MANUAL) == VLAN_MODE_MANUAL:
        sub.setdefault("vlanID", 0)
    if cni_type in _MASTER_NIC_TYPES:
        sub.setdefault("rdmaResourceName", "")
    if cni_type == CNI_SRIOV:
        for key in ("vlanID", "minTxRateMbps", "maxTxRateMbps"):
            sub.setdefault(key, 0)
    if cni_type in (CNI_SRIOV, CNI_IB_SRIOV):
        sub.setdefault("resourceName", "")
    if cni_type == CNI_IB_SRIOV:
        sub.setdefault("pkey", "")
    if cni_type == CNI_OVS:
        sub.setdefault("vlan", 0)


def apply_defaults(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The mutating webhook, between the API server's schema defaulting passes; returns a copy."""
    out = crd_schema.apply_defaults(KIND, copy.deepcopy(dict(obj)))
    spec = out.get("spec")
    if spec is None:
        spec = out["spec"] = {}
    if not isinstance(spec, dict):
        return out  # validation reports it
    cni_type = spec.setdefault("cniType", CNI_CUSTOM)
    if not isinstance(cni_type, str):
        return out  # validation reports it
    sub = spec.get(SUB_CONFIG_KEYS.get(cni_type, ""))
    if isinstance(sub, dict):
        _default_sub_config(cni_type, sub)
    if cni_type == CNI_CUSTOM:
        spec.setdefault("customCNI", "")
        spec.pop("coordinator", None)
        spec["enableCoordinator"] = False
    elif spec.get("coordinator") is None:
        spec["coordinator"] = copy.deepcopy(_COORDINATOR_DEFAULTS)
    elif isinstance(spec["coordinator"], dict):
        for key in ("mode", "hijackCIDR", "policyRoutes", "podMACPrefix", "podDefaultRouteNIC"):
            spec["coordinator"].setdefault(key, copy.deepcopy(_COORDINATOR_DEFAULTS[key]))
    if spec.get("chainCNIJsonData") is None:
        spec["chainCNIJsonData"] = []
    meta = out.get("metadata")
    if isinstance(meta, dict):
        annotations = meta.get("annotations") or {}
        labels = meta.get("labels") or {}
        if isinstance(annotations, dict) and isinstance(labels, dict):  # else validation reports them
            inject = {k: annotations[k] for k in INJECT_ANNOTATIONS if k in annotations}
            if inject:
                meta["labels"] = {**labels, **inject}
    return crd_schema.apply_defaults(KIND, out)


# ---------------------------------------------------------------------------------------
# the validating webhook


class _Reporter:
    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        assert isinstance(meta, dict)
        name, namespace = str(meta.get("name", "")), str(meta.get("namespace", "") or "")
        self.name = f"{namespace}/{name}" if namespace else name

    def fail(self, path: str, message: str) -> NoReturn:
        raise InvalidObject(f'{KIND} "{self.name}": {path}: {message}', details=path)


def _check_metadata(report: _Reporter, meta: Any) -> None:
    """The metadata the rules read: an object whose labels and annotations map strings to strings
    and whose finalizers are strings (the schema leaves metadata to the API server, which the
    embedded mode does not have)."""
    if not isinstance(meta, dict):
        report.fail("metadata", "required")
    for key in ("labels", "annotations"):
        value = meta.get(key)
        if value is not None and (
            not isinstance(value, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ):
            report.fail(f"metadata.{key}", "must map strings to strings")
    finalizers = meta.get("finalizers")
    if finalizers is not None and (
        not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)
    ):
        report.fail("metadata.finalizers", "must be a list of strings")


def _anno(key: str) -> str:
    return f"metadata.annotations[{key}]"


def _check_annotations(
    report: _Reporter,
    annotations: Mapping[str, str],
    old_annotations: Mapping[str, str] | None,
    name: str,
    nad_owner: str | None,
) -> None:
    new_cr = annotations.get(ANNO_CR_NAME)
    if old_annotations is not None:
        old_cr = old_annotations.get(ANNO_CR_NAME)
        if old_cr is not None and new_cr is not None and old_cr != new_cr:
            report.fail(_anno(ANNO_CR_NAME), f"is immutable (stored: {old_cr!r}, requested: {new_cr!r})")
        if old_cr is None and new_cr is not None:
            report.fail(
                _anno(ANNO_CR_NAME),
                f"cannot be added after creation: the NetworkAttachmentDefinition is already named {name!r}",
            )
    if new_cr is not None and (len(new_cr) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(new_cr)):
        report.fail(
            _anno(ANNO_CR_NAME),
            f"{new_cr!r} is not a valid NetworkAttachmentDefinition name: it must be a lowercase "
            "RFC 1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)",
        )
    if nad_owner is not None and nad_owner != name:
        where = _anno(ANNO_CR_NAME) if new_cr is not None else "metadata.name"
        report.fail(
            where,
            f"the NetworkAttachmentDefinition {new_cr or name!r} already exists and is managed by "
            f"SpiderMultusConfig {nad_owner!r}",
        )
    version = annotations.get(ANNO_CNI_VERSION)
    if version is not None and version not in CNI_VERSIONS:
        report.fail(
            _anno(ANNO_CNI_VERSION),
            f"unsupported CNI version {version!r}; supported: {', '.join(CNI_VERSIONS)}",
        )


def _check_vlan_id(report: _Reporter, path: str, vlan_id: int | None) -> None:
    if vlan_id is not None and not 0 <= vlan_id <= MAX_VLAN_ID:
        report.fail(path, f"{vlan_id} is out of range [0, {MAX_VLAN_ID}]")


def _check_mtu(report: _Reporter, path: str, mtu: int | None) -> None:
    if mtu is not None and mtu < 0:
        report.fail(path, f"must be >= 0, got {mtu}")


def _check_master_nic(report: _Reporter, key: str, cni_type: str, sub: MasterNicConfig) -> None:
    if isinstance(sub, VlanConfig):
        mode = sub.vlan_mode
        if mode not in (VLAN_MODE_MANUAL, VLAN_MODE_AUTO):
            report.fail(f"spec.{key}.vlanMode", f"{mode!r} is not one of manual, auto")
        if mode == VLAN_MODE_MANUAL and sub.vlan_id is None:
            report.fail(f"spec.{key}.vlanID", "required when vlanMode is manual")
        if mode == VLAN_MODE_AUTO and sub.vlan_id is not None:
            report.fail(f"spec.{key}.vlanID", "must not be set when vlanMode is auto")
    _check_vlan_id(report, f"spec.{key}.vlanID", sub.vlan_id)
    _check_mtu(report, f"spec.{key}.mtu", sub.mtu)
    if sub.ippools is not None and sub.ippools.match_master_subnet:
        report.fail(f"spec.{key}.ippools.matchMasterSubnet", f"is not supported for {cni_type}")
    if not sub.master:
        report.fail(f"spec.{key}.master", "must name at least one interface")
    if len(sub.master) >= 2:
        if sub.bond is None:
            report.fail(f"spec.{key}.bond", f"required with {len(sub.master)} master interfaces")
        if not sub.bond.name:
            report.fail(f"spec.{key}.bond.name", "required")


def _check_sub_config(report: _Reporter, cni_type: str, sub: SubConfig) -> None:
    key = SUB_CONFIG_KEYS[cni_type]
    if isinstance(sub, MasterNicConfig):
        _check_master_nic(report, key, cni_type, sub)
    elif isinstance(sub, SriovConfig):
        _check_vlan_id(report, f"spec.{key}.vlanID", sub.vlan_id)
        _check_mtu(report, f"spec.{key}.mtu", sub.mtu)
        low, high = sub.min_tx_rate_mbps, sub.max_tx_rate_mbps
        if low is not None and high and low > high:
            report.fail(f"spec.{key}.minTxRateMbps", f"{low} must not exceed maxTxRateMbps {high}")
        if not sub.resource_name:
            report.fail(f"spec.{key}.resourceName", "required")
    elif isinstance(sub, IBSriovConfig):
        if not sub.resource_name:
            report.fail(f"spec.{key}.resourceName", "required")
    elif isinstance(sub, IpoibConfig):
        if not sub.master:
            report.fail(f"spec.{key}.master", "required")
    else:
        _check_vlan_id(report, f"spec.{key}.vlan", sub.vlan)
        for i, trunk in enumerate(sub.trunk or ()):
            for attr, name in (("min_id", "minID"), ("max_id", "maxID"), ("id", "id")):
                _check_vlan_id(report, f"spec.{key}.trunk[{i}].{name}", getattr(trunk, attr))
            if trunk.min_id is not None and trunk.max_id is not None and trunk.max_id < trunk.min_id:
                report.fail(
                    f"spec.{key}.trunk[{i}].maxID", f"{trunk.max_id} is less than minID {trunk.min_id}"
                )


def _resource_name(sub: SubConfig) -> tuple[str, str]:
    """The field and value that name the RDMA/network resource of a sub-configuration."""
    if isinstance(sub, MasterNicConfig):
        return "rdmaResourceName", sub.rdma_resource_name or ""
    if isinstance(sub, (SriovConfig, IBSriovConfig)):
        return "resourceName", sub.resource_name or ""
    if isinstance(sub, IpoibConfig):
        return "master", sub.master or ""
    raise AssertionError("ovs takes no resource injection")


def _check_injection(
    report: _Reporter, cni_type: str, sub: SubConfig, annotations: Mapping[str, str]
) -> None:
    key = SUB_CONFIG_KEYS[cni_type]
    resource_field, resource = _resource_name(sub)
    for annotation in INJECT_ANNOTATIONS:
        if annotation not in annotations:
            continue
        if annotation == ANNO_RDMA_RESOURCE_INJECT and not resource:
            report.fail(f"spec.{key}.{resource_field}", f"required when annotation {annotation} is set")
        if resource and (sub.ippools is None or sub.ippools.pool_count == 0):
            report.fail(
                f"spec.{key}.ippools",
                f"at least one ipv4 or ipv6 pool is required when annotation {annotation} is set",
            )


def _check_chain_plugin(report: _Reporter, path: str, text: str) -> None:
    """libcni's ConfFromBytes: a JSON object whose ``type`` is a non-empty string."""
    try:
        conf = json.loads(text)
    except ValueError as exc:
        report.fail(path, f"is not valid JSON: {exc}")
    if not isinstance(conf, dict):
        report.fail(path, "must be a JSON object (one CNI plugin configuration)")
    if not isinstance(conf.get("type"), str) or not conf["type"]:
        report.fail(path, "is not a CNI plugin configuration: missing 'type'")


def validate(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None = None, *, nad_owner: str | None = None
) -> None:
    """The validating webhook for a defaulted object (``apply_defaults``); ``old`` on update.

    ``nad_owner`` is the name of the SpiderMultusConfig that owns the NetworkAttachmentDefinition
    this object would generate, when that NAD exists (the caller reads it; this stays pure).
    """
    report = _Reporter(obj)
    for path, message in schema_errors(crd_schema.openapi_schema(KIND), dict(obj))[:1]:
        report.fail(path, message)
    _check_metadata(report, obj.get("metadata"))
    config = SpiderMultusConfig.from_dict(obj)
    old_annotations = dict((old.get("metadata") or {}).get("annotations") or {}) if old is not None else None
    _check_annotations(report, config.meta.annotations, old_annotations, config.meta.name, nad_owner)
    spec = config.spec
    cni_type = spec.cni_type
    if cni_type is None:
        report.fail("spec.cniType", "required")
    if cni_type in (CNI_OVS, CNI_CUSTOM):
        for annotation in INJECT_ANNOTATIONS:
            if annotation in config.meta.annotations:
                report.fail(
                    _anno(annotation), f"RDMA and network resource injection is not supported for {cni_type}"
                )
    sub = spec.sub_config
    if cni_type != CNI_CUSTOM:
        if sub is None:
            report.fail(f"spec.{SUB_CONFIG_KEYS[cni_type]}", f"required when spec.cniType is {cni_type}")
        _check_sub_config(report, cni_type, sub)
    raw_spec = obj.get("spec") or {}
    for other, key in (*SUB_CONFIG_KEYS.items(), (CNI_CUSTOM, "customCNI")):
        if other != cni_type and raw_spec.get(key) is not None:
            report.fail(f"spec.{key}", f"must not be set when spec.cniType is {cni_type}")
    if sub is not None and cni_type != CNI_OVS:
        _check_injection(report, cni_type, sub, config.meta.annotations)
    if cni_type == CNI_CUSTOM and spec.custom_cni:
        try:
            json.loads(spec.custom_cni)
        except ValueError as exc:
            report.fail("spec.customCNI", f"is not valid JSON: {exc}")
    coordinator = raw_spec.get("coordinator")
    if isinstance(coordinator, dict):
        invalid = coordinator_spec.first_invalid_field(coordinator)
        if invalid is not None:
            report.fail(f"spec.coordinator.{invalid[0]}", invalid[1])
    for i, text in enumerate(spec.chain_cni_json_data or ()):
        _check_chain_plugin(report, f"spec.chainCNIJsonData[{i}]", text)
