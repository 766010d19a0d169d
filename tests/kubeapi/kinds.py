"""What the server serves: a `ResourceType` per group/version/resource, builtins from a table, CRDs live.

The builtin kinds are the `BUILTIN` table below: adding a kind is one line. A CRD contributes one
`ResourceType` per served version (objects are stored once per group/resource, so every served version sees
them; conversion is `None`, i.e. only `apiVersion` changes). The registry is what discovery, OpenAPI, routing
and admission read, so a CRD is served the instant it is created.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One served resource at one version."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False  # has the status subresource
    singular: str = ""
    verbs: tuple[str, ...] = ALL_VERBS
    crd: str = ""  # name of the CustomResourceDefinition that serves it, "" for builtins
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)
    selectable_fields: tuple[str, ...] = ()
    field_labels: tuple[str, ...] = ()  # extra field-selector labels (besides metadata.name/namespace)
    stored: bool = True  # False for virtual resources (reviews) that are created and answered, never kept

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def key(self) -> str:
        """Storage key: the group and resource, shared by every version."""
        return f"{self.group}/{self.plural}"

    @property
    def tracks_generation(self) -> bool:
        """Kinds with a spec/status split bump `metadata.generation`; ConfigMaps and the like have none."""
        return bool(self.crd) or self.status

    @property
    def path_prefix(self) -> str:
        return "/api/v1" if not self.group else f"/apis/{self.group}/{self.version}"


def _b(
    gv: str,
    kind: str,
    plural: str,
    scope: str,
    short: str = "",
    cats: str = "",
    status: bool = False,
    fields: str = "",
    verbs: tuple[str, ...] = ALL_VERBS,
    stored: bool = True,
) -> ResourceType:
    group, _, version = gv.rpartition("/")
    return ResourceType(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        namespaced=scope == "ns",
        short_names=tuple(short.split()) if short else (),
        categories=tuple(cats.split()) if cats else (),
        status=status,
        field_labels=tuple(fields.split()) if fields else (),
        verbs=verbs,
        stored=stored,
    )


_POD_FIELDS = (
    "spec.nodeName status.phase spec.restartPolicy spec.schedulerName spec.serviceAccountName status.podIP"
)
_EVENT_FIELDS = (
    "involvedObject.kind involvedObject.namespace involvedObject.name involvedObject.uid "
    "involvedObject.apiVersion involvedObject.resourceVersion involvedObject.fieldPath reason type source"
)

#: The builtin kinds: group/version, kind, plural, scope, short names, categories, status subresource, field
# labels.
BUILTIN: tuple[ResourceType, ...] = (
    _b("v1", "Namespace", "namespaces", "cluster", "ns", status=True, fields="status.phase"),
    _b("v1", "Pod", "pods", "ns", "po", "all", status=True, fields=_POD_FIELDS),
    _b("v1", "Node", "nodes", "cluster", "no", status=True, fields="spec.unschedulable"),
    _b("v1", "ConfigMap", "configmaps", "ns", "cm"),
    _b("v1", "Secret", "secrets", "ns", fields="type"),
    _b("v1", "Service", "services", "ns", "svc", "all", status=True),
    _b("v1", "Endpoints", "endpoints", "ns", "ep"),
    _b("v1", "Event", "events", "ns", "ev", fields=_EVENT_FIELDS),
    _b("v1", "ServiceAccount", "serviceaccounts", "ns", "sa"),
    _b("v1", "PersistentVolumeClaim", "persistentvolumeclaims", "ns", "pvc", status=True),
    _b("apps/v1", "Deployment", "deployments", "ns", "deploy", "all", status=True),
    _b("apps/v1", "ReplicaSet", "replicasets", "ns", "rs", "all", status=True),
    _b("apps/v1", "StatefulSet", "statefulsets", "ns", "sts", "all", status=True),
    _b("apps/v1", "DaemonSet", "daemonsets", "ns", "ds", "all", status=True),
    _b("batch/v1", "Job", "jobs", "ns", "", "all", status=True, fields="status.successful"),
    _b("batch/v1", "CronJob", "cronjobs", "ns", "cj", "all", status=True),
    _b("coordination.k8s.io/v1", "Lease", "leases", "ns"),
    _b("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", "ns", "pdb", status=True),
    _b("rbac.authorization.k8s.io/v1", "Role", "roles", "ns"),
    _b("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", "cluster"),
    _b("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", "ns"),
    _b("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", "cluster"),
    _b(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        "cluster",
        "crd crds",
        "api-extensions",
        status=True,
    ),
    _b(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        "cluster",
        cats="api-extensions",
    ),
    _b(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        "cluster",
        cats="api-extensions",
    ),
    _b(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        "cluster",
        verbs=("create",),
        stored=False,
    ),
)


class Registry:
    """The served resources, builtin and CRD-backed, looked up by path, kind or name."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}
        for rt in BUILTIN:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def add_crd(self, crd_name: str, types: list[ResourceType]) -> None:
        self.remove_crd(crd_name)
        for rt in types:
            self._types[(rt.group, rt.version, rt.plural)] = rt
        self._crd_types[crd_name] = types

    def remove_crd(self, crd_name: str) -> None:
        for rt in self._crd_types.pop(crd_name, []):
            self._types.pop((rt.group, rt.version, rt.plural), None)

    def crd_types(self, crd_name: str) -> list[ResourceType]:
        return list(self._crd_types.get(crd_name, []))

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self._types.values():
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        return None

    def by_key(self, key: str) -> ResourceType | None:
        """Any served version of a group/resource (the preferred one: first registered)."""
        for rt in self._types.values():
            if rt.key == key:
                return rt
        return None

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._types.values()))

    def group_versions(self) -> dict[str, list[str]]:
        """Group -> served versions, in registration order (the first is preferred)."""
        out: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if rt.group == group and rt.version == version]
