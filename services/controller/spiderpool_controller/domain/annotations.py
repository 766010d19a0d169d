"""Parsing of the pod and namespace annotations that steer IPAM, in upstream's formats.

Owns the annotation keys and their value shapes (upstream's pkg/constant/k8s.go): the pod's
``ipam.spidernet.io/ippool``, ``ippools``, ``routes`` and ``default-route-nic``, the
namespace's ``default-ipv4-ippool`` / ``default-ipv6-ippool``, and Multus'
``v1.multus-cni.io/default-network`` and ``k8s.v1.cni.cncf.io/networks`` (read to learn
which NetworkAttachmentDefinition a NIC came from, for the pools' ``multusName``, and the
addresses a selection element asks for with ``"ips"``, for the NICs an ADD allocates ahead
of their own ADD).

Upstream decodes these with Go's ``encoding/json``, which matches object keys without
regard to case and ignores unknown keys; manifests written against it must keep working,
so this module does the same. Every malformed value raises ``InvalidAnnotation`` naming
the key and what is wrong; a missing annotation is ``None`` (or empty), never an error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spiderpool_common import bounded_json
from spiderpool_common.errors import InvalidAnnotation

from spiderpool_controller.domain.models import Route

POD_IPPOOL = "ipam.spidernet.io/ippool"
POD_IPPOOLS = "ipam.spidernet.io/ippools"
POD_ROUTES = "ipam.spidernet.io/routes"
POD_DEFAULT_ROUTE_NIC = "ipam.spidernet.io/default-route-nic"
NS_DEFAULT_IPV4_IPPOOL = "ipam.spidernet.io/default-ipv4-ippool"
NS_DEFAULT_IPV6_IPPOOL = "ipam.spidernet.io/default-ipv6-ippool"
MULTUS_DEFAULT_NETWORK = "v1.multus-cni.io/default-network"
MULTUS_NETWORKS = "k8s.v1.cni.cncf.io/networks"

FIRST_NIC = "eth0"  # the pod's primary interface (Multus' default network)
_IFNAME_MAX = 15  # Linux IFNAMSIZ - 1


@dataclass(frozen=True)
class PoolNames:
    """Pool names per family as written by the user (may hold wildcards)."""

    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()

    def for_family(self, version: int) -> tuple[str, ...]:
        return self.ipv4 if version == 4 else self.ipv6

    def is_empty(self) -> bool:
        return not self.ipv4 and not self.ipv6


@dataclass(frozen=True)
class NicPools:
    """One item of the ``ippools`` annotation, with its NIC name resolved."""

    nic: str
    pools: PoolNames
    clean_gateway: bool | None  # None: the item does not say


@dataclass(frozen=True)
class NetworkSelection:
    """One Multus network a pod asks for: the NAD and, when given, the interface name."""

    namespace: str  # empty: not given (the default network's Multus namespace)
    name: str
    interface: str = ""
    ips: tuple[str, ...] = ()  # the element's "ips": addresses asked for (IP or CIDR)

    @property
    def key(self) -> str:
        """``namespace/name``, or the bare name when the namespace is unknown."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


# ---------------------------------------------------------------------------------------
# JSON helpers (Go encoding/json semantics: case-insensitive keys, unknown keys ignored)


def _load(key: str, text: str) -> Any:
    try:
        return bounded_json.loads(text)
    except ValueError as exc:
        raise InvalidAnnotation(f"annotation {key}: invalid JSON: {exc}") from None


