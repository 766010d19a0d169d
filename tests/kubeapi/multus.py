"""Multus' NetworkAttachmentDefinition CRD (`k8s.cni.cncf.io/v1`), installed at start as in a cluster with
Multus.

Choice: served through a real stored CRD object rather than a builtin table entry, so `kubectl get crd` lists
it, discovery and OpenAPI treat it like any CRD, and its schema (the upstream one: `spec.config` a string) is
enforced. `ServerConfig(install_multus_crd=False)` starts without it.
"""

from __future__ import annotations

from typing import Any

NAD_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "network-attachment-definitions.k8s.cni.cncf.io"},
    "spec": {
        "group": "k8s.cni.cncf.io",
        "scope": "Namespaced",
        "names": {
            "plural": "network-attachment-definitions",
            "singular": "network-attachment-definition",
            "kind": "NetworkAttachmentDefinition",
            "shortNames": ["net-attach-def"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "description": "NetworkAttachmentDefinition is a CRD schema specified by the Network "
                        "Plumbing Working Group to express the intent for attaching pods to one or more "
                        "logical or physical networks.",
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "description": "NetworkAttachmentDefinition spec defines the desired state "
                                "of a network attachment",
                                "type": "object",
                                "properties": {
                                    "config": {
                                        "description": "NetworkAttachmentDefinition config is a "
                                        "JSON-formatted CNI configuration",
                                        "type": "string",
                                    }
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}
