"""CNI call validation in the agent: environment, stdin, versions, config keys, CNI_ARGS."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from spiderpool_agent.cni_call import (
    SUPPORTED_VERSIONS,
    Attachment,
    PodMetadata,
    Verb,
    parse_call,
    parse_cni_args,
)
from spiderpool_cni import codes
from spiderpool_common.errors import CniError


@dataclass
class Call:
    command: str = ""
    container_id: str = "ctr-1"
    netns: str = "/run/netns/pod"
    ifname: str = "eth0"
    args: str = ""
    config: bytes = b""
    present: list[str] = field(default_factory=lambda: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])


def conf(version: str = "1.0.0", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cniVersion": version,
        "name": "macvlan-net",
        "ipam": {"type": "spiderpool", "default_ipv4_ippool": ["v4-pool"]},
    }
    base.update(overrides)
    return base


def call_with(config: Any, **kwargs: Any) -> Call:
    raw = config if isinstance(config, bytes) else json.dumps(config).encode()
    return Call(config=raw, **kwargs)


def code_of(call: Call, verb: Verb, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(CniError) as info:
        parse_call(call, verb, **kwargs)
    return info.value.cni_code, info.value.message


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_add_accepts_every_supported_version(version: str) -> None:
    """A well-formed ADD parses for each supported CNI version and keeps the ipam settings."""
    inv = parse_call(call_with(conf(version)), Verb.ADD)
    assert inv.config.cni_version == version
    assert inv.config.ipam is not None
    assert inv.config.ipam.default_ipv4_ippool == ("v4-pool",)
    assert (inv.container_id, inv.ifname, inv.netns) == ("ctr-1", "eth0", "/run/netns/pod")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_undecodable_stdin_is_code_6(raw: bytes, needle: str) -> None:
    """Empty, non-JSON or non-object stdin fails with the decoding-failure code 6."""
    code, msg = code_of(call_with(raw), Verb.ADD)
    assert code == codes.DECODING_FAILURE
    assert needle in msg


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "1.2.0", "2.0.0", "banana"])
def test_unsupported_version_is_code_1(version: str) -> None:
    """A cniVersion outside the supported list is the incompatible-version code 1."""
    code, msg = code_of(call_with(conf(version)), Verb.ADD)
    assert code == codes.INCOMPATIBLE_VERSION
    assert version in msg


@pytest.mark.parametrize("verb", [Verb.GC, Verb.STATUS])
@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
def test_gc_and_status_need_version_1_1(verb: Verb, version: str) -> None:
    """GC and STATUS refuse configs below 1.1.0 with code 1, as libcni's skel does."""
    config = conf(version, **{"cni.dev/valid-attachments": []})
    code, msg = code_of(call_with(config, present=[]), verb)
    assert code == codes.INCOMPATIBLE_VERSION
    assert verb.value in msg


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1"])
def test_check_needs_version_0_4(version: str) -> None:
    """CHECK arrived in 0.4.0: older configs are refused with code 1, as libcni's skel does."""
    code, msg = code_of(call_with(conf(version)), Verb.CHECK)
    assert code == codes.INCOMPATIBLE_VERSION
    assert "CHECK" in msg
    assert parse_call(call_with(conf("0.4.0")), Verb.CHECK).verb is Verb.CHECK


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda c: c.pop("ipam"), "ipam"),
        (lambda c: c.pop("name"), "name"),
        (lambda c: c.pop("cniVersion"), "cniVersion"),
        (lambda c: c["ipam"].pop("type"), "ipam.type"),
        (lambda c: c.update(ipam="spiderpool"), "ipam"),
        (lambda c: c.update(name=7), "name"),
        (lambda c: c.update(cniVersion=1.0), "cniVersion"),
        (lambda c: c["ipam"].update(type=3), "ipam.type"),
        (lambda c: c["ipam"].update(default_ipv4_ippool="v4-pool"), "ipam.default_ipv4_ippool"),
        (lambda c: c["ipam"].update(default_ipv6_ippool=[1]), "ipam.default_ipv6_ippool"),
        (lambda c: c["ipam"].update(clean_gateway="true"), "ipam.clean_gateway"),
        (lambda c: c["ipam"].update(ipam_unix_socket_path=5), "ipam.ipam_unix_socket_path"),
        (lambda c: c["ipam"].update(log_file_max_size=-1), "ipam.log_file_max_size"),
        (lambda c: c["ipam"].update(log_level="LOUD"), "ipam.log_level"),
        (lambda c: c.update(name="bad name!"), "name"),
        (lambda c: c.update(prevResult=[]), "prevResult"),
    ],
)
def test_missing_keys_and_wrong_types_are_code_7_naming_the_key(mutate: Any, key: str) -> None:
    """A config missing a required key or holding a wrong type fails with code 7 naming the key."""
    config = conf()
    mutate(config)
    code, msg = code_of(call_with(config), Verb.ADD)
    assert code == codes.INVALID_CONFIG
    assert key in msg


