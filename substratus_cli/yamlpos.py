"""YAML reading that keeps line numbers: each document becomes plain Python data plus a map from
dotted field path (`spec.source.path`, list items as `spec.command.0`) to its 1-based line."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from substratus_cli.diagnostics import Diagnostics

_TAG = "tag:yaml.org,2002:"
# libyaml's parser when PyYAML was built with it: 8x faster on large directories, same nodes. Its
# error messages are vaguer, so a file it refuses is parsed again by PyYAML's to report why.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALAR_TAGS = {_TAG + t for t in ("null", "bool", "int", "float", "str")}
# Timestamps stay the text the user wrote: every field that takes one is a string.
_TEXT_TAGS = {_TAG + "timestamp"}
_MERGE_TAG = _TAG + "merge"
# Anchors and aliases can expand a small file into a huge (or endless) structure.
MAX_NODES = 100_000
# Deeper than any resource file needs, shallow enough for recursive validators and serializers.
MAX_DEPTH = 100

_CONSTRUCTOR = SafeConstructor()
_VALUE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent,
                 yaml.AliasEvent)


@dataclasses.dataclass(frozen=True)
class YamlDocument:
    """One document of a file: its data, the line it starts on, and where each field is."""

    data: Any
    line: int
    field_lines: dict[str, int]
    # Paths whose value could not be read (reported already); their value in `data` is None.
    broken: frozenset[str] = frozenset()


class _Skip(Exception):
    """A node that cannot be turned into data; its diagnostic has already been reported."""


class _Abandon(Exception):
    """A document that cannot be turned into data at all; reported already."""


def parse_documents(text: str, file: str, diagnostics: Diagnostics) -> list[YamlDocument]:
    """Every non-empty document in `text`; problems go to `diagnostics`, nothing is raised.

    A syntax error ends the file: the documents before it are kept."""
    documents: list[YamlDocument] = []
    too_large = _too_large(text)
    try:
        for root in (_roots(text) if too_large is None else _first_roots(text, too_large[0])):
            document = _convert_document(root, file, diagnostics) if root is not None else None
            # `---` with nothing after it reads as null: an empty document, skipped.
            if document is not None and document.data is not None:
                documents.append(document)
    except yaml.YAMLError as error:
        diagnostics.error(_syntax_summary(error), file=file, line=_error_line(error, text))
    except RecursionError:
        diagnostics.error("invalid YAML: the document is nested too deeply", file=file, line=1)
    if too_large is not None:
        diagnostics.error(f"document too large: more than {MAX_NODES} values", file=file,
                          line=too_large[1])
    return documents


def _too_large(text: str) -> tuple[int, int] | None:
    """(index, line) of the first document with more than MAX_NODES values, found from the
    parser's events before anything is composed: composing a 10 MB flow list takes half a minute
    and 1.5 GB. Texts too short to hold that many values (two characters each) are not read."""
    if len(text) < 2 * MAX_NODES:
        return None
    index = count = 0
    try:
        for event in yaml.parse(text, Loader=_FAST_LOADER):
            if isinstance(event, yaml.DocumentEndEvent):
                index, count = index + 1, 0
            elif isinstance(event, _VALUE_EVENTS):
                count += 1
                if count > MAX_NODES:
                    return index, int(event.start_mark.line) + 1
    except yaml.YAMLError:
        return None  # composing reports it, with its line
    return None


def _first_roots(text: str, count: int) -> Iterator[Node | None]:
    """The first `count` documents' roots, composed one at a time."""
    if count == 0:
        return
    for index, root in enumerate(yaml.compose_all(text, Loader=_FAST_LOADER)):
        yield root
        if index + 1 >= count:
            return


def _roots(text: str) -> Iterator[Node | None]:
    try:
        roots: list[Node | None] = list(yaml.compose_all(text, Loader=_FAST_LOADER))
    except yaml.YAMLError:
        # Parsed again by PyYAML's own parser, for its clearer message (raised to the caller),
        # keeping the documents before the error.
        yield from yaml.compose_all(text, Loader=yaml.SafeLoader)
        return
    yield from roots


def _syntax_summary(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError):
        parts = [p for p in (error.context, error.problem) if p]
        return "invalid YAML: " + ("; ".join(parts) if parts else "syntax error")
    if isinstance(error, yaml.reader.ReaderError):
        return f"invalid YAML: unacceptable character #x{error.character:04x}"
    return f"invalid YAML: {error}"


def _error_line(error: yaml.YAMLError, text: str) -> int:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        if mark is not None:
            return int(mark.line) + 1
    if isinstance(error, yaml.reader.ReaderError):
        return text.count("\n", 0, max(error.position, 0)) + 1
    return 1


