"""Loading YAML a user hands us: the one place the programs parse YAML, with bounds.

Owns the refusal of the inputs whose cost is out of all proportion to their size, so
every reader (``spiderpoolctl apply`` manifests, the ``--config`` files of the controller
and the agent) refuses them the same way, at once, in one line, as kubectl does:

- Aliases. PyYAML builds an alias as a shared reference, so loading "billion laughs"
  (nine levels, each a list of nine aliases of the level below) is cheap, but whatever
  walks the result afterwards (``json.dumps`` before a manifest is sent, a deep copy)
  pays for every repetition: 9^9 strings, gigabytes. While composing, every node is
  weighed (one per node plus the characters of its scalars, the repetitions of nested
  aliases included) and each alias adds its anchor's weight to the document's total;
  past ``MAX_ALIAS_EXPANSION`` the document is refused. A document without aliases is
  never refused for its size (its cost is its text's). An alias of a node that encloses
  it (a recursive structure, which no manifest or setting can be and which ``json.dumps``
  cannot encode) is refused too.
- Nesting. The composer recurses once per level, so 10,000 levels end in a
  ``RecursionError`` traceback; a node deeper than ``MAX_DEPTH`` is refused first. Our
  manifests nest under ten levels and settings files under three.

The pure-Python ``SafeLoader`` is the base (not libyaml's ``CSafeLoader``, whose composer
cannot be hooked); manifests and settings files are small, so its speed does not matter.
Every failure, the refusals and PyYAML's own syntax errors alike, is a ``YamlError``
(a ``ValueError``) whose message is one line naming the source and the position.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 100
MAX_ALIAS_EXPANSION = 100_000  # nodes plus scalar characters that aliases may repeat, per document


class YamlError(ValueError):
    """A YAML text that cannot be loaded or is refused; ``str()`` is one line."""


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` whose composer counts nesting depth and alias expansion."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0
        self._weights: dict[int, int] = {}  # id(node) -> its weight, aliases expanded

    def compose_document(self) -> yaml.Node | None:
        self._expanded = 0
        self._weights = {}
        try:
            return super().compose_document()  # type: ignore[no-any-return]
        finally:
            self._weights = {}  # node ids are only meaningful while the document lives

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event: yaml.AliasEvent = self.peek_event()  # type: ignore[no-untyped-call]
            node: yaml.Node = super().compose_node(parent, index)  # type: ignore[assignment]
            weight = self._weights.get(id(node))
            if weight is None:
                raise _refused(f"alias *{event.anchor} refers to a node that contains it", event.start_mark)
            self._expanded += weight
            if self._expanded > MAX_ALIAS_EXPANSION:
                raise _refused(
                    f"aliases expand beyond {MAX_ALIAS_EXPANSION:,} nodes and characters "
                    f"(an alias bomb?) at *{event.anchor}",
                    event.start_mark,
                )
            return node
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                start = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _refused(f"nested deeper than {MAX_DEPTH} levels", start)
            node = super().compose_node(parent, index)  # type: ignore[assignment]
        finally:
            self._depth -= 1
        self._weights[id(node)] = self._weigh(node)
        return node

    def _weigh(self, node: yaml.Node) -> int:
        if isinstance(node, yaml.ScalarNode):
            return 1 + len(node.value)
        if isinstance(node, yaml.SequenceNode):
            return 1 + sum(self._weights.get(id(child), 0) for child in node.value)
        if isinstance(node, yaml.MappingNode):
            return 1 + sum(
                self._weights.get(id(key), 0) + self._weights.get(id(value), 0) for key, value in node.value
            )
        return 1


def _refused(problem: str, mark: Any) -> yaml.MarkedYAMLError:
    return yaml.MarkedYAMLError(problem=f"refused: {problem}", problem_mark=mark)


def _one_line(exc: yaml.YAMLError, source: str) -> YamlError:
    """``source: line L, column C: what`` (PyYAML's own messages span several lines)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = "; ".join(part for part in (exc.context, exc.problem) if part)
        return YamlError(" ".join(f"{source}: {where}{what}".split()))
    return YamlError(" ".join(f"{source}: {exc}".split()))


def load(text: str, source: str) -> Any:
    """The one document of ``text`` (``None`` when empty); ``source`` names it in errors."""
    try:
        loader = _BoundedLoader(text)
    except yaml.YAMLError as exc:  # the reader checks the characters up front
        raise _one_line(exc, source) from None
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise _one_line(exc, source) from None
    finally:
        loader.dispose()


def load_all(text: str, source: str) -> list[Any]:
    """Every document of a multi-document ``text``, empty ones as ``None``."""
    try:
        loader = _BoundedLoader(text)
    except yaml.YAMLError as exc:
        raise _one_line(exc, source) from None
    try:
        documents = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            documents.append(loader.get_data())
        return documents
    except yaml.YAMLError as exc:
        raise _one_line(exc, source) from None
    finally:
        loader.dispose()
