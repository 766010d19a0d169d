"""Calls to the admission webhooks registered in Mutating/ValidatingWebhookConfigurations.

For each write the server builds an AdmissionReview v1 request (operation, kind/resource/subResource, name,
namespace, object, oldObject on UPDATE/DELETE, dryRun, userInfo, options) and posts it to every webhook whose
rules (operations, apiGroups, apiVersions, resources incl. `res/sub`, `*/status`, scope), namespaceSelector
and objectSelector match, configurations in name order. `clientConfig.url` is called as given;
`clientConfig.service` is resolved through `service_urls` (`(namespace, name)` -> base URL, the simulated
cluster's service network) and the certificate is verified against `caBundle` for the name
`<name>.<namespace>.svc`, as a real server does. Mutating webhooks' JSONPatch responses are applied in order;
denials and call failures (failurePolicy Fail, `timeoutSeconds`) become the real server's errors. Not
modelled: matchConditions (CEL), reinvocationPolicy, webhooks for webhook configurations themselves (the real
server skips them too).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .errors import ApiError
from .kinds import ResourceType
from .patch import json_patch
from .rbac import User
from .selectors import selector_object_matcher

Obj = dict[str, Any]
_SKIPPED = {
    "admissionregistration.k8s.io/mutatingwebhookconfigurations",
    "admissionregistration.k8s.io/validatingwebhookconfigurations",
}


@dataclass
class Request:
    """One write as admission sees it."""

    rt: ResourceType
    operation: str  # CREATE / UPDATE / DELETE
    name: str
    namespace: str
    user: User
    obj: Obj | None
    old: Obj | None = None
    subresource: str = ""
    dry_run: bool = False
    options: Obj = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Admission:
    """The webhook caller: `configs(plural)` lists configurations, `namespace_labels(ns)` reads labels."""

    def __init__(
        self,
        configs: Callable[[str], list[Obj]],
        namespace_labels: Callable[[str], dict[str, str]],
        service_urls: dict[tuple[str, str], str] | None = None,
    ) -> None:
        self._configs = configs
        self._namespace_labels = namespace_labels
        self.service_urls: dict[tuple[str, str], str] = service_urls if service_urls is not None else {}
        self._session: aiohttp.ClientSession | None = None
        self.calls: list[tuple[str, str]] = []  # (webhook name, operation), for tests

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def mutate(self, req: Request) -> Obj | None:
        """Run the mutating webhooks; returns the (patched) object."""
        for webhook in self._matching("mutatingwebhookconfigurations", req):
            response = await self._call(webhook, req)
            if response is not None and response.get("patch") and req.obj is not None:
                ops = json.loads(base64.b64decode(response["patch"]))
                req.obj = json_patch(req.obj, ops)
        return req.obj

    async def validate(self, req: Request) -> None:
        webhooks = self._matching("validatingwebhookconfigurations", req)
        await asyncio.gather(*(self._call(w, req) for w in webhooks))

    # matching

    def _matching(self, plural: str, req: Request) -> list[Obj]:
        if req.rt.key in _SKIPPED:
            return []
        out = []
        for config in sorted(self._configs(plural), key=lambda c: c["metadata"]["name"]):
            for webhook in config.get("webhooks") or []:
                if self._matches(webhook, req):
                    out.append(webhook)
        return out

    def _matches(self, webhook: Obj, req: Request) -> bool:
        if not any(_rule_matches(rule, req) for rule in webhook.get("rules") or []):
            return False
        ns_selector = selector_object_matcher(webhook.get("namespaceSelector"))
        if req.rt.namespaced:
            if not ns_selector(self._namespace_labels(req.namespace)):
                return False
        elif req.rt.key == "/namespaces":
            labels = ((req.obj or req.old or {}).get("metadata") or {}).get("labels") or {}
            if not ns_selector(labels):
                return False
        obj_selector = selector_object_matcher(webhook.get("objectSelector"))
        candidates = [o for o in (req.obj, req.old) if o is not None]
        return any(obj_selector((o.get("metadata") or {}).get("labels") or {}) for o in candidates)

    # calling

    def _target(self, webhook: Obj) -> tuple[str, ssl.SSLContext, str | None]:
        cc = webhook.get("clientConfig") or {}
        ca = cc.get("caBundle")
        ctx = (
            ssl.create_default_context(cadata=base64.b64decode(ca).decode())
            if ca
            else ssl.create_default_context()
        )
        if cc.get("url"):
            return cc["url"], ctx, None
        svc = cc.get("service") or {}
        ns, name = svc.get("namespace", ""), svc.get("name", "")
        base = self.service_urls.get((ns, name))
        if base is None:
            raise OSError(f'service "{ns}/{name}" has no address (not in the server\'s service_urls map)')
        return base.rstrip("/") + (svc.get("path") or ""), ctx, f"{name}.{ns}.svc"

    def _review(self, req: Request) -> Obj:
        rt = req.rt
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        gvr = {"group": rt.group, "version": rt.version, "resource": rt.plural}
        request: Obj = {
            "uid": str(uuid.uuid4()),
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": req.name,
            "namespace": req.namespace,
            "operation": req.operation,
            "userInfo": req.user.info(),
            "object": req.obj,
            "oldObject": req.old,
            "dryRun": req.dry_run,
            "options": req.options,
        }
        if req.subresource:
            request["subResource"] = req.subresource
            request["requestSubResource"] = req.subresource
        if not rt.namespaced:
            request.pop("namespace")
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}

    async def _call(self, webhook: Obj, req: Request) -> Obj | None:
        name = webhook.get("name", "")
        review = self._review(req)
        url = "<unknown>"
        self.calls.append((name, req.operation))
        try:
            url, ctx, server_name = self._target(webhook)
            if self._session is None:
                self._session = aiohttp.ClientSession()
            timeout = aiohttp.ClientTimeout(total=float(webhook.get("timeoutSeconds", 10)))
            async with self._session.post(
                url, json=review, ssl=ctx, server_hostname=server_name, timeout=timeout
            ) as resp:
                if resp.status != 200:
                    raise OSError(f"the server responded with status {resp.status}")
                body = await resp.json(content_type=None)
            response = body.get("response") or {}
            if response.get("uid") != review["request"]["uid"]:
                raise OSError(
                    f"expected response.uid={review['request']['uid']!r}, got {response.get('uid')!r}"
                )
        except (OSError, aiohttp.ClientError, TimeoutError, ValueError, ssl.SSLError) as exc:
            if webhook.get("failurePolicy", "Fail") == "Ignore":
                return None
            detail = "context deadline exceeded" if isinstance(exc, TimeoutError) else str(exc)
            raise ApiError(
                500,
                f'Internal error occurred: failed calling webhook "{name}": failed to call webhook: '
                f'Post "{url}": {detail}',
            ) from exc
        req.warnings += list(response.get("warnings") or [])
        if not response.get("allowed"):
            raise _denied(name, response.get("status") or {})
        return response


def _rule_matches(rule: Obj, req: Request) -> bool:
    def listed(values: list[str] | None, value: str) -> bool:
        return bool(values) and ("*" in (values or []) or value in (values or []))

    if not listed(rule.get("operations"), req.operation):
        return False
    if not listed(rule.get("apiGroups"), req.rt.group) or not listed(rule.get("apiVersions"), req.rt.version):
        return False
    scope = rule.get("scope", "*")
    if (scope == "Cluster" and req.rt.namespaced) or (scope == "Namespaced" and not req.rt.namespaced):
        return False
    for r in rule.get("resources") or []:
        res, _, sub = r.partition("/")
        if res in ("*", req.rt.plural) and sub in ("*", req.subresource):
            return True
    return False


def _denied(name: str, status: Obj) -> ApiError:
    code = int(status.get("code") or 400)
    code = max(code, 400)
    prefix = f'admission webhook "{name}" denied the request'
    if status.get("message"):
        message = f"{prefix}: {status['message']}"
    elif status.get("reason"):
        message = f"{prefix}: {status['reason']}"
    else:
        message = f"{prefix} without explanation"
    err = ApiError(code, message, details=status.get("details") or {})
    err.reason = status.get("reason", "")  # the real server keeps the webhook's (often empty) reason
    return err
