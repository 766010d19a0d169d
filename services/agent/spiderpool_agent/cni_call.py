"""CNI call validation: a raw ``CniCall`` (environment + stdin) into a checked invocation.

The shims forward the runtime's CNI environment and stdin untouched, so this module is
where the agent applies the CNI 1.1 specification's input rules (SPEC.md "Parameters",
"Network configuration", "Error" sections) and libcni's ``skel`` conventions:

- required environment variables per verb, absent and empty told apart by ``present``
  (missing or invalid -> code 4, naming every offending variable);
- stdin: empty, not JSON or not a JSON object -> code 6 (libcni's decoder fails the same);
- ``cniVersion`` outside the supported list -> code 1; CHECK needs >= 0.4.0, GC and STATUS
  >= 1.1.0 (code 1, as ``skel`` answers);
- missing keys or wrong types in the network config -> code 7, naming the key;
- ``CNI_ARGS`` ``K=V;K=V``: unknown keys -> code 2 unless ``IgnoreUnknown`` is 1/true;
- the config's ``args.cni`` (CONVENTIONS.md "args in network config", inserted by the
  runtime) carries the pod's metadata where no Kubernetes API can be asked (the embedded
  mode): ``labels`` (the convention's key), ``annotations``, ``namespaceLabels`` and
  ``namespaceAnnotations``, each an object of strings or the convention's array of
  ``{"key", "value"}``; ``owner``, the pod's top controller
  ``{"kind", "name", "uid", "replicas", "exists", "apiVersion"}`` (a StatefulSet member keeps
  its address while ``exists`` and its ordinal is below ``replicas``); ``multusName``, the
  NetworkAttachmentDefinition ``namespace/name`` this interface came from (a pool's
  ``multusName`` affinity). Other keys of ``args.cni`` belong to other plugins and are
  ignored. ADD and CHECK refuse a malformed key (code 7); DEL reads only ``owner``, and
  ignores it when malformed (a release must never fail over metadata).

Requested addresses (ADD only; judged by the controller, ``domain/requested_ips``): the
``ips`` capability's ``runtimeConfig.ips`` (CONVENTIONS.md; Multus fills it from a selection
element's ``"ips"``, podman and nerdctl from ``--ip``) and ``CNI_ARGS`` ``IP=`` (host-local's
and static's convention, comma-separated), each entry an IP or a CIDR. ``args.cni.ips``
(host-local reads it too) is left to the plugins that own it, like every other key of
``args.cni`` this plugin does not name.
A runtime sends ``runtimeConfig`` only with the capabilities the plugin declared and, per
SPEC.md, strips ``capabilities`` from what it passes; libcni leaves it in. So the
declaration is honoured when it is visible: ``runtimeConfig.ips`` is ignored when
``capabilities`` is present without ``"ips": true``, and read otherwise. The sources are
merged; two different addresses of one family are refused (an interface gets one per
family): code 7 for the config, code 4 for ``IP=`` alone.

Decision (documented here because the spec leaves it open): a ``CNI_NETNS`` path that does
not exist on ADD or CHECK answers code 3 ("container unknown or does not exist"). The
runtime then knows the sandbox is gone; DEL never checks the netns (the spec says it may
be gone). The injected ``netns_exists`` answers False for a missing path and raises code 4
itself for a path that is not a network namespace (the agent's ``netns_probe.check``).

The module is pure: no grpc, no filesystem access except through the injected
``netns_exists`` callable, so every rule is a plain-function unit test.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from spiderpool_cni import codes
from spiderpool_common import bounded_json
from spiderpool_common.errors import CniError

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
GC_STATUS_MIN_VERSION = "1.1.0"
CHECK_MIN_VERSION = "0.4.0"  # CHECK arrived in 0.4.0; skel refuses it below (code 1)

DEFAULT_AGENT_SOCKET = "/var/run/spidernet/spiderpool.sock"
VALID_LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARN", "WARNING", "ERROR"})

# SPEC.md "Parameters": CNI_CONTAINERID starts alphanumeric, then alnum, '_', '.', '-'.
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# SPEC.md "Network configuration": the same alphabet for the network name.
_NETWORK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_IFNAME_MAX = 15  # IFNAMSIZ - 1, as libcni's ValidateInterfaceName checks

ENV_CONTAINER_ID = "CNI_CONTAINERID"
ENV_NETNS = "CNI_NETNS"
ENV_IFNAME = "CNI_IFNAME"
ENV_ARGS = "CNI_ARGS"

KEY_VALID_ATTACHMENTS = "cni.dev/valid-attachments"
KEY_LEGACY_ATTACHMENTS = "cni.dev/attachments"  # libcni injects both (spec issue #1101)

# CNI_ARGS keys the spiderpool IPAM plugin understands (upstream cni_types.go K8sArgs).
KNOWN_ARGS = frozenset(
    {"IgnoreUnknown", "IP", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_UID", "K8S_POD_INFRA_CONTAINER_ID"}
)


class Verb(enum.StrEnum):
    ADD = "ADD"
    DEL = "DEL"
    CHECK = "CHECK"
    GC = "GC"
    STATUS = "STATUS"


# SPEC.md "Parameters": which variables each verb requires (CNI_COMMAND is implied by the RPC).
REQUIRED_ENV: dict[Verb, tuple[str, ...]] = {
    Verb.ADD: (ENV_CONTAINER_ID, ENV_NETNS, ENV_IFNAME),
    Verb.CHECK: (ENV_CONTAINER_ID, ENV_NETNS, ENV_IFNAME),
    Verb.DEL: (ENV_CONTAINER_ID, ENV_IFNAME),
    Verb.GC: (),
    Verb.STATUS: (),
}


class RawCall(Protocol):
    """What the agent receives: the CNI environment and raw stdin (``cni_pb2.CniCall``)."""

    @property
    def command(self) -> str: ...
    @property
    def container_id(self) -> str: ...
    @property
    def netns(self) -> str: ...
    @property
    def ifname(self) -> str: ...
    @property
    def args(self) -> str: ...
    @property
    def config(self) -> bytes: ...
    @property
    def present(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class IpamConfig:
    """The ``ipam`` section of a spiderpool network config (upstream plugin-ipam.md)."""

    type: str
    default_ipv4_ippool: tuple[str, ...] = ()
    default_ipv6_ippool: tuple[str, ...] = ()
    clean_gateway: bool = False
    match_master_subnet: bool = False
    ipam_unix_socket_path: str = DEFAULT_AGENT_SOCKET
    log_level: str = "INFO"
    log_file_path: str = ""
    log_file_max_size: int = 100
    log_file_max_age: int = 30
    log_file_max_count: int = 7


@dataclass(frozen=True)
class Attachment:
    """One still-valid attachment from GC's ``cni.dev/valid-attachments``."""

    container_id: str
    ifname: str


