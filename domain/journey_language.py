"""The journey language: YAML a marketer writes, parsed into frozen models with located errors.

```yaml
id: abandoned-cart
trigger: {event: cart.updated, where: {items: {gt: 0}}, key: properties.cart_id}
re_entry: {after: 7d}
exit_when: [{event: order.placed, match_key: true}]
goal: {event: order.placed, within: 3d, match_key: true}
steps:
  - wait: 1h
  - send: cart-reminder
  - wait_for: {event: email.clicked, timeout: 24h}
    on_timeout:
      - branch:
          if: {segment: vip}
          then: [{send: cart-vip-offer}]
          else: [{send: cart-reminder-2}]
```

Steps form a tree (branch, split and wait_for hold paths of steps). Every step gets an id unique in
the journey: written `id:`, else its position (`s3`, `s3.then.1`, `s4.timeout.2`, ...). A compiled
`JourneyPlan` links each step to the one that follows it, so the engine walks ids, and an
enrollment records the id it stands at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from domain.conditions import Condition, parse_where, where_body
from domain.definition_parsing import (
    DEFINITION_ID_PATTERN,
    check_keys,
    require_list,
    require_mapping,
    type_name,
    validate_at,
)
from domain.events import EVENT_NAME_PATTERN
from domain.yaml_source import YamlSource, load_yaml

Path = tuple[str | int, ...]

_JOURNEY_KEYS = (
    "id", "name", "description", "trigger", "re_entry", "entry_limit", "priority", "transactional",
    "on_publish", "exit_when", "goal", "steps",
)
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_DURATION_UNITS = (604800, 86400, 3600, 60, 1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- durations -----------------------------------------------------------------------------


def parse_duration_text(text: Any) -> int | None:
    """Seconds in `30s`, `10m`, `1h30m`, `7d`, `2w`; None when it is not a duration."""
    if not isinstance(text, str) or not text:
        return None
    match = _DURATION.match(text.strip())
    if not match or not any(match.groups()):
        return None
    return sum(int(part or 0) * unit for part, unit in zip(match.groups(), _DURATION_UNITS))


def duration_text(seconds: int) -> str:
    """`5400` -> `1h30m`: the canonical way to write a duration back."""
    if seconds == 0:
        return "0s"
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    out = ""
    for suffix, unit in zip("wdhms", _DURATION_UNITS):
        if suffix == "w" and seconds % unit:
            continue  # `30d` reads better than `4w2d`
        if seconds >= unit:
            out += f"{seconds // unit}{suffix}"
            seconds %= unit
    return sign + out


def _duration(src: YamlSource, raw: Any, path: Path, signed: bool = False) -> int:
    text = raw.strip() if isinstance(raw, str) else raw
    negative = signed and isinstance(text, str) and text.startswith("-")
    if isinstance(text, str) and text[:1] in "+-" and signed:
        text = text[1:]
    seconds = parse_duration_text(text)
    if seconds is None:
        raise src.error(path, f"expected a duration such as 30m, 1h, 2d or 1h30m, got {raw!r}")
    return -seconds if negative else seconds


# --- conditions (branch `if`) ---------------------------------------------------------------


class SegmentCond(_Node):
    """The subscriber is in the segment (now, when the branch is reached)."""

    kind: Literal["segment"] = "segment"
    segment: str


class AttributeCond(_Node):
    """Profile traits match, e.g. `{attribute: {plan: pro}}`."""

    kind: Literal["attribute"] = "attribute"
    attribute: dict[str, Condition]


class TriggerCond(_Node):
    """The event that started the enrollment had these properties."""

    kind: Literal["trigger"] = "trigger"
    trigger: dict[str, Condition]


class AllCond(_Node):
    kind: Literal["all"] = "all"
    all: tuple[Cond, ...]


class AnyCond(_Node):
    kind: Literal["any"] = "any"
    any: tuple[Cond, ...]


class NotCond(_Node):
    kind: Literal["not"] = "not"
    negated: Cond


Cond = Annotated[Union[SegmentCond, AttributeCond, TriggerCond, AllCond, AnyCond, NotCond], Field(discriminator="kind")]
for _model in (AllCond, AnyCond, NotCond):
    _model.model_rebuild()

COND_KINDS = ("segment", "attribute", "trigger", "all", "any", "not")


def cond_text(cond: Cond) -> str:
    """A short human reading of a condition, for graphs and decision reasons."""
    if isinstance(cond, SegmentCond):
        return f"in segment {cond.segment}"
    if isinstance(cond, AttributeCond):
        return " and ".join(f"{k} {_cond_op(c)}" for k, c in cond.attribute.items())
    if isinstance(cond, TriggerCond):
        return " and ".join(f"trigger.{k} {_cond_op(c)}" for k, c in cond.trigger.items())
    if isinstance(cond, AllCond):
        return "(" + " and ".join(cond_text(c) for c in cond.all) + ")"
    if isinstance(cond, AnyCond):
        return "(" + " or ".join(cond_text(c) for c in cond.any) + ")"
    return "not " + cond_text(cond.negated)


def _cond_op(c: Condition) -> str:
    return f"{c.op} {list(c.value) if isinstance(c.value, tuple) else c.value}"


# --- triggers, rules -------------------------------------------------------------------------


class EventTrigger(_Node):
    kind: Literal["event"] = "event"
    event: str = Field(pattern=EVENT_NAME_PATTERN, strict=True)
    where: dict[str, Condition] = Field(default_factory=dict)
    key: str = ""


class SegmentTrigger(_Node):
    kind: Literal["segment"] = "segment"
    segment: str = Field(pattern=DEFINITION_ID_PATTERN, strict=True)
    change: Literal["entered", "exited"] = "entered"


Trigger = Annotated[Union[EventTrigger, SegmentTrigger], Field(discriminator="kind")]


class ExitRule(_Node):
    """Leave the journey when an event happens (optionally for the same entry key) or a segment is left."""

    event: str = ""
    where: dict[str, Condition] = Field(default_factory=dict)
    match_key: bool = False
    left_segment: str = ""


class Goal(_Node):
    """A conversion: `event` within `within_seconds` of entry. Reaching it exits unless `exit` is false."""

    event: str = Field(pattern=EVENT_NAME_PATTERN, strict=True)
    where: dict[str, Condition] = Field(default_factory=dict)
    within_seconds: int = Field(gt=0)
    match_key: bool = False
    exit: bool = True


# --- steps ------------------------------------------------------------------------------------


class SendStep(_Node):
    """Send one template to the subscriber."""

    kind: Literal["send"] = "send"
    id: str = Field(pattern=DEFINITION_ID_PATTERN, strict=True)
    send: str = Field(pattern=DEFINITION_ID_PATTERN, strict=True)


class WaitStep(_Node):
    kind: Literal["wait"] = "wait"
    id: str
    seconds: int = Field(gt=0)


class WaitUntilTimeStep(_Node):
    """Wait until the next local `time` on an allowed weekday, in the subscriber's time zone."""

    kind: Literal["wait_until_time"] = "wait_until_time"
    id: str
    time: str
    weekdays: tuple[str, ...] = WEEKDAYS
    timezone_trait: str = "timezone"
    default_timezone: str = "UTC"


