"""Checks shared by the segment and journey parsers, each raising a DefinitionError at the right line.

The parsers walk the YAML themselves (rather than handing the whole document to pydantic) so that
a wrong rule or step kind gets a message that names the kinds that exist, and every error points
at the line of the offending key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from domain.yaml_source import YamlSource

M = TypeVar("M", bound=BaseModel)

DEFINITION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


def require_mapping(src: YamlSource, data: Any, path: Sequence[str | int], what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise src.error(path, f"{what} must be a mapping, got {type_name(data)}")
    for key in data:
        if not isinstance(key, str):
            raise src.error(path, f"keys must be text, got {type_name(key)} {key!r}")
    return data


def require_list(src: YamlSource, data: Any, path: Sequence[str | int], what: str) -> list[Any]:
    if not isinstance(data, list):
        raise src.error(path, f"{what} must be a list, got {type_name(data)}")
    if not data:
        raise src.error(path, f"{what} must not be empty")
    return data


def check_keys(
    src: YamlSource,
    data: dict[str, Any],
    path: Sequence[str | int],
    allowed: Iterable[str],
    hints: dict[str, str] | None = None,
) -> None:
    allowed = tuple(allowed)
    for key in data:
        if key not in allowed:
            hint = (hints or {}).get(key, "")
            raise src.error(
                tuple(path) + (key,), f"unknown key '{key}'; allowed: {', '.join(allowed)}{hint}"
            )


def validate_at(src: YamlSource, model: type[M], data: Any, path: Sequence[str | int]) -> M:
    """`model.model_validate(data)`, with any error placed at `path` + the error's own location."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [p for p in first["loc"] if isinstance(p, (str, int))]
        raise src.error(tuple(path) + tuple(loc), first["msg"]) from None


def type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false"}.get(
        type(value), type(value).__name__
    )
