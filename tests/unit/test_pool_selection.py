"""Candidate pool selection: upstream's rule priority, wildcards, filtering, sorting and families."""

from __future__ import annotations

import json
from dataclasses import replace
from fnmatch import fnmatchcase
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spiderpool_common.errors import InvalidAnnotation, InvalidRequest, NoPoolMatched, PoolNotFound
from spiderpool_controller.domain.annotations import (
    MULTUS_NETWORKS,
    NS_DEFAULT_IPV4_IPPOOL,
    NS_DEFAULT_IPV6_IPPOOL,
    POD_IPPOOL,
    POD_IPPOOLS,
)
from spiderpool_controller.domain.models import IPPool, IPPoolSpec, LabelSelector, ObjectMeta
from spiderpool_controller.domain.pool_selection import NicCandidates, select_candidates
from spiderpool_controller.domain.request import AllocationRequest

ANY = frozenset[int]()
BOTH = frozenset({4, 6})


def pool(name: str, version: int = 4, *, terminating: bool = False, **spec: Any) -> IPPool:
    """A pool of ``version`` with the given IPPoolSpec fields."""
    subnet = "10.0.0.0/24" if version == 4 else "fd00::/64"
    meta = ObjectMeta(name=name, deletion_timestamp="2026-01-01T00:00:00Z" if terminating else None)
    return IPPool(meta, IPPoolSpec(subnet=subnet, ip_version=version, **spec))


def pools_of(*items: IPPool) -> dict[str, IPPool]:
    return {p.name: p for p in items}


def request(**fields: Any) -> AllocationRequest:
    """A request for eth0 of pod app/web-0 on node1, with ``fields`` overriding."""
    base: dict[str, Any] = {
        "container_id": "c1",
        "ifname": "eth0",
        "pod_namespace": "app",
        "pod_name": "web-0",
        "pod_uid": "uid-1",
        "node": "node1",
    }
    base.update(fields)
    return AllocationRequest(**base)


def ippool_anno(ipv4: list[str] | None = None, ipv6: list[str] | None = None) -> dict[str, str]:
    return {POD_IPPOOL: json.dumps({"ipv4": ipv4 or [], "ipv6": ipv6 or []})}


def only(result: list[NicCandidates]) -> NicCandidates:
    assert len(result) == 1
    return result[0]


# ---------------------------------------------------------------------------------------
# the request


def test_request_identity_is_pod_uid_else_container_id() -> None:
    """An allocation is owned by the pod UID, or the container ID outside Kubernetes."""
    assert request().identity == "uid-1"
    assert request(pod_uid="").identity == "c1"
    assert request().pod_key == "app/web-0"


# ---------------------------------------------------------------------------------------
# acquisition priority

ALL_SOURCES_POOLS = pools_of(
    pool("anno-multi"),
    pool("anno-single"),
    pool("ns-default"),
    pool("cni-default"),
    pool("cluster-default", default=True),
)


def _all_sources(**overrides: Any) -> AllocationRequest:
    annotations = {
        POD_IPPOOLS: json.dumps([{"interface": "eth0", "ipv4": ["anno-multi"]}]),
        **ippool_anno(["anno-single"]),
    }
    fields: dict[str, Any] = {
        "pod_annotations": annotations,
        "namespace_annotations": {NS_DEFAULT_IPV4_IPPOOL: '["ns-default"]'},
        "default_ipv4_pools": ("cni-default",),
    }
    fields.update(overrides)
    return request(**fields)


def test_ippools_annotation_wins_over_every_other_rule() -> None:
    """The pod's ippools annotation overrides ippool, namespace, CNI and cluster defaults."""
    assert only(select_candidates(_all_sources(), ALL_SOURCES_POOLS, ANY)).ipv4 == ("anno-multi",)


def test_ippool_annotation_wins_over_defaults() -> None:
    """Without ippools, the pod's ippool annotation overrides every default."""
    req = _all_sources(pod_annotations=ippool_anno(["anno-single"]))
    assert only(select_candidates(req, ALL_SOURCES_POOLS, ANY)).ipv4 == ("anno-single",)


def test_namespace_defaults_win_over_config_and_cluster_defaults() -> None:
    """Without pod annotations, the namespace default pools are used."""
    req = _all_sources(pod_annotations={})
    assert only(select_candidates(req, ALL_SOURCES_POOLS, ANY)).ipv4 == ("ns-default",)


