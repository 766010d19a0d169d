"""Range changes never strand an allocated address silently: refused with the list, or forced and reported."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from spiderpool_common.errors import InvalidObject
from spiderpool_controller.domain import models, validation
from spiderpool_controller.domain.released_ips import ANNOTATION as DELAY
from spiderpool_controller.domain.stranded import FORCE_ANNOTATION, LISTED, stranded_in


def pool(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"subnet": "10.0.0.0/24", "ips": ["10.0.0.10-10.0.0.40"], **spec}
    obj = models.new_object(models.KIND_IPPOOL, "pool-a", spec=base)
    if annotations:
        obj["metadata"]["annotations"] = annotations
    return validation.default_object(obj)


def holding(obj: dict[str, Any], records: dict[str, dict[str, str]]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["status"] = {"allocatedIPs": json.dumps(records), "allocatedIPCount": len(records)}
    return out


def refusal(old: dict[str, Any], new: dict[str, Any]) -> str:
    with pytest.raises(InvalidObject) as caught:
        validation.validate_update(old, new)
    return caught.value.message


OLD = holding(
    pool(),
    {
        "10.0.0.12": {"pod": "default/web-0", "podUid": "u0"},
        "10.0.0.35": {"pod": "default/web-1", "podUid": "u1"},
        "10.0.0.36": {"pod": "", "podUid": "", "cid": "ctr-7"},
        "10.0.0.20": {"pod": "default/kept", "podUid": "u2"},
    },
)


def test_a_shrink_that_strands_several_addresses_lists_every_one_with_its_holder() -> None:
    """The refusal names each address outside the new ranges, its pod (or container) and why."""
    message = refusal(OLD, pool(ips=["10.0.0.15-10.0.0.34"], excludeIPs=["10.0.0.20"]))
    assert message.startswith('SpiderIPPool "pool-a": spec.ips: remove 4 IP addresses that are being used: ')
    assert (
        "10.0.0.12 (Pod default/web-0, outside spec.ips), 10.0.0.20 (Pod default/kept, excluded by "
        "spec.excludeIPs), 10.0.0.35 (Pod default/web-1, outside spec.ips), 10.0.0.36 (container ctr-7, "
        "outside spec.ips)" in message
    )
    assert f'annotate the pool {FORCE_ANNOTATION}: "true"' in message


def test_the_force_annotation_lets_the_change_through_and_check_finds_the_stranded() -> None:
    """With the annotation the same change validates; the stored result's stranded addresses are the four."""
    forced = pool({FORCE_ANNOTATION: "true"}, ips=["10.0.0.15-10.0.0.34"], excludeIPs=["10.0.0.20"])
    validation.validate_update(OLD, forced)
    after = {**forced, "status": OLD["status"]}
    assert [(s.ip, s.reason) for s in stranded_in(after)] == [
        ("10.0.0.12", "outside spec.ips"),
        ("10.0.0.20", "excluded by spec.excludeIPs"),
        ("10.0.0.35", "outside spec.ips"),
        ("10.0.0.36", "outside spec.ips"),
    ]
    assert stranded_in(OLD) == []


def test_a_change_that_keeps_every_allocation_needs_no_force() -> None:
    """Growing or reshaping the ranges around the allocations is accepted as before."""
    validation.validate_update(OLD, pool(ips=["10.0.0.10-10.0.0.50"], excludeIPs=["10.0.0.40"]))


def test_a_long_list_is_cut_and_counted() -> None:
    """Past LISTED addresses the message counts the rest instead of naming them."""
    many = {f"10.0.0.{i}": {"pod": f"ns/p{i}", "podUid": f"u{i}"} for i in range(10, 41)}
    message = refusal(holding(pool(), many), pool(ips=["10.0.0.50"]))
    assert f"and {len(many) - LISTED} more" in message
    assert message.count("(Pod ns/") == LISTED


@pytest.mark.parametrize(
    ("annotations", "says"),
    [
        ({DELAY: "soon"}, "'soon' is not a whole number of seconds"),
        ({DELAY: "-5"}, "'-5' is not a whole number of seconds"),
        ({DELAY: "86401"}, "86401 is more than 86400 seconds"),
        ({FORCE_ANNOTATION: "yes"}, '\'yes\' is not "true" or "false"'),
    ],
)
def test_malformed_pool_annotations_are_refused_naming_the_key(
    annotations: dict[str, str], says: str
) -> None:
    """The reuse delay must be whole seconds up to a day, the force annotation true or false."""
    with pytest.raises(InvalidObject) as caught:
        validation.validate_create(pool(annotations))
    assert f"metadata.annotations[{next(iter(annotations))}]: {says}" in caught.value.message
    validation.validate_create(pool({DELAY: "300", FORCE_ANNOTATION: "false"}))
