"""Requested addresses as a pure judgement: granted from a pool the pod may use, else why not."""

from __future__ import annotations

import json
from typing import Any

import pytest
from spiderpool_common.errors import (
    InvalidAnnotation,
    InvalidRequest,
    PoolExhausted,
    RequestedIPInUse,
    RequestedIPNotAllowed,
    Unavailable,
)
from spiderpool_controller.domain.annotations import MULTUS_NETWORKS, POD_IPPOOL
from spiderpool_controller.domain.ipset import IPSet, ip_to_int
from spiderpool_controller.domain.models import AllocationRecord, new_object
from spiderpool_controller.domain.pool_selection import select_candidates
from spiderpool_controller.domain.pool_state import PoolState
from spiderpool_controller.domain.request import AllocationRequest
from spiderpool_controller.domain.requested_ips import (
    Judge,
    judge_for,
    matches_held,
    parse_requested,
    requested_for_nic,
)

NONE_RESERVED = {4: IPSet.empty(4), 6: IPSet.empty(6)}


def state(name: str, subnet: str, ips: list[str], **spec: Any) -> PoolState:
    version = 6 if ":" in subnet else 4
    obj = new_object("SpiderIPPool", name, spec={"ipVersion": version, "subnet": subnet, "ips": ips, **spec})
    obj["metadata"]["resourceVersion"] = "1"
    return PoolState.from_object(obj)


def request(**fields: Any) -> AllocationRequest:
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


def judge(
    req: AllocationRequest,
    pools: dict[str, PoolState],
    *,
    reserved: dict[int, IPSet] | None = None,
    max_allocated: int = 5000,
) -> Judge:
    models = {name: s.pool for name, s in pools.items()}
    (cand,) = select_candidates(req, models, frozenset())
    sets = reserved or NONE_RESERVED
    return judge_for(req, cand, pools, lambda v: sets[v], max_allocated)


def one(text: str) -> Any:
    return next(iter(parse_requested([text], "test").values()))


@pytest.fixture
def pools() -> dict[str, PoolState]:
    """a: 10.0.0.10-50 minus .20 (default); b: 10.0.0.100-110 (not default); v6: fd00::10-20."""
    return {
        "a": state("a", "10.0.0.0/24", ["10.0.0.10-10.0.0.50"], excludeIPs=["10.0.0.20"], default=True),
        "b": state("b", "10.0.0.0/24", ["10.0.0.100-10.0.0.110"]),
        "v6": state("v6", "fd00::/64", ["fd00::10-fd00::20"], default=True),
    }


def test_a_free_address_in_a_candidate_pool_is_granted_by_that_pool(pools: dict[str, PoolState]) -> None:
    """A free address inside the candidate pool's usable range is granted, naming that pool."""
    j = judge(request(), pools)
    assert j.grant(one("10.0.0.33")) == "a"
    assert j.grant(one("fd00::11/64")) == "v6"


def test_a_cidr_with_the_subnets_prefix_or_a_host_prefix_is_accepted(pools: dict[str, PoolState]) -> None:
    """Multus and static write CIDRs: the subnet's prefix and /32 are both the same request."""
    j = judge(request(), pools)
    assert j.grant(one("10.0.0.33/24")) == "a"
    assert j.grant(one("10.0.0.33/32")) == "a"


def test_a_cidr_with_another_prefix_is_refused_naming_the_subnet(pools: dict[str, PoolState]) -> None:
    """A prefix that is neither the subnet's nor a host prefix was written for another network."""
    with pytest.raises(RequestedIPNotAllowed, match=r"asked as /16, but IPPool a's subnet is 10.0.0.0/24"):
        judge(request(), pools).grant(one("10.0.0.33/16"))


def test_an_excluded_address_is_refused_naming_excludeips(pools: dict[str, PoolState]) -> None:
    """An address the pool's excludeIPs removes is refused with that reason."""
    with pytest.raises(RequestedIPNotAllowed, match=r"10.0.0.20 for eth0: spec.excludeIPs of IPPool a"):
        judge(request(), pools).grant(one("10.0.0.20"))


def test_an_address_outside_the_ranges_of_the_subnet_is_refused_naming_spec_ips(
    pools: dict[str, PoolState],
) -> None:
    """An address in the candidate's subnet but outside every pool's ips is refused as outside spec.ips."""
    with pytest.raises(RequestedIPNotAllowed, match=r"outside spec.ips of IPPool a"):
        judge(request(), pools).grant(one("10.0.0.70"))


def test_an_address_of_another_subnet_is_refused_listing_the_pods_pools(pools: dict[str, PoolState]) -> None:
    """An address no pool holds is refused, listing the pools the pod may use."""
    with pytest.raises(RequestedIPNotAllowed, match=r"in none of the pod's IPv4 pools for eth0: a"):
        judge(request(), pools).grant(one("192.168.9.9"))


def test_an_address_of_a_pool_the_pod_was_not_given_says_which_rule_chose_its_pools(
    pools: dict[str, PoolState],
) -> None:
    """An address held by a pool outside the winning rule's list names the pool and the rule."""
    with pytest.raises(RequestedIPNotAllowed) as caught:
        judge(request(), pools).grant(one("10.0.0.105"))
    assert "IPPool b holds it, but it is not among the IPPools cluster default pools gives eth0: a" in str(
        caught.value
    )