def test_ipam_settings_are_read_with_upstream_defaults() -> None:
    """Optional ipam keys default as upstream does; integer sizes may be digit strings."""
    config = conf()
    config["ipam"].update(clean_gateway=True, log_file_max_size="50", default_ipv6_ippool=["v6a", "v6b"])
    ipam = parse_call(call_with(config), Verb.ADD).config.ipam
    assert ipam is not None
    assert ipam.clean_gateway is True
    assert ipam.log_file_max_size == 50
    assert ipam.default_ipv6_ippool == ("v6a", "v6b")
    assert ipam.ipam_unix_socket_path == "/var/run/spidernet/spiderpool.sock"


@pytest.mark.parametrize("verb", [Verb.ADD, Verb.CHECK])
@pytest.mark.parametrize("missing", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])
def test_add_and_check_name_each_missing_variable(verb: Verb, missing: str) -> None:
    """ADD and CHECK without one of their required variables fail with code 4 naming it."""
    attr = {"CNI_CONTAINERID": "container_id", "CNI_NETNS": "netns", "CNI_IFNAME": "ifname"}[missing]
    call = call_with(conf(), present=[p for p in Call().present if p != missing])
    setattr(call, attr, "")
    code, msg = code_of(call, verb)
    assert code == codes.INVALID_ENVIRONMENT
    assert missing in msg


def test_del_does_not_need_netns() -> None:
    """DEL needs CNI_CONTAINERID and CNI_IFNAME only (the netns may be gone)."""
    call = call_with(conf(), netns="", present=["CNI_CONTAINERID", "CNI_IFNAME"])
    assert parse_call(call, Verb.DEL).ifname == "eth0"
    call = call_with(conf(), ifname="", present=["CNI_CONTAINERID"])
    code, msg = code_of(call, Verb.DEL)
    assert code == codes.INVALID_ENVIRONMENT
    assert "CNI_IFNAME" in msg


def test_present_but_empty_differs_from_absent() -> None:
    """A variable present with an empty value is reported as empty, not as missing."""
    code, msg = code_of(call_with(conf(), netns=""), Verb.ADD)
    assert code == codes.INVALID_ENVIRONMENT
    assert "CNI_NETNS: is empty" in msg
    assert "missing" not in msg


@pytest.mark.parametrize(
    ("field_name", "value", "env"),
    [
        ("container_id", "-starts-with-dash", "CNI_CONTAINERID"),
        ("container_id", "has space", "CNI_CONTAINERID"),
        ("container_id", "semi;colon", "CNI_CONTAINERID"),
        ("ifname", "a" * 16, "CNI_IFNAME"),
        ("ifname", "\u00e9" * 8, "CNI_IFNAME"),  # 8 characters, 16 bytes: the kernel counts bytes
        ("ifname", "eth/0", "CNI_IFNAME"),
        ("ifname", "..", "CNI_IFNAME"),
        ("ifname", "eth 0", "CNI_IFNAME"),
    ],
)
def test_invalid_container_id_or_ifname_is_code_4(field_name: str, value: str, env: str) -> None:
    """Container IDs and interface names outside the spec's syntax fail with code 4 naming the variable."""
    call = call_with(conf())
    setattr(call, field_name, value)
    code, msg = code_of(call, Verb.ADD)
    assert code == codes.INVALID_ENVIRONMENT
    assert env in msg


@pytest.mark.parametrize("ifname", ["a" * 15, "\u00e9" * 7 + "a", "\u6f22" * 5])
def test_an_ifname_of_at_most_15_utf8_bytes_is_accepted(ifname: str) -> None:
    """IFNAMSIZ is counted in bytes: 15 ASCII, 7 two-byte plus one, 5 three-byte characters fit."""
    assert parse_call(call_with(conf(), ifname=ifname), Verb.ADD).ifname == ifname


def test_an_ifname_over_15_utf8_bytes_says_its_byte_length() -> None:
    """A 6-character name of three-byte characters is refused as 18 bytes."""
    code, msg = code_of(call_with(conf(), ifname="\u6f22" * 6), Verb.ADD)
    assert code == codes.INVALID_ENVIRONMENT
    assert "CNI_IFNAME" in msg and "18 bytes" in msg


