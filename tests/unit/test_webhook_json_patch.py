"""The mutating webhook's JSONPatch: applied by an RFC 6902 implementation it yields our object."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spiderpool_controller.webhook.json_patch import diff, escape

from tests.kubeapi.patch import json_patch  # the test API server's RFC 6902 implementation: the oracle

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text("ab/~", max_size=3))
keys = st.text("ab/~.-", min_size=1, max_size=4)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, documents, max_size=5), st.dictionaries(keys, documents, max_size=5))
def test_patch_turns_any_object_into_any_other(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Whatever the two objects, applying the diff to the first yields exactly the second."""
    assert json_patch(old, diff(old, new)) == new


def test_equal_objects_need_no_patch() -> None:
    """An object the defaults leave alone is answered without a patch."""
    obj = {"metadata": {"labels": {"a": "b"}}, "spec": {"ips": ["10.0.0.1"], "default": False}}
    assert (
        diff(obj, {"metadata": {"labels": {"a": "b"}}, "spec": {"ips": ["10.0.0.1"], "default": False}}) == []
    )


def test_label_keys_with_slashes_are_escaped() -> None:
    """A new label key containing '/' is addressed with '~1', as RFC 6901 requires."""
    old = {"metadata": {"labels": {"x": "1"}}}
    new = {"metadata": {"labels": {"x": "1", "ipam.spidernet.io/ippool-cidr": "10-0-0-0-24"}}}
    assert diff(old, new) == [
        {"op": "add", "path": "/metadata/labels/ipam.spidernet.io~1ippool-cidr", "value": "10-0-0-0-24"}
    ]
    assert escape("a~b/c") == "a~0b~1c"


def test_missing_sections_are_added_whole_and_lists_replaced_whole() -> None:
    """A missing finalizers list is one add; a changed ips list is one replace."""
    old: dict[str, Any] = {"metadata": {"name": "p"}, "spec": {"ips": ["10.0.0.2", "10.0.0.1"]}}
    new = {
        "metadata": {"name": "p", "finalizers": ["spiderpool.spidernet.io"]},
        "spec": {"ips": ["10.0.0.1-10.0.0.2"]},
    }
    assert diff(old, new) == [
        {"op": "add", "path": "/metadata/finalizers", "value": ["spiderpool.spidernet.io"]},
        {"op": "replace", "path": "/spec/ips", "value": ["10.0.0.1-10.0.0.2"]},
    ]


def test_true_and_one_are_different_values() -> None:
    """JSON distinguishes true from 1, so a change between them is patched."""
    assert diff({"v": 1}, {"v": True}) == [{"op": "replace", "path": "/v", "value": True}]


def test_a_whole_document_of_another_type_cannot_be_a_patch() -> None:
    """Only objects are patched; replacing the root is refused rather than answered wrongly."""
    with pytest.raises(ValueError, match="whole document"):
        diff([1], [2])
