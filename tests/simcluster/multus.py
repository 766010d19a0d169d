"""Multus' part of the kubelet stand-in: which delegates a pod gets, with which CNI_ARGS, and what it reports.

Owns the pure rules (reference cni-and-peers.md 4.1-4.3; multus-cni `pkg/types/conf.go`, `pkg/k8sclient`),
so the kubelet stand-in only wires them to the API and the CNI runtime:

- The pod's networks: `k8s.v1.cni.cncf.io/networks` in either of Multus' forms, a comma-separated text list
  of `[namespace/]name[@interface]` or a JSON list of selection elements (`name`, `namespace`, `interface`,
  `ips`, `mac`, `cni-args`, `default-route`); a value holding `[`, `{` or `"` is JSON, as Multus decides.
  The pod's namespace is the default namespace of an entry. The cluster (default) network is replaced by the
  pod's `v1.multus-cni.io/default-network` when it names one.
- Interface names: the cluster network is `eth0`; entry `i` of the list is `net{i+1}` unless it names its
  `interface` (Multus numbers delegates by position, so an entry with its own name still uses up a number).
- CNI_ARGS for every delegate, in Multus' order: `IgnoreUnknown=true`, `K8S_POD_NAMESPACE`, `K8S_POD_NAME`,
  `K8S_POD_INFRA_CONTAINER_ID` (the sandbox ID), `K8S_POD_UID`.
- Per-attachment runtimeConfig (CNI capability args) from the selection element: `ips` and `mac`; the
  element's `cni-args` go into the delegate's `args.cni` (CONVENTIONS.md "args in network config").
- A NetworkAttachmentDefinition's `spec.config` is a conflist or a single plugin config (JSON in a string).
- The `k8s.v1.cni.cncf.io/network-status` annotation: one entry per attachment in order, `name` (the cluster
  network's name, `namespace/name` for a NAD), `interface`, `ips` without prefix length, `mac`, `default`
  (true for the interface carrying the pod IP: the cluster network's), `dns`, and `gateway` when the result
  has one.

A malformed annotation or NAD raises `MultusError` with the message Multus would log; the kubelet reports it
as a sandbox creation failure and retries, as the real one does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .sandbox import Attachment

NETWORKS = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NETWORK = "v1.multus-cni.io/default-network"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
NAD_GROUP_VERSION = "k8s.cni.cncf.io/v1"
NAD_PLURAL = "network-attachment-definitions"
FIRST_IFNAME = "eth0"

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_JSON_MARKS = ("[", "{", '"')


class MultusError(ValueError):
    """The pod's network selection or a NetworkAttachmentDefinition cannot be used."""


@dataclass(frozen=True)
class Selection:
    """One network a pod asks for (a selection element)."""

    namespace: str
    name: str
    interface: str = ""
    ips: tuple[str, ...] = ()
    mac: str = ""
    cni_args: Mapping[str, Any] = field(default_factory=dict)
    default_route: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def capability_args(self) -> dict[str, Any]:
        """The runtimeConfig Multus builds from the element (only what the plugins declare reaches them)."""
        out: dict[str, Any] = {}
        if self.ips:
            out["ips"] = list(self.ips)
        if self.mac:
            out["mac"] = self.mac
        return out

    def config_args(self) -> dict[str, Any]:
        return {"cni": dict(self.cni_args)} if self.cni_args else {}


def _text_item(item: str, pod_namespace: str) -> Selection:
    """`[namespace/]name[@interface]`, each part a DNS-1123 label (Multus' check)."""
    namespace, slash, rest = item.partition("/")
    if not slash:
        namespace, rest = "", item
    name, at, interface = rest.partition("@")
    if "/" in rest or "@" in interface:
        raise MultusError(f"{NETWORKS}: {item!r} has more than one '/' or '@'")
    if not name or (slash and not namespace) or (at and not interface):
        raise MultusError(f"{NETWORKS}: {item!r} has an empty name, namespace or interface")
    for part in (namespace, name, interface):
        if part and not _LABEL.match(part):
            raise MultusError(f"{NETWORKS}: {part!r} in {item!r} is not a DNS-1123 label")
    return Selection(namespace or pod_namespace, name, interface)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MultusError(f"{NETWORKS}: {what} must be a list of strings, got {value!r}")
    return tuple(value)