def test_command_must_match_the_rpc() -> None:
    """A CNI_COMMAND that disagrees with the RPC's verb is code 4."""
    code, _ = code_of(call_with(conf(), command="DEL"), Verb.ADD)
    assert code == codes.INVALID_ENVIRONMENT
    assert parse_call(call_with(conf(), command="add"), Verb.ADD).verb is Verb.ADD


def test_missing_netns_path_on_add_is_code_3() -> None:
    """ADD with a CNI_NETNS path that does not exist fails with code 3 (container unknown)."""
    code, msg = code_of(call_with(conf()), Verb.ADD, netns_exists=lambda _p: False)
    assert code == codes.UNKNOWN_CONTAINER
    assert "/run/netns/pod" in msg
    # DEL never looks at the netns.
    assert parse_call(call_with(conf()), Verb.DEL, netns_exists=lambda _p: False).verb is Verb.DEL


def test_check_looks_at_the_netns_too() -> None:
    """CHECK with a CNI_NETNS path that does not exist is code 3, and the hook's own code-4
    refusal (a path that is not a network namespace) reaches the caller unchanged."""
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}
    call = call_with(conf(prevResult=prev))
    code, _ = code_of(call, Verb.CHECK, netns_exists=lambda _p: False)
    assert code == codes.UNKNOWN_CONTAINER

    def not_a_netns(path: str) -> bool:
        raise CniError(codes.INVALID_ENVIRONMENT, f"CNI_NETNS {path!r} is a directory")

    code, msg = code_of(call, Verb.CHECK, netns_exists=not_a_netns)
    assert (code, msg) == (codes.INVALID_ENVIRONMENT, "CNI_NETNS '/run/netns/pod' is a directory")


def test_kubernetes_args_are_parsed() -> None:
    """The kubelet's CNI_ARGS give the pod identity; the UID is the allocation identity."""
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0;K8S_POD_UID=uid-9;" + (
        "K8S_POD_INFRA_CONTAINER_ID=ctr-1"
    )
    inv = parse_call(call_with(conf(), args=args), Verb.ADD)
    assert (inv.args.pod_namespace, inv.args.pod_name, inv.args.pod_uid) == ("ns", "web-0", "uid-9")
    assert inv.identity == "uid-9"
    assert parse_call(call_with(conf()), Verb.ADD).identity == "ctr-1"


def test_unknown_args_are_code_2_unless_ignored() -> None:
    """Unknown CNI_ARGS keys fail with code 2 naming key and value; IgnoreUnknown=1/true accepts them."""
    with pytest.raises(CniError) as info:
        parse_cni_args("K8S_POD_NAME=a;FOO=bar")
    assert info.value.cni_code == codes.UNSUPPORTED_FIELD
    assert "FOO=bar" in info.value.message
    for flag in ("1", "true", "TRUE"):
        assert parse_cni_args(f"IgnoreUnknown={flag};FOO=bar").extra == {"FOO": "bar"}
    with pytest.raises(CniError) as info:
        parse_cni_args("IgnoreUnknown=0;FOO=bar")
    assert info.value.cni_code == codes.UNSUPPORTED_FIELD


@pytest.mark.parametrize("text", ["novalue", "=x", "IgnoreUnknown=maybe", "IP=300.1.1.1"])
def test_malformed_args_are_code_4(text: str) -> None:
    """Malformed CNI_ARGS pairs or values fail with code 4."""
    with pytest.raises(CniError) as info:
        parse_cni_args(text)
    assert info.value.cni_code == codes.INVALID_ENVIRONMENT


def test_empty_args_and_empty_pairs_are_fine() -> None:
    """An empty CNI_ARGS and stray separators parse to no arguments."""
    assert parse_cni_args("").pod_name == ""
    assert parse_cni_args(";K8S_POD_NAME=a;").pod_name == "a"


def test_gc_reads_valid_attachments_and_the_legacy_key() -> None:
    """GC reads cni.dev/valid-attachments, else libcni's legacy cni.dev/attachments; null is empty."""
    items = [{"containerID": "c1", "ifname": "eth0"}, {"containerID": "c2", "ifname": "net1"}]
    for key in ("cni.dev/valid-attachments", "cni.dev/attachments"):
        inv = parse_call(call_with(conf("1.1.0", **{key: items}), present=[]), Verb.GC)
        assert inv.config.valid_attachments == (Attachment("c1", "eth0"), Attachment("c2", "net1"))
    inv = parse_call(call_with(conf("1.1.0", **{"cni.dev/valid-attachments": None}), present=[]), Verb.GC)
    assert inv.config.valid_attachments == ()