def test_cni_config_defaults_win_over_cluster_defaults() -> None:
    """Without annotations, the CNI config's default pools are used."""
    req = _all_sources(pod_annotations={}, namespace_annotations={})
    assert only(select_candidates(req, ALL_SOURCES_POOLS, ANY)).ipv4 == ("cni-default",)


def test_cluster_default_pools_are_the_last_rule() -> None:
    """With no other rule, every spec.default pool is a candidate, per family, in name order."""
    pools = pools_of(
        pool("z4", default=True), pool("a4", default=True), pool("b6", 6, default=True), pool("x")
    )
    result = only(select_candidates(request(), pools, ANY))
    assert (result.ipv4, result.ipv6) == (("a4", "z4"), ("b6",))
    assert result.source == "cluster default pools"


def test_no_rule_at_all_is_no_pool_matched() -> None:
    """With no rule yielding any pool, selection fails like upstream."""
    with pytest.raises(NoPoolMatched, match="no pool selection rules of any type are specified for eth0"):
        select_candidates(request(), pools_of(pool("x")), ANY)


def test_rules_yielding_no_names_fall_through() -> None:
    """An annotation that names no pool does not win; the next rule that does is used."""
    req = request(
        pod_annotations={POD_IPPOOLS: json.dumps([{"interface": "eth0"}]), **ippool_anno()},
        namespace_annotations={NS_DEFAULT_IPV4_IPPOOL: "[]"},
        default_ipv4_pools=("cni-default",),
    )
    assert only(select_candidates(req, ALL_SOURCES_POOLS, ANY)).ipv4 == ("cni-default",)


def test_ippools_annotation_returns_every_listed_nic() -> None:
    """The ippools annotation allocates all its NICs at once, in annotation order."""
    annotations = {
        POD_IPPOOLS: json.dumps(
            [{"interface": "net1", "ipv4": ["b"]}, {"interface": "eth0", "ipv4": ["a"], "ipv6": ["a6"]}]
        )
    }
    pools = pools_of(pool("a"), pool("b"), pool("a6", 6))
    result = select_candidates(request(pod_annotations=annotations), pools, ANY)
    assert [(c.nic, c.ipv4, c.ipv6) for c in result] == [("net1", ("b",), ()), ("eth0", ("a",), ("a6",))]


def test_ippools_annotation_without_names_maps_items_to_eth0_and_net_index() -> None:
    """Unnamed ippools items serve eth0, net1, ... so the net1 ADD finds its own pools."""
    annotations = {POD_IPPOOLS: json.dumps([{"ipv4": ["a"]}, {"ipv4": ["b"]}])}
    result = select_candidates(
        request(ifname="net1", pod_annotations=annotations), pools_of(pool("a"), pool("b")), ANY
    )
    assert [(c.nic, c.ipv4) for c in result] == [("eth0", ("a",)), ("net1", ("b",))]


def test_ippools_annotation_must_list_the_nic_being_added() -> None:
    """An ippools annotation that omits the request's interface is rejected."""
    annotations = {POD_IPPOOLS: json.dumps([{"interface": "net1", "ipv4": ["a"]}])}
    with pytest.raises(
        InvalidAnnotation, match="lists interfaces net1 but not eth0, the interface being added"
    ):
        select_candidates(request(pod_annotations=annotations), pools_of(pool("a")), ANY)


def test_ippools_nic_without_any_pool_is_no_pool_matched() -> None:
    """Every NIC listed in ippools must name at least one pool."""
    annotations = {POD_IPPOOLS: json.dumps([{"interface": "eth0", "ipv4": ["a"]}, {"interface": "net1"}])}
    with pytest.raises(
        NoPoolMatched, match=r"no pool for net1 from pod annotation ipam\.spidernet\.io/ippools"
    ):
        select_candidates(request(pod_annotations=annotations), pools_of(pool("a")), ANY)


def test_clean_gateway_comes_from_the_ippools_item_else_the_request() -> None:
    """An ippools item's cleangateway wins; unset, the request's NIC takes the request's flag."""
    annotations = {
        POD_IPPOOLS: json.dumps(
            [
                {"interface": "eth0", "ipv4": ["a"]},
                {"interface": "net1", "ipv4": ["b"], "cleangateway": True},
                {"interface": "net2", "ipv4": ["c"]},
            ]
        )
    }
    pools = pools_of(pool("a"), pool("b"), pool("c"))
    result = select_candidates(request(pod_annotations=annotations, clean_gateway=True), pools, ANY)
    assert [c.clean_gateway for c in result] == [True, True, False]
    single = request(pod_annotations=ippool_anno(["a"]), clean_gateway=True)
    assert only(select_candidates(single, pools, ANY)).clean_gateway is True
    assert only(select_candidates(replace(single, clean_gateway=False), pools, ANY)).clean_gateway is False


