"""Which Multus network (NetworkAttachmentDefinition) an interface of a pod came from.

Owns the agent's reading of Multus' pod annotations (reference cni-and-peers.md 4.1, 4.3;
upstream Spiderpool's multusName filter): the answer is what a pool's ``multusName``
affinity is compared with, sent to the controller as the request's ``multus_name``.

- ``eth0``, the pod's first interface, comes from the cluster (default) network: the
  pod's ``v1.multus-cni.io/default-network`` annotation, else the agent's cluster network
  setting (upstream ``MULTUS_CLUSTER_NETWORK``, the ConfigMap's ``clusterNetwork``). A
  name without a namespace stays bare there: Multus looks such a network up in its own
  namespace, which the agent does not know, and the controller then matches it by name.
- Any other interface comes from ``k8s.v1.cni.cncf.io/networks``: the entry whose
  interface is that name, an entry without one being named by its position the way
  Multus names delegates (entry ``i`` is ``net{i+1}``). The answer is ``namespace/name``,
  the pod's namespace when the entry has none. No matching entry: ``""`` (unknown).

Both annotations take Multus' two forms: a comma-separated text list of
``[namespace/]name[@interface]`` (each part a DNS-1123 label, as Multus checks), or a JSON
list of selection elements (``name``, ``namespace``, ``interface``; Multus also reads the
deprecated ``interfaceRequest``). Multus tells them apart the same way: a value holding
``[``, ``{`` or ``"`` is JSON. A malformed value raises ``InvalidAnnotation`` (code 105)
naming the annotation and what is wrong. Pure logic: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spiderpool_common import bounded_json
from spiderpool_common.errors import InvalidAnnotation

DEFAULT_NETWORK = "v1.multus-cni.io/default-network"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
FIRST_NIC = "eth0"
CLUSTER_NETWORK_SETTING = "cluster_network"

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # Multus' check of each part
_JSON_MARKS = ("[", "{", '"')


@dataclass(frozen=True)
class NetworkRef:
    """One network a pod asks for: its NAD and, when given, the interface name."""

    namespace: str  # "" when not given and no default applies
    name: str
    interface: str = ""

    @property
    def key(self) -> str:
        """``namespace/name``, or the bare name when the namespace is unknown."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def _text_item(source: str, item: str, default_namespace: str) -> NetworkRef:
    """Multus' ``[namespace/]name[@interface]``, each part a DNS-1123 label."""
    slash = item.split("/")
    if len(slash) > 2:
        raise InvalidAnnotation(f"annotation {source}: {item!r} has more than one '/'")
    namespace, rest = (slash[0].strip(), slash[1]) if len(slash) == 2 else ("", slash[0])
    at = rest.split("@")
    if len(at) > 2:
        raise InvalidAnnotation(f"annotation {source}: {item!r} has more than one '@'")
    name = at[0].strip()
    interface = at[1].strip() if len(at) == 2 else ""
    if not name:
        raise InvalidAnnotation(f"annotation {source}: {item!r} names no network")
    for part in (namespace, name, interface):
        if part and not _LABEL.match(part):
            raise InvalidAnnotation(
                f"annotation {source}: {part!r} in {item!r} is not a DNS-1123 label "
                "(lower case alphanumerics and '-', alphanumeric at both ends)"
            )
    if len(slash) == 2 and not namespace:
        raise InvalidAnnotation(f"annotation {source}: {item!r} has an empty namespace before '/'")
    if len(at) == 2 and not interface:
        raise InvalidAnnotation(f"annotation {source}: {item!r} has an empty interface after '@'")
    return NetworkRef(namespace or default_namespace, name, interface)


def _string_field(source: str, index: int, obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidAnnotation(f"annotation {source}: item {index} {key} must be a string, got {value!r}")
    return value.strip()


def _json_items(source: str, text: str, default_namespace: str) -> tuple[NetworkRef, ...]:
    try:
        raw = bounded_json.loads(text)
    except ValueError as exc:
        raise InvalidAnnotation(f"annotation {source}: invalid JSON: {exc}") from None
    if not isinstance(raw, list):
        raise InvalidAnnotation(f"annotation {source}: the JSON value must be a list of networks")
    out: list[NetworkRef] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidAnnotation(f"annotation {source}: item {index} must be an object, got {item!r}")
        name = _string_field(source, index, item, "name")
        if not name:
            raise InvalidAnnotation(f"annotation {source}: item {index} needs a name")
        namespace = _string_field(source, index, item, "namespace")
        interface = _string_field(source, index, item, "interface") or _string_field(
            source, index, item, "interfaceRequest"
        )
        out.append(NetworkRef(namespace or default_namespace, name, interface))
    return tuple(out)


def parse_networks(source: str, text: str, default_namespace: str) -> tuple[NetworkRef, ...]:
    """A Multus network list in either form; ``source`` names it in errors."""
    stripped = text.strip()
    if not stripped:
        return ()
    if any(mark in stripped for mark in _JSON_MARKS):
        return _json_items(source, stripped, default_namespace)
    return tuple(_text_item(source, item.strip(), default_namespace) for item in stripped.split(","))


def parse_one_network(source: str, text: str) -> NetworkRef:
    """A value naming exactly one network (the default-network annotation, the setting)."""
    found = parse_networks(source, text, "")
    if len(found) != 1:
        raise InvalidAnnotation(f"annotation {source}: expected exactly one network, got {len(found)}")
    return found[0]


def network_for_interface(
    annotations: Mapping[str, str], pod_namespace: str, ifname: str, cluster_network: str = ""
) -> str:
    """The NAD (``namespace/name``, or a bare name for the cluster network) of ``ifname``."""
    if ifname == FIRST_NIC:
        text = annotations.get(DEFAULT_NETWORK, "")
        if text.strip():
            return parse_one_network(DEFAULT_NETWORK, text).key
        if cluster_network.strip():  # validated at start (``cluster_network_problem``)
            return parse_one_network(CLUSTER_NETWORK_SETTING, cluster_network).key
        return ""
    networks = annotations.get(NETWORKS)
    if networks is None:
        return ""
    for index, ref in enumerate(parse_networks(NETWORKS, networks, pod_namespace)):
        if (ref.interface or f"net{index + 1}") == ifname:
            return ref.key
    return ""


def cluster_network_problem(value: str) -> str:
    """Why ``value`` is not a usable cluster network setting, or ""."""
    if not value.strip():
        return ""
    try:
        ref = parse_one_network(CLUSTER_NETWORK_SETTING, value)
    except InvalidAnnotation as exc:
        return str(exc).replace(f"annotation {CLUSTER_NETWORK_SETTING}: ", "")
    if ref.interface:
        return f"{value!r} names an interface; give [namespace/]name"
    return ""
