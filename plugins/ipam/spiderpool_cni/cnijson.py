"""JSON for the shims without the ``json`` package: decode stdin, render the few outputs.

``import json`` costs about 8 ms per exec because it pulls in ``re`` and ``enum``
(measured on the CI machines; tests/component/test_shim_imports.py guards it), paid on every CNI
call. The C accelerator ``_json``
that ``json`` itself uses has everything the shims need: ``make_scanner`` decodes given a
small context object, and ``encode_basestring_ascii`` escapes a string. The shims print
only three kinds of JSON of their own: the VERSION answer, the CNI error object and
nothing else (the agent's results arrive already rendered).

On a syntax error inside a value, the C scanner (CPython 3.11) looks the exception class
up as ``sys.modules["json.decoder"].JSONDecodeError`` without importing it; when ``json``
was never imported it would fail with a SystemError, so ``decode`` lends it a stand-in
module for the duration of the scan.
"""

import _json
import sys


class JsonError(ValueError):
    """Input that is not one valid JSON document; the message says where and why."""

    def __init__(self, msg: str, doc: str = "", pos: int = 0) -> None:
        super().__init__(f"{msg} at offset {pos}" if doc else msg)
        self.pos = pos


def _reject_constant(name: str) -> object:
    # NaN and Infinity are not JSON (RFC 8259); Go's encoding/json, which writes every
    # CNI config a runtime hands us, rejects them too.
    raise JsonError(f"invalid JSON constant {name}")


class _ScanContext:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    def __init__(self) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = _reject_constant
        self.memo: dict[str, str] = {}


_scan = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]
_WHITESPACE = " \t\n\r"
_stand_in = type(sys)("json.decoder")
_stand_in.JSONDecodeError = JsonError  # type: ignore[attr-defined]


def decode(data: bytes) -> object:
    """Decode one JSON document (UTF-8, surrounding whitespace allowed) or raise ``JsonError``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonError(f"input is not UTF-8: {exc.reason} at byte {exc.start}") from None
    start = len(text) - len(text.lstrip(_WHITESPACE))
    if start == len(text):
        raise JsonError("empty input: expected a JSON document")
    lent = "json.decoder" not in sys.modules
    if lent:
        sys.modules["json.decoder"] = _stand_in
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise JsonError("expecting a JSON value", text, exc.value) from None
    except RecursionError:
        raise JsonError("JSON nested too deeply") from None
    except JsonError:
        raise
    except ValueError as exc:  # the real json.decoder.JSONDecodeError, when json was imported
        raise JsonError(str(exc)) from None
    finally:
        if lent:
            del sys.modules["json.decoder"]
    rest = text[end:]
    if rest.strip(_WHITESPACE):
        raise JsonError("extra data after the JSON document", text, len(text) - len(rest.lstrip(_WHITESPACE)))
    return value


def quote(text: str) -> str:
    """A JSON string literal (ASCII-only output, as ``json.dumps`` writes by default)."""
    return _json.encode_basestring_ascii(text)  # type: ignore[no-any-return]


def render_error(cni_version: str, code: int, msg: str, details: str = "") -> bytes:
    """The CNI error object (SPEC.md "Error"): ``{cniVersion, code, msg, details}``."""
    return (
        f'{{"cniVersion": {quote(cni_version)}, "code": {int(code)}, '
        f'"msg": {quote(msg)}, "details": {quote(details)}}}'
    ).encode("ascii")


def render_version(cni_version: str, supported: tuple[str, ...]) -> bytes:
    """The VERSION answer: the requested version and every version the plugin speaks."""
    listed = ", ".join(quote(v) for v in supported)
    return f'{{"cniVersion": {quote(cni_version)}, "supportedVersions": [{listed}]}}'.encode("ascii")