class WaitUntilDateStep(_Node):
    """Wait until a date attribute (a trait) plus an offset (negative: before it)."""

    kind: Literal["wait_until_date"] = "wait_until_date"
    id: str
    attribute: str
    offset_seconds: int = 0


class WaitForStep(_Node):
    """Wait for an event or a segment change, at most `timeout_seconds`; a path for each outcome."""

    kind: Literal["wait_for"] = "wait_for"
    id: str
    event: str = ""
    where: dict[str, Condition] = Field(default_factory=dict)
    match_key: bool = False
    segment: str = ""
    change: Literal["entered", "exited"] = "entered"
    timeout_seconds: int = Field(gt=0)
    on_event: tuple[Step, ...] = ()
    on_timeout: tuple[Step, ...] = ()


class BranchStep(_Node):
    kind: Literal["branch"] = "branch"
    id: str
    when: Cond
    then: tuple[Step, ...] = ()
    otherwise: tuple[Step, ...] = ()


class Variant(_Node):
    name: str = Field(pattern=DEFINITION_ID_PATTERN, strict=True)
    percent: float = Field(gt=0, le=100)
    holdout: bool = False
    steps: tuple[Step, ...] = ()


class SplitStep(_Node):
    """A/B/n: each subscriber lands in one variant, by a stable hash of subscriber and journey."""

    kind: Literal["split"] = "split"
    id: str
    variants: tuple[Variant, ...]