def test_an_address_of_a_pool_filtered_out_by_affinity_gives_the_filters_reason() -> None:
    """When the pool holding the address was dropped by a filter, the filter's reason is the answer."""
    pools = {
        "a": state("a", "10.0.0.0/24", ["10.0.0.10-10.0.0.50"]),
        "pinned": state("pinned", "10.0.0.0/24", ["10.0.0.100-10.0.0.110"], nodeName=["node9"]),
    }
    req = request(pod_annotations={POD_IPPOOL: json.dumps({"ipv4": ["a", "pinned"]})})
    with pytest.raises(RequestedIPNotAllowed, match=r"node node1 is not in nodeName of IPPool pinned"):
        judge(req, pools).grant(one("10.0.0.105"))


def test_a_reserved_address_is_refused_as_reserved(pools: dict[str, PoolState]) -> None:
    """A SpiderReservedIP's address is refused even though the pool would hold it."""
    reserved = {4: IPSet.parse(["10.0.0.40"], 4), 6: IPSet.empty(6)}
    with pytest.raises(RequestedIPNotAllowed, match="reserved by a SpiderReservedIP"):
        judge(request(), pools, reserved=reserved).grant(one("10.0.0.40"))


def test_an_address_held_by_another_pod_is_in_use_naming_the_holder(pools: dict[str, PoolState]) -> None:
    """An allocated address is refused as in use (109), naming the pod and interface holding it."""
    pools["a"].take(ip_to_int("10.0.0.11"), AllocationRecord("app/db-1", "uid-9", "c9", "net1"))
    with pytest.raises(RequestedIPInUse, match=r"gave it to pod app/db-1 \(interface net1\)"):
        judge(request(), pools).grant(one("10.0.0.11"))


def test_an_address_whose_release_is_not_durable_yet_is_try_again(pools: dict[str, PoolState]) -> None:
    """An address given back but not yet written stays blocked: the answer is try again later."""
    ip = ip_to_int("10.0.0.12")
    pools["a"].take(ip, AllocationRecord("app/old", "uid-8"))
    pools["a"].give_back(ip)
    with pytest.raises(Unavailable, match="being written; try again"):
        judge(request(), pools).grant(one("10.0.0.12"))
    pools["a"].forget(ip)
    assert judge(request(), pools).grant(one("10.0.0.12")) == "a"


def test_a_pool_at_its_record_threshold_refuses_as_exhausted(pools: dict[str, PoolState]) -> None:
    """A free address in a pool holding its threshold of records is refused as exhausted (100)."""
    pools["a"].take(ip_to_int("10.0.0.10"), AllocationRecord("app/x", "uid-x"))
    with pytest.raises(PoolExhausted, match="its threshold"):
        judge(request(), pools, max_allocated=1).grant(one("10.0.0.11"))


def test_a_family_the_nic_has_no_pool_of_is_refused() -> None:
    """Asking for an IPv6 address where the NIC only has IPv4 pools is refused."""
    pools = {"a": state("a", "10.0.0.0/24", ["10.0.0.10-10.0.0.50"], default=True)}
    with pytest.raises(RequestedIPNotAllowed, match="no IPv6 pool for eth0"):
        judge(request(), pools).grant(one("fd00::11"))


def test_parse_refuses_garbage_and_two_addresses_of_one_family() -> None:
    """Bad input names its source: not an address, or two addresses of one family."""
    with pytest.raises(InvalidRequest, match=r"src: 'x.y' is not an IP address or CIDR"):
        parse_requested(["x.y"], "src")
    with pytest.raises(InvalidRequest, match="both IPv4"):
        parse_requested(["10.0.0.1", "10.0.0.2/24"], "src")
    both = parse_requested(["10.0.0.1/24", "10.0.0.1", "fd00::1"], "src")
    assert {v: w.address for v, w in both.items()} == {4: "10.0.0.1", 6: "fd00::1"}
    assert both[4].prefixlen == 24


def test_other_nics_take_their_request_from_the_multus_selection_element() -> None:
    """The ADD's own NIC uses the runtime's list; another NIC its Multus element's ips (text or by name)."""
    networks = json.dumps(
        [{"name": "n1", "ips": ["10.1.0.5/24"]}, {"name": "n2", "interface": "storage", "ips": ["fd00::5"]}]
    )
    req = request(requested_ips=("10.0.0.7",), pod_annotations={MULTUS_NETWORKS: networks})
    assert {v: w.address for v, w in requested_for_nic(req, "eth0").items()} == {4: "10.0.0.7"}
    assert {v: w.address for v, w in requested_for_nic(req, "net1").items()} == {4: "10.1.0.5"}
    assert {v: w.address for v, w in requested_for_nic(req, "storage").items()} == {6: "fd00::5"}
    assert requested_for_nic(req, "net3") == {}
    bad = request(pod_annotations={MULTUS_NETWORKS: json.dumps([{"name": "n1", "ips": ["10.1.0.500"]}])})
    with pytest.raises(InvalidAnnotation, match="is not an IP address or CIDR"):
        requested_for_nic(bad, "net1")


def test_matches_held_compares_family_by_family() -> None:
    """Held addresses match a request when every requested family holds exactly that address."""
    wanted = parse_requested(["10.0.0.7"], "t")
    assert matches_held(wanted, [(4, ip_to_int("10.0.0.7")), (6, 1)])
    assert not matches_held(wanted, [(4, ip_to_int("10.0.0.8"))])
    assert not matches_held(wanted, [(6, 1)])
