"""The SpiderSubnet annotations of a pod (template): which subnets, how many IPs, reclaim.

Owns upstream's four pod annotation keys and their value rules, as upstream's
``GetSubnetAnnoConfig`` and ``mutateAndValidateSubnetAnno`` apply them, so a workload
manifest written for upstream means the same here:

- ``ipam.spidernet.io/subnets``: ``[{"interface": "eth0", "ipv4": ["s4"], "ipv6": ["s6"]}]``,
  one item per NIC; it wins over ``ipam.spidernet.io/subnet``: ``{"interface"?, "ipv4", "ipv6"}``
  for one NIC (``eth0`` when ``interface`` is not given). Only the first name of each
  family is used (upstream: "we just only support one SpiderSubnet object"), an empty name
  is refused, an item must name a subnet of at least one family, and ``subnets`` may name
  an interface or a subnet (per family) only once. Decision: a ``subnets`` item without an
  interface is refused here (upstream takes it and its pods never find their pool).
- ``ipam.spidernet.io/ippool-ip-number``: ``"N"`` is a fixed pool size, ``"+N"`` replicas + N
  (Go ``strconv.Atoi`` after at most one ``+``: digits, no blanks, N >= 0). Absent: flexible
  with the cluster's default (upstream ``clusterSubnetDefaultFlexibleIPNumber``, 1).
- ``ipam.spidernet.io/ippool-reclaim``: Go ``strconv.ParseBool`` spellings; absent: true.

JSON keys are matched without regard to case and unknown keys are ignored, as Go's
``encoding/json`` does (``annotations``' helpers). Every fault is ``InvalidAnnotation``
naming the key; no subnet annotation at all is ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spiderpool_common.errors import InvalidAnnotation

from spiderpool_controller.domain.annotations import FIRST_NIC, _field, _load, _object

POD_SUBNET = "ipam.spidernet.io/subnet"
POD_SUBNETS = "ipam.spidernet.io/subnets"
POD_IPPOOL_IP_NUMBER = "ipam.spidernet.io/ippool-ip-number"
POD_IPPOOL_RECLAIM = "ipam.spidernet.io/ippool-reclaim"

_IP_NUMBER = re.compile(r"\+?[0-9]+")
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


@dataclass(frozen=True)
class SubnetItem:
    """The SpiderSubnets one NIC's auto pools come from ("" when a family has none)."""

    nic: str
    ipv4: str = ""
    ipv6: str = ""

    def for_family(self, version: int) -> str:
        return self.ipv4 if version == 4 else self.ipv6

    @property
    def families(self) -> tuple[int, ...]:
        return tuple(v for v in (4, 6) if self.for_family(v))


@dataclass(frozen=True)
class IPNumber:
    """An auto pool's size: fixed ``count``, or (flexible) the replicas plus ``count``."""

    count: int
    flexible: bool

    def desired(self, replicas: int) -> int:
        return max(replicas, 0) + self.count if self.flexible else self.count

    @property
    def text(self) -> str:
        """The annotation value upstream writes on the pool (``"+1"`` or ``"2"``)."""
        return f"+{self.count}" if self.flexible else str(self.count)


@dataclass(frozen=True)
class SubnetConfig:
    """What a pod template's subnet annotations ask for."""

    items: tuple[SubnetItem, ...]
    ip_number: IPNumber
    ip_number_given: bool  # the annotation was set (a third-party controller must set it)
    reclaim: bool
    source: str  # the annotation the items come from

    def item_for(self, nic: str) -> SubnetItem | None:
        return next((item for item in self.items if item.nic == nic), None)

    def subnet_names(self) -> frozenset[str]:
        return frozenset(name for item in self.items for name in (item.ipv4, item.ipv6) if name)


def has_subnet_annotation(annotations: Mapping[str, str]) -> bool:
    """Whether the subnet rule applies (upstream ``HasSubnetsAnnotation``)."""
    return POD_SUBNETS in annotations or POD_SUBNET in annotations


