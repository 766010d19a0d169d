"""SpiderIPPool defaulting and validation: upstream's ippool webhook rules, with the exact text users see."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from spiderpool_common.errors import InvalidObject
from spiderpool_controller.domain import models, validation
from spiderpool_controller.domain.validation import ValidationSettings

P = 'SpiderIPPool "pool-a": '  # every message names the object first
EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def pool(name: str = "pool-a", **spec: Any) -> dict[str, Any]:
    """A defaulted SpiderIPPool manifest; ``spec`` keywords override the base spec."""
    base: dict[str, Any] = {"subnet": "10.0.0.0/24", "ips": ["10.0.0.10-10.0.0.20"], "gateway": "10.0.0.1"}
    base.update(spec)
    base = {k: v for k, v in base.items() if v is not None}
    return validation.default_object(models.new_object(models.KIND_IPPOOL, name, spec=base))


def create_error(obj: dict[str, Any], peers: list[dict[str, Any]] | None = None, **settings: bool) -> str:
    with pytest.raises(InvalidObject) as info:
        validation.validate_create(obj, peers or [], ValidationSettings(**settings))
    return info.value.message


def with_allocations(obj: dict[str, Any], allocated: dict[str, dict[str, str]]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["status"] = {"allocatedIPs": json.dumps(allocated), "allocatedIPCount": len(allocated)}
    return out


# --- defaulting -------------------------------------------------------------------------


def test_defaulting_derives_ip_version_from_subnet() -> None:
    """A pool without spec.ipVersion gets the family of its subnet."""
    assert pool(subnet="10.0.0.0/24")["spec"]["ipVersion"] == 4
    assert pool(subnet="fd00::/64", ips=["fd00::10"], gateway="fd00::1")["spec"]["ipVersion"] == 6


def test_defaulting_sets_cidr_label_finalizer_and_schema_defaults() -> None:
    """The mutating webhook adds the ippool-cidr label, the finalizer and default/disable false."""
    obj = pool(subnet="fd00:172:30::/64", ips=["fd00:172:30::10"], gateway="fd00:172:30::1")
    assert obj["metadata"]["labels"] == {"ipam.spidernet.io/ippool-cidr": "fd00-172-30---64"}
    assert obj["metadata"]["finalizers"] == ["spiderpool.spidernet.io"]
    assert obj["spec"]["default"] is False
    assert obj["spec"]["disable"] is False
    assert pool()["metadata"]["labels"]["ipam.spidernet.io/ippool-cidr"] == "10-0-0-0-24"


def test_defaulting_merges_overlapping_and_adjacent_ranges() -> None:
    """ips and excludeIPs are sorted, overlapping and adjacent ranges merged."""
    obj = pool(
        ips=["10.0.0.30", "10.0.0.10-10.0.0.20", "10.0.0.21-10.0.0.25", "10.0.0.15"],
        excludeIPs=["10.0.0.12", "10.0.0.11"],
    )
    assert obj["spec"]["ips"] == ["10.0.0.10-10.0.0.25", "10.0.0.30"]
    assert obj["spec"]["excludeIPs"] == ["10.0.0.11-10.0.0.12"]


def test_defaulting_drops_status_and_server_metadata_and_keeps_user_labels() -> None:
    """Status belongs to the IPAM engine and server metadata to the store; apply never writes them."""
    raw = models.new_object(
        models.KIND_IPPOOL, "p", spec={"subnet": "10.0.0.0/24"}, status={"totalIPCount": 9}
    )
    raw["metadata"].update(resourceVersion="7", uid="u", labels={"team": "a"})
    obj = validation.default_object(raw)
    assert "status" not in obj
    assert "resourceVersion" not in obj["metadata"] and "uid" not in obj["metadata"]
    assert obj["metadata"]["labels"]["team"] == "a"
    assert raw["status"] == {"totalIPCount": 9}  # the input is not mutated


def test_defaulting_leaves_unparsable_ranges_for_validation_to_name() -> None:
    """A range that does not parse is not rewritten, so the error quotes what the user wrote."""
    obj = pool(ips=["10.0.0.20", "10.0.0.300"])
    assert obj["spec"]["ips"] == ["10.0.0.20", "10.0.0.300"]
    assert create_error(obj) == P + "spec.ips[1]: '10.0.0.300' is not a valid IP address"


# --- apiVersion, kind, metadata, unknown fields ----------------------------------------------


def test_wrong_api_version_is_rejected() -> None:
    """Only spiderpool.spidernet.io/v2beta1 objects are accepted."""
    obj = pool()
    obj["apiVersion"] = "spiderpool.spidernet.io/v1"
    assert create_error(obj) == (
        P + "apiVersion: must be spiderpool.spidernet.io/v2beta1, got 'spiderpool.spidernet.io/v1'"
    )


def test_unknown_kind_is_rejected_naming_the_supported_kinds() -> None:
    """A kind that cannot be applied names the kinds that can."""
    obj = pool()
    obj["kind"] = "SpiderPool"
    assert create_error(obj) == (
        "SpiderPool \"pool-a\": kind: 'SpiderPool' cannot be applied; supported kinds: "
        "SpiderCoordinator, SpiderIPPool, SpiderMultusConfig, SpiderReservedIP, SpiderSubnet"
    )


def test_spider_endpoint_is_read_only() -> None:
    """SpiderEndpoints are the agent's record of a pod; apply refuses them clearly."""
    obj = models.new_object(models.KIND_ENDPOINT, "web-0", "default", status={})
    with pytest.raises(InvalidObject) as info:
        validation.default_object(obj)
    assert info.value.message == (
        'SpiderEndpoint "web-0": SpiderEndpoint is written by the spiderpool agent only and cannot be applied'
    )


