"""Value conditions used by segment `attribute` rules and by `where` property filters.

A condition is one operator and its operand, written `{in: [US, CA]}`, or a bare scalar meaning
equality. Comparisons are type-aware: `true` never equals `1`, and ordering a number against text
is simply false, never an error, because event properties arrive from product systems unchecked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from domain.definition_parsing import require_mapping, type_name
from domain.yaml_source import YamlSource

Scalar = str | int | float | bool | None
Operator = Literal["eq", "ne", "in", "exists", "gt", "gte", "lt", "lte"]
OPERATORS: tuple[str, ...] = ("eq", "ne", "in", "exists", "gt", "gte", "lt", "lte")
_ORDERING = {"gt", "gte", "lt", "lte"}


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Operator
    value: Any = None

    @field_validator("value")
    @classmethod
    def _lists_as_tuples(cls, value: Any) -> Any:
        # JSON brings `in` operands back as lists; tuples keep equal conditions equal.
        return tuple(value) if isinstance(value, list) else value

    def holds(self, present: bool, actual: Any) -> bool:
        """Whether a value (absent when `present` is false) satisfies this condition."""
        if self.op == "exists":
            return (present and actual is not None) == self.value
        if self.op == "ne":
            return not (present and same_value(actual, self.value))
        if not present:
            return False
        if self.op == "eq":
            return same_value(actual, self.value)
        if self.op == "in":
            return any(same_value(actual, option) for option in self.value)
        return _ordered(self.op, actual, self.value)

    def body(self) -> Any:
        """The YAML shape this condition was written in (canonical form)."""
        return {self.op: list(self.value) if self.op == "in" else self.value}


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _ordered(op: str, actual: Any, operand: Any) -> bool:
    numbers = _is_number(actual) and _is_number(operand)
    texts = isinstance(actual, str) and isinstance(operand, str)
    if not (numbers or texts):
        return False
    if op == "gt":
        return actual > operand
    if op == "gte":
        return actual >= operand
    if op == "lt":
        return actual < operand
    return actual <= operand


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def lookup(values: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """`(present, value)` of `name`: an exact key first, then a dotted path into nested mappings."""
    if name in values:
        return True, values[name]
    current: Any = values
    for part in name.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current


def matches_where(where: Mapping[str, Condition], properties: Mapping[str, Any]) -> bool:
    return all(condition.holds(*lookup(properties, name)) for name, condition in where.items())


def where_body(where: Mapping[str, Condition]) -> dict[str, Any]:
    return {name: condition.body() for name, condition in where.items()}


def where_fingerprint(where: Mapping[str, Condition]) -> str:
    """Canonical text of a filter: equal filters give equal text whatever their key order."""
    return json.dumps(where_body(where), sort_keys=True, separators=(",", ":"))


def parse_condition(src: YamlSource, raw: Any, path: tuple[str | int, ...]) -> Condition:
    if is_scalar(raw):
        return Condition(op="eq", value=raw)
    if isinstance(raw, list):
        raise src.error(path, "a list is not a value; to match any of several write {in: [...]}")
    require_mapping(src, raw, path, "a condition")
    if len(raw) != 1:
        raise src.error(path, f"a condition has exactly one operator ({', '.join(OPERATORS)}), got {len(raw)}")
    op, operand = next(iter(raw.items()))
    at = path + (op,)
    if op not in OPERATORS:
        raise src.error(at, f"unknown operator '{op}'; supported: {', '.join(OPERATORS)}")
    if op == "in":
        if not isinstance(operand, list) or not all(is_scalar(v) for v in operand):
            raise src.error(at, f"'in' takes a list of values, got {type_name(operand)}")
        return Condition(op="in", value=tuple(operand))
    if op == "exists":
        if not isinstance(operand, bool):
            raise src.error(at, f"'exists' takes true or false, got {type_name(operand)}")
        return Condition(op="exists", value=operand)
    if op in _ORDERING and not (_is_number(operand) or isinstance(operand, str)):
        raise src.error(at, f"'{op}' takes a number or text, got {type_name(operand)}")
    if not is_scalar(operand):
        raise src.error(at, f"'{op}' takes a single value, got {type_name(operand)}")
    return Condition(op=op, value=operand)


def parse_where(src: YamlSource, raw: Any, path: tuple[str | int, ...]) -> dict[str, Condition]:
    """A property filter: `{name: value}` (equality) or `{name: {operator: value}}`."""
    require_mapping(src, raw, path, "'where'")
    return {name: parse_condition(src, value, path + (name,)) for name, value in raw.items()}
