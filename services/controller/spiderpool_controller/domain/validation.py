"""Defaulting and validation of user manifests: upstream's mutating and validating webhooks.

Owns the rules a SpiderIPPool, SpiderSubnet or SpiderReservedIP must satisfy before it is
stored (upstream's pkg/*manager/*_webhook.go), as pure functions over manifest dicts so that the
embedded mode (``spiderpoolctl apply``) and the cluster mode's admission webhooks apply the
same rules. ``apply_defaults`` is the mutating webhook (ipVersion, CIDR label, finalizer,
merged ``ips``/``excludeIPs``, the CRD schema's defaults from ``crd_schema``), and
``default_object`` is the same for a manifest given to the embedded mode's apply (which also
drops status and server-set metadata); ``validate_create``, ``validate_update`` and
``validate_delete`` are the validating webhook. The rules that need other objects
(overlapping subnets, pools sharing a subnet, a pool inside the SpiderSubnet of its CIDR) take
those objects as arguments, of the kinds ``peer_kinds`` names: the caller reads them, this
module never does I/O.

Every failure is an ``InvalidObject`` whose message names the object and the field, e.g.
``SpiderIPPool "pool-a": spec.gateway: 10.0.1.1 is not inside spec.subnet 10.0.0.0/24``, so a
user sees what to fix without reading logs. The first failing rule is reported, in the order
upstream checks them (version and subnet before ranges, ranges before gateway and routes).
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from spiderpool_common.errors import Conflict, InvalidObject

from spiderpool_controller.domain import auto_pools, coordinator_spec, crd_schema, models, multus_config
from spiderpool_controller.domain import released_ips as reuse_delay
from spiderpool_controller.domain import stranded as stranded_rule
from spiderpool_controller.domain.ipset import IPSet, parse_ip, parse_range

Obj = dict[str, Any]

LABEL_IPPOOL_CIDR = "ipam.spidernet.io/ippool-cidr"
LABEL_SUBNET_CIDR = "ipam.spidernet.io/subnet-cidr"

# The kinds a user may write through apply; SpiderEndpoint is the agent's record of a pod.
WRITABLE_KINDS = frozenset(
    {
        models.KIND_IPPOOL,
        models.KIND_SUBNET,
        models.KIND_RESERVED_IP,
        models.KIND_COORDINATOR,
        models.KIND_MULTUS_CONFIG,
    }
)
READ_ONLY_KINDS = frozenset({models.KIND_ENDPOINT})
# Kinds that carry an IP-count status; the finalizer goes on these and on the coordinator.
POOL_LIKE_KINDS = frozenset({models.KIND_IPPOOL, models.KIND_SUBNET})
_FINALIZED_KINDS = POOL_LIKE_KINDS | {models.KIND_COORDINATOR}

_TOP_LEVEL_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
# Metadata a user may write, and what the server sets (tolerated so `get -o yaml` re-applies).
_USER_METADATA = frozenset({"name", "generateName", "namespace", "labels", "annotations", "finalizers"})
_SERVER_METADATA = frozenset(
    {
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "ownerReferences",
        "selfLink",
    }
)
# The spec fields each kind accepts are its CRD's (crd_schema, upstream's charts/spiderpool/crds).
_SPEC_FIELDS: dict[str, frozenset[str]] = {
    kind: crd_schema.spec_field_names(kind)
    for kind in (
        models.KIND_IPPOOL,
        models.KIND_SUBNET,
        models.KIND_RESERVED_IP,
        models.KIND_COORDINATOR,
        models.KIND_MULTUS_CONFIG,
    )
}
_SELECTOR_FIELDS = ("podAffinity", "namespaceAffinity", "nodeAffinity")
_NAME_LIST_FIELDS = ("namespaceName", "nodeName", "multusName")
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_SUBDOMAIN_RULE = (
    "must be a lowercase RFC 1123 subdomain: lowercase letters, digits, '-' and '.', "
    "starting and ending with a letter or digit, at most 253 characters"
)


@dataclass(frozen=True)
class ValidationSettings:
    """The installation's switches the rules depend on (upstream's ``spiderpool-conf`` keys).

    ``enable_ipv4``/``enable_ipv6``: the families served (``enableIPv4``/``enableIPv6``);
    ``enable_spider_subnet``: a pool must stay inside the SpiderSubnet of its CIDR
    (``enableSpiderSubnet``, Helm default on); ``validate_deletes``: deleting a pool or subnet
    that still has allocated IPs is refused instead of waiting on the finalizer
    (``enableValidatingResourcesDeletedWebhook``, Helm default off).
    """

    enable_ipv4: bool = True
    enable_ipv6: bool = True
    enable_spider_subnet: bool = True
    validate_deletes: bool = False


class _Reporter:
    """Raises ``InvalidObject`` errors that name the object and the field."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind or "object"
        self.name = name

    def fail(self, field: str, message: str) -> NoReturn:
        where = f"{field}: " if field else ""
        what = f'{self.kind} "{self.name}"' if self.name else self.kind  # never an empty ""
        raise InvalidObject(f"{what}: {where}{message}", details=field)