def test_invalid_name_is_rejected() -> None:
    """metadata.name must be a DNS-1123 subdomain."""
    assert create_error(pool(name="Pool_A")) == (
        "SpiderIPPool \"Pool_A\": metadata.name: 'Pool_A' must be a lowercase RFC 1123 subdomain: "
        "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, "
        "at most 253 characters"
    )
    assert create_error(pool(name="")) == "SpiderIPPool: metadata.name: required"  # no empty quotes


def test_namespace_on_cluster_scoped_kind_is_rejected() -> None:
    """SpiderIPPool is cluster-scoped, so a namespace is a mistake worth naming."""
    obj = pool()
    obj["metadata"]["namespace"] = "default"
    assert create_error(obj) == (
        P + "metadata.namespace: SpiderIPPool is cluster-scoped; remove the namespace"
    )


def test_unknown_spec_field_is_rejected_by_name() -> None:
    """A field upstream removed (spec.vlan) or misspelt is named, not silently dropped."""
    assert create_error(pool(vlan=100)) == P + "spec.vlan: unknown field"
    assert create_error(pool(excludeIps=["10.0.0.11"])) == P + "spec.excludeIps: unknown field"


def test_unknown_top_level_field_is_rejected() -> None:
    """Top-level typos like `specs` are named."""
    obj = pool()
    obj["specs"] = {}
    assert create_error(obj) == P + "specs: unknown field"


def test_wrong_field_types_are_rejected() -> None:
    """Types follow the CRD schema: lists of strings, booleans, string maps."""
    assert create_error(pool(ips="10.0.0.10")) == P + "spec.ips: must be a list of strings"
    assert create_error(pool(default="yes")) == P + "spec.default: must be true or false, got 'yes'"
    obj = pool()
    obj["metadata"]["labels"]["n"] = 5
    assert create_error(obj) == P + "metadata.labels: must map strings to strings"


def test_missing_spec_is_rejected() -> None:
    """A pool without spec has no subnet; the spec section is named."""
    obj = models.new_object(models.KIND_IPPOOL, "pool-a")
    assert create_error(validation.default_object(obj)) == P + "spec: required"


# --- version and subnet ------------------------------------------------------------------


def test_ip_version_must_be_4_or_6() -> None:
    """ipVersion is an enum of 4 and 6 (and not the string "4")."""
    assert create_error(pool(ipVersion=5)) == P + "spec.ipVersion: must be 4 or 6, got 5"
    assert create_error(pool(ipVersion="4")) == P + "spec.ipVersion: must be 4 or 6, got '4'"


def test_ip_version_must_match_subnet() -> None:
    """An IPv6 pool with an IPv4 subnet is refused, naming both."""
    assert create_error(pool(ipVersion=6, ips=[], gateway=None)) == (
        P + "spec.ipVersion: 6 does not match spec.subnet 10.0.0.0/24 (IPv4)"
    )