def _field(obj: Mapping[str, Any], name: str) -> Any:
    """The value of ``name`` in a JSON object, matching the key like Go does (any case)."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for k, v in obj.items():
        if k.lower() == lowered:
            return v
    return None


def _string_list(key: str, where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidAnnotation(f"annotation {key}: {where} must be a list of pool names, got {value!r}")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise InvalidAnnotation(f"annotation {key}: {where} holds {item!r}, not a pool name")
    return tuple(item.strip() for item in value)


def _object(key: str, where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidAnnotation(f"annotation {key}: {where} must be a JSON object, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------
# pod IPAM annotations


def parse_ippool(annotations: Mapping[str, str]) -> PoolNames | None:
    """``ipam.spidernet.io/ippool``: ``{"ipv4": [...], "ipv6": [...]}`` for the NIC being added."""
    text = annotations.get(POD_IPPOOL)
    if text is None:
        return None
    obj = _object(POD_IPPOOL, "the value", _load(POD_IPPOOL, text))
    return PoolNames(
        _string_list(POD_IPPOOL, "ipv4", _field(obj, "ipv4")),
        _string_list(POD_IPPOOL, "ipv6", _field(obj, "ipv6")),
    )


def indexed_nic_name(index: int) -> str:
    """The NIC of the ``index``-th unnamed ``ippools`` item: eth0, then Multus' net1, net2..."""
    return FIRST_NIC if index == 0 else f"net{index}"


def parse_ippools(annotations: Mapping[str, str]) -> tuple[NicPools, ...] | None:
    """``ipam.spidernet.io/ippools``: per-NIC pools, ``[{"interface","ipv4","ipv6","cleangateway"}]``.

    ``interface`` is given on every item or on none; without names, item 0 is ``eth0``
    and item i is ``net{i}`` (the names Multus gives the pod's extra interfaces).
    """
    text = annotations.get(POD_IPPOOLS)
    if text is None:
        return None
    raw = _load(POD_IPPOOLS, text)
    if not isinstance(raw, list):
        raise InvalidAnnotation(f"annotation {POD_IPPOOLS}: the value must be a JSON list, got {raw!r}")
    if not raw:
        raise InvalidAnnotation(f"annotation {POD_IPPOOLS}: the list requires at least one item")
    items = [_object(POD_IPPOOLS, f"item {i}", item) for i, item in enumerate(raw)]
    interfaces: list[str] = []
    for i, item in enumerate(items):
        nic = _field(item, "interface")
        if nic is not None and not isinstance(nic, str):
            raise InvalidAnnotation(f"annotation {POD_IPPOOLS}: item {i} interface must be a string")
        interfaces.append((nic or "").strip())
    named = [bool(n) for n in interfaces]
    if any(named) and not all(named):
        raise InvalidAnnotation(f"annotation {POD_IPPOOLS}: interface must be set on all items or on none")
    out: list[NicPools] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        nic = interfaces[i] or indexed_nic_name(i)
        if nic in seen:
            raise InvalidAnnotation(f"annotation {POD_IPPOOLS}: duplicate interface {nic}")
        seen.add(nic)
        clean = _field(item, "cleangateway")
        if clean is not None and not isinstance(clean, bool):
            raise InvalidAnnotation(
                f"annotation {POD_IPPOOLS}: item {i} cleangateway must be true or false, got {clean!r}"
            )
        pools = PoolNames(
            _string_list(POD_IPPOOLS, f"item {i} ipv4", _field(item, "ipv4")),
            _string_list(POD_IPPOOLS, f"item {i} ipv6", _field(item, "ipv6")),
        )
        out.append(NicPools(nic, pools, clean))
    return tuple(out)


