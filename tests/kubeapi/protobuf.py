"""A small decoder for Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).

Typed clientsets (kubectl's imperative `create namespace/configmap/secret`, Helm's release storage) send the
`k8s\\x00` envelope: `runtime.Unknown{typeMeta{apiVersion, kind}, raw}` where `raw` is the object's own
message. Decoded here: Secret, ConfigMap, Namespace, SelfSubjectAccessReview and the ObjectMeta subset they
use (field numbers from the published `generated.proto` messages). Anything else is a 415, as from a server
that cannot decode it. Responses are JSON.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value): ints for varints, bytes for length-delimited fields."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated field")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire == 1:
            yield number, wire, buf[pos : pos + 8]
            pos += 8
        elif wire == 5:
            yield number, wire, buf[pos : pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _str(b: Any) -> str:
    return bytes(b).decode()


def _map_entry(buf: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for n, _, v in fields(buf):
        if n == 1:
            key = _str(v)
        elif n == 2:
            value = bytes(v)
    return key, value


def _time(buf: bytes) -> str:
    seconds = 0
    for n, _, v in fields(buf):
        if n == 1:
            seconds = v
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owner_ref(buf: bytes) -> dict[str, Any]:
    names = {1: "kind", 3: "name", 4: "uid", 5: "apiVersion"}
    out: dict[str, Any] = {}
    for n, _, v in fields(buf):
        if n in names:
            out[names[n]] = _str(v)
        elif n == 6:
            out["controller"] = bool(v)
        elif n == 7:
            out["blockOwnerDeletion"] = bool(v)
    return out


def object_meta(buf: bytes) -> dict[str, Any]:
    strings = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    out: dict[str, Any] = {}
    for n, _, v in fields(buf):
        if n in strings:
            if v:
                out[strings[n]] = _str(v)
        elif n == 7:
            out["generation"] = v
        elif n == 8:
            out["creationTimestamp"] = _time(v)
        elif n in (11, 12):
            k, val = _map_entry(v)
            out.setdefault("labels" if n == 11 else "annotations", {})[k] = val.decode()
        elif n == 13:
            out.setdefault("ownerReferences", []).append(_owner_ref(v))
        elif n == 14:
            out.setdefault("finalizers", []).append(_str(v))
    return out


def _secret(raw: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, _, v in fields(raw):
        if n == 1:
            out["metadata"] = object_meta(v)
        elif n == 2:
            k, val = _map_entry(v)
            out.setdefault("data", {})[k] = base64.b64encode(val).decode()
        elif n == 3:
            out["type"] = _str(v)
        elif n == 4:
            k, val = _map_entry(v)
            out.setdefault("stringData", {})[k] = val.decode()
        elif n == 5:
            out["immutable"] = bool(v)
    return out


def _configmap(raw: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, _, v in fields(raw):
        if n == 1:
            out["metadata"] = object_meta(v)
        elif n == 2:
            k, val = _map_entry(v)
            out.setdefault("data", {})[k] = val.decode()
        elif n == 3:
            k, val = _map_entry(v)
            out.setdefault("binaryData", {})[k] = base64.b64encode(val).decode()
        elif n == 4:
            out["immutable"] = bool(v)
    return out


def _namespace(raw: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, _, v in fields(raw):
        if n == 1:
            out["metadata"] = object_meta(v)
        elif n == 2:
            finalizers = [_str(fv) for fn, _, fv in fields(v) if fn == 1]
            if finalizers:
                out["spec"] = {"finalizers": finalizers}
    return out


def _strings(buf: bytes, names: dict[int, str]) -> dict[str, str]:
    return {names[n]: _str(v) for n, _, v in fields(buf) if n in names and v}


def _access_review(raw: bytes) -> dict[str, Any]:
    """SelfSubjectAccessReview (`kubectl auth can-i`): spec{resourceAttributes, nonResourceAttributes}."""
    resource = {
        1: "namespace",
        2: "verb",
        3: "group",
        4: "version",
        5: "resource",
        6: "subresource",
        7: "name",
    }
    spec: dict[str, Any] = {}
    for n, _, v in fields(raw):
        if n != 2:
            continue
        for sn, _, sv in fields(v):
            if sn == 1:
                spec["resourceAttributes"] = _strings(sv, resource)
            elif sn == 2:
                spec["nonResourceAttributes"] = _strings(sv, {1: "path", 2: "verb"})
    return {"metadata": {}, "spec": spec}


_DECODERS = {
    "Secret": _secret,
    "ConfigMap": _configmap,
    "Namespace": _namespace,
    "SelfSubjectAccessReview": _access_review,
}


def decode(body: bytes) -> dict[str, Any]:
    """A JSON-shaped object from a protobuf request body; 415 for kinds this decoder does not know."""
    if not body.startswith(MAGIC):
        raise ApiError(
            400, "the body of the request was in an unknown format: missing the k8s protobuf magic"
        )
    try:
        api_version = kind = ""
        raw = b""
        for n, _, v in fields(body[len(MAGIC) :]):
            if n == 1:
                for tn, _, tv in fields(v):
                    if tn == 1:
                        api_version = _str(tv)
                    elif tn == 2:
                        kind = _str(tv)
            elif n == 2:
                raw = bytes(v)
        decoder = _DECODERS.get(kind)
        if decoder is None:
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types include: "
                "application/json, application/yaml "
                f"(protobuf decoding of {kind or 'this kind'} is not implemented)",
            )
        obj = decoder(raw)
    except ValueError as exc:
        raise ApiError(400, f"the body of the request was in an unknown format: {exc}") from exc
    return {"apiVersion": api_version, "kind": kind, **obj}
