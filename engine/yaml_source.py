"""Safe YAML loading that remembers line numbers and expands ``${VAR}``.

Mappings load as :class:`MarkedDict` and sequences as :class:`MarkedList`, which
carry the line of every key or element so that validation errors can name
the line the user has to fix.

Loading is bounded in time and memory whatever the file holds: the file is at
most ``MAX_FILE_BYTES``; while the document is composed (before any Python
object is built) it may hold at most ``MAX_NODES`` values, counting every alias
as the whole value it repeats, so an alias bomb ("billion laughs") is refused
after a few thousand steps; and values nest at most ``MAX_DEPTH`` deep, aliases
included. ``${VAR}`` values are plain text put into a string after parsing:
they can never add YAML structure, and never become a number by themselves. A
mapping remembers which of its values were expanded (:meth:`MarkedDict.expanded_from`),
so a reader that expects a number may accept such a string when its whole text
is one, and say which variable gave a bad one.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import yaml

from engine.errors import PipelineConfigError

MAX_FILE_BYTES = 1_000_000  # a pipeline is a few KB; this still holds some 25,000 inline input values
MAX_NODES = 50_000  # values in the document, aliases counted as what they repeat
MAX_DEPTH = 50  # nesting of values, aliases included; a pipeline needs about 6
MAX_STRING = MAX_FILE_BYTES  # characters of one string after ${VAR} expansion

# What YAML itself refuses (C0 controls but tab and line breaks, DEL, C1 but NEL, surrogates,
# U+FFFE/FFFF), found here first so the message can name the line and the character.
_NOT_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MarkedDict(dict):
    """A dict that knows the line of the mapping and of each of its keys, and which values ``${VAR}`` made."""

    line: int = 0
    key_lines: dict[Any, int]
    templates: dict[Any, str]  # key -> the value as written, for string values with a ${VAR} reference

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)

    def expanded_from(self, key: Any) -> str | None:
        """The text as written (``${N:-20}``) if the value of ``key`` is a string made by ``${VAR}`` expansion."""
        return self.templates.get(key)


class MarkedList(list):
    """A list that knows its own line and the line of each element."""

    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


class _Loader(yaml.SafeLoader):
    """SafeLoader (no ``!!python/...`` objects) that marks lines and expands variables."""

    env: Mapping[str, str] = {}
    source: str = "<pipeline>"

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0  # values composed so far, aliases counted as what they repeat
        self._depth = 0  # nesting of the value being composed
        self._sizes: dict[int, tuple[int, int]] = {}  # id(finished node) -> (values, depth) it holds

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                if id(target) not in self._sizes:
                    self._fail("an alias refers to the value that contains it, which would never end", event)
                size, depth = self._sizes[id(target)]
                self._count(size, self._depth + depth, event)
            return super().compose_node(parent, index)
        event = self.peek_event()
        self._count(1, self._depth + 1, event)
        self._depth += 1
        node = super().compose_node(parent, index)
        self._depth -= 1
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        sizes = [self._sizes[id(child)] for child in children]
        self._sizes[id(node)] = (1 + sum(s for s, _ in sizes), 1 + max((d for _, d in sizes), default=0))
        return node

    def _count(self, nodes: int, depth: int, event: yaml.Event) -> None:
        self._nodes += nodes
        if depth > MAX_DEPTH:
            self._fail(f"values nest more than {MAX_DEPTH} deep (aliases included); a pipeline needs far fewer", event)
        if self._nodes > MAX_NODES:
            self._fail(
                f"the document holds more than {MAX_NODES:,} values (aliases counted as what they repeat)", event
            )

    def _fail(self, message: str, event: yaml.Event) -> NoReturn:
        raise PipelineConfigError(message, self.source, event.start_mark.line + 1)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> MarkedDict:
    own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor), putting merged pairs first
    merged = len(node.value) - own
    mapping = MarkedDict()
    mapping.line = _line(node)
    mapping.key_lines = {}
    mapping.templates = {}
    written: set[Any] = set()  # keys the mapping itself writes; merged ones may be overridden
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise PipelineConfigError("a mapping key must be a plain value", loader.source, _line(key_node))
        if index >= merged:
            if key in written:
                # PyYAML would silently keep the last one; a repeated key is nearly always a mistake.
                raise PipelineConfigError(f"duplicate key '{key}'", loader.source, _line(key_node))
            written.add(key)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = _line(key_node)
        mapping.templates.pop(key, None)  # a key written here overrides a merged one, template and all
        if _is_expanded(value_node):
            mapping.templates[key] = value_node.value
    return mapping


def _is_expanded(node: yaml.Node) -> bool:
    """Whether ``node`` is a string scalar whose text holds a ``${VAR}`` reference (expanded once built)."""
    return (
        isinstance(node, yaml.ScalarNode)
        and node.tag == "tag:yaml.org,2002:str"
        and _ENV_REFERENCE.search(node.value) is not None
    )


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> MarkedList:
    sequence = MarkedList(loader.construct_object(child, deep=True) for child in node.value)
    sequence.line = _line(node)
    sequence.item_lines = [_line(child) for child in node.value]
    return sequence


def _construct_string(loader: _Loader, node: yaml.ScalarNode) -> str:
    text = loader.construct_scalar(node)

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = loader.env.get(name)
        if default is not None:  # shell semantics: the default also replaces an empty value
            return value or default
        if value is not None:
            return value
        raise PipelineConfigError(
            f"environment variable {name} is not set (write ${{{name}:-default}} to give a default)",
            loader.source,
            _line(node),
        )

    expanded = _ENV_REFERENCE.sub(substitute, text)
    if len(expanded) > MAX_STRING:
        raise PipelineConfigError(
            f"a string is longer than {MAX_STRING:,} characters once ${{VAR}} values are put in",
            loader.source, _line(node),
        )
    return expanded


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:  # Python refuses to read integers of more than 4,300 digits
        raise PipelineConfigError("an integer too long to read", loader.source, _line(node)) from None


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
_Loader.add_constructor("tag:yaml.org,2002:str", _construct_string)


def load_yaml(path: str | Path, env: Mapping[str, str] | None = None) -> Any:
    """Read a pipeline file with marks; raise :class:`PipelineConfigError` on any problem."""
    source = str(path)
    text = _read_text(Path(path), source)
    loader = _Loader(text)
    loader.env = os.environ if env is None else env
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        tag = _unsafe_tag(exc)
        if tag:
            raise PipelineConfigError(
                f"tag '{tag}' is not allowed: pipeline files are loaded as plain data (yaml.safe_load)",
                source,
                line,
            ) from None
        raise PipelineConfigError(f"not valid YAML: {exc.problem}", source, line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise PipelineConfigError(f"not valid YAML: {exc.problem or exc.context}", source, line) from None
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"not valid YAML: {exc}", source) from None
    finally:
        loader.dispose()


def _read_text(path: Path, source: str) -> str:
    """The file's text, refused in one line if it is too big, not UTF-8, or holds control characters."""
    try:
        if path.is_dir():
            raise PipelineConfigError("is a directory, not a pipeline file", source)
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or a device could block or never end
            raise PipelineConfigError("is not a regular file", source)
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # never more than the limit, whatever the size
    except FileNotFoundError:
        raise PipelineConfigError("pipeline file not found", source) from None
    except OSError as exc:
        raise PipelineConfigError(f"cannot read pipeline file: {exc.strerror or exc}", source) from None
    if len(data) > MAX_FILE_BYTES:
        raise PipelineConfigError(
            f"the file is larger than {MAX_FILE_BYTES:,} bytes; a pipeline file is a few KB", source
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(data, exc.start, b"\n")
        raise PipelineConfigError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at column {column}", source, line) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # as text mode would, so lines count alike
    bad = _NOT_PRINTABLE.search(text)
    if bad:
        line, column = _position(text, bad.start(), "\n")
        name = "a NUL byte" if bad.group() == "\0" else f"control character U+{ord(bad.group()):04X}"
        raise PipelineConfigError(f"{name} at column {column}; a pipeline file is plain text", source, line)
    return text


def _position(text: Any, index: int, newline: Any) -> tuple[int, int]:
    """Line and column (both from 1) of ``index`` in ``text`` (str or bytes)."""
    return text.count(newline, 0, index) + 1, index - text.rfind(newline, 0, index)


def _unsafe_tag(exc: yaml.constructor.ConstructorError) -> str | None:
    match = re.search(r"tag '([^']+)'", exc.problem or "")
    if not match:
        return None
    return match.group(1).replace("tag:yaml.org,2002:", "!!")