def parse_routes(annotations: Mapping[str, str]) -> tuple[Route, ...]:
    """``ipam.spidernet.io/routes``: ``[{"dst": "10.0.0.0/16", "gw": "192.168.1.1"}]``.

    Each route must be a network and a gateway address of one family; which NIC a route
    belongs to (the one whose subnet holds ``gw``) is decided after allocation.
    """
    text = annotations.get(POD_ROUTES)
    if text is None:
        return ()
    raw = _load(POD_ROUTES, text)
    if not isinstance(raw, list):
        raise InvalidAnnotation(f"annotation {POD_ROUTES}: the value must be a JSON list, got {raw!r}")
    routes: list[Route] = []
    for i, value in enumerate(raw):
        item = _object(POD_ROUTES, f"item {i}", value)
        dst, gw = _field(item, "dst"), _field(item, "gw")
        if not isinstance(dst, str) or not isinstance(gw, str):
            raise InvalidAnnotation(f"annotation {POD_ROUTES}: item {i} needs string dst and gw")
        try:
            net = ipaddress.ip_network(dst.strip(), strict=False)
        except ValueError:
            raise InvalidAnnotation(f"annotation {POD_ROUTES}: item {i} dst {dst!r} is not a CIDR") from None
        try:
            addr = ipaddress.ip_address(gw.strip())
        except ValueError:
            raise InvalidAnnotation(
                f"annotation {POD_ROUTES}: item {i} gw {gw!r} is not an IP address"
            ) from None
        if net.version != addr.version:
            raise InvalidAnnotation(
                f"annotation {POD_ROUTES}: item {i} mixes IPv{net.version} dst {dst} "
                f"with IPv{addr.version} gw {gw}"
            )
        routes.append(Route(str(net), str(addr)))
    return tuple(routes)


def parse_default_route_nic(annotations: Mapping[str, str]) -> str | None:
    """``ipam.spidernet.io/default-route-nic``: the NIC that carries the pod's default route."""
    text = annotations.get(POD_DEFAULT_ROUTE_NIC)
    if text is None:
        return None
    nic = text.strip()
    if not _valid_ifname(nic):
        raise InvalidAnnotation(f"annotation {POD_DEFAULT_ROUTE_NIC}: {text!r} is not an interface name")
    return nic


def _valid_ifname(name: str) -> bool:
    return (
        0 < len(name) <= _IFNAME_MAX
        and name not in (".", "..")
        and not any(c.isspace() or c in "/:" for c in name)
    )


# ---------------------------------------------------------------------------------------
# namespace defaults


def parse_namespace_default_pools(annotations: Mapping[str, str]) -> PoolNames:
    """The namespace's ``default-ipv4-ippool`` / ``default-ipv6-ippool`` JSON arrays."""
    found: list[tuple[str, ...]] = []
    for key in (NS_DEFAULT_IPV4_IPPOOL, NS_DEFAULT_IPV6_IPPOOL):
        text = annotations.get(key)
        found.append(() if text is None else _string_list(key, "the value", _load(key, text)))
    return PoolNames(found[0], found[1])


# ---------------------------------------------------------------------------------------
# Multus network selection


def _parse_network_text(key: str, item: str, default_namespace: str) -> NetworkSelection:
    """Multus' text form ``[namespace/]name[@interface]``."""
    text = item.strip()
    name_part, _, interface = text.partition("@")
    if "@" in interface:
        raise InvalidAnnotation(f"annotation {key}: {item!r} has more than one '@'")
    namespace, sep, name = name_part.rpartition("/")
    if sep and ("/" in namespace or not namespace):
        raise InvalidAnnotation(f"annotation {key}: {item!r} is not [namespace/]name[@interface]")
    if not name:
        raise InvalidAnnotation(f"annotation {key}: {item!r} names no network")
    if "@" in text and not interface:
        raise InvalidAnnotation(f"annotation {key}: {item!r} has an empty interface after '@'")
    return NetworkSelection(namespace if sep else default_namespace, name, interface)


def _parse_network_json(key: str, index: int, value: Any, default_namespace: str) -> NetworkSelection:
    obj = _object(key, f"item {index}", value)
    name, namespace, interface = _field(obj, "name"), _field(obj, "namespace"), _field(obj, "interface")
    if not isinstance(name, str) or not name.strip():
        raise InvalidAnnotation(f"annotation {key}: item {index} needs a name")
    for label, v in (("namespace", namespace), ("interface", interface)):
        if v is not None and not isinstance(v, str):
            raise InvalidAnnotation(f"annotation {key}: item {index} {label} must be a string")
    return NetworkSelection(
        (namespace or "").strip() or default_namespace,
        name.strip(),
        (interface or "").strip(),
        _selection_ips(key, index, _field(obj, "ips")),
    )


