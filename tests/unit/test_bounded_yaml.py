"""The one YAML loader: what it accepts, what it refuses, and that every refusal is one line."""

from __future__ import annotations

import pytest
from spiderpool_common.bounded_yaml import MAX_ALIAS_EXPANSION, MAX_DEPTH, YamlError, load, load_all


def refusal(text: str) -> str:
    with pytest.raises(YamlError) as info:
        load(text, "m.yaml")
    message = str(info.value)
    assert message.startswith("m.yaml: ") and "\n" not in message, message
    return message


def test_a_large_document_without_aliases_is_never_refused_for_its_size() -> None:
    """Size alone costs what the text costs: 20,000 list items of 30 characters load."""
    items = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}-long-enough-value" for i in range(20_000)]
    text = "ips:\n" + "".join(f"- {item}\n" for item in items)
    assert load(text, "m.yaml") == {"ips": items}


def test_modest_alias_use_loads_and_merge_keys_work() -> None:
    """A selector reused a few times, and a merge key, stay well inside the bound."""
    text = "a: &sel {matchLabels: {app: web}}\nb: *sel\nc: {<<: *sel, extra: 1}\n"
    assert load(text, "m.yaml") == {
        "a": {"matchLabels": {"app": "web"}},
        "b": {"matchLabels": {"app": "web"}},
        "c": {"matchLabels": {"app": "web"}, "extra": 1},
    }


def test_repeating_a_long_string_through_aliases_counts_its_characters() -> None:
    """Expansion is weighed in characters too: 20 aliases of a 10,000-character string are refused."""
    text = f"s: &s {'x' * 10_000}\nl: [{', '.join(['*s'] * 20)}]\n"
    assert f"beyond {MAX_ALIAS_EXPANSION:,}" in refusal(text)
    assert load(f"s: &s {'x' * 10_000}\nl: [*s, *s]\n", "m.yaml")["l"] == ["x" * 10_000] * 2


def test_nesting_is_refused_past_the_bound_and_accepted_at_it() -> None:
    """MAX_DEPTH nested lists load (the scalar inside is the last level); one more is refused."""
    inside = MAX_DEPTH - 1
    assert load("[" * inside + "1" + "]" * inside, "m.yaml") is not None
    assert f"nested deeper than {MAX_DEPTH} levels" in refusal("[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH)


def test_a_recursive_alias_is_refused() -> None:
    """An alias of the node that contains it (which json.dumps could not encode) is refused."""
    assert "refers to a node that contains it" in refusal("a: &a [1, *a]\n")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a: [", "line 1, column 5"),
        ("a: *nowhere", "undefined alias"),
        ("a: b: c", "mapping values"),
        ("\x00", "unacceptable character"),
    ],
)
def test_syntax_errors_are_one_line_naming_the_source(text: str, fragment: str) -> None:
    """PyYAML's multi-line messages become one line that starts with the source's name."""
    assert fragment in refusal(text)


def test_every_document_of_a_stream_is_returned_and_each_is_bounded() -> None:
    """load_all keeps empty documents as None and refuses a bomb in any document."""
    assert load_all("a: 1\n---\n---\nb: 2\n", "m.yaml") == [{"a": 1}, None, {"b": 2}]
    with pytest.raises(YamlError, match="nested deeper"):
        load_all("a: 1\n---\n" + "[" * 200 + "]" * 200, "m.yaml")
