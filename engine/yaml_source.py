"""Safe YAML loading that remembers line numbers and expands ``${VAR}``.

Mappings load as :class:`MarkedDict` and sequences as :class:`MarkedList`, which
carry the line of every key or element so that validation errors can name
the line the user has to fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from engine.errors import PipelineConfigError

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MarkedDict(dict):
    """A dict that knows the line of the mapping and of each of its keys."""

    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


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


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> MarkedDict:
    loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
    mapping = MarkedDict()
    mapping.line = _line(node)
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise PipelineConfigError("a mapping key must be a plain value", loader.source, _line(key_node))
        if key in mapping:
            # PyYAML would silently keep the last one; a repeated key is nearly always a mistake.
            raise PipelineConfigError(f"duplicate key '{key}'", loader.source, _line(key_node))
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = _line(key_node)
    return mapping


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

    return _ENV_REFERENCE.sub(substitute, text)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
_Loader.add_constructor("tag:yaml.org,2002:str", _construct_string)


def load_yaml(path: str | Path, env: Mapping[str, str] | None = None) -> Any:
    """Read a pipeline file with marks; raise :class:`PipelineConfigError` on any problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineConfigError("pipeline file not found", source) from None
    except IsADirectoryError:
        raise PipelineConfigError("is a directory, not a pipeline file", source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineConfigError(f"cannot read pipeline file: {exc}", source) from None

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


def _unsafe_tag(exc: yaml.constructor.ConstructorError) -> str | None:
    match = re.search(r"tag '([^']+)'", exc.problem or "")
    if not match:
        return None
    return match.group(1).replace("tag:yaml.org,2002:", "!!")
