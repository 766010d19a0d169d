"""Hypothesis strategies for bad input: arbitrary JSON values, text, and mutations of valid documents.

Shared by the bad-input tests (shims, gRPC services, webhooks). Sizes stay small: these
tests run in ``make test`` and must take seconds, so breadth comes from the kinds of
values (wrong types, huge numbers, control characters, lone surrogates, empty strings),
not from long runs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

# Text a process environment can carry (no NUL, no lone surrogates) and text it cannot.
ENV_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)
ANY_TEXT = st.text(max_size=40)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    ANY_TEXT,
    st.sampled_from(["", "0", "1.0.0", "10.0.0.1", "10.0.0.0/24", "fd00::1", "eth0", "-", "a" * 300]),
)

JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

Path = tuple[str, ...]


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], paths: Sequence[Path]) -> dict[str, Any]:
    """``base`` with one to three of ``paths`` set to an arbitrary JSON value or removed.

    A path whose parent is no longer an object (an earlier mutation replaced it) is skipped.
    """
    doc = copy.deepcopy(base)
    for path in draw(st.lists(st.sampled_from(list(paths)), min_size=1, max_size=3)):
        parent: Any = doc
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(JSON)
    return doc