@dataclass(frozen=True)
class OwnerRef:
    """The pod's top controller as the runtime named it (``args.cni.owner``)."""

    kind: str
    name: str = ""
    uid: str = ""
    replicas: int = 0  # a StatefulSet's .spec.replicas
    exists: bool = True  # whether the owner still exists
    api_version: str = ""  # e.g. apps/v1 (SpiderSubnet auto pools are labelled with it)


@dataclass(frozen=True)
class PodMetadata:
    """The pod's labels and annotations, and its namespace's, as the runtime passed them,
    with its owner and the Multus network of the interface."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    namespace_annotations: Mapping[str, str] = field(default_factory=dict)
    owner: OwnerRef | None = None
    multus_name: str = ""


@dataclass(frozen=True)
class NetworkConfig:
    cni_version: str
    name: str
    ipam: IpamConfig | None
    raw: Mapping[str, Any]
    prev_result: Mapping[str, Any] | None = None
    valid_attachments: tuple[Attachment, ...] = ()
    pod: PodMetadata = field(default_factory=PodMetadata)


@dataclass(frozen=True)
class CniArgs:
    """Parsed ``CNI_ARGS``: the Kubernetes pod identity when a kubelet made the call."""

    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""
    pod_infra_container_id: str = ""
    ip: str = ""
    ignore_unknown: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Invocation:
    """A CNI call that passed every input rule for its verb."""

    verb: Verb
    container_id: str
    netns: str
    ifname: str
    args: CniArgs
    config: NetworkConfig
    requested_ips: tuple[str, ...] = ()  # ADD: the addresses asked for, at most one per family

    @property
    def identity(self) -> str:
        """The allocation owner: the pod UID, or the container ID outside Kubernetes."""
        return self.args.pod_uid or self.container_id


def version_tuple(version: str) -> tuple[int, int, int]:
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a semantic version: {version!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


# ---------------------------------------------------------------------------------------
# environment


def _is_present(call: RawCall, name: str, value: str) -> bool:
    # A caller that does not fill ``present`` still counts a non-empty value as present.
    return name in call.present or value != ""


def check_environment(call: RawCall, verb: Verb) -> None:
    """Raise code 4 naming every required variable that is absent or invalid."""
    values = {ENV_CONTAINER_ID: call.container_id, ENV_NETNS: call.netns, ENV_IFNAME: call.ifname}
    missing = [name for name in REQUIRED_ENV[verb] if not _is_present(call, name, values[name])]
    if missing:
        raise CniError(codes.INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing")
    problems: list[str] = []
    if ENV_CONTAINER_ID in REQUIRED_ENV[verb]:
        problem = container_id_problem(call.container_id)
        if problem:
            problems.append(f"{ENV_CONTAINER_ID}: {problem}")
    if ENV_IFNAME in REQUIRED_ENV[verb]:
        problem = ifname_problem(call.ifname)
        if problem:
            problems.append(f"{ENV_IFNAME}: {problem}")
    if ENV_NETNS in REQUIRED_ENV[verb] and call.netns == "":
        problems.append(f"{ENV_NETNS}: is empty")
    if problems:
        raise CniError(codes.INVALID_ENVIRONMENT, "invalid env variables: " + "; ".join(problems))


def container_id_problem(container_id: str) -> str:
    if container_id == "":
        return "is empty"
    if not _CONTAINER_ID.match(container_id):
        return f"{container_id!r} has invalid characters (alphanumeric first, then [A-Za-z0-9_.-])"
    return ""


def ifname_problem(ifname: str) -> str:
    if ifname == "":
        return "is empty"
    size = len(ifname.encode("utf-8", "surrogatepass"))  # the kernel counts bytes, as Go's len()
    if size > _IFNAME_MAX:
        return f"{ifname!r} is {size} bytes long (UTF-8), more than {_IFNAME_MAX}"
    if ifname in (".", ".."):
        return f"{ifname!r} is not a valid interface name"
    if any(c in ifname for c in "/:") or any(c.isspace() for c in ifname):
        return f"{ifname!r} contains '/', ':' or whitespace"
    return ""


# ---------------------------------------------------------------------------------------
# CNI_ARGS


def _parse_bool_arg(key: str, value: str) -> bool:
    # libcni's UnmarshallableBool: "1"/"true" and "0"/"false", case-insensitive.
    lowered = value.lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise CniError(
        codes.INVALID_ENVIRONMENT, f"CNI_ARGS: {key}={value!r} is not a boolean (1, true, 0, false)"
    )


def parse_cni_args(text: str) -> CniArgs:
    """Parse ``K1=V1;K2=V2``; unknown keys are code 2 unless IgnoreUnknown is set."""
    pairs: list[tuple[str, str]] = []
    for item in text.split(";"):
        if item == "":
            continue
        key, sep, value = item.partition("=")
        if not sep or key == "":
            raise CniError(codes.INVALID_ENVIRONMENT, f"CNI_ARGS: invalid pair {item!r} (expected KEY=VALUE)")
        pairs.append((key, value))
    values = dict(pairs)
    ignore_unknown = (
        _parse_bool_arg("IgnoreUnknown", values["IgnoreUnknown"]) if "IgnoreUnknown" in values else False
    )
    extra = {k: v for k, v in pairs if k not in KNOWN_ARGS}
    if extra and not ignore_unknown:
        listed = ", ".join(f"{k}={v}" for k, v in extra.items())
        raise CniError(
            codes.UNSUPPORTED_FIELD, f"CNI_ARGS: unknown args [{listed}] (set IgnoreUnknown=1 to ignore)"
        )
    ip = values.get("IP", "")
    for part in filter(None, ip.split(",")):
        if not _is_ip_or_cidr(part):
            raise CniError(
                codes.INVALID_ENVIRONMENT, f"CNI_ARGS: IP={ip!r}: {part!r} is not an IP address or CIDR"
            )
    _one_per_family(tuple(filter(None, ip.split(","))), "CNI_ARGS IP", codes.INVALID_ENVIRONMENT)
    return CniArgs(
        pod_namespace=values.get("K8S_POD_NAMESPACE", ""),
        pod_name=values.get("K8S_POD_NAME", ""),
        pod_uid=values.get("K8S_POD_UID", ""),
        pod_infra_container_id=values.get("K8S_POD_INFRA_CONTAINER_ID", ""),
        ip=ip,
        ignore_unknown=ignore_unknown,
        extra=extra,
    )


def _is_ip_or_cidr(text: str) -> bool:
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        return False
    return True


def _one_per_family(texts: Sequence[str], source: str, code: int) -> None:
    """Refuse two different addresses of one family (an interface gets one per family)."""
    seen: dict[int, tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address]] = {}
    for text in texts:
        addr = ipaddress.ip_interface(text).ip
        first = seen.setdefault(addr.version, (text, addr))
        if first[1] != addr:
            raise CniError(
                code,
                f"{source}: {first[0]} and {text} are both IPv{addr.version} addresses; "
                "an interface gets one address per family",
            )


# ---------------------------------------------------------------------------------------
# network configuration (stdin)


def decode_config(data: bytes) -> dict[str, Any]:
    """stdin -> JSON object, or code 6."""
    if not data.strip():
        raise CniError(codes.DECODING_FAILURE, "empty network configuration on stdin")
    try:
        obj = bounded_json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CniError(codes.DECODING_FAILURE, f"network configuration is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CniError(
            codes.DECODING_FAILURE, f"network configuration must be a JSON object, got {type(obj).__name__}"
        )
    return obj


def _type_name(value: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
    }.get(type(value), "null" if value is None else type(value).__name__)


def _wrong_type(key: str, expected: str, value: Any) -> CniError:
    return CniError(
        codes.INVALID_CONFIG, f"network config: {key} must be {expected}, got {_type_name(value)}"
    )


def check_version(obj: Mapping[str, Any], verb: Verb | None) -> str:
    if "cniVersion" not in obj:
        raise CniError(codes.INVALID_CONFIG, "network config: missing cniVersion")
    version = obj["cniVersion"]
    if not isinstance(version, str):
        raise _wrong_type("cniVersion", "a string", version)
    supported = ", ".join(SUPPORTED_VERSIONS)
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            codes.INCOMPATIBLE_VERSION,
            f"unsupported CNI version {version!r}",
            details=f"supported versions: {supported}",
        )
    if verb in (Verb.GC, Verb.STATUS) and version_tuple(version) < version_tuple(GC_STATUS_MIN_VERSION):
        raise CniError(
            codes.INCOMPATIBLE_VERSION,
            f"config version {version} does not allow {verb.value} (needs >= {GC_STATUS_MIN_VERSION})",
        )
    if verb is Verb.CHECK and version_tuple(version) < version_tuple(CHECK_MIN_VERSION):
        raise CniError(
            codes.INCOMPATIBLE_VERSION,
            f"config version {version} does not allow CHECK (needs >= {CHECK_MIN_VERSION})",
        )
    return version


def _str_field(section: Mapping[str, Any], key: str, prefix: str, default: str) -> str:
    if key not in section or section[key] is None:
        return default
    value = section[key]
    if not isinstance(value, str):
        raise _wrong_type(prefix + key, "a string", value)
    return value


def _bool_field(section: Mapping[str, Any], key: str, prefix: str) -> bool:
    if key not in section or section[key] is None:
        return False
    value = section[key]
    if not isinstance(value, bool):
        raise _wrong_type(prefix + key, "a boolean", value)
    return value


def _int_field(section: Mapping[str, Any], key: str, prefix: str, default: int) -> int:
    if key not in section or section[key] is None:
        return default
    value = section[key]
    # Upstream's docs show these as strings ("100") while its struct reads ints: accept both.
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _wrong_type(prefix + key, "a non-negative integer", value)
    return value


def _pool_list(section: Mapping[str, Any], key: str, prefix: str) -> tuple[str, ...]:
    if key not in section or section[key] is None:
        return ()
    value = section[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _wrong_type(prefix + key, "an array of strings", value)
    return tuple(value)


def parse_ipam(obj: Mapping[str, Any]) -> IpamConfig:
    if "ipam" not in obj:
        raise CniError(codes.INVALID_CONFIG, "network config: missing ipam")
    ipam = obj["ipam"]
    if not isinstance(ipam, dict):
        raise _wrong_type("ipam", "an object", ipam)
    if "type" not in ipam:
        raise CniError(codes.INVALID_CONFIG, "network config: missing ipam.type")
    ipam_type = ipam["type"]
    if not isinstance(ipam_type, str) or ipam_type == "":
        raise _wrong_type("ipam.type", "a non-empty string", ipam_type)
    p = "ipam."
    log_level = _str_field(ipam, "log_level", p, "INFO")
    if log_level and log_level.upper() not in VALID_LOG_LEVELS:
        raise CniError(
            codes.INVALID_CONFIG,
            f"network config: ipam.log_level {log_level!r} is not one of "
            + ", ".join(sorted(VALID_LOG_LEVELS)),
        )
    return IpamConfig(
        type=ipam_type,
        default_ipv4_ippool=_pool_list(ipam, "default_ipv4_ippool", p),
        default_ipv6_ippool=_pool_list(ipam, "default_ipv6_ippool", p),
        clean_gateway=_bool_field(ipam, "clean_gateway", p),
        match_master_subnet=_bool_field(ipam, "match_master_subnet", p),
        ipam_unix_socket_path=_str_field(ipam, "ipam_unix_socket_path", p, DEFAULT_AGENT_SOCKET)
        or DEFAULT_AGENT_SOCKET,
        log_level=(log_level or "INFO").upper(),
        log_file_path=_str_field(ipam, "log_file_path", p, ""),
        log_file_max_size=_int_field(ipam, "log_file_max_size", p, 100),
        log_file_max_age=_int_field(ipam, "log_file_max_age", p, 30),
        log_file_max_count=_int_field(ipam, "log_file_max_count", p, 7),
    )


def parse_attachments(obj: Mapping[str, Any]) -> tuple[Attachment, ...]:
    """GC's still-valid attachment list, from the 1.1 key or libcni's legacy one.

    Decision: a GC config carrying neither key is refused (code 7) rather than read as
    "nothing is valid", which would release every allocation of the network. libcni
    always injects the key; ``null`` (Go's nil slice) means an empty list.
    """
    key = KEY_VALID_ATTACHMENTS if KEY_VALID_ATTACHMENTS in obj else KEY_LEGACY_ATTACHMENTS
    if key not in obj:
        raise CniError(codes.INVALID_CONFIG, f"network config: GC needs {KEY_VALID_ATTACHMENTS}")
    value = obj[key]
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _wrong_type(key, "an array", value)
    out: list[Attachment] = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise _wrong_type(where, "an object", item)
        cid, ifname = item.get("containerID"), item.get("ifname")
        if not isinstance(cid, str) or cid == "":
            raise _wrong_type(where + ".containerID", "a non-empty string", cid)
        if not isinstance(ifname, str) or ifname == "":
            raise _wrong_type(where + ".ifname", "a non-empty string", ifname)
        out.append(Attachment(cid, ifname))
    return tuple(out)


def _string_map(section: Mapping[str, Any], key: str, prefix: str) -> dict[str, str]:
    """An object of strings, or CONVENTIONS.md's array of ``{"key": .., "value": ..}``."""
    value = section.get(key)
    if value is None:
        return {}
    expected = 'an object of strings or an array of {"key", "value"} strings'
    if isinstance(value, dict):
        if not all(isinstance(v, str) for v in value.values()):
            raise _wrong_type(prefix + key, expected, value)
        return dict(value)
    if not isinstance(value, list):
        raise _wrong_type(prefix + key, expected, value)
    out: dict[str, str] = {}
    for i, item in enumerate(value):
        pair = (item.get("key"), item.get("value")) if isinstance(item, dict) else (None, None)
        if not (isinstance(pair[0], str) and pair[0] and isinstance(pair[1], str)):
            raise _wrong_type(f"{prefix}{key}[{i}]", 'an object {"key": string, "value": string}', item)
        out[pair[0]] = pair[1]
    return out


def parse_owner(section: Mapping[str, Any], key: str, prefix: str) -> OwnerRef | None:
    """``{"kind", "name", "uid", "replicas", "exists", "apiVersion"}``: kind required, the rest optional."""
    value = section.get(key)
    if value is None:
        return None
    where = prefix + key
    if not isinstance(value, dict):
        raise _wrong_type(where, "an object", value)
    kind = value.get("kind")
    if not isinstance(kind, str) or not kind:
        raise _wrong_type(where + ".kind", "a non-empty string", kind)
    for name in ("name", "uid", "apiVersion"):
        if name in value and not isinstance(value[name], str):
            raise _wrong_type(f"{where}.{name}", "a string", value[name])
    replicas = value.get("replicas", 0)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise _wrong_type(where + ".replicas", "a non-negative integer", replicas)
    exists = value.get("exists", True)
    if not isinstance(exists, bool):
        raise _wrong_type(where + ".exists", "a boolean", exists)
    name, uid, api_version = (str(value.get(k, "")) for k in ("name", "uid", "apiVersion"))
    return OwnerRef(kind, name, uid, replicas, exists, api_version)


def _args_cni(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    args = obj.get("args")
    if args is None:
        return None
    if not isinstance(args, dict):
        raise _wrong_type("args", "an object", args)
    cni = args.get("cni")
    if cni is None:
        return None
    if not isinstance(cni, dict):
        raise _wrong_type("args.cni", "an object", cni)
    return cni


def parse_pod_metadata(obj: Mapping[str, Any]) -> PodMetadata:
    """The pod metadata a runtime put under ``args.cni``; empty when there is none."""
    cni = _args_cni(obj)
    if cni is None:
        return PodMetadata()
    p = "args.cni."
    multus = cni.get("multusName")
    if multus is not None and not isinstance(multus, str):
        raise _wrong_type(p + "multusName", "a string", multus)
    return PodMetadata(
        labels=_string_map(cni, "labels", p),
        annotations=_string_map(cni, "annotations", p),
        namespace_labels=_string_map(cni, "namespaceLabels", p),
        namespace_annotations=_string_map(cni, "namespaceAnnotations", p),
        owner=parse_owner(cni, "owner", p),
        multus_name=multus or "",
    )


def _owner_for_release(obj: Mapping[str, Any]) -> PodMetadata:
    """DEL's view of ``args.cni``: the owner alone, and nothing when anything is malformed."""
    try:
        cni = _args_cni(obj)
        owner = parse_owner(cni, "owner", "args.cni.") if cni is not None else None
    except CniError:
        return PodMetadata()
    return PodMetadata(owner=owner)


def parse_network_config(data: bytes, verb: Verb | None, *, require_ipam: bool = True) -> NetworkConfig:
    """Decode and check stdin for ``verb``; ``require_ipam`` is False for the coordinator."""
    obj = decode_config(data)
    version = check_version(obj, verb)
    if "name" not in obj:
        raise CniError(codes.INVALID_CONFIG, "network config: missing name")
    name = obj["name"]
    if not isinstance(name, str):
        raise _wrong_type("name", "a string", name)
    if not _NETWORK_NAME.match(name):
        raise CniError(
            codes.INVALID_CONFIG, f"network config: name {name!r} has invalid characters (alnum, then [_.-])"
        )
    ipam = parse_ipam(obj) if require_ipam else None
    prev = obj.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise _wrong_type("prevResult", "an object", prev)
    attachments = parse_attachments(obj) if verb is Verb.GC else ()
    return NetworkConfig(
        cni_version=version,
        name=name,
        ipam=ipam,
        raw=obj,
        prev_result=prev,
        valid_attachments=attachments,
        pod=_pod_metadata_for(obj, verb),
    )


def _address_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _wrong_type(where, "an array of IP addresses or CIDRs", value)
    for i, text in enumerate(value):
        if not _is_ip_or_cidr(text.strip()):
            raise CniError(
                codes.INVALID_CONFIG, f"network config: {where}[{i}] {text!r} is not an IP address or CIDR"
            )
    return tuple(v.strip() for v in value)


def requested_ips(obj: Mapping[str, Any], cni_args: CniArgs) -> tuple[str, ...]:
    """The addresses an ADD asks for: ``runtimeConfig.ips`` (when the ``ips`` capability is
    declared or its declaration stripped) and ``CNI_ARGS`` ``IP=``."""
    out: list[str] = []
    runtime = obj.get("runtimeConfig")
    if runtime is not None and not isinstance(runtime, dict):
        raise _wrong_type("runtimeConfig", "an object", runtime)
    capabilities = obj.get("capabilities")
    declared = not isinstance(capabilities, dict) or capabilities.get("ips") is True
    if runtime is not None and declared:
        out += _address_list(runtime.get("ips"), "runtimeConfig.ips")
    out += [part.strip() for part in cni_args.ip.split(",") if part.strip()]
    merged = tuple(dict.fromkeys(out))
    _one_per_family(merged, "requested IPs (runtimeConfig.ips, CNI_ARGS IP)", codes.INVALID_CONFIG)
    return merged


def _pod_metadata_for(obj: Mapping[str, Any], verb: Verb | None) -> PodMetadata:
    """ADD and CHECK use the pod's metadata and refuse it malformed (code 7). DEL reads only
    the owner and never fails over it (the release must happen); GC and STATUS have no pod."""
    if verb in (Verb.ADD, Verb.CHECK, None):
        return parse_pod_metadata(obj)
    if verb is Verb.DEL:
        return _owner_for_release(obj)
    return PodMetadata()


# ---------------------------------------------------------------------------------------
# the whole call


def parse_call(
    call: RawCall,
    verb: Verb,
    *,
    netns_exists: Callable[[str], bool] = lambda _path: True,
    require_ipam: bool = True,
) -> Invocation:
    """Validate one CNI call for ``verb`` (the RPC's verb), in libcni's order.

    Order: CNI_COMMAND agrees with the RPC, required environment, stdin decoding, version,
    config keys, CNI_ARGS, and last the netns on ADD and CHECK (code 3 when missing; the
    hook raises code 4 for a path that is not a network namespace).
    """
    if call.command and call.command.upper() != verb.value:
        raise CniError(codes.INVALID_ENVIRONMENT, f"CNI_COMMAND {call.command!r} does not match {verb.value}")
    check_environment(call, verb)
    config = parse_network_config(call.config, verb, require_ipam=require_ipam)
    cni_args = parse_cni_args(call.args) if verb in (Verb.ADD, Verb.DEL, Verb.CHECK) else CniArgs()
    requested = requested_ips(config.raw, cni_args) if verb is Verb.ADD else ()
    if verb in (Verb.ADD, Verb.CHECK) and not netns_exists(call.netns):
        raise CniError(codes.UNKNOWN_CONTAINER, f"CNI_NETNS {call.netns!r} does not exist")
    keep_attachment = verb in (Verb.ADD, Verb.DEL, Verb.CHECK)
    return Invocation(
        verb=verb,
        container_id=call.container_id if keep_attachment else "",
        netns=call.netns if keep_attachment else "",
        ifname=call.ifname if keep_attachment else "",
        args=cni_args,
        config=config,
        requested_ips=requested,
    )