class SetStep(_Node):
    kind: Literal["set"] = "set"
    id: str
    values: dict[str, str | int | float | bool | None]


class WebhookStep(_Node):
    kind: Literal["webhook"] = "webhook"
    id: str
    url: str = Field(pattern=r"^https?://\S+$", strict=True)
    method: Literal["POST", "PUT", "GET"] = "POST"


class ExitStep(_Node):
    kind: Literal["exit"] = "exit"
    id: str
    reason: str = "exit_step"


Step = Annotated[
    Union[
        SendStep, WaitStep, WaitUntilTimeStep, WaitUntilDateStep, WaitForStep, BranchStep, SplitStep,
        SetStep, WebhookStep, ExitStep,
    ],
    Field(discriminator="kind"),
]
for _model in (WaitForStep, BranchStep, Variant, SplitStep):
    _model.model_rebuild()


def step_paths(step: Step) -> list[tuple[str, tuple[Step, ...]]]:
    """The named paths a step holds: ("then", ...), ("timeout", ...), ("variant:a", ...)."""
    if isinstance(step, WaitForStep):
        return [("event", step.on_event), ("timeout", step.on_timeout)]
    if isinstance(step, BranchStep):
        return [("then", step.then), ("else", step.otherwise)]
    if isinstance(step, SplitStep):
        return [(f"variant:{v.name}", v.steps) for v in step.variants]
    return []


def walk_steps(steps: tuple[Step, ...]) -> Iterator[Step]:
    for step in steps:
        yield step
        for _, path in step_paths(step):
            yield from walk_steps(path)


# --- the definition and its plan --------------------------------------------------------------


class JourneyPlan:
    """Steps by id, what follows each, and where each path of a branching step starts."""

    def __init__(self, steps: tuple[Step, ...]) -> None:
        self.steps: dict[str, Step] = {}
        self.next: dict[str, str | None] = {}
        self.path_start: dict[tuple[str, str], str | None] = {}
        self.first: str | None = self._link(steps, None)

    def _link(self, steps: tuple[Step, ...], after: str | None) -> str | None:
        for i, step in enumerate(steps):
            follow = steps[i + 1].id if i + 1 < len(steps) else after
            self.steps[step.id] = step
            self.next[step.id] = None if isinstance(step, ExitStep) else follow
            for name, path in step_paths(step):
                self.path_start[(step.id, name)] = self._link(path, follow) if path else follow
        return steps[0].id if steps else after


