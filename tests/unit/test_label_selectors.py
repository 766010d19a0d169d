"""Kubernetes label-selector text syntax: parsing and matching, as apimachinery does it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spiderpool_controller.domain.models import Requirement
from spiderpool_controller.domain.selectors import parse_label_selector

LABELS = {"app": "web", "tier": "frontend", "ipam.spidernet.io/ip-version": "IPv4", "empty": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app=web", (Requirement("app", "In", ("web",)),)),
        ("app==web", (Requirement("app", "In", ("web",)),)),
        ("app!=web", (Requirement("app", "NotIn", ("web",)),)),
        ("app in (web,db)", (Requirement("app", "In", ("web", "db")),)),
        ("app notin (db)", (Requirement("app", "NotIn", ("db",)),)),
        ("app", (Requirement("app", "Exists"),)),
        ("!app", (Requirement("app", "DoesNotExist"),)),
        ("empty=", (Requirement("empty", "In", ("",)),)),
        (
            " a = b ,  c!=d,e  in ( x , y ),!f,g ",
            (
                Requirement("a", "In", ("b",)),
                Requirement("c", "NotIn", ("d",)),
                Requirement("e", "In", ("x", "y")),
                Requirement("f", "DoesNotExist"),
                Requirement("g", "Exists"),
            ),
        ),
        (
            "ipam.spidernet.io/ip-version=IPv4",
            (Requirement("ipam.spidernet.io/ip-version", "In", ("IPv4",)),),
        ),
    ],
)
def test_each_operator_parses_to_its_requirement(text: str, expected: tuple[Requirement, ...]) -> None:
    """Every documented operator form becomes the matching set-based requirement."""
    assert parse_label_selector(text).match_expressions == expected


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app=db", False),
        ("app!=db", True),
        ("missing!=x", True),  # != also selects objects without the label
        ("missing notin (x)", True),
        ("missing in (x)", False),
        ("app in (db,web)", True),
        ("app notin (web)", False),
        ("tier", True),
        ("!tier", False),
        ("!missing", True),
        ("empty=", True),
        ("app=web,tier=backend", False),
        ("app=web,app=db", False),  # a repeated key keeps both requirements
        ("ipam.spidernet.io/ip-version in (IPv4)", True),
    ],
)
def test_selector_matches_labels_like_kubernetes(text: str, matches: bool) -> None:
    """A parsed selector selects exactly the label sets the API server would."""
    assert parse_label_selector(text).matches(LABELS) is matches


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("app=web,", "expected a label key"),
        (",app", "expected a label key"),
        ("app in web", "expected '(' after 'in'"),
        ("app in ()", "can't be empty"),
        ("app in (a b)", "expected ',' or ')'"),
        ("app in (a", "expected ',' or ')'"),
        ("app > 3", "is not supported"),
        ("app web", "expected '='"),
        ("!", "expected a label key"),
        ("=web", "expected a label key"),
        ("app=we b", "expected ',' or end"),
        ("-bad=x", "invalid label key"),
        ("Bad.Prefix/x=y", "prefix must be a DNS subdomain"),
        ("app=-x", "invalid label value"),
        ("app=" + "v" * 64, "invalid label value"),
        ("k" * 64, "invalid label key"),
        ("app=(x)", "expected a label value"),
    ],
)
def test_bad_syntax_raises_a_message_naming_the_fault(text: str, fragment: str) -> None:
    """Malformed selectors raise ValueError whose message says what was expected."""
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_label_selector(text)


_label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?\Z")


@given(
    labels=st.dictionaries(_label, _label, max_size=4),
    key=_label,
    values=st.lists(_label, min_size=1, max_size=3),
)
def test_in_and_notin_are_complements(labels: dict[str, str], key: str, values: list[str]) -> None:
    """For any labels, ``k in (...)`` selects exactly what ``k notin (...)`` rejects."""
    joined = ",".join(values)
    selected = parse_label_selector(f"{key} in ({joined})").matches(labels)
    rejected = parse_label_selector(f"{key} notin ({joined})").matches(labels)
    assert selected is not rejected
    assert selected is (labels.get(key) in values)


@given(labels=st.dictionaries(_label, _label, max_size=4), key=_label, value=_label)
def test_equality_and_existence_follow_the_label_map(labels: dict[str, str], key: str, value: str) -> None:
    """``k=v``, ``k!=v``, ``k`` and ``!k`` mean what the label map says, for any labels."""
    assert parse_label_selector(f"{key}={value}").matches(labels) is (labels.get(key) == value)
    assert parse_label_selector(f"{key}!={value}").matches(labels) is (labels.get(key) != value)
    assert parse_label_selector(key).matches(labels) is (key in labels)
    assert parse_label_selector(f"!{key}").matches(labels) is (key not in labels)