def test_disabled_family_is_rejected() -> None:
    """A family the installation does not serve cannot get pools."""
    assert create_error(pool(), enable_ipv4=False) == P + "spec.ipVersion: IPv4 is disabled"
    v6 = pool(subnet="fd00::/64", ips=[], gateway=None)
    assert create_error(v6, enable_ipv6=False) == P + "spec.ipVersion: IPv6 is disabled"


def test_subnet_is_required() -> None:
    """Without a subnet there is no version to derive: the error names spec.subnet, the field to fix."""
    obj = pool(subnet=None, ips=[], gateway=None)
    assert create_error(obj) == P + "spec.subnet: required"


@pytest.mark.parametrize("subnet", ["banana", "10.0.0.0/33", "10.0.0.300/24"])
def test_a_subnet_that_is_no_cidr_is_named_even_without_ip_version(subnet: str) -> None:
    """Without spec.ipVersion an unparseable subnet is reported as spec.subnet, not as a missing version."""
    obj = pool(subnet=subnet, ips=["10.0.0.2"], gateway=None)
    obj["spec"].pop("ipVersion", None)
    assert create_error(obj) == (
        P + f"spec.subnet: {subnet!r} is not a CIDR (expected e.g. 10.0.0.0/24 or fd00::/64)"
    )
    assert create_error(pool(subnet=None, ipVersion=4, ips=[], gateway=None)) == (P + "spec.subnet: required")


def test_subnet_must_be_a_cidr() -> None:
    """A subnet that is not a CIDR is refused with an example of one."""
    assert create_error(pool(subnet="10.0.0.0/33", ipVersion=4, ips=[], gateway=None)) == (
        P + "spec.subnet: '10.0.0.0/33' is not a CIDR (expected e.g. 10.0.0.0/24 or fd00::/64)"
    )
    assert create_error(pool(subnet="10.0.0.0", ips=[], gateway=None)) == (
        P + "spec.subnet: '10.0.0.0' is not a CIDR: the prefix length is missing"
    )


def test_subnet_must_be_the_network_address() -> None:
    """10.0.0.1/24 is refused (IsFormatCIDR): the network address is required."""
    assert create_error(pool(subnet="10.0.0.1/24")) == (
        P + "spec.subnet: 10.0.0.1/24 is not in canonical form; use 10.0.0.0/24 (the network address)"
    )
    assert create_error(pool(subnet="FD00::/64", ips=[], gateway=None)) == (
        P + "spec.subnet: FD00::/64 is not in canonical form; use fd00::/64 (the network address)"
    )


# --- ips, excludeIPs, gateway, routes ---------------------------------------------------------


def test_ips_must_be_valid_ranges() -> None:
    """Each range is IP or IP-IP with start before end, of the pool's family."""
    assert create_error(pool(ips=["10.0.0.20-10.0.0.10"])) == (
        P + "spec.ips[0]: '10.0.0.20-10.0.0.10' is not an IP range: start is after end"
    )
    assert create_error(pool(ips=["10.0.0.10", "fd00::1"])) == (
        P + "spec.ips[1]: 'fd00::1' is not an IPv4 address"
    )


def test_ips_must_be_inside_subnet() -> None:
    """A range leaving the subnet is named with the subnet."""
    assert create_error(pool(ips=["10.0.0.250-10.0.1.5"])) == (
        P + "spec.ips[0]: 10.0.0.250-10.0.1.5 is not inside spec.subnet 10.0.0.0/24"
    )


def test_exclude_ips_must_be_inside_subnet() -> None:
    """excludeIPs follow the same rule as ips."""
    assert create_error(pool(excludeIPs=["10.9.0.1"])) == (
        P + "spec.excludeIPs[0]: 10.9.0.1 is not inside spec.subnet 10.0.0.0/24"
    )


def test_empty_ips_are_allowed() -> None:
    """A pool may be created without IPs (it is filled in later)."""
    validation.validate_create(pool(ips=[]))


def test_gateway_must_be_inside_subnet() -> None:
    """The issue's example message: gateway outside the subnet."""
    assert create_error(pool(gateway="10.0.1.1")) == (
        P + "spec.gateway: 10.0.1.1 is not inside spec.subnet 10.0.0.0/24"
    )
    assert create_error(pool(gateway="gw")) == P + "spec.gateway: 'gw' is not a valid IP address"