# ---------------------------------------------------------------------------------------
# names: wildcards, missing pools, duplicates


def test_wildcards_expand_against_the_family_in_name_order() -> None:
    """A wildcard name expands to the pools of that family matching it, sorted by name."""
    pools = pools_of(pool("vlan20"), pool("vlan10"), pool("vlan30-v6", 6), pool("other"), pool("vlan5"))
    req = request(pod_annotations=ippool_anno(["other", "vlan*"], ["vlan*"]))
    result = only(select_candidates(req, pools, ANY))
    assert result.ipv4 == ("other", "vlan10", "vlan20", "vlan5")
    assert result.ipv6 == ("vlan30-v6",)


def test_wildcard_classes_and_single_characters() -> None:
    """'?' matches one character and '[...]' a class, as shell globs do."""
    pools = pools_of(pool("p1"), pool("p2"), pool("p3"), pool("p10"))
    req = request(pod_annotations=ippool_anno(["p[13]", "p?"]))
    assert only(select_candidates(req, pools, ANY)).ipv4 == ("p1", "p3", "p2")


def test_wildcard_negated_class_accepts_gos_caret() -> None:
    """A '[^...]' class is negated as in Go's filepath.Match, like '[!...]'."""
    pools = pools_of(pool("p1"), pool("p2"), pool("p3"))
    req = request(pod_annotations=ippool_anno(["p[^1]"]))
    assert only(select_candidates(req, pools, ANY)).ipv4 == ("p2", "p3")
    req = request(pod_annotations=ippool_anno(["p[!2]"]))
    assert only(select_candidates(req, pools, ANY)).ipv4 == ("p1", "p3")


def test_wildcard_matching_nothing_is_no_pool_matched() -> None:
    """A list whose wildcards match no pool of the family yields no candidates."""
    req = request(pod_annotations=ippool_anno(["nope*"]))
    with pytest.raises(NoPoolMatched, match=r"no IPv4 IPPool matches \[nope\*\] for eth0"):
        select_candidates(req, pools_of(pool("p1"), pool("nope6", 6)), ANY)


def test_missing_named_pool_is_pool_not_found() -> None:
    """A plain pool name that does not exist is an error naming it."""
    req = request(pod_annotations=ippool_anno(["p1", "ghost"]))
    with pytest.raises(PoolNotFound, match=r"IPPool ghost \(IPv4 for eth0, from pod annotation"):
        select_candidates(req, pools_of(pool("p1")), ANY)


def test_duplicate_names_in_an_annotation_are_invalid() -> None:
    """Listing a pool twice in an annotation is rejected as an invalid annotation."""
    req = request(pod_annotations=ippool_anno(["p1", "p1"]))
    with pytest.raises(InvalidAnnotation, match="IPv4 pool p1 is listed twice for eth0"):
        select_candidates(req, pools_of(pool("p1")), ANY)


def test_duplicate_names_in_the_cni_config_are_an_invalid_request() -> None:
    """Listing a pool twice in the CNI config is rejected as an invalid request."""
    req = request(default_ipv6_pools=("p6", "p6"))
    with pytest.raises(InvalidRequest, match=r"CNI config .*IPv6 pool p6 is listed twice"):
        select_candidates(req, pools_of(pool("p6", 6)), ANY)


def test_a_wildcard_overlapping_a_name_lists_the_pool_once() -> None:
    """A pool named and also matched by a wildcard is tried once, at its first place."""
    req = request(pod_annotations=ippool_anno(["p2", "p*"]))
    assert only(select_candidates(req, pools_of(pool("p1"), pool("p2")), ANY)).ipv4 == ("p2", "p1")


# ---------------------------------------------------------------------------------------
# filtering

SEL_ZONE_A = LabelSelector({"zone": "a"})

