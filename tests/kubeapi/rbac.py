"""Who is asking (bearer tokens) and whether they may (RBAC over the stored Roles, ClusterRoles and bindings).

Authentication maps bearer tokens to users; `service_account_token()` mints one for
`system:serviceaccount:<ns>:<name>` with the groups the real token authenticator gives. Requests without a
token are `system:anonymous`; an unknown token is a 401. Authorization is off by default (everything allowed,
like `AlwaysAllow`); with `enforce=True` every request is checked against the stored RBAC objects (verbs,
apiGroups, resources incl. `<res>/<sub>` and `*`, resourceNames, nonResourceURLs with a trailing `*`), members
of `system:masters` are always allowed, and a denial is a 403 with the real message and is recorded in
`denied`. The bootstrap roles a real cluster grants every authenticated user for discovery are stored at
start. Aggregated ClusterRoles (`aggregationRule`) are not evaluated (a known gap).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, qualified

Obj = dict[str, Any]


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        return out


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


@dataclass(frozen=True)
class Attributes:
    """What a request does, in RBAC's terms."""

    user: User
    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # set for non-resource requests

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)


@dataclass
class Authenticator:
    """Bearer token -> user."""

    tokens: dict[str, User] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, token: str, user: User) -> str:
        with self._lock:
            self.tokens[token] = user
        return token

    def service_account_token(self, namespace: str, name: str) -> str:
        user = User(
            f"system:serviceaccount:{namespace}:{name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        )
        return self.add(secrets.token_urlsafe(24), user)

    def user_token(self, name: str, groups: Iterable[str] = ()) -> str:
        return self.add(secrets.token_urlsafe(24), User(name, (*groups, "system:authenticated")))

    def authenticate(self, authorization: str | None) -> User:
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        with self._lock:
            user = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise ApiError(401, "Unauthorized")
        return user


def _rule_allows(rule: Obj, a: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and a.verb not in verbs:
        return False
    if not a.is_resource:
        for url in rule.get("nonResourceURLs") or []:
            if url == a.path or url == "*" or (url.endswith("*") and a.path.startswith(url[:-1])):
                return True
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and a.group not in groups:
        return False
    wanted = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    resources = rule.get("resources") or []
    ok = any(
        r in ("*", wanted) or (a.subresource and r == f"*/{a.subresource}") or r == f"{a.resource}/*"
        for r in resources
    )
    if not ok:
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def _subject_matches(subject: Obj, user: User, binding_ns: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user.name == f"system:serviceaccount:{ns}:{subject.get('name')}"
    return False


class Authorizer:
    """RBAC evaluation over objects read through `lookup(key, namespace)` (the store's lists)."""

    def __init__(self, lookup: Callable[[str, str | None], list[Obj]]) -> None:
        self._lookup = lookup
        # decisions until the next change of an RBAC object (`invalidate`): a request names a handful of
        # attributes, and evaluating every binding per request made authorization the server's hot spot
        self._decisions: dict[Attributes, bool] = {}
        self.enforce = False
        self.denied: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _role(self, ref: Obj, namespace: str) -> Obj | None:
        if ref.get("kind") == "ClusterRole":
            roles = self._lookup("rbac.authorization.k8s.io/clusterroles", None)
        else:
            roles = self._lookup("rbac.authorization.k8s.io/roles", namespace)
        return next((r for r in roles if r["metadata"]["name"] == ref.get("name")), None)

    def invalidate(self) -> None:
        """Forget cached decisions: a Role, ClusterRole or binding changed."""
        self._decisions.clear()

    def allowed(self, a: Attributes) -> bool:
        """The RBAC decision, whether or not it is enforced."""
        if "system:masters" in a.user.groups:
            return True
        decision = self._decisions.get(a)
        if decision is None:
            if len(self._decisions) >= 50_000:
                self._decisions.clear()
            decision = self._decisions[a] = self._evaluate(a)
        return decision

    def _evaluate(self, a: Attributes) -> bool:
        bindings = [(b, "") for b in self._lookup("rbac.authorization.k8s.io/clusterrolebindings", None)]
        if a.namespace:
            bindings += [
                (b, a.namespace) for b in self._lookup("rbac.authorization.k8s.io/rolebindings", a.namespace)
            ]
        for binding, ns in bindings:
            if not any(_subject_matches(s, a.user, ns) for s in binding.get("subjects") or []):
                continue
            role = self._role(binding.get("roleRef") or {}, ns)
            if role and any(_rule_allows(r, a) for r in role.get("rules") or []):
                return True
        return False

    def check(self, a: Attributes) -> None:
        """Raise the real 403 when enforcement is on and RBAC denies; record the denial."""
        if not self.enforce or self.allowed(a):
            return
        with self._lock:
            self.denied.append(
                {
                    "user": a.user.name,
                    "verb": a.verb,
                    "group": a.group,
                    "resource": a.resource,
                    "subresource": a.subresource,
                    "namespace": a.namespace,
                    "name": a.name,
                    "path": a.path,
                }
            )
        raise forbidden(a)

    def take_denied(self) -> list[dict[str, Any]]:
        with self._lock:
            out, self.denied = self.denied, []
        return out


def forbidden(a: Attributes, reason: str = "") -> ApiError:
    who = f'User "{a.user.name}"'
    if not a.is_resource:
        msg = f'forbidden: {who} cannot {a.verb} path "{a.path}"'
        return ApiError(403, msg, details={})
    res = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    subject = qualified(a.resource, a.group)
    subject = f'{subject} "{a.name}"' if a.name else subject
    where = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    msg = f'{subject} is forbidden: {who} cannot {a.verb} resource "{res}" in API group "{a.group}" {where}'
    if reason:
        msg += f": {reason}"
    details: dict[str, Any] = {"group": a.group, "kind": a.resource}
    if a.name:
        details["name"] = a.name
    return ApiError(403, msg, details=details)


def bootstrap_objects() -> list[Obj]:
    """The discovery roles every real cluster binds to all users, and cluster-admin."""

    def role(name: str, rules: list[Obj]) -> Obj:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "rules": rules,
        }

    def binding(name: str, groups: list[str]) -> Obj:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g} for g in groups
            ],
        }

    discovery_urls = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/readyz",
        "/openapi",
        "/openapi/*",
        "/version",
        "/version/",
    ]
    return [
        role(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        role("system:discovery", [{"nonResourceURLs": discovery_urls, "verbs": ["get"]}]),
        role(
            "system:basic-user",
            [
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "verbs": ["create"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                }
            ],
        ),
        role(
            "system:public-info-viewer",
            [
                {
                    "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"],
                }
            ],
        ),
        binding("cluster-admin", ["system:masters"]),
        binding("system:discovery", ["system:authenticated"]),
        binding("system:basic-user", ["system:authenticated"]),
        binding("system:public-info-viewer", ["system:authenticated", "system:unauthenticated"]),
    ]