def _convert_document(root: Node, file: str, diagnostics: Diagnostics) -> YamlDocument | None:
    converter = _Converter(file, diagnostics)
    try:
        data = converter.convert(root, "")
    except (_Skip, _Abandon):
        return None
    return YamlDocument(data, _line(root), converter.field_lines, frozenset(converter.broken))


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Converter:
    """Turns composed nodes into dicts, lists and scalars, recording the line of each path."""

    def __init__(self, file: str, diagnostics: Diagnostics) -> None:
        self.file = file
        self.diagnostics = diagnostics
        self.field_lines: dict[str, int] = {}
        self._nodes = 0
        self._active: set[int] = set()
        self.broken: set[str] = set()

    def error(self, summary: str, node: Node, path: str) -> None:
        self.diagnostics.error(summary, file=self.file, line=_line(node), field=path or None)

    def convert(self, node: Node, path: str) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            self.error(f"document too large: more than {MAX_NODES} values once aliases are "
                       "expanded", node, "")
            raise _Abandon
        if len(self._active) >= MAX_DEPTH:
            self.error(f"document nested too deeply (more than {MAX_DEPTH} levels)", node, "")
            raise _Abandon
        if id(node) in self._active:
            self.error("an alias refers to a node that contains it (a cycle)", node, path)
            raise _Skip
        self._active.add(id(node))
        try:
            return self._convert(node, path)
        finally:
            self._active.discard(id(node))

    def _convert(self, node: Node, path: str) -> Any:
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _TAG + "seq":
                self.error(f"unsupported YAML tag {node.tag!r} on a list", node, path)
                raise _Skip
            return self.sequence(node, path)
        if isinstance(node, MappingNode):
            if node.tag != _TAG + "map":
                self.error(f"unsupported YAML tag {node.tag!r} on a mapping", node, path)
                raise _Skip
            return self.mapping(node, path)
        self.error("unsupported YAML node", node, path)
        raise _Skip

    def scalar(self, node: ScalarNode, path: str) -> Any:
        if node.tag in _TEXT_TAGS:
            return str(node.value)
        if node.tag not in _SCALAR_TAGS:
            self.error(f"unsupported YAML tag {node.tag!r}", node, path)
            raise _Skip
        build: Callable[[SafeConstructor, Node], Any] = SafeConstructor.yaml_constructors[node.tag]
        try:
            value = build(_CONSTRUCTOR, node)
        except (ValueError, KeyError, TypeError, yaml.YAMLError):
            self.error(f"invalid value {node.value!r} for YAML tag {node.tag!r}", node, path)
            raise _Skip from None
        if isinstance(value, str) and not _encodable(value):
            # A "\ud800" escape: no file, terminal or API can carry it further.
            self.error(f"invalid text {value!r}: unpaired surrogate escape", node, path)
            raise _Skip
        return value

    def sequence(self, node: SequenceNode, path: str) -> list[Any]:
        items: list[Any] = []
        for index, child in enumerate(node.value):
            child_path = _join(path, str(index))
            self.field_lines.setdefault(child_path, _line(child))
            try:
                items.append(self.convert(child, child_path))
            except _Skip:
                self.broken.add(child_path)
                items.append(None)
        return items

    def mapping(self, node: MappingNode, path: str) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        seen: dict[Any, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = self.key(key_node, path)
            if key is None:
                continue
            key_path = _join(path, str(key_node.value))
            if key in seen:
                self.error(f"duplicate key {key_node.value!r} (first defined on line {seen[key]})",
                           key_node, key_path)
                continue
            seen[key] = _line(key_node)
            self.field_lines.setdefault(key_path, _line(key_node))
            try:
                result[key] = self.convert(value_node, key_path)
            except _Skip:
                self.broken.add(key_path)
                result[key] = None
        for merge in merges:
            self.merge(merge, path, result)
        return result

    def key(self, node: Node, path: str) -> Any:
        """A mapping key as data, or None (reported) when it cannot be one."""
        if not isinstance(node, ScalarNode):
            self.error("mapping keys must be plain values, not lists or mappings", node, path)
            return None
        try:
            key = self.convert(node, path)
        except _Skip:
            return None
        if key is None:
            self.error("mapping keys must not be null", node, path)
        return key

    def merge(self, node: Node, path: str, into: dict[Any, Any]) -> None:
        """Adds the entries a `<<:` merge key brings in; explicit keys and earlier merges win."""
        sources = node.value if isinstance(node, SequenceNode) else [node]
        for source in sources:
            if not isinstance(source, MappingNode):
                self.error("a merge key (<<) needs a mapping or a list of mappings", source, path)
                continue
            own_lines, self.field_lines = self.field_lines, {}
            try:
                value = self.convert(source, path)
            except _Skip:
                continue
            finally:
                merged_lines, self.field_lines = self.field_lines, own_lines
            for key, item in value.items():
                into.setdefault(key, item)
            for field, line in merged_lines.items():
                self.field_lines.setdefault(field, line)