FILTER_CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("terminating", {"terminating": True}, 4, "terminating IPPool bad"),
    ("disabled", {"disable": True}, 4, "disabled IPPool bad"),
    ("wrong family", {}, 6, "expect an IPv4 IPPool, but IPPool bad is IPv6"),
    ("nodeName", {"node_name": ["node2"]}, 4, "node node1 is not in nodeName of IPPool bad"),
    (
        "nodeAffinity",
        {"node_affinity": LabelSelector({"zone": "b"})},
        4,
        "node node1 does not match nodeAffinity",
    ),
    (
        "namespaceName",
        {"namespace_name": ["other"]},
        4,
        "namespace app is not in namespaceName of IPPool bad",
    ),
    (
        "namespaceAffinity",
        {"namespace_affinity": LabelSelector({"team": "x"})},
        4,
        "namespace app does not match namespaceAffinity of IPPool bad",
    ),
    (
        "podAffinity",
        {"pod_affinity": LabelSelector({"app": "db"})},
        4,
        "pod app/web-0 does not match podAffinity",
    ),
    (
        "multusName",
        {"multus_name": ["kube-system/ipvlan"]},
        4,
        "network kube-system/macvlan of eth0 is not in",
    ),
]

FILTER_REQUEST = request(
    node_labels={"zone": "a"},
    namespace_labels={"team": "y"},
    pod_labels={"app": "web"},
    multus_name="kube-system/macvlan",
)


@pytest.mark.parametrize(
    ("case", "spec", "version", "reason"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES]
)
def test_filtered_pool_is_dropped_and_the_rest_kept(
    case: str, spec: dict[str, Any], version: int, reason: str
) -> None:
    """A pool failing one filter is dropped while a matching pool stays."""
    pools = pools_of(pool("bad", version, **spec), pool("good"))
    req = replace(FILTER_REQUEST, pod_annotations=ippool_anno(["bad", "good"]))
    assert only(select_candidates(req, pools, ANY)).ipv4 == ("good",)


@pytest.mark.parametrize(
    ("case", "spec", "version", "reason"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES]
)
def test_every_pool_filtered_names_the_reason(
    case: str, spec: dict[str, Any], version: int, reason: str
) -> None:
    """When every pool of a family is filtered out, the error gives the reason per pool."""
    req = replace(FILTER_REQUEST, pod_annotations=ippool_anno(["bad"]))
    with pytest.raises(NoPoolMatched) as info:
        select_candidates(req, pools_of(pool("bad", version, **spec)), ANY)
    assert str(info.value).startswith("all IPv4 IPPools [bad] of eth0 filtered out: ")
    assert reason in str(info.value)


def test_filtered_out_message_lists_every_pool_and_reason() -> None:
    """The all-filtered error lists the pools in order and one reason for each."""
    pools = pools_of(pool("a", disable=True), pool("b", terminating=True))
    req = request(pod_annotations=ippool_anno(["a", "b"]))
    with pytest.raises(
        NoPoolMatched,
        match=r"^all IPv4 IPPools \[a b\] of eth0 filtered out: disabled IPPool a; terminating IPPool b$",
    ):
        select_candidates(req, pools, ANY)


def test_matching_affinities_keep_the_pool() -> None:
    """A pool whose every affinity matches the request is kept."""
    matching = pool(
        "fit",
        node_affinity=SEL_ZONE_A,
        namespace_affinity=LabelSelector({"team": "y"}),
        pod_affinity=LabelSelector({"app": "web"}),
        multus_name=["kube-system/macvlan"],
    )
    req = replace(FILTER_REQUEST, pod_annotations=ippool_anno(["fit"]))
    assert only(select_candidates(req, pools_of(matching), ANY)).ipv4 == ("fit",)


def test_node_name_takes_precedence_over_node_affinity() -> None:
    """With nodeName set, nodeAffinity is not consulted (upstream's else-branch)."""
    both = pool("both", node_name=["node1"], node_affinity=LabelSelector({"zone": "nowhere"}))
    req = request(pod_annotations=ippool_anno(["both"]))
    assert only(select_candidates(req, pools_of(both), ANY)).ipv4 == ("both",)


def test_namespace_name_takes_precedence_over_namespace_affinity() -> None:
    """With namespaceName set, namespaceAffinity is not consulted (upstream's else-branch)."""
    both = pool("both", namespace_name=["app"], namespace_affinity=LabelSelector({"team": "none"}))
    req = request(pod_annotations=ippool_anno(["both"]))
    assert only(select_candidates(req, pools_of(both), ANY)).ipv4 == ("both",)