def _selection_ips(key: str, index: int, value: Any) -> tuple[str, ...]:
    """A selection element's ``"ips"``: a list of addresses, each an IP or a CIDR."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidAnnotation(f"annotation {key}: item {index} ips must be a list of strings")
    for text in value:
        try:
            ipaddress.ip_interface(text.strip())
        except ValueError:
            raise InvalidAnnotation(
                f"annotation {key}: item {index} ips: {text!r} is not an IP address or CIDR"
            ) from None
    return tuple(v.strip() for v in value)


def parse_network_selections(key: str, text: str, default_namespace: str) -> tuple[NetworkSelection, ...]:
    """A Multus network list: a JSON list of objects, or text ``ns/a@if1, b``."""
    stripped = text.strip()
    if not stripped:
        return ()
    if stripped.startswith("["):
        raw = _load(key, stripped)
        if not isinstance(raw, list):  # unreachable for text starting with '[', kept for typing
            raise InvalidAnnotation(f"annotation {key}: the value must be a JSON list")
        return tuple(_parse_network_json(key, i, v, default_namespace) for i, v in enumerate(raw))
    return tuple(_parse_network_text(key, part, default_namespace) for part in stripped.split(","))


def parse_multus_networks(annotations: Mapping[str, str], pod_namespace: str) -> tuple[NetworkSelection, ...]:
    """``k8s.v1.cni.cncf.io/networks``; a network without namespace is in the pod's namespace."""
    text = annotations.get(MULTUS_NETWORKS)
    return () if text is None else parse_network_selections(MULTUS_NETWORKS, text, pod_namespace)


def parse_multus_default_network(annotations: Mapping[str, str]) -> NetworkSelection | None:
    """``v1.multus-cni.io/default-network``: the NAD of eth0 (a bare name lives in Multus' namespace)."""
    text = annotations.get(MULTUS_DEFAULT_NETWORK)
    if text is None:
        return None
    found = parse_network_selections(MULTUS_DEFAULT_NETWORK, text, "")
    if len(found) != 1:
        raise InvalidAnnotation(f"annotation {MULTUS_DEFAULT_NETWORK}: expected exactly one network")
    return found[0]


def multus_selection_for_nic(
    annotations: Mapping[str, str], pod_namespace: str, nic: str
) -> NetworkSelection | None:
    """The Multus selection element that made ``nic``; ``None`` when unknown.

    ``eth0`` comes from the default-network annotation; any other NIC from the entry of the
    networks annotation with that ``interface``, or, without one, Multus' default name
    ``net<index+1>``.
    """
    if nic == FIRST_NIC:
        return parse_multus_default_network(annotations)
    for index, selection in enumerate(parse_multus_networks(annotations, pod_namespace)):
        if (selection.interface or f"net{index + 1}") == nic:
            return selection
    return None


def multus_network_for_nic(annotations: Mapping[str, str], pod_namespace: str, nic: str) -> str:
    """The NAD (``ns/name``, or a bare name) the pod attached to ``nic``; ``""`` when unknown."""
    selection = multus_selection_for_nic(annotations, pod_namespace, nic)
    return selection.key if selection is not None else ""


def multus_name_matches(allowed: list[str] | tuple[str, ...], network: str) -> bool:
    """Whether a pool's ``multusName`` list admits the NAD ``network``.

    ``ns/name`` entries must equal it; a bare ``name`` entry matches the NAD of that name in
    any namespace (upstream reads it as the agent's namespace, which the controller does not
    know). A ``network`` whose namespace is unknown matches by name.
    """
    if not network:
        return False
    net_ns, _, net_name = network.rpartition("/")
    for entry in allowed:
        ns, _, name = entry.strip().rpartition("/")
        if name != net_name:
            continue
        if not ns or not net_ns or ns == net_ns:
            return True
    return False
