"""REST semantics no single client exercises on its own, checked with raw HTTP requests (shapes as the real
server)."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.parse
from typing import Any

import pytest

from .conftest import Http
from .server import ServerThread, go_bool

WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "selectableFields": [{"jsonPath": ".spec.color"}],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["color"],
                                "properties": {
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
                                    "name": {
                                        "type": "string",
                                        "minLength": 2,
                                        "maxLength": 5,
                                        "pattern": "^[a-z]+$",
                                    },
                                    "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "note": {"type": "string", "nullable": True},
                                    "ip": {"type": "string", "format": "ipv4"},
                                    "cidr": {"type": "string", "format": "cidr"},
                                    "when": {"type": "string", "format": "date-time"},
                                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    "nested": {
                                        "type": "object",
                                        "properties": {
                                            "mode": {"type": "string", "default": "auto"},
                                            "deep": {
                                                "type": "object",
                                                "properties": {"level": {"type": "integer", "default": 1}},
                                            },
                                        },
                                    },
                                },
                            },
                            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"color": "red", **spec},
    }


@pytest.fixture
def widgets(http: Http) -> Http:
    code, body, _ = http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
    assert code == 201, body
    return http


def test_default_namespaces_exist_at_start(http: Http) -> None:
    _, body, _ = http("GET", "/api/v1/namespaces")
    names = {i["metadata"]["name"] for i in body["items"]}
    assert {"default", "kube-system", "kube-public"} <= names


def test_namespaced_create_in_a_missing_namespace_is_404(http: Http) -> None:
    code, body, _ = http("POST", "/api/v1/namespaces/nope/configmaps", {"metadata": {"name": "c"}})
    assert code == 404
    assert body["message"] == 'namespaces "nope" not found' and body["reason"] == "NotFound"


def test_generate_name_creates_a_fresh_name_with_the_prefix(http: Http) -> None:
    names = set()
    for _ in range(3):
        code, body, _ = http(
            "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"generateName": "gen-"}}
        )
        assert code == 201
        names.add(body["metadata"]["name"])
    assert len(names) == 3 and all(n.startswith("gen-") and len(n) == 9 for n in names)


def test_create_of_an_existing_name_is_409_already_exists(http: Http) -> None:
    http("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}})
    code, body, _ = http("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}})
    assert (code, body["reason"], body["message"]) == (409, "AlreadyExists", 'configmaps "c" already exists')


def test_unknown_resource_is_404_and_unsupported_method_is_405(http: Http) -> None:
    code, body, _ = http("GET", "/apis/example.com/v1/gadgets")
    assert (code, body["message"]) == (404, "the server could not find the requested resource")
    code, body, _ = http("POST", "/api/v1/namespaces/default/configmaps/c", {})
    assert (code, body["reason"]) == (405, "MethodNotAllowed")


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=a", ["x"]),
        ("tier==a", ["x"]),
        ("tier!=a", ["y", "z"]),
        ("tier in (a,b)", ["x", "y"]),
        ("tier notin (a)", ["y", "z"]),
        ("tier", ["x", "y"]),
        ("!tier", ["z"]),
        ("tier,app=web", ["y"]),
    ],
)
def test_label_selectors(http: Http, selector: str, expected: list[str]) -> None:
    for name, labels in [("x", {"tier": "a"}), ("y", {"tier": "b", "app": "web"}), ("z", {})]:
        http("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": name, "labels": labels}})
    q = urllib.parse.urlencode({"labelSelector": selector})
    _, body, _ = http("GET", f"/api/v1/namespaces/default/configmaps?{q}")
    assert [i["metadata"]["name"] for i in body["items"]] == expected


def test_field_selectors_on_pods_and_the_400_for_an_unsupported_label(http: Http) -> None:
    for name, node in [("p1", "n1"), ("p2", "n2")]:
        pod = {
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
        }
        http("POST", "/api/v1/namespaces/default/pods", pod)
    http(
        "PATCH",
        "/api/v1/namespaces/default/pods/p2/status",
        {"status": {"phase": "Running"}},
        "application/merge-patch+json",
    )

    def names(selector: str) -> list[str]:
        _, body, _ = http("GET", "/api/v1/pods?" + urllib.parse.urlencode({"fieldSelector": selector}))
        return [i["metadata"]["name"] for i in body["items"]]

    assert names("spec.nodeName=n1") == ["p1"]
    assert names("status.phase=Running") == ["p2"]
    assert names("metadata.name!=p1,metadata.namespace=default") == ["p2"]
    code, body, _ = http("GET", "/api/v1/pods?fieldSelector=spec.bogus%3Dx")
    assert (code, body["message"]) == (400, "field label not supported: spec.bogus")


def test_go_style_booleans_in_query_parameters() -> None:
    assert all(go_bool(v) for v in ("true", "True", "1", "t", "T", "yes"))
    assert not any(go_bool(v) for v in (None, "0", "f", "F", "false", "FALSE"))


def test_list_pagination_with_limit_and_continue(http: Http) -> None:
    for i in range(5):
        http("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"c{i}"}})
    _, page1, _ = http("GET", "/api/v1/namespaces/default/configmaps?limit=2")
    assert [i["metadata"]["name"] for i in page1["items"]] == ["c0", "c1"]
    assert page1["metadata"]["remainingItemCount"] == 3
    token = urllib.parse.quote(page1["metadata"]["continue"])
    _, page2, _ = http("GET", f"/api/v1/namespaces/default/configmaps?limit=2&continue={token}")
    assert [i["metadata"]["name"] for i in page2["items"]] == ["c2", "c3"]
    assert page2["metadata"]["resourceVersion"] == page1["metadata"]["resourceVersion"]


def test_merge_patch_null_deletes_and_json_patch_failures_are_422(http: Http) -> None:
    http(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}},
    )
    _, body, _ = http(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c",
        {"data": {"a": None, "c": "3"}},
        "application/merge-patch+json",
    )
    assert body["data"] == {"b": "2", "c": "3"}
    ops = [{"op": "test", "path": "/data/b", "value": "9"}, {"op": "remove", "path": "/data/b"}]
    code, body, _ = http(
        "PATCH", "/api/v1/namespaces/default/configmaps/c", ops, "application/json-patch+json"
    )
    assert code == 422
    code, body, _ = http(
        "PATCH", "/api/v1/namespaces/default/configmaps/c", {"data": {}}, "application/json-patch+json"
    )
    assert (code, body["message"]) == (
        400,
        "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
    )


def test_strategic_merge_patch_directives_on_a_pod(http: Http) -> None:
    pod = {
        "metadata": {"name": "p", "finalizers": ["a/x", "a/y"]},
        "spec": {
            "containers": [
                {
                    "name": "a",
                    "image": "i",
                    "ports": [{"containerPort": 80}, {"containerPort": 81}],
                    "env": [{"name": "E1", "value": "1"}, {"name": "E2", "value": "2"}],
                },
                {"name": "b", "image": "i"},
            ],
            "volumes": [{"name": "v1", "emptyDir": {}}],
        },
    }
    http("POST", "/api/v1/namespaces/default/pods", pod)
    patch = {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"], "finalizers": ["a/z"]},
        "spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [
                {
                    "name": "a",
                    "ports": [{"containerPort": 81, "name": "web"}],
                    "env": [{"name": "E1", "$patch": "delete"}],
                }
            ],
            "volumes": [{"$patch": "replace"}, {"name": "v2", "emptyDir": {}}],
        },
    }
    code, body, _ = http(
        "PATCH", "/api/v1/namespaces/default/pods/p", patch, "application/strategic-merge-patch+json"
    )
    assert code == 200, body
    spec = body["spec"]
    assert [c["name"] for c in spec["containers"]] == ["b", "a"]
    a = spec["containers"][1]
    assert a["ports"] == [{"containerPort": 80}, {"containerPort": 81, "name": "web"}]
    assert a["env"] == [{"name": "E2", "value": "2"}]
    assert spec["volumes"] == [{"name": "v2", "emptyDir": {}}]
    assert body["metadata"]["finalizers"] == ["a/y", "a/z"]
    assert "$patch" not in json.dumps(body)


def test_strategic_merge_patch_on_a_custom_resource_is_415(widgets: Http) -> None:
    widgets("POST", WIDGETS, widget("w"))
    code, body, _ = widgets(
        "PATCH", f"{WIDGETS}/w", {"spec": {"size": 2}}, "application/strategic-merge-patch+json"
    )
    assert (code, body["reason"]) == (415, "UnsupportedMediaType")


def test_server_side_apply_answers_201_on_create_and_200_on_update(widgets: Http) -> None:
    path = f"{WIDGETS}/w?fieldManager=tester&force=false"
    code, body, _ = widgets("PATCH", path, widget("w", size=4), "application/apply-patch+yaml")
    assert code == 201 and body["spec"]["size"] == 4
    code, body, _ = widgets("PATCH", path, widget("w", size=5), "application/apply-patch+yaml")
    assert code == 200 and body["spec"]["size"] == 5
    assert [(m["manager"], m["operation"]) for m in body["metadata"]["managedFields"]] == [
        ("tester", "Apply")
    ]


def test_dry_run_persists_nothing_and_emits_no_event(srv: ServerThread, http: Http) -> None:
    http("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}, "data": {"a": "1"}})
    rv = srv.server.store.revision
    code, _, _ = http("POST", "/api/v1/namespaces/default/configmaps?dryRun=All", {"metadata": {"name": "d"}})
    assert code == 201
    code, body, _ = http(
        "PUT",
        "/api/v1/namespaces/default/configmaps/c?dryRun=All",
        {"metadata": {"name": "c"}, "data": {"a": "2"}},
    )
    assert code == 200 and body["data"] == {"a": "2"}
    code, _, _ = http("DELETE", "/api/v1/namespaces/default/configmaps/c?dryRun=All")
    assert code == 200
    assert srv.server.store.revision == rv
    assert srv.get("v1", "ConfigMap", "c", "default")["data"] == {"a": "1"}  # type: ignore[index]
    assert srv.get("v1", "ConfigMap", "d", "default") is None


def test_delete_preconditions_on_uid_and_resource_version_are_409(http: Http) -> None:
    _, cm, _ = http("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}})
    path = "/api/v1/namespaces/default/configmaps/c"
    code, body, _ = http("DELETE", path, {"preconditions": {"uid": "other"}})
    assert code == 409 and "Precondition failed: UID in precondition: other" in body["message"]
    code, body, _ = http("DELETE", path, {"preconditions": {"resourceVersion": "1"}})
    assert code == 409 and "Precondition failed: ResourceVersion in precondition: 1" in body["message"]
    code, _, _ = http("DELETE", path, {"preconditions": {"uid": cm["metadata"]["uid"]}})
    assert code == 200


def test_deletecollection_deletes_only_the_matching_objects(http: Http) -> None:
    for name, labels in [("a", {"x": "1"}), ("b", {"x": "1"}), ("c", {})]:
        http("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": name, "labels": labels}})
    code, body, _ = http("DELETE", "/api/v1/namespaces/default/configmaps?labelSelector=x%3D1")
    assert code == 200 and [i["metadata"]["name"] for i in body["items"]] == ["a", "b"]
    _, left, _ = http("GET", "/api/v1/namespaces/default/configmaps")
    assert [i["metadata"]["name"] for i in left["items"]] == ["c"]


def test_finalizers_hold_deletion_and_the_last_removal_deletes(srv: ServerThread, http: Http) -> None:
    path = "/api/v1/namespaces/default/configmaps/c"
    http(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "c", "finalizers": ["x/a", "x/b"]}},
    )
    code, body, _ = http("DELETE", path)
    assert code == 202 and body["metadata"]["deletionTimestamp"]
    http("PATCH", path, [{"op": "remove", "path": "/metadata/finalizers/0"}], "application/json-patch+json")
    assert srv.get("v1", "ConfigMap", "c", "default") is not None
    code, _, _ = http("PATCH", path, {"metadata": {"finalizers": None}}, "application/merge-patch+json")
    assert code == 200
    assert srv.get("v1", "ConfigMap", "c", "default") is None


def _owned(name: str, owner: dict[str, Any], finalizers: list[str] | None = None) -> dict[str, Any]:
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    return {"metadata": {"name": name, "ownerReferences": [ref], "finalizers": finalizers or []}}


@pytest.mark.parametrize("policy", ["Background", "Foreground", "Orphan"])
def test_owner_deletion_cascades_per_propagation_policy(srv: ServerThread, http: Http, policy: str) -> None:
    cms = "/api/v1/namespaces/default/configmaps"
    _, owner, _ = http("POST", cms, {"metadata": {"name": "owner"}})
    http("POST", cms, _owned("dep", owner))
    http("POST", cms, _owned("held", owner, ["x/hold"]))
    code, _, _ = http("DELETE", f"{cms}/owner", {"propagationPolicy": policy})
    dep, held = srv.get("v1", "ConfigMap", "dep", "default"), srv.get("v1", "ConfigMap", "held", "default")
    if policy == "Orphan":
        assert code == 200 and dep is not None and "ownerReferences" not in dep["metadata"]
        return
    assert dep is None
    assert held is not None and held["metadata"]["deletionTimestamp"]  # its own finalizer is honoured
    owner_now = srv.get("v1", "ConfigMap", "owner", "default")
    if policy == "Foreground":
        assert code == 202 and owner_now is not None  # waits for its dependents
        http("PATCH", f"{cms}/held", {"metadata": {"finalizers": None}}, "application/merge-patch+json")
        assert srv.get("v1", "ConfigMap", "owner", "default") is None
    else:
        assert code == 200 and owner_now is None


def test_namespace_deletion_removes_its_content_then_itself_and_refuses_new_content(
    srv: ServerThread, http: Http
) -> None:
    http("POST", "/api/v1/namespaces", {"metadata": {"name": "gone"}})
    http("POST", "/api/v1/namespaces/gone/configmaps", {"metadata": {"name": "a"}})
    http("POST", "/api/v1/namespaces/gone/configmaps", {"metadata": {"name": "b", "finalizers": ["x/y"]}})
    code, body, _ = http("DELETE", "/api/v1/namespaces/gone")
    assert code == 200 and body["status"]["phase"] == "Terminating"
    assert srv.get("v1", "ConfigMap", "a", "gone") is None
    code, body, _ = http("POST", "/api/v1/namespaces/gone/configmaps", {"metadata": {"name": "c"}})
    assert code == 403 and "because it is being terminated" in body["message"]
    http(
        "PATCH",
        "/api/v1/namespaces/gone/configmaps/b",
        {"metadata": {"finalizers": None}},
        "application/merge-patch+json",
    )
    assert srv.get("v1", "Namespace", "gone") is None


def test_generation_moves_with_spec_only(widgets: Http) -> None:
    _, w, _ = widgets("POST", WIDGETS, widget("w"))
    assert w["metadata"]["generation"] == 1
    _, w, _ = widgets(
        "PATCH", f"{WIDGETS}/w", {"metadata": {"labels": {"a": "b"}}}, "application/merge-patch+json"
    )
    assert w["metadata"]["generation"] == 1
    _, w, _ = widgets(
        "PATCH", f"{WIDGETS}/w/status", {"status": {"ready": True}}, "application/merge-patch+json"
    )
    assert w["metadata"]["generation"] == 1 and w["status"] == {"ready": True}
    _, w, _ = widgets("PATCH", f"{WIDGETS}/w", {"spec": {"size": 7}}, "application/merge-patch+json")
    assert w["metadata"]["generation"] == 2


def test_a_noop_update_keeps_the_resource_version(http: Http) -> None:
    _, cm, _ = http(
        "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}, "data": {"a": "1"}}
    )
    _, same, _ = http("PUT", "/api/v1/namespaces/default/configmaps/c", cm)
    assert same["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]


def test_custom_resource_update_without_resource_version_is_422(widgets: Http) -> None:
    widgets("POST", WIDGETS, widget("w"))
    code, body, _ = widgets("PUT", f"{WIDGETS}/w", widget("w", size=2))
    assert (
        code == 422
        and "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
        in (body["message"])
    )


def test_schema_defaults_fill_absent_fields_of_existing_objects_only(widgets: Http) -> None:
    _, w, _ = widgets("POST", WIDGETS, widget("a", nested={"deep": {}}))
    assert w["spec"]["size"] == 3
    assert w["spec"]["nested"] == {"mode": "auto", "deep": {"level": 1}}
    _, w, _ = widgets("POST", WIDGETS, widget("b"))
    assert "nested" not in w["spec"]


def test_unknown_fields_are_pruned_warned_or_refused_per_field_validation(widgets: Http) -> None:
    body = widget("a", bogus=1, extra={"free": {"form": True}})
    code, w, headers = widgets("POST", f"{WIDGETS}?fieldValidation=Warn", body)
    assert code == 201 and "bogus" not in w["spec"] and w["spec"]["extra"] == {"free": {"form": True}}
    assert headers["Warning"] == '299 - "unknown field \\"spec.bogus\\""'
    code, _, headers = widgets(
        "POST", f"{WIDGETS}?fieldValidation=Ignore", {**body, "metadata": {"name": "b"}}
    )
    assert code == 201 and "Warning" not in headers
    code, err, _ = widgets("POST", f"{WIDGETS}?fieldValidation=Strict", {**body, "metadata": {"name": "c"}})
    assert (code, err["message"]) == (400, 'strict decoding error: unknown field "spec.bogus"')


def test_schema_violations_are_422_with_one_cause_per_field(widgets: Http) -> None:
    bad = {
        "color": "green",
        "size": 11,
        "name": "A",
        "tags": ["a", "b", "c"],
        "port": 1.5,
        "ip": "1.2.3",
        "cidr": "10.0.0.0",
        "when": "yesterday",
    }
    code, body, _ = widgets("POST", WIDGETS, {**widget("w"), "spec": bad})
    assert code == 422 and body["reason"] == "Invalid"
    causes: dict[str, str] = {}
    for c in body["details"]["causes"]:
        causes[c["field"]] = (
            causes[c["field"]] + " | " + c["message"] if c["field"] in causes else c["message"]
        )
    assert causes["spec.color"] == 'Unsupported value: "green": supported values: "red", "blue"'
    assert causes["spec.size"] == "Invalid value: 11: spec.size in body should be less than or equal to 10"
    assert causes["spec.name"] == (
        'Invalid value: "A": spec.name in body should be at least 2 chars long | '
        "Invalid value: \"A\": spec.name in body should match '^[a-z]+$'"
    )
    assert causes["spec.tags"] == "Too many: 3: must have at most 2 items"
    assert "spec.port in body must be of type integer,string" in causes["spec.port"]
    assert causes["spec.ip"] == 'Invalid value: "1.2.3": spec.ip in body must be of type ipv4: "1.2.3"'
    assert (
        "must be of type cidr" in causes["spec.cidr"] and "must be of type date-time" in causes["spec.when"]
    )
    assert body["message"].startswith('Widget.example.com "w" is invalid: [spec.color: Unsupported value')
    code, body, _ = widgets("POST", WIDGETS, {**widget("x"), "spec": {"size": 2}})
    assert code == 422 and body["message"] == 'Widget.example.com "x" is invalid: spec.color: Required value'


def test_int_or_string_and_nullable_fields_accept_their_values(widgets: Http) -> None:
    for name, port in [("a", 8080), ("b", "http")]:
        code, body, _ = widgets("POST", WIDGETS, widget(name, port=port, note=None))
        assert code == 201 and body["spec"]["port"] == port and body["spec"]["note"] is None


def test_crd_status_and_discovery_follow_the_crd_instantly(widgets: Http) -> None:
    _, crd, _ = widgets("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["storedVersions"] == ["v1"]
    assert crd["status"]["acceptedNames"]["listKind"] == "WidgetList"
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    _, agg, headers = widgets("GET", "/apis", headers={"Accept": accept})
    assert headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    group = next(g for g in agg["items"] if g["metadata"]["name"] == "example.com")
    assert group["versions"][0]["resources"][0]["shortNames"] == ["wd"]
    widgets("POST", WIDGETS, widget("w"))
    widgets("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    _, legacy, _ = widgets("GET", "/apis")
    assert "example.com" not in [g["name"] for g in legacy["groups"]]
    code, _, _ = widgets("GET", WIDGETS)
    assert code == 404


def test_openapi_v2_stub_bytes_and_v3_field_validation_parameter(http: Http) -> None:
    _, body, headers = http("GET", "/openapi/v2")
    assert headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert body == b"\n\x032.0\x12\x15\n\nKubernetes\x12\x07v1.37.1B\x00"
    _, index, _ = http("GET", "/openapi/v3")
    url = index["paths"]["api/v1"]["serverRelativeURL"]
    _, doc, _ = http("GET", url)
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
    assert {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}} in (
        patch["parameters"]
    )
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}


def _watch_lines(srv: ServerThread, path: str, count: int) -> list[dict[str, Any]]:
    """Read `count` events from a raw watch stream (HTTP/1.1 chunked over TLS)."""
    ca = srv.server.ca_pem
    assert ca is not None
    ctx = ssl.create_default_context(cadata=ca.decode())
    with (
        socket.create_connection(("127.0.0.1", srv.server.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        token = srv.server.config.admin_token
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        data = b""
        events: list[dict[str, Any]] = []
        while len(events) < count:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            events = [json.loads(line) for line in data.split(b"\r\n") if line.startswith(b'{"type"')]
        return events


def test_send_initial_events_ends_with_the_initial_events_end_bookmark(srv: ServerThread, http: Http) -> None:
    http("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c1"}})
    path = (
        "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
        "&resourceVersionMatch=NotOlderThan&timeoutSeconds=5"
    )
    events = _watch_lines(srv, path, 2)
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert events[1]["object"]["metadata"]["resourceVersion"] == str(srv.server.store.revision)


def test_watch_with_a_selector_sees_objects_leave_it_as_deleted(srv: ServerThread, http: Http) -> None:
    http("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c", "labels": {"a": "1"}}})
    rv = srv.server.store.revision
    http(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c",
        {"metadata": {"labels": {"a": "2"}}},
        "application/merge-patch+json",
    )
    events = _watch_lines(
        srv,
        f"/api/v1/namespaces/default/configmaps?watch=true&labelSelector=a%3D1"
        f"&resourceVersion={rv}&timeoutSeconds=5",
        1,
    )
    assert [(e["type"], e["object"]["metadata"]["labels"]) for e in events] == [("DELETED", {"a": "2"})]


def test_send_initial_events_without_not_older_than_is_422(http: Http) -> None:
    code, body, _ = http("GET", "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true")
    assert code == 422 and body["reason"] == "Invalid"


def test_server_side_apply_merges_keyed_lists_and_drops_items_the_manager_stopped_applying(
    http: Http,
) -> None:
    def deployment(*containers: dict[str, Any]) -> dict[str, Any]:
        template = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": list(containers)}}
        spec = {"selector": {"matchLabels": {"a": "b"}}, "template": template}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": spec}

    path = "/apis/apps/v1/namespaces/default/deployments/d?fieldManager=helm"
    a = {"name": "a", "image": "i", "ports": [{"containerPort": 80}, {"containerPort": 81}]}
    http("PATCH", path, deployment(a, {"name": "b", "image": "i"}), "application/apply-patch+yaml")
    other = [
        {"op": "add", "path": "/spec/template/spec/containers/0/env", "value": [{"name": "K", "value": "v"}]}
    ]
    edit = "/apis/apps/v1/namespaces/default/deployments/d?fieldManager=kubectl-edit"
    http("PATCH", edit, other, "application/json-patch+json")
    a2 = {"name": "a", "image": "i", "ports": [{"containerPort": 81}]}
    code, body, _ = http("PATCH", path, deployment(a2), "application/apply-patch+yaml")
    assert code == 200
    containers = body["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["a"]
    assert containers[0]["ports"] == [{"containerPort": 81}]
    assert containers[0]["env"] == [{"name": "K", "value": "v"}]  # owned by another manager: kept
    managers = sorted((m["manager"], m["operation"]) for m in body["metadata"]["managedFields"])
    assert managers == [("helm", "Apply"), ("kubectl-edit", "Update")]


def test_a_terminating_object_accepts_no_new_finalizer(http: Http) -> None:
    """Adding a finalizer to an object with a deletionTimestamp is 422 (ValidateObjectMetaUpdate);
    removing one is fine."""
    path = "/api/v1/namespaces/default/configmaps/fin"
    http(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "fin", "finalizers": ["a.io/x"]}},
    )
    code, marked, _ = http("DELETE", path)
    assert code == 202
    marked["metadata"]["finalizers"] = ["a.io/x", "b.io/late"]
    code, body, _ = http("PUT", path, marked)
    assert code == 422
    assert "no new finalizers can be added if the object is being deleted" in body["message"]
    marked["metadata"]["finalizers"] = []
    code, _, _ = http("PUT", path, marked)
    assert code == 200