def test_bare_multus_name_matches_the_nad_in_any_namespace() -> None:
    """A multusName entry without namespace matches the NAD's name part."""
    bare = pool("bare", multus_name=["macvlan"])
    req = request(pod_annotations=ippool_anno(["bare"]), multus_name="kube-system/macvlan")
    assert only(select_candidates(req, pools_of(bare), ANY)).ipv4 == ("bare",)


def test_multus_name_of_other_nics_comes_from_the_networks_annotation() -> None:
    """For ippools NICs other than the request's, the NAD is read from the Multus annotation."""
    annotations = {
        POD_IPPOOLS: json.dumps([{"ipv4": ["p0"]}, {"ipv4": ["p1"]}]),
        MULTUS_NETWORKS: "kube-system/sriov",
    }
    pools = pools_of(pool("p0", multus_name=["calico"]), pool("p1", multus_name=["kube-system/sriov"]))
    req = request(pod_annotations=annotations, multus_name="kube-system/calico")
    assert [c.ipv4 for c in select_candidates(req, pools, ANY)] == [("p0",), ("p1",)]
    wrong = {**annotations, MULTUS_NETWORKS: "kube-system/other"}
    with pytest.raises(
        NoPoolMatched, match="network kube-system/other of net1 is not in multusName of IPPool p1"
    ):
        select_candidates(replace(req, pod_annotations=wrong), pools, ANY)


def test_unknown_multus_network_fails_a_multus_name_pool() -> None:
    """A pool restricted by multusName does not serve a NIC whose NAD is unknown."""
    req = request(pod_annotations=ippool_anno(["m"]))
    with pytest.raises(NoPoolMatched, match=r"network \(unknown\) of eth0 is not in multusName of IPPool m"):
        select_candidates(req, pools_of(pool("m", multus_name=["macvlan"])), ANY)


def test_cluster_default_pools_are_filtered_too() -> None:
    """Cluster default pools go through the same filters as named ones."""
    pools = pools_of(pool("d1", default=True, node_name=["node9"]), pool("d2", default=True))
    assert only(select_candidates(request(), pools, ANY)).ipv4 == ("d2",)


# ---------------------------------------------------------------------------------------
# sorting


def test_pools_sort_by_affinity_presence_in_upstream_order() -> None:
    """podAffinity > nodeName > nodeAffinity > namespaceName > namespaceAffinity > multusName presence."""
    any_sel = LabelSelector()
    ordered = [
        pool("pod", pod_affinity=any_sel),
        pool("node", node_name=["node1"], multus_name=["kube-system/macvlan"]),
        pool("nodeaff", node_affinity=any_sel),
        pool("ns", namespace_name=["app"]),
        pool("nsaff", namespace_affinity=any_sel),
        pool("multus", multus_name=["macvlan"]),
        pool("plain"),
    ]
    names = [p.name for p in reversed(ordered)]
    req = request(pod_annotations=ippool_anno(names), multus_name="kube-system/macvlan")
    assert only(select_candidates(req, pools_of(*ordered), ANY)).ipv4 == tuple(p.name for p in ordered)


def test_sort_ties_keep_list_order() -> None:
    """Pools equal in affinity presence keep the order they were listed in."""
    pools = pools_of(pool("c"), pool("a"), pool("b", node_name=["node1"]), pool("d", node_name=["node1"]))
    req = request(pod_annotations=ippool_anno(["c", "d", "a", "b"]))
    assert only(select_candidates(req, pools, ANY)).ipv4 == ("d", "b", "c", "a")


# ---------------------------------------------------------------------------------------
# families


def test_without_required_families_each_family_with_names_is_taken() -> None:
    """The embedded default allocates the families that have pools: IPv4 only just works."""
    pools = pools_of(pool("p4"), pool("p6", 6))
    v4_only = only(select_candidates(request(default_ipv4_pools=("p4",)), pools, ANY))
    assert (v4_only.ipv4, v4_only.ipv6, v4_only.families) == (("p4",), (), (4,))
    dual = only(
        select_candidates(request(default_ipv4_pools=("p4",), default_ipv6_pools=("p6",)), pools, ANY)
    )
    assert dual.families == (4, 6)


def test_required_family_without_names_is_no_pool_matched() -> None:
    """A required family the winning rule does not name fails; lower rules are not consulted."""
    pools = pools_of(pool("p4"), pool("d6", 6, default=True))
    req = request(namespace_annotations={NS_DEFAULT_IPV4_IPPOOL: '["p4"]'})
    with pytest.raises(
        NoPoolMatched, match=r"^no IPv6 pool for eth0 from namespace app .*\(IPv6 is required\)$"
    ):
        select_candidates(req, pools, BOTH)


