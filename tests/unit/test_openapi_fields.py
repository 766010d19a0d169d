"""The schema vocabulary: structural defaulting and the domain's schema check."""

from __future__ import annotations

from typing import Any

from spiderpool_controller.domain.openapi_fields import apply_defaults, schema_errors

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "mode": {"type": "string", "default": "auto", "enum": ["auto", "manual"]},
                "inner": {"type": "object", "properties": {"mtu": {"type": "integer", "default": 0}}},
                "items": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"on": {"type": "boolean", "default": True}}},
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        }
    },
}


def test_defaults_fill_existing_objects_only_and_leave_the_input_alone() -> None:
    """A default lands in an object that exists (list items too); an absent object stays absent."""
    value = {"spec": {"name": "n", "items": [{}, {"on": False}]}}
    out = apply_defaults(SCHEMA, value)
    assert out == {"spec": {"name": "n", "mode": "auto", "items": [{"on": True}, {"on": False}]}}
    assert value == {"spec": {"name": "n", "items": [{}, {"on": False}]}}
    assert apply_defaults(SCHEMA, {"spec": {"inner": {}}})["spec"]["inner"] == {"mtu": 0}


def test_defaults_replace_nulls_and_skip_values_of_the_wrong_type() -> None:
    """A null field gets its default; a spec that is not an object is returned for validation to report."""
    assert apply_defaults(SCHEMA, {"spec": {"mode": None}})["spec"]["mode"] == "auto"
    assert apply_defaults(SCHEMA, {"spec": "text"}) == {"spec": "text"}


def test_schema_errors_name_each_field_with_its_path() -> None:
    """Type, enum, required and unknown fields are reported with API-server-like paths."""
    errors = dict(
        schema_errors(
            SCHEMA,
            {
                "spec": {
                    "mode": "bridge",
                    "inner": {"mtu": "9000", "x": 1},
                    "items": [{"on": "yes"}],
                    "labels": {"a": 1},
                    "free": {"anything": [1]},
                }
            },
        )
    )
    assert set(errors) == {
        "spec.name",
        "spec.mode",
        "spec.inner.mtu",
        "spec.inner.x",
        "spec.items[0].on",
        "spec.labels.a",
    }
    assert errors["spec.name"] == "required"
    assert errors["spec.inner.x"] == "unknown field"
    assert errors["spec.mode"] == '"bridge" is not one of "auto", "manual"'
    assert errors["spec.inner.mtu"] == 'must be of type integer, got "9000"'
