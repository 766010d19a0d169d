"""Object names derived from CNI identifiers, always valid Kubernetes names.

A SpiderEndpoint is named after its pod (upstream); without a pod (a CNI runtime outside
Kubernetes) it is named after the container. CNI allows container IDs that object names do
not (uppercase, ``_``, 200+ characters) and an embedded-mode runtime may pass any pod name
in ``CNI_ARGS``, so names are derived, never copied: a name that is already a valid
DNS-1123 subdomain (namespaces: label) is used as is; any other is lowercased, its invalid
characters become ``-``, and a hash of the original is appended so that two different
inputs never derive the same name. Pure functions.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_INVALID = re.compile(r"[^a-z0-9.-]+")
SUBDOMAIN_MAX = 253
LABEL_MAX = 63
_HASH_LEN = 10
DEFAULT_NAMESPACE = "default"


def is_subdomain(name: str) -> bool:
    return len(name) <= SUBDOMAIN_MAX and bool(_SUBDOMAIN.match(name))


def is_label(name: str) -> bool:
    return len(name) <= LABEL_MAX and bool(_LABEL.match(name))


def _derive(text: str, limit: int, *, dots: bool) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]
    cleaned = _INVALID.sub("-", text.lower())
    if not dots:
        cleaned = cleaned.replace(".", "-")
    cleaned = re.sub(r"[.-]{2,}", "-", cleaned).strip(".-")
    cleaned = cleaned[: limit - _HASH_LEN - 1].rstrip(".-")
    return f"{cleaned}-{digest}" if cleaned else f"x-{digest}"


@lru_cache(maxsize=65536)
def object_name(text: str) -> str:
    """``text`` if it is a valid object name (DNS-1123 subdomain), else a derived one."""
    return text if is_subdomain(text) else _derive(text, SUBDOMAIN_MAX, dots=True)


@lru_cache(maxsize=4096)
def namespace_name(text: str) -> str:
    """``text`` if it is a valid namespace name (DNS-1123 label), else a derived one."""
    if not text:
        return DEFAULT_NAMESPACE
    return text if is_label(text) else _derive(text, LABEL_MAX, dots=False)


def endpoint_name(pod_key: str, identity: str) -> tuple[str, str]:
    """The SpiderEndpoint (namespace, name) of an attachment: its pod's, else its container's."""
    if pod_key and "/" in pod_key:
        namespace, name = pod_key.split("/", 1)
        if name:
            return namespace_name(namespace), object_name(name)
    return DEFAULT_NAMESPACE, object_name(identity)
