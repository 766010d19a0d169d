"""Decoding JSON a peer or a user hands us, with a bound on nesting.

JSON allows any depth, but Python's decoder recurses once per level: a document nested
about a thousand levels deep (a few kilobytes of ``[``) ends in a ``RecursionError``,
which is not a ``ValueError``, so every ``except ValueError`` around ``json.loads`` let it
through as a traceback and an internal error (the agent answered a CNI config nested 990
levels deep with code 999; the shim, decoding at a shallower stack, had let it pass). And
what walks the result afterwards (a deep copy, a recursive validator) recurses too. So the
untrusted JSON the services read (CNI network configurations, pod annotations, manifests
and admission reviews) is decoded here: deeper than ``MAX_DEPTH`` (our documents nest under
ten levels, a review with managedFields under thirty), or too deep to decode, is a
``JsonError``, a ``ValueError`` like the decoder's own errors, with a one-line message.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 100


class JsonError(ValueError):
    """A JSON text refused for its nesting; ``str()`` is one line."""


def deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` levels (no recursion).

    A top-level object or array is one level: ``[[]]`` is two.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children)
    return False


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads``, refusing documents nested more than ``max_depth`` levels (``JsonError``).

    Malformed JSON raises the decoder's own ``json.JSONDecodeError`` (bytes that are not
    UTF-8 a ``UnicodeDecodeError``), both ``ValueError`` as well.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonError("JSON nested too deeply to decode") from None
    if deeper_than(value, max_depth):
        raise JsonError(f"JSON nested more than {max_depth} levels deep")
    return value