class JourneyDefinition(_Node):
    id: str = Field(pattern=DEFINITION_ID_PATTERN)
    version: int = Field(1, ge=1)
    name: str = ""
    description: str = ""
    trigger: Trigger
    re_entry: Literal["never", "always", "after"] = "never"
    re_entry_after_seconds: int = 0
    entry_limit: int | None = Field(None, ge=1)
    priority: int = 0
    transactional: bool = False
    on_publish: Literal["stay", "move", "exit"] = "stay"
    exit_when: tuple[ExitRule, ...] = ()
    goal: Goal | None = None
    steps: tuple[Step, ...] = Field(min_length=1)

    _plan: JourneyPlan | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _upcast_first_format(cls, data: Any) -> Any:
        # Bodies published before steps and triggers were tagged unions: `{event, where}` triggers
        # and `{id, send}` steps, with no `kind`.
        if isinstance(data, dict) and isinstance(data.get("trigger"), dict) and "kind" not in data["trigger"]:
            data = {**data, "trigger": {"kind": "event", **data["trigger"]}}
        if isinstance(data, dict) and isinstance(data.get("steps"), list):
            data = {**data, "steps": [{"kind": "send", **s} if isinstance(s, dict) and "kind" not in s and "send" in s else s
                                      for s in data["steps"]]}
        return data

    @property
    def plan(self) -> JourneyPlan:
        if self._plan is None:
            self._plan = JourneyPlan(self.steps)
        return self._plan

    def __eq__(self, other: object) -> bool:
        # Fields only: the cached plan is not part of what a definition is.
        return isinstance(other, JourneyDefinition) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def template_ids(self) -> set[str]:
        return {step.send for step in walk_steps(self.steps) if isinstance(step, SendStep)}

    def segment_ids(self) -> set[str]:
        found = {r.left_segment for r in self.exit_when if r.left_segment}
        if isinstance(self.trigger, SegmentTrigger):
            found.add(self.trigger.segment)
        for step in walk_steps(self.steps):
            if isinstance(step, WaitForStep) and step.segment:
                found.add(step.segment)
            if isinstance(step, BranchStep):
                found |= _cond_segments(step.when)
        return found

    def body(self) -> dict[str, Any]:
        """The definition as JSON-able data; `JourneyDefinition.model_validate(body)` gives it back."""
        return self.model_dump(mode="json", exclude={"version"})


def _cond_segments(cond: Cond) -> set[str]:
    if isinstance(cond, SegmentCond):
        return {cond.segment}
    if isinstance(cond, (AllCond, AnyCond)):
        out: set[str] = set()
        for child in cond.all if isinstance(cond, AllCond) else cond.any:
            out |= _cond_segments(child)
        return out
    if isinstance(cond, NotCond):
        return _cond_segments(cond.negated)
    return set()


# --- parsing ------------------------------------------------------------------------------------


def parse_journey(
    text: str,
    filename: str,
    known_templates: set[str] | None = None,
    version: int = 1,
    known_segments: set[str] | None = None,
) -> JourneyDefinition:
    """Parse one journey file; any problem raises a DefinitionError naming file, line and field.

    With `known_templates` (`known_segments`), a reference to any other template (segment) is an error.
    """
    return _Parser(load_yaml(text, filename), known_templates, known_segments).journey(version)


def parse_journey_data(
    data: Any, filename: str = "<journey>", known_templates: set[str] | None = None, version: int = 1,
    known_segments: set[str] | None = None,
) -> JourneyDefinition:
    """Parse already-loaded YAML-shaped data."""
    return _Parser(YamlSource(filename, data, {}), known_templates, known_segments).journey(version)


class _Header(_Node):
    id: str = Field(pattern=DEFINITION_ID_PATTERN, strict=True)
    name: str = Field("", strict=True)
    description: str = Field("", strict=True)
    entry_limit: int | None = Field(None, ge=1, strict=True)
    priority: int = Field(0, strict=True)
    transactional: bool = Field(False, strict=True)
    on_publish: Literal["stay", "move", "exit"] = "stay"


STEP_KINDS = ("send", "wait", "wait_until", "wait_for", "branch", "split", "set", "webhook", "exit")