def test_gateway_in_ips_is_rejected_unless_excluded() -> None:
    """A gateway inside ips would be handed to a pod; excluding it makes it fine."""
    assert create_error(pool(ips=["10.0.0.1-10.0.0.20"])) == (
        P + "spec.gateway: 10.0.0.1 is inside spec.ips[0] 10.0.0.1-10.0.0.20; "
        "add it to spec.excludeIPs or remove it from spec.ips"
    )
    validation.validate_create(pool(ips=["10.0.0.1-10.0.0.20"], excludeIPs=["10.0.0.1"]))


def test_route_dst_must_be_a_cidr_of_the_same_family() -> None:
    """routes[].dst is a CIDR of the pool's family."""
    bad = [{"dst": "fd00::/64", "gw": "10.0.0.254"}]
    assert create_error(pool(routes=bad)) == P + "spec.routes[0].dst: fd00::/64 is not an IPv4 CIDR"
    bad = [{"dst": "nowhere", "gw": "10.0.0.254"}]
    assert create_error(pool(routes=bad)) == P + "spec.routes[0].dst: 'nowhere' is not a CIDR"


def test_default_route_is_rejected_in_favour_of_gateway() -> None:
    """The default route comes from spec.gateway, never from routes."""
    assert create_error(pool(routes=[{"dst": "0.0.0.0/0", "gw": "10.0.0.254"}])) == (
        P + "spec.routes[0].dst: 0.0.0.0/0 is the default route; use spec.gateway for it"
    )


def test_duplicate_route_dst_is_rejected() -> None:
    """Two routes to one destination are ambiguous."""
    routes = [{"dst": "10.7.0.0/16", "gw": "10.0.0.254"}, {"dst": "10.7.0.0/16", "gw": "10.0.0.253"}]
    assert create_error(pool(routes=routes)) == (
        P + "spec.routes[1].dst: 10.7.0.0/16 duplicates spec.routes[0].dst"
    )


def test_route_dst_must_be_canonical() -> None:
    """A dst with host bits set would be refused by the kernel, so it is refused here."""
    assert create_error(pool(routes=[{"dst": "10.7.0.1/16", "gw": "10.0.0.254"}])) == (
        P + "spec.routes[0].dst: 10.7.0.1/16 is not in canonical form; use 10.7.0.0/16 (the network address)"
    )


def test_route_gw_must_be_inside_subnet() -> None:
    """A route's next hop must be on the pool's subnet."""
    assert create_error(pool(routes=[{"dst": "10.7.0.0/16", "gw": "10.9.0.1"}])) == (
        P + "spec.routes[0].gw: 10.9.0.1 is not inside spec.subnet 10.0.0.0/24"
    )


def test_route_fields_are_checked() -> None:
    """A route needs dst and gw and nothing else."""
    assert create_error(pool(routes=[{"dst": "10.7.0.0/16"}])) == P + "spec.routes[0].gw: required"
    routes = [{"dst": "10.7.0.0/16", "gw": "10.0.0.254", "via": "x"}]
    assert create_error(pool(routes=routes)) == P + "spec.routes[0].via: unknown field"


# --- affinity selectors ------------------------------------------------------------------------


def test_empty_pod_affinity_is_rejected() -> None:
    """podAffinity, when set, must select something."""
    assert create_error(pool(podAffinity={})) == (
        P + "spec.podAffinity: must not be empty when set (an empty podAffinity would match every pod)"
    )


def test_selector_operator_must_be_known() -> None:
    """Operators are In, NotIn, Exists and DoesNotExist."""
    sel = {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["web"]}]}
    assert create_error(pool(podAffinity=sel)) == (
        P + "spec.podAffinity.matchExpressions[0].operator: 'Equals' is not one of "
        "In, NotIn, Exists, DoesNotExist"
    )


def test_selector_values_follow_the_operator() -> None:
    """In/NotIn need values; Exists/DoesNotExist take none."""
    sel = {"matchExpressions": [{"key": "app", "operator": "In"}]}
    assert create_error(pool(podAffinity=sel)) == (
        P + "spec.podAffinity.matchExpressions[0].values: must be non-empty when operator is In"
    )
    exists: dict[str, Any] = {"matchExpressions": [{"key": "zone", "operator": "Exists", "values": ["a"]}]}
    assert create_error(pool(nodeAffinity=exists)) == (
        P + "spec.nodeAffinity.matchExpressions[0].values: must be empty when operator is Exists"
    )