def test_required_families_drop_the_families_not_enabled() -> None:
    """With only IPv4 required (IPv6 disabled), IPv6 names are not allocated."""
    pools = pools_of(pool("p4"), pool("p6", 6))
    req = request(namespace_annotations={NS_DEFAULT_IPV4_IPPOOL: '["p4"]', NS_DEFAULT_IPV6_IPPOOL: '["p6"]'})
    result = only(select_candidates(req, pools, frozenset({4})))
    assert (result.ipv4, result.ipv6) == (("p4",), ())


def test_required_families_must_be_ip_versions() -> None:
    """A required family other than 4 or 6 is a programming error."""
    with pytest.raises(ValueError, match="required IP families must be among"):
        select_candidates(request(), {}, frozenset({5}))


# ---------------------------------------------------------------------------------------
# property: only existing, usable, matching pools of the right family come back

NODES = ("node1", "node2")
NAMESPACES = ("app", "web")
NADS = ("kube-system/macvlan", "kube-system/ipvlan", "app/sriov")
POOL_NAMES = [f"p{i}" for i in range(8)]
labels = st.dictionaries(st.sampled_from(["k", "z"]), st.sampled_from(["1", "2"]), max_size=2)
rarely = st.sampled_from([False] * 7 + [True])


def sometimes(strategy: st.SearchStrategy[Any], default: Any) -> st.SearchStrategy[Any]:
    """``default`` seven times in eight, else a draw from ``strategy`` (filters stay passable)."""
    return st.one_of(*[st.just(default)] * 7, strategy)


selectors = sometimes(st.builds(LabelSelector, labels), None)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, IPPool], AllocationRequest]:
    """Random pools, and a request whose names mostly refer to them (sometimes not)."""
    pools: dict[str, IPPool] = {}
    for name in draw(st.lists(st.sampled_from(POOL_NAMES), unique=True, min_size=1, max_size=8)):
        pools[name] = pool(
            name,
            draw(st.sampled_from([4, 6])),
            terminating=draw(rarely),
            disable=draw(rarely),
            default=draw(st.booleans()),
            node_name=draw(sometimes(st.lists(st.sampled_from(NODES), min_size=1, max_size=2), [])),
            node_affinity=draw(selectors),
            namespace_name=draw(sometimes(st.lists(st.sampled_from(NAMESPACES), min_size=1, max_size=2), [])),
            namespace_affinity=draw(selectors),
            pod_affinity=draw(selectors),
            multus_name=draw(
                sometimes(st.lists(st.sampled_from([*NADS, "macvlan"]), min_size=1, max_size=2), [])
            ),
        )
    # per family: names of that family's pools, now and then with a wildcard, a name of the
    # other family or of no pool, and now and then nothing at all
    odd = sometimes(st.sampled_from([*POOL_NAMES, "p*", "p[0-3]"]).map(lambda n: [n]), [])

    def names(version: int) -> st.SearchStrategy[list[str]]:
        family = sorted(n for n, p in pools.items() if p.version == version)
        listed = (
            st.lists(st.sampled_from(family), unique=True, min_size=1, max_size=4) if family else st.just([])
        )
        both = st.builds(lambda a, b: [*a, *(n for n in b if n not in a)], listed, odd)
        return st.one_of(both, both, both, st.just([]))

    annotations = {}
    if draw(rarely):
        annotations[POD_IPPOOL] = json.dumps({"ipv4": draw(names(4)), "ipv6": draw(names(6))})
    req = request(
        node=draw(st.sampled_from(NODES)),
        pod_namespace=draw(st.sampled_from(NAMESPACES)),
        pod_labels=draw(labels),
        namespace_labels=draw(labels),
        node_labels=draw(labels),
        pod_annotations=annotations,
        default_ipv4_pools=tuple(draw(names(4))),
        default_ipv6_pools=tuple(draw(names(6))),
        multus_name=draw(st.sampled_from(NADS)),
    )
    return pools, req


