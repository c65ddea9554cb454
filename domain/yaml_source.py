"""YAML definitions with line numbers, so validation errors can name file, line and field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError


class DefinitionError(ValueError):
    """A definition file is wrong. `str()` reads `file:line: field: message`."""

    def __init__(self, filename: str, line: int | None, field: str, message: str) -> None:
        self.filename = filename
        self.line = line
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}" if self.line else self.filename
        return f"{where}: {self.field or '<root>'}: {self.message}"


@dataclass(frozen=True)
class YamlSource:
    """Parsed YAML plus the line of every mapping key and sequence item (1-based)."""

    filename: str
    data: Any
    lines: dict[tuple[str | int, ...], int]

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def error(self, path: Sequence[str | int], message: str) -> DefinitionError:
        return DefinitionError(self.filename, self.line_of(path), dotted(path), message)

    def from_validation_error(self, exc: ValidationError) -> DefinitionError:
        """The first pydantic error, placed at its line."""
        first = exc.errors()[0]
        path = [p for p in first["loc"] if isinstance(p, (str, int))]
        return self.error(path, first["msg"])


def dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml(text: str, filename: str) -> YamlSource:
    """Safe-load `text`; a syntax error becomes a DefinitionError with its line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise DefinitionError(filename, line, "", f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(filename, None, "", f"invalid YAML: {exc}") from None
    lines: dict[tuple[str | int, ...], int] = {}
    if node is not None:
        lines[()] = node.start_mark.line + 1
        _index(node, (), lines)
    return YamlSource(filename, data, lines)


def _index(node: yaml.Node, path: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[path + (key,)] = key_node.start_mark.line + 1
            _index(value_node, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _index(item, path + (i,), lines)