def parse_ip_number(text: str) -> IPNumber:
    """``"2"`` (fixed) or ``"+1"`` (flexible)."""
    if not _IP_NUMBER.fullmatch(text):
        raise InvalidAnnotation(
            f'annotation {POD_IPPOOL_IP_NUMBER}: {text!r} is neither a fixed number ("2") nor '
            'replicas plus a number ("+1")'
        )
    return IPNumber(int(text.removeprefix("+")), text.startswith("+"))


def parse_reclaim(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidAnnotation(f'annotation {POD_IPPOOL_RECLAIM}: {text!r} is not "true" or "false"')


def _first_name(key: str, where: str, value: Any) -> str:
    """The first subnet name of a family list ("" when the list is absent or empty)."""
    if value is None:
        return ""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidAnnotation(f"annotation {key}: {where} must be a list of SpiderSubnet names")
    if not value:
        return ""
    first = str(value[0]).strip()
    if not first:
        raise InvalidAnnotation(f"annotation {key}: {where} names an empty SpiderSubnet")
    return first


def _item(key: str, where: str, raw: Any, default_nic: str) -> SubnetItem:
    obj = _object(key, where, raw)
    nic = _field(obj, "interface")
    if nic is not None and not isinstance(nic, str):
        raise InvalidAnnotation(f"annotation {key}: {where} interface must be a string")
    nic = (nic or "").strip() or default_nic
    if not nic:
        raise InvalidAnnotation(f"annotation {key}: {where} needs an interface (every item names its NIC)")
    item = SubnetItem(
        nic,
        _first_name(key, f"{where} ipv4", _field(obj, "ipv4")),
        _first_name(key, f"{where} ipv6", _field(obj, "ipv6")),
    )
    if not item.families:
        raise InvalidAnnotation(f"annotation {key}: {where} names no IPv4 and no IPv6 SpiderSubnet")
    return item


def _items(annotations: Mapping[str, str]) -> tuple[str, tuple[SubnetItem, ...]] | None:
    if POD_SUBNETS in annotations:
        raw = _load(POD_SUBNETS, annotations[POD_SUBNETS])
        if not isinstance(raw, list) or not raw:
            raise InvalidAnnotation(f"annotation {POD_SUBNETS}: the value must be a non-empty JSON list")
        items = tuple(_item(POD_SUBNETS, f"item {i}", v, "") for i, v in enumerate(raw))
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.nic in seen:
                raise InvalidAnnotation(
                    f"annotation {POD_SUBNETS}: items {seen[item.nic]} and {i} both name interface {item.nic}"
                )
            seen[item.nic] = i
        for version in (4, 6):
            names = [item.for_family(version) for item in items if item.for_family(version)]
            dup = next((n for n in names if names.count(n) > 1), None)
            if dup is not None:
                raise InvalidAnnotation(
                    f"annotation {POD_SUBNETS}: SpiderSubnet {dup} is named for more than one interface "
                    "(a subnet serves one NIC of a workload)"
                )
        return POD_SUBNETS, items
    if POD_SUBNET in annotations:
        raw = _load(POD_SUBNET, annotations[POD_SUBNET])
        return POD_SUBNET, (_item(POD_SUBNET, "the value", raw, FIRST_NIC),)
    return None


def parse_subnet_config(annotations: Mapping[str, str], default_flexible: int) -> SubnetConfig | None:
    """The pod (template)'s subnet configuration, or ``None`` when it names no subnet."""
    found = _items(annotations)
    if found is None:
        return None
    source, items = found
    text = annotations.get(POD_IPPOOL_IP_NUMBER)
    number = parse_ip_number(text) if text is not None else IPNumber(default_flexible, True)
    reclaim_text = annotations.get(POD_IPPOOL_RECLAIM)
    reclaim = parse_reclaim(reclaim_text) if reclaim_text is not None else True
    return SubnetConfig(items, number, text is not None, reclaim, source)