@pytest.mark.parametrize(
    "value",
    [None, "c1", [{"containerID": "c1"}], [{"containerID": 5, "ifname": "eth0"}], ["c1"]],
)
def test_gc_without_a_usable_attachment_list_is_code_7(value: Any) -> None:
    """GC refuses a missing or malformed attachment list with code 7 rather than release everything."""
    extra = {} if value is None else {"cni.dev/valid-attachments": value}
    code, msg = code_of(call_with(conf("1.1.0", **extra), present=[]), Verb.GC)
    assert code == codes.INVALID_CONFIG
    assert "cni.dev/valid-attachments" in msg


def test_gc_and_status_need_no_attachment_variables() -> None:
    """GC and STATUS run without CNI_CONTAINERID, CNI_NETNS or CNI_IFNAME."""
    call = call_with(conf("1.1.0"), container_id="", netns="", ifname="", present=[])
    assert parse_call(call, Verb.STATUS).verb is Verb.STATUS


def test_coordinator_configs_need_no_ipam() -> None:
    """With require_ipam=False (the coordinator), a config without ipam is accepted."""
    config = conf()
    del config["ipam"]
    inv = parse_call(call_with(config), Verb.ADD, require_ipam=False)
    assert inv.config.ipam is None


# -- args.cni: the pod's metadata -------------------------------------------------------------


def _add_with_args(args: Any, verb: Verb = Verb.ADD) -> PodMetadata:
    call = Call(config=json.dumps(conf(args=args)).encode())
    return parse_call(call, verb).config.pod


def test_pod_metadata_from_args_cni_in_both_shapes() -> None:
    """Objects of strings and CONVENTIONS.md's key/value arrays both work; other keys are ignored."""
    pod = _add_with_args({
        "cni": {
            "labels": [{"key": "app", "value": "web"}, {"key": "tier", "value": ""}],
            "annotations": {"ipam.spidernet.io/ippool": '{"ipv4": ["a"]}'},
            "namespaceLabels": {"team": "net"},
            "namespaceAnnotations": [{"key": "ipam.spidernet.io/default-ipv4-ippool", "value": '["b"]'}],
            "ips": ["10.0.0.5"],
        },
        "other-runtime": {"x": 1},
    })  # fmt: skip
    assert pod == PodMetadata(
        labels={"app": "web", "tier": ""},
        annotations={"ipam.spidernet.io/ippool": '{"ipv4": ["a"]}'},
        namespace_labels={"team": "net"},
        namespace_annotations={"ipam.spidernet.io/default-ipv4-ippool": '["b"]'},
    )


def test_no_args_means_no_pod_metadata() -> None:
    assert _add_with_args(None) == PodMetadata()
    assert _add_with_args({"cni": None}) == PodMetadata()
    assert _add_with_args({"k8s": {}}) == PodMetadata()


MAP_OR_PAIRS = 'an object of strings or an array of {"key", "value"} strings'
PAIR = 'an object {"key": string, "value": string}'


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cni"], "network config: args must be an object, got array"),
        ({"cni": "labels"}, "network config: args.cni must be an object, got string"),
        (
            {"cni": {"annotations": {"a": 1}}},
            f"network config: args.cni.annotations must be {MAP_OR_PAIRS}, got object",
        ),
        (
            {"cni": {"labels": "app=web"}},
            f"network config: args.cni.labels must be {MAP_OR_PAIRS}, got string",
        ),
        (
            {"cni": {"labels": [{"key": "app"}]}},
            f"network config: args.cni.labels[0] must be {PAIR}, got object",
        ),
        (
            {"cni": {"namespaceLabels": [{"key": "", "value": "x"}]}},
            f"network config: args.cni.namespaceLabels[0] must be {PAIR}, got object",
        ),
    ],
)
def test_malformed_pod_metadata_is_code_7_naming_the_key(args: Any, message: str) -> None:
    for verb in (Verb.ADD, Verb.CHECK):
        with pytest.raises(CniError) as info:
            _add_with_args(args, verb)
        assert (info.value.cni_code, info.value.message) == (codes.INVALID_CONFIG, message)


def test_del_ignores_malformed_pod_metadata() -> None:
    """DEL does not use the metadata, and a release must not fail over it."""
    assert _add_with_args({"cni": {"labels": 5}}, Verb.DEL) == PodMetadata()