def test_selector_label_keys_and_values_are_valid() -> None:
    """Label keys and values follow Kubernetes' syntax."""
    assert create_error(pool(namespaceAffinity={"matchLabels": {"bad key": "x"}})) == (
        P + "spec.namespaceAffinity.matchLabels[bad key]: 'bad key' is not a valid label key: "
        "the name part must be 1-63 characters of letters, digits, '-', '_' and '.', "
        "starting and ending with a letter or digit"
    )
    assert create_error(pool(podAffinity={"matchLabels": {"app": "-web"}})) == (
        P + "spec.podAffinity.matchLabels[app]: '-web' is not a valid label value: "
        "at most 63 characters of letters, digits, '-', '_' and '.', "
        "starting and ending with a letter or digit"
    )


def test_valid_selectors_pass() -> None:
    """Well-formed selectors of every kind are accepted."""
    validation.validate_create(
        pool(
            podAffinity={"matchLabels": {"app.kubernetes.io/name": "web"}},
            namespaceAffinity={"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]},
            nodeAffinity={"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a", "b"]}]},
            nodeName=["node1"],
            multusName=["kube-system/macvlan"],
        )
    )


# --- rules across pools -------------------------------------------------------------------------


def test_overlapping_subnets_of_the_same_family_are_rejected() -> None:
    """Pools of one family may not have overlapping but different subnets."""
    other = pool("pool-b", subnet="10.0.0.0/16", ips=[], gateway=None)
    assert create_error(pool(), [other]) == (
        P + 'spec.subnet: 10.0.0.0/24 overlaps spec.subnet 10.0.0.0/16 of SpiderIPPool "pool-b"'
    )


def test_identical_subnets_with_disjoint_ips_are_allowed() -> None:
    """Several pools may share a subnet when their IPs are disjoint."""
    other = pool("pool-b", ips=["10.0.0.21-10.0.0.40"])
    validation.validate_create(pool(), [other])


def test_pools_sharing_a_subnet_must_not_share_ips() -> None:
    """The effective IPs (ips minus excludeIPs) of pools with one subnet are disjoint."""
    other = pool("pool-b", ips=["10.0.0.15-10.0.0.40"], excludeIPs=["10.0.0.16-10.0.0.19"])
    assert create_error(pool(), [other]) == (
        P + 'spec.ips: 10.0.0.15, 10.0.0.20 also belong to SpiderIPPool "pool-b" with the same '
        "subnet; pools sharing a subnet must not share IPs (a pool's IPs are spec.ips minus spec.excludeIPs)"
    )
    validation.validate_create(pool(excludeIPs=["10.0.0.15", "10.0.0.20"]), [other])


def test_other_family_and_other_kinds_are_ignored() -> None:
    """An IPv6 pool never conflicts with an IPv4 pool."""
    other = pool("pool-b", subnet="fd00::/64", ips=["fd00::10"], gateway=None)
    validation.validate_create(pool(), [other])


# --- update --------------------------------------------------------------------------------------


def update_error(old: dict[str, Any], new: dict[str, Any], peers: list[dict[str, Any]] | None = None) -> str:
    with pytest.raises(InvalidObject) as info:
        validation.validate_update(old, new, peers or [])
    return info.value.message


def test_subnet_is_immutable() -> None:
    """Changing spec.subnet is refused with both values named."""
    old = pool()
    new = pool(subnet="10.1.0.0/24", ips=["10.1.0.10"], gateway=None)
    assert update_error(old, new) == (
        P + "spec.subnet: is immutable (stored: 10.0.0.0/24, requested: 10.1.0.0/24); "
        "create a new object for another subnet"
    )


def test_ip_version_is_immutable() -> None:
    """Changing spec.ipVersion is refused."""
    new = pool(ipVersion=6)
    assert update_error(pool(), new) == P + "spec.ipVersion: is immutable (stored: 4, requested: 6)"


