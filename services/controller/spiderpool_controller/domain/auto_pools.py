"""Automatic pools: which workload a pool belongs to, its name, labels and podAffinity.

Owns the identity side of upstream's auto pools (upstream
pkg/applicationcontroller/applicationinformers and pkg/ippoolmanager/utils.go), exactly as
upstream writes them, so pools created by either implementation are found by the other:

- the workload (``AppRef``): API version, kind, namespace, name, UID; the six Kubernetes
  kinds (Deployment, ReplicaSet, StatefulSet, DaemonSet in ``apps/v1``, Job and CronJob in
  ``batch/v1``) are the "builtin" ones a controller watches; anything else is a third-party
  controller;
- the name ``auto<4|6>-<app name>-<interface>-<uid5>``, lower-cased, ``uid5`` the first five
  characters of the UID's last ``-`` segment. Decision: the app name is cut so the whole
  name stays within 253 characters (upstream's arithmetic allows 254, which the API server
  refuses), and a cut never leaves a ``-`` or ``.`` at its end;
- the labels ``owner-spider-subnet``, ``owner-application-{gv,kind,namespace,name,uid}``
  (the GV as ``group_version``, ``apps_v1``), ``interface``, ``ip-version`` (``IPv4``/``IPv6``),
  ``ippool-reclaim`` (``true``/``false``) and ``ippool-cidr``; values that cannot be label
  values (a workload name over 63 characters) are refused with the reason, as the API
  server would refuse the pool;
- the podAffinity ``matchLabels`` of the five ``app-*`` keys; a pool carrying the
  ``owner-application-name`` label is an auto pool, and its podAffinity is matched against
  the pod's top controller, not the pod's labels (upstream ``IsMatchAutoPoolAffinity``).

What the pool selection gets from the allocation path is ``AutoPoolChoice``: the auto pools
of the NIC being added, resolved (and created when needed) before selection, which stays a
pure function.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spiderpool_common.errors import InvalidRequest

from spiderpool_controller.domain.models import LabelSelector

PREFIX = "ipam.spidernet.io"
LABEL_OWNER_SUBNET = f"{PREFIX}/owner-spider-subnet"
LABEL_APP_GV = f"{PREFIX}/owner-application-gv"
LABEL_APP_KIND = f"{PREFIX}/owner-application-kind"
LABEL_APP_NAMESPACE = f"{PREFIX}/owner-application-namespace"
LABEL_APP_NAME = f"{PREFIX}/owner-application-name"
LABEL_APP_UID = f"{PREFIX}/owner-application-uid"
LABEL_INTERFACE = f"{PREFIX}/interface"
LABEL_IP_VERSION = f"{PREFIX}/ip-version"
LABEL_RECLAIM = f"{PREFIX}/ippool-reclaim"
LABEL_IPPOOL_CIDR = f"{PREFIX}/ippool-cidr"
AFFINITY_API_GROUP = f"{PREFIX}/app-api-group"
AFFINITY_API_VERSION = f"{PREFIX}/app-api-version"
AFFINITY_KIND = f"{PREFIX}/app-kind"
AFFINITY_NAMESPACE = f"{PREFIX}/app-namespace"
AFFINITY_NAME = f"{PREFIX}/app-name"
AFFINITY_KEYS = (AFFINITY_API_GROUP, AFFINITY_API_VERSION, AFFINITY_KIND, AFFINITY_NAMESPACE, AFFINITY_NAME)

# The workload kinds upstream's application controller watches, with their API version.
BUILTIN_KINDS: dict[str, str] = {
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}
MAX_NAME = 253  # a SpiderIPPool name is a DNS-1123 subdomain
_UID_CHARS = 5
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class AppRef:
    """A pod's top controller, the owner of its auto pools."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str = ""

    @property
    def group(self) -> str:
        group, sep, _ = self.api_version.partition("/")
        return group if sep else ""

    @property
    def version(self) -> str:
        group, sep, version = self.api_version.partition("/")
        return version if sep else group

    @property
    def builtin(self) -> bool:
        """One of the six kinds upstream's application controller watches (else: third party)."""
        return BUILTIN_KINDS.get(self.kind) == self.api_version

    @property
    def gv_label(self) -> str:
        return gv_label(self.api_version)

    @property
    def key(self) -> str:
        """Upstream's application key in ``controlledIPPools``: ``apps_v1_Deployment_ns_name``."""
        return f"{self.gv_label}_{self.kind}_{self.namespace}_{self.name}"

    def describe(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def app_ref(api_version: str, kind: str, namespace: str, name: str, uid: str = "") -> AppRef:
    """An ``AppRef``; a builtin kind named without its API version gets it."""
    return AppRef(api_version or BUILTIN_KINDS.get(kind, ""), kind, namespace, name, uid)


def gv_label(api_version: str) -> str:
    """``apps/v1`` -> ``apps_v1``; a core version (``v1``) stays as it is."""
    return api_version.replace("/", "_", 1)


def api_version_of_gv_label(value: str) -> str | None:
    """The inverse of ``gv_label``; None for a value of more than two parts."""
    parts = value.split("_")
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return f"{parts[0]}/{parts[1]}"
    return None


def uid_suffix(uid: str) -> str:
    return uid.rsplit("-", maxsplit=1)[-1][:_UID_CHARS].lower()


def auto_pool_name(app_name: str, version: int, nic: str, uid: str) -> str:
    """``auto4-<app>-<nic>-<uid5>``, at most 253 characters; raises when no valid name results."""
    suffix = uid_suffix(uid)
    if not suffix:
        raise InvalidRequest(f"the workload {app_name!r} has no UID: its auto pool is named after it")
    fixed = len(f"auto{version}---") + len(nic) + len(suffix)
    name = app_name.lower()
    if fixed + len(name) > MAX_NAME:
        name = name[: max(MAX_NAME - fixed, 0)].rstrip("-.")
    out = f"auto{version}-{name}-{nic.lower()}-{suffix}"
    if not name or not _SUBDOMAIN.fullmatch(out):
        raise InvalidRequest(
            f"no valid SpiderIPPool name results from workload {app_name!r} and interface {nic!r} "
            f"({out!r} is not a lowercase RFC 1123 subdomain)"
        )
    return out


def _check_label_value(what: str, value: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise InvalidRequest(
            f"{what} {value!r} cannot be a label value (at most 63 letters, digits, '-', '_' or '.', "
            "alphanumeric at both ends), and auto pools are labelled with it"
        )


def version_label(version: int) -> str:
    return f"IPv{version}"


def auto_pool_labels(
    app: AppRef, *, subnet_name: str, cidr_label: str, nic: str, version: int, reclaim: bool
) -> dict[str, str]:
    """The labels upstream's subnet manager puts on an auto pool."""
    labels = {
        LABEL_OWNER_SUBNET: subnet_name,
        LABEL_APP_GV: app.gv_label,
        LABEL_APP_KIND: app.kind,
        LABEL_APP_NAMESPACE: app.namespace,
        LABEL_APP_NAME: app.name,
        LABEL_APP_UID: app.uid,
        LABEL_INTERFACE: nic,
        LABEL_RECLAIM: "true" if reclaim else "false",
        LABEL_IP_VERSION: version_label(version),
        LABEL_IPPOOL_CIDR: cidr_label,
    }
    for key, value in labels.items():
        _check_label_value(f"the value of label {key}", value)
    return labels


def auto_pool_affinity(app: AppRef) -> dict[str, Any]:
    """The podAffinity of an auto pool: the five ``app-*`` labels of its workload."""
    return {
        "matchLabels": {
            AFFINITY_API_GROUP: app.group,
            AFFINITY_API_VERSION: app.version,
            AFFINITY_KIND: app.kind,
            AFFINITY_NAMESPACE: app.namespace,
            AFFINITY_NAME: app.name,
        }
    }


def is_auto_pool(labels: Mapping[str, str]) -> bool:
    """Upstream ``IsAutoCreatedIPPool``: the pool carries ``owner-application-name``."""
    return LABEL_APP_NAME in labels


def affinity_matches_app(selector: LabelSelector, app: AppRef) -> bool:
    """Upstream ``IsMatchAutoPoolAffinity``: each of the five app labels equals the workload's."""
    wanted = auto_pool_affinity(app)["matchLabels"]
    return all(selector.match_labels.get(k) == v for k, v in wanted.items())


def affinity_problem(selector: Any) -> str:
    """Why an auto pool's podAffinity is not upstream's shape (only the five app labels), or ""
    (upstream's webhook checks a podAffinity that is set)."""
    if not isinstance(selector, Mapping):
        return ""
    if selector.get("matchExpressions"):
        return "an auto pool's podAffinity takes no matchExpressions"
    labels = selector.get("matchLabels")
    keys = set(labels.keys()) if isinstance(labels, Mapping) else set()
    extra = sorted(keys - set(AFFINITY_KEYS))
    if extra:
        return f"an auto pool's podAffinity takes only the ipam.spidernet.io/app-* labels, not {extra}"
    return ""


def owner_of_pool(labels: Mapping[str, str]) -> AppRef | None:
    """The workload an auto pool's labels name (None for a pool that is not one)."""
    if not is_auto_pool(labels):
        return None
    api_version = api_version_of_gv_label(labels.get(LABEL_APP_GV, ""))
    if api_version is None:
        return None
    return AppRef(
        api_version,
        labels.get(LABEL_APP_KIND, ""),
        labels.get(LABEL_APP_NAMESPACE, ""),
        labels.get(LABEL_APP_NAME, ""),
        labels.get(LABEL_APP_UID, ""),
    )


def serves(labels: Mapping[str, str], app: AppRef, nic: str, version: int) -> bool:
    """Whether a pool is the auto pool of ``app`` for (``nic``, family), whatever its UID.

    A pool of an earlier workload of the same kind, namespace and name that is being
    reclaimed (``ippool-reclaim: true`` and another UID) does not serve; one kept with
    ``ippool-reclaim: false`` does, and is taken over by the new workload (upstream).
    """
    if (
        labels.get(LABEL_APP_GV) != app.gv_label
        or labels.get(LABEL_APP_KIND) != app.kind
        or labels.get(LABEL_APP_NAMESPACE) != app.namespace
        or labels.get(LABEL_APP_NAME) != app.name
        or labels.get(LABEL_INTERFACE) != nic
        or labels.get(LABEL_IP_VERSION) != version_label(version)
    ):
        return False
    return not (labels.get(LABEL_RECLAIM) == "true" and labels.get(LABEL_APP_UID) != app.uid)


@dataclass(frozen=True)
class AutoPoolChoice:
    """The auto pools of the NIC being added, per family, for the subnet selection rule."""

    nic: str
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    source: str  # the annotation they come from
