"""Parsing the Kubernetes label-selector string syntax into a ``LabelSelector``.

Owns the text form users and the Store contract speak (``kubectl get -l``, the
``labelSelector`` query parameter of list and watch): ``a=b``, ``a==b``, ``a!=b``,
``a in (x,y)``, ``a notin (x)``, ``a`` and ``!a``, joined by commas (all must hold).
The grammar and the meaning of each operator follow apimachinery's ``labels.Parse``:
``a!=b`` and ``a notin (...)`` also match objects without the label, an empty string
selects everything, and keys and values are checked as label keys and values are.
Set-based operators ``gt``/``lt`` are not supported: no Spiderpool object needs them.

The result is a ``LabelSelector`` holding only ``match_expressions`` (equality becomes
``In`` with one value), so repeating a key keeps every requirement, as upstream does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spiderpool_controller.domain.models import LabelSelector, Requirement

# A label key is an optional DNS-subdomain prefix and a "name" part (apimachinery
# validation.IsQualifiedName); a value is empty or a name part (IsValidLabelValue).
_NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_MAX = 63
_PREFIX_MAX = 253

# Characters that end an identifier (apimachinery's lexer: whitespace and these).
_SPECIAL = frozenset("=!(),<>")

_IDENT, _OP, _LPAREN, _RPAREN, _COMMA, _END = "identifier", "operator", "(", ")", ",", "end"


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            tokens.append(_Token(_LPAREN, ch, i))
            i += 1
        elif ch == ")":
            tokens.append(_Token(_RPAREN, ch, i))
            i += 1
        elif ch == ",":
            tokens.append(_Token(_COMMA, ch, i))
            i += 1
        elif ch in "=!<>":
            two = text[i : i + 2]
            op = two if two in ("==", "!=") else ch
            tokens.append(_Token(_OP, op, i))
            i += len(op)
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _SPECIAL:
                i += 1
            tokens.append(_Token(_IDENT, text[start:i], start))
    tokens.append(_Token(_END, "", n))
    return tokens


def validate_label_key(key: str) -> None:
    """Raise ``ValueError`` unless ``key`` is a valid label key (``[prefix/]name``)."""
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > _PREFIX_MAX or not _DNS_SUBDOMAIN.match(prefix)):
        raise ValueError(
            f"invalid label key {key!r}: prefix must be a DNS subdomain of at most 253 characters"
        )
    if not name or len(name) > _NAME_MAX or not _NAME_PART.match(name):
        raise ValueError(
            f"invalid label key {key!r}: name must be at most 63 alphanumerics, '-', '_' or '.', "
            "beginning and ending with an alphanumeric"
        )


def validate_label_value(value: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a valid label value (may be empty)."""
    if value and (len(value) > _NAME_MAX or not _NAME_PART.match(value)):
        raise ValueError(
            f"invalid label value {value!r}: at most 63 alphanumerics, '-', '_' or '.', "
            "beginning and ending with an alphanumeric"
        )


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def error(self, token: _Token, expected: str) -> ValueError:
        found = f"{token.text!r}" if token.kind != _END else "end of selector"
        return ValueError(
            f"invalid label selector {self.text!r}: "
            f"expected {expected} at position {token.pos}, found {found}"
        )

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> tuple[Requirement, ...]:
        if self.peek().kind == _END:
            return ()
        requirements = [self.requirement()]
        while self.peek().kind == _COMMA:
            self.take()
            requirements.append(self.requirement())
        if self.peek().kind != _END:
            raise self.error(self.peek(), "',' or end of selector")
        return tuple(requirements)

    def requirement(self) -> Requirement:
        token = self.take()
        if token.kind == _OP and token.text == "!":
            return Requirement(self.key(), "DoesNotExist")
        self.i -= 1
        key = self.key()
        token = self.peek()
        if token.kind in (_COMMA, _END):
            return Requirement(key, "Exists")
        if token.kind == _OP and token.text in ("=", "=="):
            self.take()
            return Requirement(key, "In", (self.value(),))
        if token.kind == _OP and token.text == "!=":
            self.take()
            return Requirement(key, "NotIn", (self.value(),))
        if token.kind == _IDENT and token.text in ("in", "notin"):
            self.take()
            return Requirement(key, "In" if token.text == "in" else "NotIn", self.value_set(token))
        if token.kind == _OP and token.text in ("<", ">"):
            raise ValueError(
                f"invalid label selector {self.text!r}: operator {token.text!r} is not supported"
            )
        raise self.error(token, "'=', '==', '!=', 'in', 'notin', ',' or end of selector")

    def key(self) -> str:
        token = self.take()
        if token.kind != _IDENT:
            raise self.error(token, "a label key")
        validate_label_key(token.text)
        return token.text

    def value(self) -> str:
        token = self.peek()
        if token.kind in (_COMMA, _END):  # "a=" selects an empty value, as upstream
            return ""
        if token.kind != _IDENT:
            raise self.error(token, "a label value")
        self.take()
        validate_label_value(token.text)
        return token.text

    def value_set(self, operator: _Token) -> tuple[str, ...]:
        token = self.take()
        if token.kind != _LPAREN:
            raise self.error(token, f"'(' after {operator.text!r}")
        values: list[str] = []
        while True:
            token = self.peek()
            if token.kind == _IDENT:
                self.take()
                validate_label_value(token.text)
                values.append(token.text)
            elif token.kind in (_COMMA, _RPAREN):
                values.append("")  # "(a,,b)" and "(a,)" name the empty value, as upstream
            else:
                raise self.error(token, "a label value or ')'")
            token = self.take()
            if token.kind == _RPAREN:
                break
            if token.kind != _COMMA:
                raise self.error(token, "',' or ')'")
        if values == [""] and self.tokens[self.i - 2].kind == _LPAREN:
            raise ValueError(
                f"invalid label selector {self.text!r}: the value set of {operator.text!r} can't be empty"
            )
        return tuple(dict.fromkeys(values))


def parse_label_selector(text: str) -> LabelSelector:
    """Parse Kubernetes label-selector syntax; raise ``ValueError`` naming the fault."""
    return LabelSelector(match_expressions=_Parser(text).parse())