def _json_item(index: int, item: Any, pod_namespace: str) -> Selection:
    if not isinstance(item, dict):
        raise MultusError(f"{NETWORKS}: item {index} must be an object, got {item!r}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise MultusError(f"{NETWORKS}: item {index} needs a name")
    for key in ("namespace", "interface", "mac"):
        if key in item and not isinstance(item[key], str):
            raise MultusError(f"{NETWORKS}: item {index} {key} must be a string")
    cni_args = item.get("cni-args") or {}
    if not isinstance(cni_args, dict):
        raise MultusError(f"{NETWORKS}: item {index} cni-args must be an object")
    return Selection(
        namespace=item.get("namespace") or pod_namespace,
        name=name,
        interface=item.get("interface") or item.get("interfaceRequest") or "",
        ips=_strings(item.get("ips"), f"item {index} ips"),
        mac=item.get("mac") or "",
        cni_args=cni_args,
        default_route=_strings(item.get("default-route"), f"item {index} default-route"),
    )


def parse_networks(text: str, pod_namespace: str) -> list[Selection]:
    """The selection elements of a `k8s.v1.cni.cncf.io/networks` value (either form)."""
    stripped = text.strip()
    if not stripped:
        return []
    if any(mark in stripped for mark in _JSON_MARKS):
        try:
            raw = json.loads(stripped)
        except ValueError as exc:
            raise MultusError(f"{NETWORKS}: invalid JSON: {exc}") from None
        if not isinstance(raw, list):
            raise MultusError(f"{NETWORKS}: the JSON value must be a list")
        return [_json_item(i, item, pod_namespace) for i, item in enumerate(raw)]
    return [_text_item(item.strip(), pod_namespace) for item in stripped.split(",")]


def interface_names(selections: Sequence[Selection]) -> list[str]:
    """Each selection's interface: its own, else `net{position}` (the cluster network is eth0)."""
    names = [s.interface or f"net{i + 1}" for i, s in enumerate(selections)]
    taken = [FIRST_IFNAME, *names]
    duplicates = sorted({n for n in taken if taken.count(n) > 1})
    if duplicates:
        raise MultusError(f"{NETWORKS}: interface names used twice: {', '.join(duplicates)}")
    return names


def default_network_override(annotations: Mapping[str, str], pod_namespace: str) -> Selection | None:
    """The NAD named by `v1.multus-cni.io/default-network`, when the pod names one."""
    text = annotations.get(DEFAULT_NETWORK, "").strip()
    if not text:
        return None
    found = parse_networks(text, pod_namespace)
    if len(found) != 1:
        raise MultusError(f"{DEFAULT_NETWORK}: expected exactly one network, got {len(found)}")
    return found[0]


def cni_args(namespace: str, name: str, sandbox_id: str, uid: str) -> tuple[tuple[str, str], ...]:
    """CNI_ARGS as Multus passes them to every delegate, in its order."""
    return (
        ("IgnoreUnknown", "true"),
        ("K8S_POD_NAMESPACE", namespace),
        ("K8S_POD_NAME", name),
        ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id),
        ("K8S_POD_UID", uid),
    )


def nad_path(namespace: str, name: str) -> str:
    return f"/apis/{NAD_GROUP_VERSION}/namespaces/{namespace}/{NAD_PLURAL}/{name}"


def nad_config(nad: Mapping[str, Any]) -> dict[str, Any]:
    """The CNI configuration (conflist or single plugin) of a NetworkAttachmentDefinition."""
    meta = nad.get("metadata") or {}
    where = f"NetworkAttachmentDefinition {meta.get('namespace', '')}/{meta.get('name', '')}"
    text = (nad.get("spec") or {}).get("config") or ""
    if not isinstance(text, str) or not text.strip():
        raise MultusError(f"{where}: spec.config is empty (configuration files on disk are not supported)")
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise MultusError(f"{where}: spec.config is not JSON: {exc}") from None
    if not isinstance(config, dict) or not (config.get("plugins") or config.get("type")):
        raise MultusError(f"{where}: spec.config is neither a conflist nor a plugin configuration")
    if "name" not in config:
        config["name"] = meta.get("name", "")
    return config


@dataclass(frozen=True)
class AttachmentStatus:
    """One attachment's entry in the network-status annotation."""

    network: str
    interface: str
    result: Mapping[str, Any]
    default: bool

    def entry(self) -> dict[str, Any]:
        ips, gateways = [], []
        for ip in self.result.get("ips") or []:
            address = str(ip.get("address", ""))
            if address:
                ips.append(address.split("/", 1)[0])
            if ip.get("gateway"):
                gateways.append(str(ip["gateway"]))
        macs = [
            str(i.get("mac", ""))
            for i in self.result.get("interfaces") or []
            if i.get("name") == self.interface and i.get("sandbox")
        ]
        out: dict[str, Any] = {"name": self.network, "interface": self.interface, "ips": ips}
        if macs:
            out["mac"] = macs[0]
        if self.default:
            out["default"] = True
        out["dns"] = dict(self.result.get("dns") or {})
        if gateways:
            out["gateway"] = gateways
        return out


def network_status(attachments: Sequence[AttachmentStatus]) -> str:
    """The `k8s.v1.cni.cncf.io/network-status` value (JSON list, attachment order)."""
    return json.dumps([a.entry() for a in attachments], indent=1)


def requested_networks(pod: Mapping[str, Any]) -> tuple[Selection | None, list[Selection]]:
    """The pod's default-network override (or None) and its extra networks, in order."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    namespace = str(meta.get("namespace", "default"))
    return default_network_override(annotations, namespace), parse_networks(
        annotations.get(NETWORKS, ""), namespace
    )


def plan_attachments(
    pod: Mapping[str, Any], cluster_network: Mapping[str, Any], nads: Mapping[str, Mapping[str, Any]]
) -> list[Attachment]:
    """Every attachment of the pod in order: eth0 from the cluster network (or the pod's default-network
    NAD), then one per selection element; ``nads``: the NADs by ``namespace/name`` (missing: an error)."""
    override, extra = requested_networks(pod)

    def nad(selection: Selection) -> dict[str, Any]:
        found = nads.get(selection.key)
        if found is None:
            raise MultusError(f"cannot find a network-attachment-definition ({selection.key})")
        return nad_config(found)

    if override is not None:
        first = Attachment(override.key, FIRST_IFNAME, nad(override), default=True)
    else:
        first = Attachment(
            str(cluster_network.get("name", "")), FIRST_IFNAME, dict(cluster_network), default=True
        )
    out = [first]
    for selection, ifname in zip(extra, interface_names(extra), strict=True):
        out.append(
            Attachment(
                selection.key,
                ifname,
                nad(selection),
                capability_args=selection.capability_args(),
                config_args=selection.config_args(),
            )
        )
    return out
