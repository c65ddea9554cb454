"""The segment rule language: the rule tree, its YAML parser and cross-segment validation.

```yaml
id: lapsed-buyers
rule:
  all:
    - performed: {event: order.placed, at_least: 1, within: 90d}
    - not: {performed: {event: order.placed, within: 30d}}
    - not_opened_last: 3
    - attribute: {country: {in: [US, CA]}}
```

Every rule kind is a pydantic model tagged by `kind`, so a published definition (its
`model_dump(mode="json")`) validates back into the same tree in the worker. The parser walks the
YAML itself so that each error names the file, the line and the rule. docs/segments.md is the
marketer's reference for every kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from domain.conditions import (
    OPERATORS,
    Condition,
    lookup,
    parse_condition,
    parse_where,
    where_body,
    where_fingerprint,
)
from domain.definition_parsing import (
    DEFINITION_ID_PATTERN,
    check_keys,
    require_list,
    require_mapping,
    type_name,
    validate_at,
)
from domain.events import EVENT_NAME_PATTERN, stable_id
from domain.yaml_source import DefinitionError, YamlSource, load_yaml

RULE_KINDS = (
    "performed",
    "first_performed",
    "last_performed",
    "email",
    "not_opened_last",
    "attribute",
    "subscribed",
    "bucket",
    "segment",
    "all",
    "any",
    "not",
)
EMAIL_KINDS = ("sent", "delivered", "opened", "clicked", "bounced", "complained")
TIME_OPERATORS = ("before", "after", "within", "older_than")
ATTRIBUTE_OPERATORS = OPERATORS + ("contains",) + TIME_OPERATORS
DURATION_PATTERN = r"^[1-9][0-9]{0,5}(s|m|h|d|w)$"
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_SEGMENT_KEYS = ("id", "name", "description", "rule")
_PERFORMED_KEYS = ("event", "at_least", "at_most", "within", "where")
_RECENCY_KEYS = ("event", "where", "within", "not_within")
_EMAIL_KEYS = ("kind", "at_least", "at_most", "within", "where")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def duration_ms(text: str) -> int:
    """`30d` -> milliseconds. Units: s, m (minutes), h, d, w."""
    if not re.match(DURATION_PATTERN, text):
        raise ValueError(f"'{text}' is not a duration like 30d, 12h, 15m, 45s or 2w")
    return int(text[:-1]) * _UNIT_MS[text[-1]]


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float rounding): the profile's unit of time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def moment_ms(value: Any) -> int | None:
    """A trait or operand read as a moment: ISO 8601 text, a YAML date, or epoch seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return to_ms(value)
    if isinstance(value, date):
        return to_ms(datetime(value.year, value.month, value.day, tzinfo=timezone.utc))
    if isinstance(value, (int, float)):
        return int(value * 1000)
    if isinstance(value, str):
        try:
            return to_ms(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- leaf specifications ------------------------------------------------------------------


class Performed(_Node):
    """`event` (matching `where`) happened between `at_least` and `at_most` times, ever or `within`."""

    event: str = Field(pattern=EVENT_NAME_PATTERN)
    at_least: int = Field(1, ge=0, strict=True)
    at_most: int | None = Field(None, ge=0, strict=True)
    within: str | None = Field(None, pattern=DURATION_PATTERN)
    where: dict[str, Condition] = Field(default_factory=dict)

    _key: str = PrivateAttr("")

    def model_post_init(self, _context: Any) -> None:
        self._key = counter_key(self.event, self.where)

    @property
    def counter_key(self) -> str:
        return self._key

    @property
    def window_ms(self) -> int | None:
        return duration_ms(self.within) if self.within else None

    @property
    def keep(self) -> int:
        """How many recent timestamps decide this rule: the window's count matters only up to here."""
        return self.at_least if self.at_most is None else max(self.at_least, self.at_most + 1)

    def counts_in(self, n: int) -> bool:
        return n >= self.at_least and (self.at_most is None or n <= self.at_most)

    def body(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"event": self.event, "at_least": self.at_least}
        if self.at_most is not None:
            spec["at_most"] = self.at_most
        if self.within:
            spec["within"] = self.within
        if self.where:
            spec["where"] = where_body(self.where)
        return spec


class Recency(_Node):
    """When `event` first/last happened: `within` (recently) or `not_within` (longer ago) a duration."""

    event: str = Field(pattern=EVENT_NAME_PATTERN)
    where: dict[str, Condition] = Field(default_factory=dict)
    within: str | None = Field(None, pattern=DURATION_PATTERN)
    not_within: str | None = Field(None, pattern=DURATION_PATTERN)

    _key: str = PrivateAttr("")

    def model_post_init(self, _context: Any) -> None:
        self._key = counter_key(self.event, self.where)

    @property
    def counter_key(self) -> str:
        return self._key

    @property
    def recent(self) -> bool:
        return self.within is not None

    @property
    def span_ms(self) -> int:
        return duration_ms(self.within or self.not_within or "")

    def body(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"event": self.event}
        if self.where:
            spec["where"] = where_body(self.where)
        spec["within" if self.within else "not_within"] = self.within or self.not_within
        return spec


class AttrCondition(_Node):
    """A trait condition: the shared value operators plus `contains` and time comparisons."""

    op: Literal["eq", "ne", "in", "exists", "gt", "gte", "lt", "lte", "contains", "before", "after", "within", "older_than"]
    value: Any = None

    @field_validator("value")
    @classmethod
    def _lists_as_tuples(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    _plain: Condition | None = PrivateAttr(None)
    _span: int = PrivateAttr(0)
    _operand: int | None = PrivateAttr(None)

    def model_post_init(self, _context: Any) -> None:
        # Built once: `holds` runs for every evaluation of every attribute rule.
        if self.op in ("within", "older_than"):
            self._span = duration_ms(self.value)
        elif self.op in ("before", "after"):
            self._operand = moment_ms(self.value)
        elif self.op != "contains":
            self._plain = Condition(op=self.op, value=self.value)

    @property
    def is_relative(self) -> bool:
        """Its truth changes with the passage of time alone."""
        return self.op in ("within", "older_than")

    def holds(self, present: bool, actual: Any, now_ms: int) -> bool:
        if self.op == "contains":
            return present and isinstance(actual, str) and self.value in actual
        if self.op in TIME_OPERATORS:
            moment = moment_ms(actual) if present else None
            if moment is None:
                return False
            if self.op == "within":
                return now_ms - self._span < moment <= now_ms
            if self.op == "older_than":
                return moment <= now_ms - self._span
            operand = self._operand
            return moment < operand if self.op == "before" else moment > operand  # type: ignore[operator]
        return self._plain.holds(present, actual)  # type: ignore[union-attr]

    def flips_at(self, present: bool, actual: Any, now_ms: int) -> int | None:
        """The next moment after `now_ms` at which a relative condition's truth changes."""
        if not (self.is_relative and present):
            return None
        moment = moment_ms(actual)
        if moment is None:
            return None
        candidates = (moment, moment + self._span)
        later = [c for c in candidates if c > now_ms]
        return min(later) if later else None

    def body(self) -> Any:
        if self.op == "in":
            return {"in": list(self.value)}
        return {self.op: self.value}


class Subscribed(_Node):
    list: str = Field(min_length=1, max_length=128, strict=True)


class Bucket(_Node):
    """A stable slice of subscribers: hash(salt, subscriber_id) % modulo in [gte, lt)."""

    modulo: int = Field(ge=2, le=1_000_000, strict=True)
    lt: int = Field(ge=1, strict=True)
    gte: int = Field(0, ge=0, strict=True)
    salt: str = Field("", max_length=64, strict=True)

    def slot(self, subscriber_id: str) -> int:
        return int(stable_id(self.salt, subscriber_id)[:12], 16) % self.modulo

    def holds(self, subscriber_id: str) -> bool:
        return self.gte <= self.slot(subscriber_id) < self.lt

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"modulo": self.modulo, "lt": self.lt}
        if self.gte:
            out["gte"] = self.gte
        if self.salt:
            out["salt"] = self.salt
        return out


# --- rule nodes ---------------------------------------------------------------------------


class PerformedRule(_Node):
    kind: Literal["performed"] = "performed"
    performed: Performed

    def body(self) -> dict[str, Any]:
        return {"performed": self.performed.body()}


class FirstPerformedRule(_Node):
    kind: Literal["first_performed"] = "first_performed"
    first_performed: Recency

    def body(self) -> dict[str, Any]:
        return {"first_performed": self.first_performed.body()}


class LastPerformedRule(_Node):
    kind: Literal["last_performed"] = "last_performed"
    last_performed: Recency

    def body(self) -> dict[str, Any]:
        return {"last_performed": self.last_performed.body()}


class NotOpenedLastRule(_Node):
    """At least N emails were sent and none of the last N was opened (or clicked)."""

    kind: Literal["not_opened_last"] = "not_opened_last"
    not_opened_last: int = Field(ge=1, le=50, strict=True)

    def body(self) -> dict[str, Any]:
        return {"not_opened_last": self.not_opened_last}


class AttributeRule(_Node):
    kind: Literal["attribute"] = "attribute"
    attribute: dict[str, AttrCondition]

    def body(self) -> dict[str, Any]:
        return {"attribute": {name: c.body() for name, c in self.attribute.items()}}


class SubscribedRule(_Node):
    kind: Literal["subscribed"] = "subscribed"
    subscribed: Subscribed

    def body(self) -> dict[str, Any]:
        return {"subscribed": {"list": self.subscribed.list}}


class BucketRule(_Node):
    kind: Literal["bucket"] = "bucket"
    bucket: Bucket

    def body(self) -> dict[str, Any]:
        return {"bucket": self.bucket.body()}


class SegmentRefRule(_Node):
    kind: Literal["segment"] = "segment"
    segment: str = Field(pattern=DEFINITION_ID_PATTERN)

    def body(self) -> dict[str, Any]:
        return {"segment": self.segment}


class AllRule(_Node):
    kind: Literal["all"] = "all"
    all: tuple[Rule, ...] = Field(min_length=1)

    def body(self) -> dict[str, Any]:
        return {"all": [rule.body() for rule in self.all]}


class AnyRule(_Node):
    kind: Literal["any"] = "any"
    any: tuple[Rule, ...] = Field(min_length=1)

    def body(self) -> dict[str, Any]:
        return {"any": [rule.body() for rule in self.any]}


class NotRule(_Node):
    kind: Literal["not"] = "not"
    negated: Rule = Field(alias="not")

    def body(self) -> dict[str, Any]:
        return {"not": self.negated.body()}


Rule = Annotated[
    Union[
        PerformedRule,
        FirstPerformedRule,
        LastPerformedRule,
        NotOpenedLastRule,
        AttributeRule,
        SubscribedRule,
        BucketRule,
        SegmentRefRule,
        AllRule,
        AnyRule,
        NotRule,
    ],
    Field(discriminator="kind"),
]
for _model in (AllRule, AnyRule, NotRule):
    _model.model_rebuild()


class SegmentDefinition(_Node):
    id: str = Field(pattern=DEFINITION_ID_PATTERN)
    version: int = Field(1, ge=1)
    name: str = ""
    description: str = ""
    rule: Rule

    def body(self) -> dict[str, Any]:
        """The definition as YAML-shaped data; `parse_segment_data(body)` gives it back."""
        out: dict[str, Any] = {"id": self.id}
        if self.name:
            out["name"] = self.name
        if self.description:
            out["description"] = self.description
        out["rule"] = self.rule.body()
        return out


def counter_key(event: str, where: Mapping[str, Condition]) -> str:
    """The profile key for (event, where); the plain event name when there is no filter."""
    if not where:
        return event
    return f"{event}?{stable_id(where_fingerprint(where))[:10]}"


def children_of(rule: Rule) -> Sequence[Rule]:
    if isinstance(rule, AllRule):
        return rule.all
    if isinstance(rule, AnyRule):
        return rule.any
    if isinstance(rule, NotRule):
        return (rule.negated,)
    return ()


def nodes(rule: Rule) -> list[Rule]:
    out: list[Rule] = [rule]
    for child in children_of(rule):
        out.extend(nodes(child))
    return out


def referenced_segments(rule: Rule) -> set[str]:
    return {node.segment for node in nodes(rule) if isinstance(node, SegmentRefRule)}


# --- parsing -----------------------------------------------------------------------------


def parse_segment(text: str, filename: str, version: int = 1) -> SegmentDefinition:
    """Parse one segment file; any problem raises a DefinitionError naming file, line and rule."""
    return _parse(load_yaml(text, filename), version)


def parse_segment_data(data: Any, filename: str = "<segment>", version: int = 1) -> SegmentDefinition:
    """Parse already-loaded YAML data (e.g. a published definition's body)."""
    return _parse(YamlSource(filename, data, {}), version)


class _SegmentHeader(_Node):
    id: str = Field(pattern=DEFINITION_ID_PATTERN, strict=True)
    name: str = Field("", strict=True)
    description: str = Field("", strict=True)


def _parse(src: YamlSource, version: int) -> SegmentDefinition:
    data = require_mapping(src, src.data, (), "a segment")
    hints = {kind: "; rules go under 'rule:'" for kind in RULE_KINDS}
    check_keys(src, data, (), _SEGMENT_KEYS, hints)
    if "rule" not in data:
        raise src.error(("rule",), "a segment needs a 'rule'")
    header = {key: value for key, value in data.items() if key != "rule"}
    fields = validate_at(src, _SegmentHeader, header, ())
    rule = _parse_rule(src, data["rule"], ("rule",))
    if fields.id in referenced_segments(rule):
        raise src.error(("rule",), f"segment '{fields.id}' refers to itself")
    return SegmentDefinition(**fields.model_dump(), version=version, rule=rule)


Path = tuple[str | int, ...]


def _parse_rule(src: YamlSource, raw: Any, path: Path) -> Rule:
    supported = ", ".join(RULE_KINDS)
    require_mapping(src, raw, path, "a rule")
    if len(raw) != 1:
        found = ", ".join(raw) or "nothing"
        raise src.error(path, f"a rule has exactly one of {supported}; found {found}")
    kind, body = next(iter(raw.items()))
    at = path + (kind,)
    if kind in ("all", "any"):
        items = require_list(src, body, at, f"'{kind}'")
        children = tuple(_parse_rule(src, item, at + (i,)) for i, item in enumerate(items))
        return AllRule(all=children) if kind == "all" else AnyRule(any=children)
    if kind == "not":
        return NotRule(negated=_parse_rule(src, body, at))
    if kind == "performed":
        return PerformedRule(performed=_parse_performed(src, body, at, _PERFORMED_KEYS))
    if kind == "email":
        return _parse_email(src, body, at)
    if kind in ("first_performed", "last_performed"):
        recency = _parse_recency(src, body, at)
        if kind == "first_performed":
            return FirstPerformedRule(first_performed=recency)
        return LastPerformedRule(last_performed=recency)
    if kind == "not_opened_last":
        return validate_at(src, NotOpenedLastRule, {"not_opened_last": body}, path)
    if kind == "attribute":
        return _parse_attribute(src, body, at)
    if kind == "subscribed":
        require_mapping(src, body, at, "'subscribed'")
        check_keys(src, body, at, ("list",))
        return SubscribedRule(subscribed=validate_at(src, Subscribed, body, at))
    if kind == "bucket":
        require_mapping(src, body, at, "'bucket'")
        check_keys(src, body, at, ("modulo", "lt", "gte", "salt"))
        bucket = validate_at(src, Bucket, body, at)
        if not bucket.gte < bucket.lt <= bucket.modulo:
            raise src.error(at, "a bucket needs 0 <= gte < lt <= modulo")
        return BucketRule(bucket=bucket)
    if kind == "segment":
        if not isinstance(body, str):
            raise src.error(at, f"'segment' takes a segment id, got {type_name(body)}")
        return validate_at(src, SegmentRefRule, {"segment": body}, path)
    raise src.error(at, f"unknown rule '{kind}'; supported: {supported}")


def _parse_performed(src: YamlSource, raw: Any, path: Path, keys: tuple[str, ...]) -> Performed:
    require_mapping(src, raw, path, f"'{path[-1]}'")
    check_keys(src, raw, path, keys)
    where = parse_where(src, raw["where"], path + ("where",)) if "where" in raw else {}
    _check_duration(src, raw, path, "within")
    performed = validate_at(src, Performed, {**raw, "where": where}, path)
    if performed.at_most is not None and performed.at_most < performed.at_least:
        raise src.error(path + ("at_most",), "at_most must not be less than at_least")
    return performed


def _parse_email(src: YamlSource, raw: Any, path: Path) -> PerformedRule:
    """`email: {kind: opened, ...}` is `performed: {event: email.opened, ...}` over delivery events."""
    require_mapping(src, raw, path, "'email'")
    check_keys(src, raw, path, _EMAIL_KEYS)
    kind = raw.get("kind")
    if kind not in EMAIL_KINDS:
        raise src.error(path + ("kind",), f"'kind' must be one of {', '.join(EMAIL_KINDS)}, got {kind!r}")
    spec = {key: value for key, value in raw.items() if key != "kind"}
    return PerformedRule(performed=_parse_performed(src, {"event": f"email.{kind}", **spec}, path, _PERFORMED_KEYS))


def _parse_recency(src: YamlSource, raw: Any, path: Path) -> Recency:
    require_mapping(src, raw, path, f"'{path[-1]}'")
    check_keys(src, raw, path, _RECENCY_KEYS)
    if ("within" in raw) == ("not_within" in raw):
        raise src.error(path, "give exactly one of 'within' or 'not_within', e.g. within: 7d")
    _check_duration(src, raw, path, "within")
    _check_duration(src, raw, path, "not_within")
    where = parse_where(src, raw["where"], path + ("where",)) if "where" in raw else {}
    return validate_at(src, Recency, {**raw, "where": where}, path)


def _check_duration(src: YamlSource, raw: dict[str, Any], path: Path, key: str) -> None:
    if key in raw and not (isinstance(raw[key], str) and re.match(DURATION_PATTERN, raw[key])):
        raise src.error(path + (key,), f"'{key}' takes a duration like 30d, 12h, 15m, 45s or 2w, got {raw[key]!r}")


def _parse_attribute(src: YamlSource, raw: Any, path: Path) -> AttributeRule:
    require_mapping(src, raw, path, "'attribute'")
    if not raw:
        raise src.error(path, "'attribute' needs at least one trait, e.g. {country: US}")
    return AttributeRule(attribute={name: _parse_attr_condition(src, v, path + (name,)) for name, v in raw.items()})


def _parse_attr_condition(src: YamlSource, raw: Any, path: Path) -> AttrCondition:
    if isinstance(raw, dict) and len(raw) == 1:
        op, operand = next(iter(raw.items()))
        at = path + (op,)
        if op == "contains":
            if not isinstance(operand, str) or not operand:
                raise src.error(at, f"'contains' takes non-empty text, got {type_name(operand)}")
            return AttrCondition(op="contains", value=operand)
        if op in ("within", "older_than"):
            if not (isinstance(operand, str) and re.match(DURATION_PATTERN, operand)):
                raise src.error(at, f"'{op}' takes a duration like 30d, 12h, 15m, 45s or 2w, got {operand!r}")
            return AttrCondition(op=op, value=operand)
        if op in ("before", "after"):
            moment = moment_ms(operand) if not isinstance(operand, (int, float)) else None
            if moment is None:
                raise src.error(at, f"'{op}' takes a date or time like 2026-01-31 or 2026-01-31T09:00:00Z, got {operand!r}")
            return AttrCondition(op=op, value=from_ms(moment).isoformat())
        if op not in OPERATORS:
            raise src.error(at, f"unknown operator '{op}'; supported: {', '.join(ATTRIBUTE_OPERATORS)}")
    condition = parse_condition(src, raw, path)
    return AttrCondition(op=condition.op, value=condition.value)


# --- checks across segments ----------------------------------------------------------------


def segment_reference_errors(files: Mapping[str, str]) -> list[DefinitionError]:
    """Unknown segment references and reference cycles among segment files (`{filename: text}`).

    Files that fail to parse on their own are skipped: their own errors are reported elsewhere.
    A cycle is reported once, at the reference that closes it, naming every file in it.
    """
    parsed: dict[str, tuple[str, SegmentDefinition, YamlSource]] = {}
    for filename, text in files.items():
        try:
            definition = parse_segment(text, filename)
        except DefinitionError:
            continue
        parsed[definition.id] = (filename, definition, load_yaml(text, filename))
    errors: list[DefinitionError] = []
    for segment_id, (filename, definition, src) in parsed.items():
        for ref, path in _reference_paths(src.data.get("rule"), ("rule",)):
            if ref not in parsed and ref != segment_id:
                errors.append(src.error(path, f"unknown segment '{ref}'; known: {', '.join(sorted(parsed)) or 'none'}"))
    graph = {sid: referenced_segments(d.rule) & parsed.keys() for sid, (_, d, _) in parsed.items()}
    for cycle in find_cycles(graph):
        first_file, _, src = parsed[cycle[0]]
        path = next(p for ref, p in _reference_paths(src.data.get("rule"), ("rule",)) if ref == cycle[1 % len(cycle)])
        chain = " -> ".join(f"{sid} ({parsed[sid][0]})" for sid in cycle + [cycle[0]])
        errors.append(src.error(path, f"segments refer to each other in a cycle: {chain}"))
    return errors


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Each reference cycle once, as the list of ids along it, starting from its smallest id."""
    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()

    def walk(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in trail:
                cycle = trail[trail.index(nxt):]
                start = cycle.index(min(cycle))
                canonical = tuple(cycle[start:] + cycle[:start])
                if canonical not in seen:
                    seen.add(canonical)
                    cycles.append(list(canonical))
            elif len(trail) < len(graph):
                walk(nxt, trail + [nxt])

    for start in sorted(graph):
        walk(start, [start])
    return cycles


def _reference_paths(raw: Any, path: Path) -> list[tuple[str, Path]]:
    if not isinstance(raw, dict) or len(raw) != 1:
        return []
    kind, body = next(iter(raw.items()))
    if kind == "segment" and isinstance(body, str):
        return [(body, path + (kind,))]
    if kind in ("all", "any") and isinstance(body, list):
        return [found for i, item in enumerate(body) for found in _reference_paths(item, path + (kind, i))]
    if kind == "not":
        return _reference_paths(body, path + (kind,))
    return []


def attribute_holds(rule: AttributeRule, traits: Mapping[str, Any], now_ms: int) -> bool:
    return all(c.holds(*lookup(traits, name), now_ms) for name, c in rule.attribute.items())


__all__ = [
    "ATTRIBUTE_OPERATORS",
    "EMAIL_KINDS",
    "RULE_KINDS",
    "AllRule",
    "AnyRule",
    "AttrCondition",
    "AttributeRule",
    "Bucket",
    "BucketRule",
    "FirstPerformedRule",
    "LastPerformedRule",
    "NotOpenedLastRule",
    "NotRule",
    "Performed",
    "PerformedRule",
    "Recency",
    "Rule",
    "SegmentDefinition",
    "SegmentRefRule",
    "Subscribed",
    "SubscribedRule",
    "attribute_holds",
    "children_of",
    "counter_key",
    "duration_ms",
    "find_cycles",
    "from_ms",
    "moment_ms",
    "nodes",
    "parse_segment",
    "parse_segment_data",
    "referenced_segments",
    "segment_reference_errors",
    "to_ms",
]