def _admits(p: IPPool, version: int, req: AllocationRequest) -> bool:
    """Independent statement of the filters for the property check."""
    spec = p.spec
    node_ok = (
        req.node in spec.node_name
        if spec.node_name
        else (spec.node_affinity is None or spec.node_affinity.matches(req.node_labels))
    )
    ns_ok = (
        req.pod_namespace in spec.namespace_name
        if spec.namespace_name
        else (spec.namespace_affinity is None or spec.namespace_affinity.matches(req.namespace_labels))
    )
    pod_ok = spec.pod_affinity is None or spec.pod_affinity.matches(req.pod_labels)
    nad_name = req.multus_name.split("/")[1]
    multus_ok = not spec.multus_name or req.multus_name in spec.multus_name or nad_name in spec.multus_name
    return (
        not p.terminating
        and not spec.disable
        and p.version == version
        and node_ok
        and ns_ok
        and pod_ok
        and multus_ok
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.sampled_from([ANY, frozenset({4}), BOTH]))
def test_selection_only_returns_existing_usable_matching_pools(
    scenario: tuple[dict[str, IPPool], AllocationRequest], required: frozenset[int]
) -> None:
    """Every returned pool exists, is usable, has the family and admits the pod, in priority order."""
    pools, req = scenario
    try:
        result = select_candidates(req, pools, required)
    except (NoPoolMatched, PoolNotFound, InvalidAnnotation, InvalidRequest):
        return
    assert result
    for nic in result:
        assert nic.families
        if required:
            assert set(nic.families) == required
        for version in nic.families:
            names = nic.for_family(version)
            assert len(set(names)) == len(names)
            for name in names:
                assert name in pools
                assert _admits(pools[name], version, req), name
            keys = [
                [
                    pools[n].spec.pod_affinity is None,
                    not pools[n].spec.node_name,
                    pools[n].spec.node_affinity is None,
                    not pools[n].spec.namespace_name,
                    pools[n].spec.namespace_affinity is None,
                    not pools[n].spec.multus_name,
                ]
                for n in names
            ]
            assert keys == sorted(keys)


def _listed(req: AllocationRequest, pools: dict[str, IPPool], source: str, version: int) -> set[str]:
    """The pools the winning rule names for ``version``, wildcards expanded (test oracle)."""
    if source.startswith("pod annotation"):
        raw = json.loads(req.pod_annotations[POD_IPPOOL])[f"ipv{version}"]
    elif source.startswith("CNI config"):
        raw = list(req.default_ipv4_pools if version == 4 else req.default_ipv6_pools)
    else:
        return {n for n, p in pools.items() if p.spec.default and p.version == version}
    out: set[str] = set()
    for name in raw:
        if any(c in name for c in "*?["):
            out |= {n for n, p in pools.items() if p.version == version and fnmatchcase(n, name)}
        else:
            out.add(name)
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_selection_keeps_every_listed_pool_that_admits_the_pod(
    scenario: tuple[dict[str, IPPool], AllocationRequest],
) -> None:
    """No usable pool the winning rule names is dropped; "all filtered out" means none was usable."""
    pools, req = scenario
    try:
        result = select_candidates(req, pools, ANY)
    except NoPoolMatched as exc:
        if "filtered out" in str(exc):
            family = 4 if "IPv4 IPPools" in str(exc) else 6
            listed = str(exc).split("[", 1)[1].split("]", 1)[0].split()
            assert not any(_admits(pools[n], family, req) for n in listed)
        return
    except (PoolNotFound, InvalidAnnotation, InvalidRequest):
        return
    nic = only(result)
    for version in (4, 6):
        expected = {n for n in _listed(req, pools, nic.source, version) if _admits(pools[n], version, req)}
        assert set(nic.for_family(version)) == expected


def test_reasons_never_leave_a_blank_for_a_missing_pod_or_namespace() -> None:
    """Outside Kubernetes (no pod name, no namespace) messages say "(none)" or name the container."""
    req = request(pod_name="", pod_namespace="", pod_uid="", pod_labels={"app": "web"})
    with pytest.raises(NoPoolMatched) as info:
        select_candidates(
            req, pools_of(pool("p4", default=True, pod_affinity=LabelSelector({"app": "db"}))), ANY
        )
    assert "container c1 does not match podAffinity of IPPool p4" in info.value.message
    req = request(
        pod_namespace="", namespace_annotations={NS_DEFAULT_IPV4_IPPOOL: '["absent"]'}, pod_annotations={}
    )
    with pytest.raises(PoolNotFound) as missing:
        select_candidates(req, pools_of(pool("p4")), ANY)
    assert "namespace (none) annotations" in missing.value.message
    assert "  " not in missing.value.message