def test_update_runs_the_create_rules_against_other_pools() -> None:
    """An update overlapping another pool's IPs is refused; the pool's own stored version is no peer."""
    old = pool()
    other = pool("pool-b", ips=["10.0.0.30-10.0.0.40"])
    new = pool(ips=["10.0.0.10-10.0.0.30"])
    assert update_error(old, new, [old, other]).startswith(
        P + 'spec.ips: 10.0.0.30 also belong to SpiderIPPool "pool-b"'
    )
    validation.validate_update(old, pool(ips=["10.0.0.10-10.0.0.29"]), [old, other])


def test_update_cannot_remove_an_allocated_ip() -> None:
    """Shrinking ips (or excluding) below an allocated address is refused, naming the pod."""
    old = with_allocations(pool(), {"10.0.0.15": {"pod": "default/web-0", "podUid": "u1"}})
    expected = (
        P + "spec.ips: remove an IP address 10.0.0.15 that is being used by Pod default/web-0; "
        "a pool's IPs are spec.ips minus spec.excludeIPs."
    )
    assert update_error(old, pool(ips=["10.0.0.16-10.0.0.20"])).startswith(expected)
    assert update_error(old, pool(excludeIPs=["10.0.0.15"])).startswith(expected)
    validation.validate_update(old, pool(ips=["10.0.0.10-10.0.0.30"]))


def test_an_allocated_ip_without_a_pod_is_named_by_its_container() -> None:
    """Outside Kubernetes a record has no pod: the refusal names the container, never "Pod ;"."""
    old = with_allocations(pool(), {"10.0.0.15": {"pod": "", "podUid": "", "containerID": "ctr-7"}})
    assert update_error(old, pool(ips=["10.0.0.16-10.0.0.20"])).startswith(
        P + "spec.ips: remove an IP address 10.0.0.15 that is being used by container ctr-7; "
        "a pool's IPs are spec.ips minus spec.excludeIPs."
    )


def test_an_empty_label_key_is_shown_not_blank() -> None:
    """An empty selector key is named as [""] in the field path, not as an empty []."""
    message = create_error(pool(podAffinity={"matchLabels": {"": "x"}}))
    assert message.startswith(P + "spec.podAffinity.matchLabels[\"\"]: '' is not a valid label key"), message


# --- manifests users write ----------------------------------------------------------------------


def test_example_manifests_load_unchanged() -> None:
    """Every deploy/examples manifest is valid as written, and defaulting keeps every value the user wrote."""
    documents = [
        doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc
    ]
    kinds = {doc["kind"] for doc in documents}
    assert {"SpiderIPPool", "SpiderSubnet", "SpiderReservedIP"} <= kinds
    assert {doc["metadata"]["name"] for doc in documents} >= {"demo-v4", "demo-v6"}
    stored: list[dict[str, Any]] = []
    for doc in documents:
        obj = validation.default_object(doc)
        validation.validate_create(obj, [s for s in stored if s["kind"] == obj["kind"]])
        for key, value in doc["spec"].items():
            assert obj["spec"][key] == value, (doc["metadata"]["name"], key)
        stored.append(obj)


def test_upstream_style_manifest_with_strings_from_yaml() -> None:
    """A manifest as upstream documents it (ipVersion given, ranges merged on write) is accepted."""
    text = """
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata:
  name: test-ippool
spec:
  ipVersion: 4
  subnet: 10.6.0.0/16
  ips:
  - 10.6.168.101-10.6.168.110
  - 10.6.168.111
  gateway: 10.6.0.1
"""
    obj = validation.default_object(yaml.safe_load(text))
    validation.validate_create(obj)
    assert obj["spec"]["ips"] == ["10.6.168.101-10.6.168.111"]
    assert obj["metadata"]["labels"] == {"ipam.spidernet.io/ippool-cidr": "10-6-0-0-16"}


def test_total_ip_count_subtracts_excluded_and_reserved() -> None:
    """totalIPCount is |ips - excludeIPs - reserved| of the pool's family."""
    obj = pool(ips=["10.0.0.10-10.0.0.20"], excludeIPs=["10.0.0.10"])
    reserved = validation.default_object(
        models.new_object(models.KIND_RESERVED_IP, "r", spec={"ips": ["10.0.0.20-10.0.0.30"]})
    )
    reserved_v6 = validation.default_object(
        models.new_object(models.KIND_RESERVED_IP, "r6", spec={"ips": ["fd00::1"]})
    )
    assert validation.total_ip_count(obj) == 10
    assert validation.total_ip_count(obj, [reserved, reserved_v6]) == 9