def _reporter(obj: Obj) -> _Reporter:
    meta = obj.get("metadata")
    name = meta.get("name", "") if isinstance(meta, dict) else ""
    return _Reporter(str(obj.get("kind", "") or ""), str(name))


# ---------------------------------------------------------------------------------------
# helpers shared by defaulting, validation and the resource service


def cidr_label_value(cidr: str) -> str:
    """Upstream's label value for a CIDR: ``10.6.0.0/16`` -> ``10-6-0-0-16``."""
    return cidr.replace(".", "-").replace(":", "-").replace("/", "-")


def _version_of_subnet(subnet: Any) -> int | None:
    if not isinstance(subnet, str):
        return None
    try:
        return ipaddress.ip_network(subnet.strip(), strict=False).version
    except ValueError:
        return None


def _version_of_range(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_range(text)[0]
    except ValueError:
        return None


def _normalised_ranges(ranges: Any, version: int | None) -> list[str] | None:
    """Sorted, merged ranges, or None when some entry does not parse (validation reports it)."""
    if version not in (4, 6) or not isinstance(ranges, list) or not ranges:
        return None
    if not all(isinstance(r, str) for r in ranges):
        return None
    try:
        return IPSet.parse(ranges, version).to_ranges()
    except ValueError:
        return None


def spec_version(obj: Obj) -> int | None:
    """The object's family: ``spec.ipVersion``, else derived from the subnet or the first IP."""
    spec = obj.get("spec") or {}
    version = spec.get("ipVersion")
    if version in (4, 6) and not isinstance(version, bool):
        return int(version)
    if obj.get("kind") == models.KIND_RESERVED_IP:
        ips = spec.get("ips") or []
        return _version_of_range(ips[0]) if isinstance(ips, list) and ips else None
    return _version_of_subnet(spec.get("subnet"))


def effective_ips(obj: Obj) -> IPSet:
    """``spec.ips`` minus ``spec.excludeIPs`` of a stored (valid) pool, subnet or reserved IP."""
    version = spec_version(obj)
    if version is None:
        raise ValueError(f"{obj.get('kind')} {_reporter(obj).name!r} has no IP version")
    spec = obj.get("spec") or {}
    ips = IPSet.parse(spec.get("ips") or [], version)
    return ips - IPSet.parse(spec.get("excludeIPs") or [], version)


def reserved_ips(reserved: Iterable[Obj], version: int) -> IPSet:
    """The union of the IPs of every SpiderReservedIP of ``version``."""
    out = IPSet.empty(version)
    for obj in reserved:
        if spec_version(obj) == version:
            try:
                out = out | effective_ips(obj)
            except ValueError:
                continue
    return out


def total_ip_count(obj: Obj, reserved: Iterable[Obj] = ()) -> int:
    """``status.totalIPCount``: a pool's IPs minus excluded and reserved; a subnet's IPs minus excluded."""
    ips = effective_ips(obj)
    if obj.get("kind") == models.KIND_IPPOOL:
        ips = ips - reserved_ips(reserved, ips.version)
    return ips.count()


def has_allocations(obj: Obj) -> bool:
    """Whether a pool or subnet still hands out IPs (its finalizer must then stay)."""
    status = obj.get("status") or {}
    if obj.get("kind") == models.KIND_IPPOOL:
        return bool(models.IPPool.from_dict(obj).allocated) or int(status.get("allocatedIPCount") or 0) > 0
    if obj.get("kind") == models.KIND_SUBNET:
        return int(status.get("allocatedIPCount") or 0) > 0 or bool(status.get("controlledIPPools"))
    return False


# ---------------------------------------------------------------------------------------
# kind and defaulting (the mutating webhook)


def manifest_kind(obj: Any) -> str:
    """Check ``apiVersion`` and ``kind`` of a manifest a user wants to write; return the kind."""
    if not isinstance(obj, dict):
        raise InvalidObject(f"a manifest must be a mapping, got {type(obj).__name__}")
    report = _reporter(obj)
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        report.fail("kind", "required")
    if obj.get("apiVersion") != models.API_VERSION:
        report.fail("apiVersion", f"must be {models.API_VERSION}, got {obj.get('apiVersion')!r}")
    if kind in READ_ONLY_KINDS:
        report.fail("", f"{kind} is written by the spiderpool agent only and cannot be applied")
    if kind not in WRITABLE_KINDS:
        known = ", ".join(sorted(WRITABLE_KINDS))
        report.fail("kind", f"{kind!r} cannot be applied; supported kinds: {known}")
    return kind


def default_object(obj: Obj) -> Obj:
    """Return a defaulted copy of a manifest given to the embedded mode's apply.

    Drops ``status`` and server-managed metadata (status belongs to the IPAM engine), then
    applies ``apply_defaults``, the same defaulting the mutating webhook applies.
    """
    kind = manifest_kind(obj)
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in _SERVER_METADATA:
            meta.pop(key, None)
    if kind == models.KIND_MULTUS_CONFIG and isinstance(meta, dict) and not meta.get("namespace"):
        meta["namespace"] = "default"  # namespaced: kubectl's default namespace
    return apply_defaults(out)


def apply_defaults(obj: Obj) -> Obj:
    """Return a defaulted copy (upstream mutating webhook + CRD schema defaults).

    Everything the defaults do not touch is kept (status, server-set metadata), so the
    mutating webhook can answer the difference as a patch. An object being deleted is
    returned unchanged: defaulting it would put back the finalizer its owner is removing.
    Values that do not parse are left as written, so validation can name them.
    """
    kind = manifest_kind(obj)
    out = copy.deepcopy(obj)
    meta = out.get("metadata")
    if kind == models.KIND_MULTUS_CONFIG:  # its own webhook's defaults (domain/multus_config)
        return multus_config.apply_defaults(out)
    spec = out.get("spec")
    if not isinstance(meta, dict) or not isinstance(spec, dict):
        return out  # validation reports the missing section
    if meta.get("deletionTimestamp"):
        return out
    out = crd_schema.apply_defaults(kind, out)
    meta, spec = out["metadata"], out["spec"]
    if kind in _FINALIZED_KINDS:
        finalizers = meta.get("finalizers")
        if finalizers is None:
            finalizers = meta["finalizers"] = []
        if isinstance(finalizers, list) and models.FINALIZER not in finalizers:
            finalizers.append(models.FINALIZER)
    if kind == models.KIND_COORDINATOR:
        return coordinator_spec.apply_defaults(out)
    version = spec_version(out)
    if spec.get("ipVersion") is None and version is not None:
        spec["ipVersion"] = version
    for key in ("ips", "excludeIPs"):
        merged = _normalised_ranges(spec.get(key), version)
        if merged is not None:
            spec[key] = merged
    if kind in POOL_LIKE_KINDS:
        subnet = spec.get("subnet")
        if isinstance(subnet, str) and subnet:
            labels = meta.get("labels")
            if labels is None:
                labels = meta["labels"] = {}
            if isinstance(labels, dict):
                label = LABEL_IPPOOL_CIDR if kind == models.KIND_IPPOOL else LABEL_SUBNET_CIDR
                labels[label] = cidr_label_value(subnet.strip())
    return out


# ---------------------------------------------------------------------------------------
# structure: metadata, known fields, types


def _check_string_map(report: _Reporter, field: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        report.fail(field, "must map strings to strings")
    return value


def _check_label_key(report: _Reporter, field: str, key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        report.fail(field, f"{key!r} has an invalid prefix: it {_SUBDOMAIN_RULE}")
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        report.fail(
            field,
            f"{key!r} is not a valid label key: the name part must be 1-63 characters of letters, "
            "digits, '-', '_' and '.', starting and ending with a letter or digit",
        )


def _check_label_value(report: _Reporter, field: str, value: str) -> None:
    if value and (len(value) > 63 or not _QUALIFIED_NAME.fullmatch(value)):
        report.fail(
            field,
            f"{value!r} is not a valid label value: at most 63 characters of letters, digits, "
            "'-', '_' and '.', starting and ending with a letter or digit",
        )


def _check_labels(report: _Reporter, field: str, value: Any) -> None:
    for key, val in _check_string_map(report, field, value).items():
        where = f"{field}[{key}]" if key else f'{field}[""]'  # an empty key still shows
        _check_label_key(report, where, key)
        _check_label_value(report, where, val)


def _check_structure(obj: Obj, kind: str) -> dict[str, Any]:
    """Check top-level fields, metadata and the spec's field names; return the spec."""
    report = _reporter(obj)
    for key in obj:
        if key not in _TOP_LEVEL_FIELDS:
            report.fail(str(key), "unknown field")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        report.fail("metadata", "required")
    for key in meta:
        if key not in _USER_METADATA and key not in _SERVER_METADATA:
            report.fail(f"metadata.{key}", "unknown field")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        report.fail("metadata.name", "required")
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
        report.fail("metadata.name", f"{name!r} {_SUBDOMAIN_RULE}")
    if meta.get("namespace") and kind not in models.NAMESPACED_KINDS:
        report.fail("metadata.namespace", f"{kind} is cluster-scoped; remove the namespace")
    _check_labels(report, "metadata.labels", meta.get("labels"))
    _check_string_map(report, "metadata.annotations", meta.get("annotations"))
    finalizers = meta.get("finalizers")
    if finalizers is not None and (
        not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)
    ):
        report.fail("metadata.finalizers", "must be a list of strings")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        report.fail("spec", "required")
    allowed = _SPEC_FIELDS[kind]
    for key in spec:
        if key not in allowed:
            report.fail(f"spec.{key}", "unknown field")
    for key in ("ips", "excludeIPs", *_NAME_LIST_FIELDS):
        value = spec.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            report.fail(f"spec.{key}", "must be a list of strings")
    for key in ("subnet", "gateway"):
        value = spec.get(key)
        if value is not None and not isinstance(value, str):
            report.fail(f"spec.{key}", f"must be a string, got {value!r}")
    for key in ("default", "disable"):
        value = spec.get(key)
        if value is not None and not isinstance(value, bool):
            report.fail(f"spec.{key}", f"must be true or false, got {value!r}")
    return spec


# ---------------------------------------------------------------------------------------
# the IP rules


def _check_version(report: _Reporter, spec: dict[str, Any], settings: ValidationSettings) -> int:
    version = spec.get("ipVersion")
    if version is None:
        _fail_underivable_version(report, spec)
    if not isinstance(version, int) or isinstance(version, bool) or version not in (4, 6):
        report.fail("spec.ipVersion", f"must be 4 or 6, got {version!r}")
    if version == 4 and not settings.enable_ipv4:
        report.fail("spec.ipVersion", "IPv4 is disabled")
    if version == 6 and not settings.enable_ipv6:
        report.fail("spec.ipVersion", "IPv6 is disabled")
    return int(version)


def _fail_underivable_version(report: _Reporter, spec: dict[str, Any]) -> NoReturn:
    """No spec.ipVersion and defaulting could not derive one: name the field it derives from
    (a pool's or subnet's spec.subnet, a reserved IP's first spec.ips entry), which is the
    one to fix, rather than spec.ipVersion."""
    if report.kind == models.KIND_RESERVED_IP:
        ips = spec.get("ips")
        if isinstance(ips, list) and ips:
            try:
                parse_range(ips[0])
            except ValueError as err:
                report.fail("spec.ips[0]", str(err))
        report.fail("spec.ipVersion", "required (it is derived from spec.ips[0] when valid)")
    subnet = spec.get("subnet")
    if not subnet:
        report.fail("spec.subnet", "required")
    if _version_of_subnet(subnet) is not None:  # not defaulted: the mutating webhook did not run
        report.fail("spec.ipVersion", "required (the mutating webhook derives it from spec.subnet)")
    report.fail("spec.subnet", f"{subnet!r} is not a CIDR (expected e.g. 10.0.0.0/24 or fd00::/64)")


@dataclass(frozen=True)
class _Family:
    """What the range rules of one object check against: its version and (maybe) subnet."""

    report: _Reporter
    version: int
    subnet: IPSet | None = None
    subnet_text: str = ""


def _check_subnet(report: _Reporter, spec: dict[str, Any], version: int) -> str:
    text = spec.get("subnet")
    if not text:
        report.fail("spec.subnet", "required")
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        report.fail("spec.subnet", f"{text!r} is not a CIDR (expected e.g. 10.0.0.0/24 or fd00::/64)")
    if "/" not in text:
        report.fail("spec.subnet", f"{text!r} is not a CIDR: the prefix length is missing")
    if loose.version != version:
        report.fail("spec.ipVersion", f"{version} does not match spec.subnet {text} (IPv{loose.version})")
    if str(loose) != text:
        report.fail("spec.subnet", f"{text} is not in canonical form; use {loose} (the network address)")
    return str(loose)


def _check_ranges(fam: _Family, field: str, ranges: list[str]) -> None:
    for i, text in enumerate(ranges):
        try:
            _, (lo, hi) = parse_range(text, fam.version)
        except ValueError as err:
            fam.report.fail(f"{field}[{i}]", str(err))
        if fam.subnet is not None and not IPSet(fam.version, ((lo, hi),)).issubset(fam.subnet):
            fam.report.fail(f"{field}[{i}]", f"{text} is not inside spec.subnet {fam.subnet_text}")


def _check_gateway(fam: _Family, spec: dict[str, Any]) -> None:
    report, version, subnet, subnet_text = fam.report, fam.version, fam.subnet, fam.subnet_text
    gateway = spec.get("gateway")
    if gateway is None:
        return
    try:
        addr = int(parse_ip(gateway, version))
    except ValueError as err:
        report.fail("spec.gateway", str(err))
    if subnet is not None and addr not in subnet:
        report.fail("spec.gateway", f"{gateway} is not inside spec.subnet {subnet_text}")
    if IPSet.parse(spec.get("excludeIPs") or [], version).contains_int(addr):
        return
    for i, text in enumerate(spec.get("ips") or []):
        if IPSet.parse([text], version).contains_int(addr):
            report.fail(
                "spec.gateway",
                f"{gateway} is inside spec.ips[{i}] {text}; "
                "add it to spec.excludeIPs or remove it from spec.ips",
            )


def _check_routes(fam: _Family, spec: dict[str, Any]) -> None:
    report, version, subnet, subnet_text = fam.report, fam.version, fam.subnet, fam.subnet_text
    routes = spec.get("routes")
    if routes is None:
        return
    if not isinstance(routes, list):
        report.fail("spec.routes", "must be a list of {dst, gw}")
    seen: dict[str, int] = {}
    for i, route in enumerate(routes):
        field = f"spec.routes[{i}]"
        if not isinstance(route, dict):
            report.fail(field, "must be an object with dst and gw")
        for key in route:
            if key not in ("dst", "gw"):
                report.fail(f"{field}.{key}", "unknown field")
        dst, gw = route.get("dst"), route.get("gw")
        if not isinstance(dst, str) or not dst:
            report.fail(f"{field}.dst", "required")
        if not isinstance(gw, str) or not gw:
            report.fail(f"{field}.gw", "required")
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            report.fail(f"{field}.dst", f"{dst!r} is not a CIDR")
        if net.version != version or "/" not in dst:
            report.fail(f"{field}.dst", f"{dst} is not an IPv{version} CIDR")
        if net.prefixlen == 0:
            report.fail(f"{field}.dst", f"{dst} is the default route; use spec.gateway for it")
        if str(net) != dst:
            report.fail(f"{field}.dst", f"{dst} is not in canonical form; use {net} (the network address)")
        if dst in seen:
            report.fail(f"{field}.dst", f"{dst} duplicates spec.routes[{seen[dst]}].dst")
        seen[dst] = i
        try:
            addr = int(parse_ip(gw, version))
        except ValueError as err:
            report.fail(f"{field}.gw", str(err))
        if subnet is not None and addr not in subnet:
            report.fail(f"{field}.gw", f"{gw} is not inside spec.subnet {subnet_text}")


def _check_selector(report: _Reporter, field: str, selector: Any, *, non_empty: bool) -> None:
    if selector is None:
        return
    if not isinstance(selector, dict):
        report.fail(field, "must be a label selector (matchLabels and/or matchExpressions)")
    for key in selector:
        if key not in ("matchLabels", "matchExpressions"):
            report.fail(f"{field}.{key}", "unknown field")
    _check_labels(report, f"{field}.matchLabels", selector.get("matchLabels"))
    exprs = selector.get("matchExpressions")
    if exprs is None:
        exprs = []
    if not isinstance(exprs, list):
        report.fail(f"{field}.matchExpressions", "must be a list")
    for i, expr in enumerate(exprs):
        where = f"{field}.matchExpressions[{i}]"
        if not isinstance(expr, dict):
            report.fail(where, "must be an object with key, operator and values")
        for key in expr:
            if key not in ("key", "operator", "values"):
                report.fail(f"{where}.{key}", "unknown field")
        key = expr.get("key")
        if not isinstance(key, str) or not key:
            report.fail(f"{where}.key", "required")
        _check_label_key(report, f"{where}.key", key)
        operator = expr.get("operator")
        if operator not in _OPERATORS:
            report.fail(f"{where}.operator", f"{operator!r} is not one of {', '.join(_OPERATORS)}")
        values = expr.get("values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            report.fail(f"{where}.values", "must be a list of strings")
        if operator in ("In", "NotIn") and not values:
            report.fail(f"{where}.values", f"must be non-empty when operator is {operator}")
        if operator in ("Exists", "DoesNotExist") and values:
            report.fail(f"{where}.values", f"must be empty when operator is {operator}")
        for j, value in enumerate(values):
            _check_label_value(report, f"{where}.values[{j}]", value)
    if non_empty and not selector.get("matchLabels") and not exprs:
        report.fail(field, "must not be empty when set (an empty podAffinity would match every pod)")


def _check_range_spec(obj: Obj, kind: str, settings: ValidationSettings) -> tuple[_Family, IPSet]:
    """The rules shared by pools and subnets; return the object's family and effective IPs."""
    report = _reporter(obj)
    spec = _check_structure(obj, kind)
    version = _check_version(report, spec, settings)
    subnet_text = _check_subnet(report, spec, version)
    fam = _Family(report, version, IPSet.from_cidr(subnet_text), subnet_text)
    _check_ranges(fam, "spec.ips", spec.get("ips") or [])
    _check_ranges(fam, "spec.excludeIPs", spec.get("excludeIPs") or [])
    _check_gateway(fam, spec)
    _check_routes(fam, spec)
    ips = IPSet.parse(spec.get("ips") or [], version) - IPSet.parse(spec.get("excludeIPs") or [], version)
    return fam, ips


def _check_peers(obj: Obj, kind: str, fam: _Family, ips: IPSet, peers: Sequence[Obj]) -> None:
    """Subnets of one family never overlap (pools: unless identical); pools sharing a subnet share no IP."""
    report, version, subnet_text = fam.report, fam.version, fam.subnet_text
    subnet = IPSet.from_cidr(subnet_text)
    for peer in peers:
        peer_name = str((peer.get("metadata") or {}).get("name", ""))
        if peer_name == report.name or peer.get("kind", kind) != kind:
            continue
        peer_spec = peer.get("spec") or {}
        peer_subnet = str(peer_spec.get("subnet", ""))
        if spec_version(peer) != version:
            continue
        try:
            peer_set = IPSet.from_cidr(peer_subnet)
        except ValueError:
            continue
        if kind == models.KIND_SUBNET and peer_subnet == subnet_text:
            report.fail("spec.subnet", f'{subnet_text} is already the subnet of {kind} "{peer_name}"')
        if peer_subnet != subnet_text:
            if subnet.overlaps(peer_set):
                report.fail(
                    "spec.subnet",
                    f'{subnet_text} overlaps spec.subnet {peer_subnet} of {kind} "{peer_name}"',
                )
            continue
        try:
            shared = ips & effective_ips(peer)
        except ValueError:
            continue
        if shared:
            report.fail(
                "spec.ips",
                f'{", ".join(shared.to_ranges())} also belong to SpiderIPPool "{peer_name}" with the same '
                "subnet; pools sharing a subnet must not share IPs (a pool's IPs are spec.ips minus "
                "spec.excludeIPs)",
            )


def _same_subnet(peers: Sequence[Obj], kind: str, version: int, subnet_text: str) -> list[Obj]:
    """The stored objects of ``kind`` (the other kind: never the object itself) with exactly this subnet."""
    return [
        peer
        for peer in peers
        if peer.get("kind") == kind
        and spec_version(peer) == version
        and (peer.get("spec") or {}).get("subnet") == subnet_text
    ]


def _check_subnet_members(
    kind: str, fam: _Family, ips: IPSet, peers: Sequence[Obj], settings: ValidationSettings, *, updating: bool
) -> None:
    """A pool's IPs lie inside the SpiderSubnet of the same CIDR (upstream's
    pkg/ippoolmanager/ippool_validate.go).

    Upstream's mutating webhook makes that subnet the pool's controller; a subnet created
    later adopts the pools of its CIDR, so it must contain their IPs, and an update of the
    subnet may not drop IPs its pools hold. The pool side follows ``enable_spider_subnet``.
    """
    report = fam.report
    if kind == models.KIND_IPPOOL and settings.enable_spider_subnet:
        for owner in _same_subnet(peers, models.KIND_SUBNET, fam.version, fam.subnet_text):
            try:
                outside = ips - effective_ips(owner)
            except ValueError:
                continue
            if outside:
                owner_name = (owner.get("metadata") or {}).get("name", "")
                report.fail(
                    "spec.ips",
                    f'{", ".join(outside.to_ranges())} are not inside SpiderSubnet "{owner_name}" of the '
                    "same subnet (its spec.ips minus spec.excludeIPs); a pool's IPs are spec.ips minus "
                    "spec.excludeIPs",
                )
    if kind == models.KIND_SUBNET:
        for pool in _same_subnet(peers, models.KIND_IPPOOL, fam.version, fam.subnet_text):
            try:
                outside = effective_ips(pool) - ips
            except ValueError:
                continue
            if outside:
                pool_name = (pool.get("metadata") or {}).get("name", "")
                ranges = ", ".join(outside.to_ranges())
                if updating:
                    message = f'cannot remove {ranges}: SpiderIPPool "{pool_name}" of this subnet holds them'
                else:
                    message = (
                        f'SpiderIPPool "{pool_name}" of this subnet holds {ranges}, which spec.ips minus '
                        "spec.excludeIPs does not contain"
                    )
                report.fail("spec.ips", message)


def _check_reserved_ip(obj: Obj, settings: ValidationSettings) -> int:
    report = _reporter(obj)
    spec = _check_structure(obj, models.KIND_RESERVED_IP)
    if not spec.get("ips"):
        report.fail("spec.ips", "required: a SpiderReservedIP must list at least one IP or range")
    version = _check_version(report, spec, settings)
    _check_ranges(_Family(report, version), "spec.ips", spec["ips"])
    return version


# ---------------------------------------------------------------------------------------
# the validating webhook


def peer_kinds(kind: str) -> tuple[str, ...]:
    """The kinds of stored objects the rules of ``kind`` compare against (the caller lists them)."""
    if kind in POOL_LIKE_KINDS:
        return (models.KIND_IPPOOL, models.KIND_SUBNET)
    return ()


def _validate(obj: Obj, peers: Sequence[Obj], settings: ValidationSettings, *, updating: bool) -> None:
    kind = manifest_kind(obj)
    if kind == models.KIND_RESERVED_IP:
        _check_reserved_ip(obj, settings)
        return
    if kind == models.KIND_COORDINATOR:
        _check_structure(obj, kind)
        coordinator_spec.validate(obj)
        return
    if kind == models.KIND_MULTUS_CONFIG:
        _check_structure(obj, kind)
        multus_config.validate(obj)
        return
    fam, ips = _check_range_spec(obj, kind, settings)
    if kind == models.KIND_IPPOOL:
        spec = obj["spec"]
        report = _reporter(obj)
        for key in _SELECTOR_FIELDS:
            _check_selector(report, f"spec.{key}", spec.get(key), non_empty=key == "podAffinity")
        labels = (obj.get("metadata") or {}).get("labels") or {}
        problem = (
            auto_pools.affinity_problem(spec.get("podAffinity")) if auto_pools.is_auto_pool(labels) else ""
        )
        if problem:
            report.fail("spec.podAffinity", problem)
        _check_pool_annotations(report, obj["metadata"].get("annotations") or {})
    _check_peers(obj, kind, fam, ips, peers)
    _check_subnet_members(kind, fam, ips, peers, settings, updating=updating)


def validate_create(obj: Obj, peers: Sequence[Obj] = (), settings: ValidationSettings | None = None) -> None:
    """Validate a defaulted object about to be created.

    ``peers`` are the stored objects of the kinds ``peer_kinds`` names (others are ignored).
    """
    _validate(obj, peers, settings or ValidationSettings(), updating=False)


def _check_pool_annotations(report: _Reporter, annotations: dict[str, str]) -> None:
    """This project's pool annotations: the reuse delay and the forced range change."""
    delay = annotations.get(reuse_delay.ANNOTATION)
    if delay is not None:
        try:
            reuse_delay.parse_delay(delay)
        except ValueError as err:
            report.fail(f"metadata.annotations[{reuse_delay.ANNOTATION}]", str(err))
    force = annotations.get(stranded_rule.FORCE_ANNOTATION)
    if force is not None and force.lower() not in ("true", "false"):
        report.fail(
            f"metadata.annotations[{stranded_rule.FORCE_ANNOTATION}]", f'{force!r} is not "true" or "false"'
        )


def validate_update(
    old: Obj, new: Obj, peers: Sequence[Obj] = (), settings: ValidationSettings | None = None
) -> None:
    """Validate a change of a stored object: immutable fields, the create rules, IPs in use.

    ``old`` is the stored object with its status (allocations are read from it). A change of
    an object being deleted passes unchecked once it drops our finalizer (that is how its
    deletion completes); while the finalizer stays, a pool or subnet being deleted cannot
    change (upstream: "cannot update a terminating IPPool"), since its IPs are being released.
    """
    kind = manifest_kind(new)
    if kind == models.KIND_MULTUS_CONFIG:  # its immutable annotation, then the create rules
        _check_structure(new, kind)
        multus_config.validate(new, old)
        return
    report = _reporter(new)
    new_meta = new.get("metadata")
    if isinstance(new_meta, dict) and new_meta.get("deletionTimestamp"):
        if models.FINALIZER not in (new_meta.get("finalizers") or []):
            return
        if kind in POOL_LIKE_KINDS:
            raise Conflict(
                f'{kind} "{report.name}" is being deleted: it cannot change until it is gone '
                f"(only the removal of the finalizer {models.FINALIZER} is allowed)"
            )
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if isinstance(new_spec, dict):
        old_v, new_v = old_spec.get("ipVersion"), new_spec.get("ipVersion")
        if old_v is not None and new_v is not None and old_v != new_v:
            report.fail("spec.ipVersion", f"is immutable (stored: {old_v}, requested: {new_v})")
        if kind in POOL_LIKE_KINDS and old_spec.get("subnet") != new_spec.get("subnet"):
            report.fail(
                "spec.subnet",
                f"is immutable (stored: {old_spec.get('subnet')}, requested: {new_spec.get('subnet')}); "
                "create a new object for another subnet",
            )
    _validate(new, peers, settings or ValidationSettings(), updating=True)
    if kind == models.KIND_IPPOOL and not stranded_rule.forced(new.get("metadata") or {}):
        _check_nothing_stranded(report, old, new)


def _check_nothing_stranded(report: _Reporter, old: Obj, new: Obj) -> None:
    """Refuse ranges that would leave allocated addresses outside the pool, naming them all
    (``stranded``; the pool annotation ``ippool-force-range-change: "true"`` lets it pass)."""
    found = stranded_rule.stranded(models.IPPool.from_dict(new), models.IPPool.from_dict(old).allocated)
    if not found:
        return
    if len(found) == 1:  # upstream's words for its one address
        head = f"remove an IP address {found[0].ip} that is being used by {found[0].holder}"
    else:
        head = f"remove {len(found)} IP addresses that are being used: {stranded_rule.describe(found)}"
    report.fail(
        "spec.ips",
        f"{head}; a pool's IPs are spec.ips minus spec.excludeIPs. To change the ranges anyway, "
        f'annotate the pool {stranded_rule.FORCE_ANNOTATION}: "true" (the pods keep their '
        "addresses; spiderpoolctl check lists them)",
    )


def allocated_count(obj: Obj) -> int:
    """How many IPs a pool has handed out (its records), or a subnet has handed to pools."""
    status = obj.get("status") or {}
    if obj.get("kind") == models.KIND_IPPOOL:
        records = models.IPPool.from_dict(obj).allocated
        return max(len(records), int(status.get("allocatedIPCount") or 0))
    return int(status.get("allocatedIPCount") or 0)


def validate_delete(obj: Obj, settings: ValidationSettings | None = None) -> None:
    """Refuse deleting a pool or subnet with allocated IPs when ``validate_deletes`` is on.

    ``obj`` is the stored object with its status. Off (upstream's default), the deletion
    goes ahead and the finalizer keeps the object until the last IP is released.
    """
    settings = settings or ValidationSettings()
    kind = str(obj.get("kind") or "")
    if not settings.validate_deletes or kind not in POOL_LIKE_KINDS:
        return
    count = allocated_count(obj)
    if count > 0:
        noun = "an IPPool" if kind == models.KIND_IPPOOL else "a Subnet"
        raise Conflict(
            f'{kind} "{_reporter(obj).name}": cannot delete {noun} with allocated IPs({count}); '
            "release them first (deleting their pods frees them)"
        )
