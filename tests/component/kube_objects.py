"""Objects in the test Kubernetes API server, written the way a user's client writes them.

``Kube`` is a small synchronous JSON client of a ``tests.kubeapi.ServerThread`` (the admin
token, its CA): tests create namespaces, the agent's Node, workloads and pods with it,
as kubectl would, so what the agent reads went through the server's REST semantics (UIDs,
resourceVersions, field selectors, watches). The manifest builders give pods the owner
references real controllers set.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from tests.kubeapi import ServerThread

APPS = "/apis/apps/v1"
BATCH = "/apis/batch/v1"


class KubeApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status


@dataclass
class Kube:
    srv: ServerThread

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.srv.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.srv.server.config.admin_token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        ca = self.srv.server.ca_pem
        ctx = ssl.create_default_context(cadata=ca.decode()) if ca else None
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise KubeApiError(err.code, err.read().decode()) from None

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.request("POST", path, obj)
        return out

    def get(self, path: str) -> dict[str, Any]:
        out: dict[str, Any] = self.request("GET", path)
        return out

    def patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.request("PATCH", path, patch, "application/merge-patch+json")
        return out

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    # -- conveniences ------------------------------------------------------------------

    def namespace(
        self, name: str, *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
        return self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": meta})

    def node(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        meta = {"name": name, "labels": labels}
        return self.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": meta})

    def pod(
        self,
        namespace: str,
        name: str,
        node: str,
        *,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        owner: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": namespace}
        if annotations:
            meta["annotations"] = annotations
        if labels:
            meta["labels"] = labels
        if owner:
            meta["ownerReferences"] = [owner_ref(owner)]
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.example/app:1"}]},
        }
        return self.create(f"/api/v1/namespaces/{namespace}/pods", body)

    def workload(
        self,
        group_path: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        owner: dict[str, Any] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        """A workload object (ReplicaSet, StatefulSet, Job, ...) with a minimal valid spec."""
        plural = kind.lower() + "s"
        meta: dict[str, Any] = {"name": name, "namespace": namespace}
        if owner:
            meta["ownerReferences"] = [owner_ref(owner)]
        api_version = group_path.removeprefix("/apis/")
        body = {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": spec}
        return self.create(f"{group_path}/namespaces/{namespace}/{plural}", body)


def owner_ref(obj: dict[str, Any]) -> dict[str, Any]:
    """The controller reference a controller sets on what it creates."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def third_party(kind: str, name: str, uid: str, api_version: str = "example.com/v1") -> dict[str, Any]:
    """A stand-in for an object of a controller the agent cannot read (only its reference is used)."""
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "uid": uid}}


def template(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
        },
    }
