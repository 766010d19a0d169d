"""Kubernetes Events about the objects the leader's reconcilers manage (``kubectl describe``).

Owns telling a user, where they look for it, why a reconciler did not do what the object asks
(a NetworkAttachmentDefinition it may not overwrite, a SpiderMultusConfig it cannot render).
One ``Warning`` Event per distinct (object, reason, message): the recorder remembers what it
last said about each object and says it again only when that changes, or after ``clear``
(the object is fine again). A failed Event write (the API server refused it, or the leader's
write fence did: ``fenced_rest``) is logged, forgotten so that the next ``warn`` tries again,
and never fails the reconcile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import structlog
from spiderpool_common.kube.rest import KubeError, KubeRest

log = structlog.get_logger(__name__)

COMPONENT = "spiderpool-controller"


def _now() -> datetime:
    return datetime.now(UTC)


class EventRecorder:
    def __init__(self, rest: KubeRest, *, clock: Callable[[], datetime] = _now) -> None:
        self._rest = rest
        self._clock = clock
        self._said: dict[str, tuple[str, str]] = {}

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return (
            f"{obj.get('kind', '')}/{meta.get('namespace', '')}/{meta.get('name', '')}/{meta.get('uid', '')}"
        )

    def clear(self, obj: Mapping[str, Any]) -> None:
        self._said.pop(self._key(obj), None)

    async def warn(self, obj: Mapping[str, Any], reason: str, message: str) -> bool:
        """Record a Warning Event on ``obj`` unless the same was said last; True when written."""
        key = self._key(obj)
        if self._said.get(key) == (reason, message):
            return False
        self._said[key] = (reason, message)
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        stamp = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", ""),
                "kind": obj.get("kind", ""),
                "name": meta.get("name", ""),
                "namespace": meta.get("namespace", ""),
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self._rest.create(f"/api/v1/namespaces/{quote(namespace, safe='')}/events", event)
        except KubeError as exc:
            log.warning("event_not_recorded", reason=reason, object=key, error=exc.message)
            if self._said.get(key) == (reason, message):
                del self._said[key]
            return False
        return True
