"""The shims' JSON without the json package agrees with the json package.

``spiderpool_cni.cnijson`` drives the C scanner ``_json`` directly so the shims avoid
importing ``json`` (and ``re``, ``enum``); these tests hold it to ``json``'s behaviour on
valid documents and to a clear ``JsonError`` on everything else.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spiderpool_cni import cnijson

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values, st.sampled_from([None, 2]), st.booleans())
def test_decode_matches_json_loads(value: Any, indent: int | None, ascii_only: bool) -> None:
    """Any document json.dumps writes decodes to what json.loads returns."""
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    assert cnijson.decode(f" \n{text}\t ".encode()) == json.loads(text)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty input"),
        (b"{", "Expecting property name"),
        (b"[1,]", "expecting a JSON value"),
        (b'{"a": Infinity}', "Infinity"),
        (b"1 2", "extra data"),
        (b"\xc3", "not UTF-8"),
        (b'"\t"', "Invalid control character"),
    ],
)
def test_invalid_documents_raise_json_error(data: bytes, fragment: str) -> None:
    """Malformed input raises JsonError (a ValueError) whose message says what is wrong."""
    with pytest.raises(cnijson.JsonError, match=fragment):
        cnijson.decode(data)


def test_decode_errors_leave_no_json_decoder_stand_in_behind() -> None:
    """After a failed decode, sys.modules holds the real json.decoder (or none), never the stand-in."""
    with pytest.raises(cnijson.JsonError):
        cnijson.decode(b'{"a": "\x01"}')
    module = sys.modules.get("json.decoder")
    assert module is None or hasattr(module, "JSONDecoder")


@given(st.text())
def test_quote_matches_json_dumps(text: str) -> None:
    """quote writes the same ASCII-only string literal as json.dumps."""
    assert cnijson.quote(text) == json.dumps(text)


@given(st.text(), st.integers(min_value=0, max_value=999), st.text(), st.text())
def test_rendered_errors_parse_back(version: str, code: int, msg: str, details: str) -> None:
    """The CNI error object parses as JSON with exactly its four keys and values."""
    rendered = cnijson.render_error(version, code, msg, details)
    assert json.loads(rendered) == {"cniVersion": version, "code": code, "msg": msg, "details": details}


def test_rendered_version_lists_every_version() -> None:
    """The VERSION answer carries the requested version and the supported list in order."""
    rendered = cnijson.render_version("0.4.0", ("0.3.0", "1.1.0"))
    assert json.loads(rendered) == {"cniVersion": "0.4.0", "supportedVersions": ["0.3.0", "1.1.0"]}