class _Parser:
    def __init__(self, src: YamlSource, templates: set[str] | None, segments: set[str] | None) -> None:
        self.src = src
        self.templates = templates
        self.segments = segments
        self.step_ids: dict[str, Path] = {}

    def error(self, path: Path, message: str) -> Exception:
        return self.src.error(path, message)

    def journey(self, version: int) -> JourneyDefinition:
        src = self.src
        data = require_mapping(src, src.data, (), "a journey")
        check_keys(src, data, (), _JOURNEY_KEYS)
        for required in ("id", "trigger", "steps"):
            if required not in data:
                raise self.error((required,), f"a journey needs '{required}'")
        header_keys = ("id", "name", "description", "entry_limit", "priority", "transactional", "on_publish")
        header = validate_at(src, _Header, {k: v for k, v in data.items() if k in header_keys}, ())
        trigger = self.trigger(data["trigger"], ("trigger",))
        re_entry, after = self.re_entry(data.get("re_entry", "never"), ("re_entry",))
        exit_when = self.exit_rules(data.get("exit_when"), ("exit_when",)) if "exit_when" in data else ()
        goal = self.goal(data["goal"], ("goal",)) if "goal" in data else None
        key = trigger.key if isinstance(trigger, EventTrigger) else ""
        for i, rule in enumerate(exit_when):
            if rule.match_key and not key:
                at = ("exit_when", i) if isinstance(data["exit_when"], list) else ("exit_when",)
                raise self.error(at + ("match_key",), "match_key needs a keyed trigger (trigger.key)")
        if goal and goal.match_key and not key:
            raise self.error(("goal", "match_key"), "match_key needs a keyed trigger (trigger.key)")
        steps = self.steps(data["steps"], ("steps",), "s")
        return JourneyDefinition(
            **header.model_dump(), version=version, trigger=trigger, re_entry=re_entry,
            re_entry_after_seconds=after, exit_when=exit_when, goal=goal, steps=steps,
        )

    def trigger(self, raw: Any, path: Path) -> Trigger:
        require_mapping(self.src, raw, path, "'trigger'")
        if "segment" in raw:
            # `change`, not `on`: YAML 1.1 reads a bare `on` key as true.
            check_keys(self.src, raw, path, ("segment", "change"))
            self.check_segment(raw["segment"], path + ("segment",))
            return validate_at(self.src, SegmentTrigger, raw, path)
        if "schedule" in raw:
            raise self.error(path + ("schedule",), "schedule triggers are not supported yet; use an event or segment trigger")
        check_keys(self.src, raw, path, ("event", "where", "key"))
        if "event" not in raw:
            raise self.error(path + ("event",), "Field required: a trigger needs 'event' or 'segment'")
        where = parse_where(self.src, raw["where"], path + ("where",)) if "where" in raw else {}
        trigger = validate_at(self.src, EventTrigger, {**raw, "where": where}, path)
        if "key" in raw and not (isinstance(raw["key"], str) and raw["key"].startswith("properties.")):
            raise self.error(path + ("key",), "key must name an event property, e.g. properties.cart_id")
        return trigger

    def re_entry(self, raw: Any, path: Path) -> tuple[str, int]:
        if raw in ("never", "always"):
            return raw, 0
        if isinstance(raw, dict):
            check_keys(self.src, raw, path, ("after",))
            if "after" in raw:
                return "after", _duration(self.src, raw["after"], path + ("after",))
        raise self.error(path, f"re_entry is 'never', 'always' or {{after: 7d}}, got {raw!r}")

    def exit_rules(self, raw: Any, path: Path) -> tuple[ExitRule, ...]:
        items = [raw] if isinstance(raw, dict) else require_list(self.src, raw, path, "'exit_when'")
        rules = []
        for i, item in enumerate(items):
            at = path + (i,) if isinstance(raw, list) else path
            require_mapping(self.src, item, at, "an exit rule")
            check_keys(self.src, item, at, ("event", "where", "match_key", "left_segment"))
            if ("event" in item) == ("left_segment" in item):
                raise self.error(at, "an exit rule has exactly one of 'event' or 'left_segment'")
            if "left_segment" in item:
                self.check_segment(item["left_segment"], at + ("left_segment",))
            where = parse_where(self.src, item["where"], at + ("where",)) if "where" in item else {}
            rules.append(validate_at(self.src, ExitRule, {**item, "where": where}, at))
        return tuple(rules)

    def goal(self, raw: Any, path: Path) -> Goal:
        require_mapping(self.src, raw, path, "'goal'")
        check_keys(self.src, raw, path, ("event", "where", "within", "match_key", "exit"))
        if "within" not in raw:
            raise self.error(path + ("within",), "a goal needs 'within', e.g. within: 3d")
        within = _duration(self.src, raw["within"], path + ("within",))
        where = parse_where(self.src, raw["where"], path + ("where",)) if "where" in raw else {}
        body = {k: v for k, v in raw.items() if k != "within"}
        return validate_at(self.src, Goal, {**body, "where": where, "within_seconds": within}, path)

    def check_segment(self, segment: Any, path: Path) -> None:
        if self.segments is not None and isinstance(segment, str) and segment not in self.segments:
            listed = ", ".join(sorted(self.segments)) or "none loaded"
            raise self.error(path, f"unknown segment '{segment}'; known segments: {listed}")

    # steps

    def steps(self, raw: Any, path: Path, prefix: str) -> tuple[Step, ...]:
        items = require_list(self.src, raw, path, f"'{path[-1]}'")
        steps: list[Step] = []
        for position, item in enumerate(items):
            at = path + (position,)
            require_mapping(self.src, item, at, "a step")
            if steps and isinstance(steps[-1], ExitStep):
                raise self.error(at, f"unreachable: this step follows an exit (step {steps[-1].id})")
            kind = self.kind(item, at)
            step_id = item.get("id", f"{prefix}{position + 1}")
            if not isinstance(step_id, str) or not re.match(DEFINITION_ID_PATTERN, step_id):
                raise self.error(at + ("id",), f"Input should be a valid string id, got {step_id!r}")
            if step_id in self.step_ids:
                first = self.step_ids[step_id]
                where = at + ("id",) if "id" in item else at
                line = self.src.line_of(first)
                raise self.error(where, f"step id '{step_id}' is already used by step {_display(first)} (line {line})")
            self.step_ids[step_id] = at
            steps.append(getattr(self, f"step_{kind}")(item, at, step_id))
        return tuple(steps)

    def kind(self, item: dict[str, Any], path: Path) -> str:
        supported = ", ".join(STEP_KINDS)
        kinds = [key for key in item if key in STEP_KINDS]
        if len(kinds) > 1:
            raise self.error(path + (kinds[1],), f"a step has one kind; found {', '.join(kinds)}")
        if kinds:
            return kinds[0]
        others = [key for key in item if key != "id"]
        if not others:
            raise self.error(path, f"a step needs a kind; supported: {supported}")
        raise self.error(path + (others[0],), f"unknown step '{others[0]}'; supported: {supported}")

    def path_steps(self, raw: Any, path: Path, prefix: str) -> tuple[Step, ...]:
        if raw is None or raw == []:
            return ()
        return self.steps(raw, path, prefix)

    def step_send(self, raw: dict[str, Any], path: Path, step_id: str) -> SendStep:
        check_keys(self.src, raw, path, ("id", "send"))
        step = validate_at(self.src, SendStep, {"id": step_id, "send": raw["send"]}, path)
        if self.templates is not None and step.send not in self.templates:
            listed = ", ".join(sorted(self.templates)) or "none loaded"
            raise self.error(path + ("send",), f"unknown template '{step.send}'; known templates: {listed}")
        return step

    def step_wait(self, raw: dict[str, Any], path: Path, step_id: str) -> WaitStep:
        check_keys(self.src, raw, path, ("id", "wait"))
        seconds = _duration(self.src, raw["wait"], path + ("wait",))
        if seconds <= 0:
            raise self.error(path + ("wait",), "a wait must be longer than 0s")
        return WaitStep(id=step_id, seconds=seconds)

    def step_wait_until(self, raw: dict[str, Any], path: Path, step_id: str) -> Step:
        check_keys(self.src, raw, path, ("id", "wait_until"))
        at = path + ("wait_until",)
        spec = require_mapping(self.src, raw["wait_until"], at, "'wait_until'")
        if "attribute" in spec:
            check_keys(self.src, spec, at, ("attribute", "offset"))
            offset = _duration(self.src, spec["offset"], at + ("offset",), signed=True) if "offset" in spec else 0
            return validate_at(
                self.src, WaitUntilDateStep, {"id": step_id, "attribute": spec["attribute"], "offset_seconds": offset}, at
            )
        check_keys(self.src, spec, at, ("time", "weekdays", "timezone_trait", "default_timezone"))
        if "time" not in spec:
            raise self.error(at, "wait_until needs 'time' (e.g. \"09:00\") or 'attribute' (a date trait)")
        if not isinstance(spec["time"], str) or not _TIME_OF_DAY.match(spec["time"]):
            raise self.error(at + ("time",), f"time is HH:MM in 24-hour form, quoted, e.g. \"09:30\"; got {spec['time']!r}")
        weekdays = spec.get("weekdays", list(WEEKDAYS))
        if not isinstance(weekdays, list) or not weekdays:
            raise self.error(at + ("weekdays",), f"weekdays is a list such as [mon, tue], got {type_name(weekdays)}")
        for i, day in enumerate(weekdays):
            if day not in WEEKDAYS:
                raise self.error(at + ("weekdays", i), f"unknown weekday {day!r}; use {', '.join(WEEKDAYS)}")
        zone = spec.get("default_timezone", "UTC")
        if not _valid_zone(zone):
            raise self.error(at + ("default_timezone",), f"unknown time zone {zone!r}, e.g. Europe/Paris")
        return validate_at(self.src, WaitUntilTimeStep, {**spec, "id": step_id, "weekdays": tuple(weekdays)}, at)

    def step_wait_for(self, raw: dict[str, Any], path: Path, step_id: str) -> WaitForStep:
        check_keys(self.src, raw, path, ("id", "wait_for", "on_event", "on_timeout"))
        at = path + ("wait_for",)
        spec = require_mapping(self.src, raw["wait_for"], at, "'wait_for'")
        check_keys(self.src, spec, at, ("event", "where", "match_key", "segment", "change", "timeout"))
        if ("event" in spec) == ("segment" in spec):
            raise self.error(at, "wait_for has exactly one of 'event' or 'segment'")
        if "timeout" not in spec:
            raise self.error(at + ("timeout",), "wait_for needs a 'timeout', e.g. timeout: 24h")
        if "segment" in spec:
            self.check_segment(spec["segment"], at + ("segment",))
        timeout = _duration(self.src, spec["timeout"], at + ("timeout",))
        where = parse_where(self.src, spec["where"], at + ("where",)) if "where" in spec else {}
        body = {k: v for k, v in spec.items() if k != "timeout"}
        on_event = self.path_steps(raw.get("on_event"), path + ("on_event",), f"{step_id}.event.")
        on_timeout = self.path_steps(raw.get("on_timeout"), path + ("on_timeout",), f"{step_id}.timeout.")
        fields = {**body, "where": where, "id": step_id, "timeout_seconds": timeout}
        return validate_at(self.src, WaitForStep, {**fields, "on_event": on_event, "on_timeout": on_timeout}, at)

    def step_branch(self, raw: dict[str, Any], path: Path, step_id: str) -> BranchStep:
        check_keys(self.src, raw, path, ("id", "branch"))
        at = path + ("branch",)
        spec = require_mapping(self.src, raw["branch"], at, "'branch'")
        check_keys(self.src, spec, at, ("if", "then", "else"))
        if "if" not in spec:
            raise self.error(at, "a branch needs 'if'")
        if "then" not in spec and "else" not in spec:
            raise self.error(at, "a branch needs 'then' or 'else'")
        when = self.cond(spec["if"], at + ("if",))
        then = self.path_steps(spec.get("then"), at + ("then",), f"{step_id}.then.")
        otherwise = self.path_steps(spec.get("else"), at + ("else",), f"{step_id}.else.")
        return BranchStep(id=step_id, when=when, then=then, otherwise=otherwise)

    def cond(self, raw: Any, path: Path) -> Cond:
        require_mapping(self.src, raw, path, "a condition")
        if len(raw) != 1:
            raise self.error(path, f"a condition has exactly one of {', '.join(COND_KINDS)}; found {', '.join(raw) or 'nothing'}")
        kind, body = next(iter(raw.items()))
        at = path + (kind,)
        if kind == "segment":
            if not isinstance(body, str):
                raise self.error(at, f"segment takes a segment id, got {type_name(body)}")
            self.check_segment(body, at)
            return SegmentCond(segment=body)
        if kind in ("attribute", "trigger"):
            where = parse_where(self.src, body, at)
            if not where:
                raise self.error(at, f"'{kind}' needs at least one name, e.g. {{plan: pro}}")
            return AttributeCond(attribute=where) if kind == "attribute" else TriggerCond(trigger=where)
        if kind in ("all", "any"):
            items = require_list(self.src, body, at, f"'{kind}'")
            children = tuple(self.cond(item, at + (i,)) for i, item in enumerate(items))
            return AllCond(all=children) if kind == "all" else AnyCond(any=children)
        if kind == "not":
            return NotCond(negated=self.cond(body, at))
        raise self.error(at, f"unknown condition '{kind}'; supported: {', '.join(COND_KINDS)}")

    def step_split(self, raw: dict[str, Any], path: Path, step_id: str) -> SplitStep:
        check_keys(self.src, raw, path, ("id", "split"))
        at = path + ("split",)
        items = require_list(self.src, raw["split"], at, "'split'")
        variants = []
        names: set[str] = set()
        for i, item in enumerate(items):
            vat = at + (i,)
            require_mapping(self.src, item, vat, "a split variant")
            check_keys(self.src, item, vat, ("name", "percent", "holdout", "steps"))
            name = item.get("name", chr(ord("a") + i) if i < 26 else f"v{i + 1}")
            if name in names:
                raise self.error(vat + ("name",), f"variant name '{name}' is used twice")
            names.add(name)
            if item.get("holdout") and item.get("steps"):
                raise self.error(vat + ("steps",), "a holdout variant receives nothing: it has no steps")
            steps = self.path_steps(item.get("steps"), vat + ("steps",), f"{step_id}.{name}.")
            variants.append(validate_at(self.src, Variant, {**item, "name": name, "steps": steps}, vat))
        total = sum(v.percent for v in variants)
        if abs(total - 100) > 1e-9:
            raise self.error(at, f"split percentages must add up to 100, they add up to {total:g}")
        return SplitStep(id=step_id, variants=tuple(variants))

    def step_set(self, raw: dict[str, Any], path: Path, step_id: str) -> SetStep:
        check_keys(self.src, raw, path, ("id", "set"))
        at = path + ("set",)
        values = require_mapping(self.src, raw["set"], at, "'set'")
        if not values:
            raise self.error(at, "'set' needs at least one attribute, e.g. {vip: true}")
        for name, value in values.items():
            if isinstance(value, (dict, list)):
                raise self.error(at + (name,), f"attributes are single values, got {type_name(value)}")
        return SetStep(id=step_id, values=values)

    def step_webhook(self, raw: dict[str, Any], path: Path, step_id: str) -> WebhookStep:
        check_keys(self.src, raw, path, ("id", "webhook"))
        at = path + ("webhook",)
        spec = raw["webhook"]
        spec = {"url": spec} if isinstance(spec, str) else require_mapping(self.src, spec, at, "'webhook'")
        check_keys(self.src, spec, at, ("url", "method"))
        return validate_at(self.src, WebhookStep, {**spec, "id": step_id}, at)

    def step_exit(self, raw: dict[str, Any], path: Path, step_id: str) -> ExitStep:
        check_keys(self.src, raw, path, ("id", "exit"))
        reason = raw["exit"]
        if reason is None or reason is True:
            reason = "exit_step"
        if not isinstance(reason, str):
            raise self.error(path + ("exit",), f"exit takes a reason (text), got {type_name(reason)}")
        return ExitStep(id=step_id, reason=reason)


def _display(path: Path) -> str:
    from domain.yaml_source import dotted

    return dotted(path)


def _valid_zone(name: Any) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(name, str):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def where_text(where: dict[str, Condition]) -> str:
    return ", ".join(f"{k} {_cond_op(c)}" for k, c in where.items()) if where else ""


__all__ = [
    "BranchStep", "Cond", "EventTrigger", "ExitRule", "ExitStep", "Goal", "JourneyDefinition", "JourneyPlan",
    "SegmentTrigger", "SendStep", "SetStep", "SplitStep", "Step", "Trigger", "Variant", "WaitForStep",
    "WaitStep", "WaitUntilDateStep", "WaitUntilTimeStep", "WebhookStep", "cond_text", "duration_text",
    "parse_duration_text", "parse_journey", "parse_journey_data", "step_paths", "walk_steps", "where_body",
    "where_text",
]
