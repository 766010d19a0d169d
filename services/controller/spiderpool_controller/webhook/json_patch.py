"""RFC 6902 JSON Patch between two JSON documents: what a mutating webhook answers.

Owns the difference the API server applies to the object it sent: objects are compared key
by key (``add`` for a new key, ``replace`` for a changed value, ``remove`` for a dropped one),
lists and scalars are replaced whole. Replacing a list whole is always correct (the API server
applies the patch to exactly the object it sent) and keeps the patch short for the lists the
defaults touch (``ips``, ``finalizers``). Path tokens are escaped per RFC 6901 (``~`` as
``~0``, ``/`` as ``~1``), which label keys such as ``ipam.spidernet.io/ippool-cidr`` need.
"""

from __future__ import annotations

from typing import Any

Op = dict[str, Any]


def escape(token: str) -> str:
    """One RFC 6901 reference token."""
    return token.replace("~", "~0").replace("/", "~1")


def diff(old: Any, new: Any, path: str = "") -> list[Op]:
    """The operations that turn ``old`` into ``new`` (empty when they are equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[Op] = []
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{path}/{escape(str(key))}"})
        for key, value in new.items():
            where = f"{path}/{escape(str(key))}"
            if key not in old:
                ops.append({"op": "add", "path": where, "value": value})
            else:
                ops += diff(old[key], value, where)
        return ops
    if old == new and type(old) is type(new):  # 1 == True in Python, not in JSON
        return []
    if not path:
        raise ValueError("cannot replace the whole document with a patch")
    return [{"op": "replace", "path": path, "value": new}]
