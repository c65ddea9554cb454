"""Journeys: what happens to a subscriber after a trigger event, written as steps in YAML.

```yaml
id: welcome
trigger: {event: user.signed_up, where: {plan: free}}
re_entry: never          # never | always
steps:
  - send: welcome
```

Steps form a tagged union keyed by the step's kind (`send`, later `wait`, `branch`, ...); each
kind adds a model, a parser and a case in `_run_steps`. For now every step runs at enrollment, so
an enrollment completes on its trigger event. Evaluation is a pure fold per subscriber: state in,
state plus send intents plus decisions out, deduplicated on the event id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.conditions import Condition, matches_where, parse_where, where_body
from domain.definition_parsing import (
    DEFINITION_ID_PATTERN,
    check_keys,
    require_list,
    require_mapping,
    validate_at,
)
from domain.events import (
    EVENT_NAME_PATTERN,
    Contract,
    EventEnvelope,
    SendIntent,
    stable_id,
)
from domain.subscriber_state import already_applied, merge_traits, remember
from domain.yaml_source import YamlSource, load_yaml

_JOURNEY_KEYS = ("id", "name", "description", "trigger", "re_entry", "priority", "transactional", "steps")
_TRIGGER_KEYS = ("event", "where")


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Trigger(_Node):
    event: str = Field(pattern=EVENT_NAME_PATTERN, strict=True)
    where: dict[str, Condition] = Field(default_factory=dict)

    def matches(self, event: EventEnvelope) -> bool:
        return event.type == self.event and matches_where(self.where, event.properties)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.event}
        if self.where:
            out["where"] = where_body(self.where)
        return out


class SendStep(_Node):
    """Send one template to the subscriber."""

    kind: Literal["send"] = "send"
    id: str = Field(pattern=DEFINITION_ID_PATTERN, strict=True)
    send: str = Field(pattern=DEFINITION_ID_PATTERN, strict=True)

    def body(self) -> dict[str, Any]:
        return {"id": self.id, "send": self.send}


Step = Annotated[Union[SendStep], Field(discriminator="kind")]


class JourneyDefinition(_Node):
    id: str = Field(pattern=DEFINITION_ID_PATTERN)
    version: int = Field(1, ge=1)
    name: str = ""
    description: str = ""
    trigger: Trigger
    re_entry: Literal["never", "always"] = "never"
    priority: int = 0
    transactional: bool = False
    steps: tuple[Step, ...] = Field(min_length=1)

    def body(self) -> dict[str, Any]:
        """The definition as YAML-shaped data; `parse_journey_data(body)` gives it back."""
        out: dict[str, Any] = {"id": self.id}
        if self.name:
            out["name"] = self.name
        if self.description:
            out["description"] = self.description
        out["trigger"] = self.trigger.body()
        out["re_entry"] = self.re_entry
        out["priority"] = self.priority
        out["transactional"] = self.transactional
        out["steps"] = [step.body() for step in self.steps]
        return out

    def template_ids(self) -> set[str]:
        return {step.send for step in self.steps if isinstance(step, SendStep)}


class JourneyDecision(Contract):
    """What a journey decided for one subscriber and why: the audit trail of enrollments."""

    decision_id: str
    journey_id: str
    journey_version: int
    subscriber_id: str
    kind: Literal["entered", "sent", "skipped", "exited"]
    step_id: str = ""
    reason: str = ""
    event_id: str
    occurred_at: datetime
    schema_version: int = 1

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@dataclass(frozen=True)
class JourneyOutcome:
    state: dict[str, Any]
    intents: list[SendIntent] = field(default_factory=list)
    decisions: list[JourneyDecision] = field(default_factory=list)


# --- parsing -----------------------------------------------------------------------------


def parse_journey(
    text: str, filename: str, known_templates: set[str] | None = None, version: int = 1
) -> JourneyDefinition:
    """Parse one journey file; any problem raises a DefinitionError naming file, line and field.

    With `known_templates`, a `send` of any other template id is an error.
    """
    return _parse(load_yaml(text, filename), known_templates, version)


def parse_journey_data(
    data: Any, filename: str = "<journey>", known_templates: set[str] | None = None, version: int = 1
) -> JourneyDefinition:
    """Parse already-loaded YAML data (e.g. a published definition's body)."""
    return _parse(YamlSource(filename, data, {}), known_templates, version)


def _parse(src: YamlSource, known_templates: set[str] | None, version: int) -> JourneyDefinition:
    data = require_mapping(src, src.data, (), "a journey")
    check_keys(src, data, (), _JOURNEY_KEYS)
    for required in ("id", "trigger", "steps"):
        if required not in data:
            raise src.error((required,), f"a journey needs '{required}'")
    header = {key: value for key, value in data.items() if key not in ("trigger", "steps")}
    fields = validate_at(src, _JourneyHeader, header, ())
    trigger = _parse_trigger(src, data["trigger"], ("trigger",))
    steps = _parse_steps(src, data["steps"], ("steps",), known_templates)
    return JourneyDefinition(**fields.model_dump(), version=version, trigger=trigger, steps=steps)


class _JourneyHeader(_Node):
    id: str = Field(pattern=DEFINITION_ID_PATTERN, strict=True)
    name: str = Field("", strict=True)
    description: str = Field("", strict=True)
    re_entry: Literal["never", "always"] = "never"
    priority: int = Field(0, strict=True)
    transactional: bool = Field(False, strict=True)


def _parse_trigger(src: YamlSource, raw: Any, path: tuple[str | int, ...]) -> Trigger:
    require_mapping(src, raw, path, "'trigger'")
    check_keys(src, raw, path, _TRIGGER_KEYS)
    where = parse_where(src, raw["where"], path + ("where",)) if "where" in raw else {}
    return validate_at(src, Trigger, {**raw, "where": where}, path)


StepParser = Callable[[YamlSource, dict[str, Any], tuple[str | int, ...], str, "set[str] | None"], Step]


def _parse_send(
    src: YamlSource, raw: dict[str, Any], path: tuple[str | int, ...], step_id: str, known: set[str] | None
) -> SendStep:
    check_keys(src, raw, path, ("id", "send"))
    step = validate_at(src, SendStep, {"id": step_id, "send": raw["send"]}, path)
    if known is not None and step.send not in known:
        listed = ", ".join(sorted(known)) or "none loaded"
        raise src.error(path + ("send",), f"unknown template '{step.send}'; known templates: {listed}")
    return step


STEP_PARSERS: dict[str, StepParser] = {"send": _parse_send}


def _parse_steps(
    src: YamlSource, raw: Any, path: tuple[str | int, ...], known: set[str] | None
) -> tuple[Step, ...]:
    items = require_list(src, raw, path, "'steps'")
    steps: list[Step] = []
    seen_ids: dict[str, int] = {}
    for position, item in enumerate(items):
        at = path + (position,)
        require_mapping(src, item, at, "a step")
        kind = _step_kind(src, item, at)
        step_id = item.get("id", f"s{position + 1}")
        step = STEP_PARSERS[kind](src, item, at, step_id, known)
        if step.id in seen_ids:
            where = at + ("id",) if "id" in item else at
            raise src.error(where, f"step id '{step.id}' is already used by step {seen_ids[step.id] + 1}")
        seen_ids[step.id] = position
        steps.append(step)
    return tuple(steps)


def _step_kind(src: YamlSource, item: dict[str, Any], path: tuple[str | int, ...]) -> str:
    supported = ", ".join(STEP_PARSERS)
    known = [key for key in item if key in STEP_PARSERS]
    if known:
        # Other keys belong to the kind (e.g. a wait_for's on_timeout); its parser checks them.
        return known[0]
    others = [key for key in item if key != "id"]
    if not others:
        raise src.error(path, f"a step needs a kind; supported: {supported}")
    raise src.error(path + (others[0],), f"unknown step '{others[0]}'; supported: {supported}")


# --- evaluation --------------------------------------------------------------------------


def apply_event(
    journeys: Sequence[JourneyDefinition],
    state: dict[str, Any],
    event: EventEnvelope,
    now: datetime,
) -> JourneyOutcome:
    """Fold one event into a subscriber's journey state: enroll where triggered, run the steps.

    State is JSON-able: `{"traits", "enrollments": {journey_id: {"version", "entered_at",
    "entries", "entry_key"}}, "recent"}`. When the event changes nothing (a redelivery, or an
    event that triggers nothing and carries no traits) the same state object comes back.
    """
    recent: list[str] = state.get("recent", [])
    if already_applied(recent, event.event_id):
        return JourneyOutcome(state)
    triggered = sorted(
        (j for j in journeys if j.trigger.matches(event)), key=lambda j: (-j.priority, j.id)
    )
    if not (triggered or event.traits):
        return JourneyOutcome(state)

    traits = merge_traits(state.get("traits", {}), event.traits)
    enrollments = dict(state.get("enrollments", {}))
    intents: list[SendIntent] = []
    decisions: list[JourneyDecision] = []
    for journey in triggered:
        previous = enrollments.get(journey.id)
        if previous is not None and journey.re_entry == "never":
            continue
        entry_key = event.subscriber_id if journey.re_entry == "never" else event.event_id
        enrollments[journey.id] = {
            "version": journey.version,
            "entered_at": event.occurred_at.isoformat(),
            "entries": (previous or {}).get("entries", 0) + 1,
            "entry_key": entry_key,
        }
        run = _Enrollment(journey, event, entry_key, traits, now)
        run.decide("entered")
        _run_steps(run)
        run.decide("exited", reason="completed")
        intents.extend(run.intents)
        decisions.extend(run.decisions)

    new_state = {"traits": traits, "enrollments": enrollments, "recent": remember(recent, event.event_id)}
    return JourneyOutcome(new_state, intents, decisions)


@dataclass
class _Enrollment:
    """One pass of one subscriber through one journey, collecting what it decides."""

    journey: JourneyDefinition
    event: EventEnvelope
    entry_key: str
    traits: Mapping[str, Any]
    now: datetime
    intents: list[SendIntent] = field(default_factory=list)
    decisions: list[JourneyDecision] = field(default_factory=list)

    def decide(self, kind: str, step_id: str = "", reason: str = "") -> None:
        journey, event = self.journey, self.event
        self.decisions.append(
            JourneyDecision(
                decision_id=stable_id(
                    journey.id, str(journey.version), event.subscriber_id, self.entry_key, kind, step_id
                ),
                journey_id=journey.id,
                journey_version=journey.version,
                subscriber_id=event.subscriber_id,
                kind=kind,  # type: ignore[arg-type]
                step_id=step_id,
                reason=reason,
                event_id=event.event_id,
                occurred_at=event.occurred_at,
            )
        )


def _run_steps(run: _Enrollment) -> None:
    for step in run.journey.steps:
        if isinstance(step, SendStep):
            _send(run, step)


def _send(run: _Enrollment, step: SendStep) -> None:
    email = run.traits.get("email")
    if not isinstance(email, str) or not email:
        run.decide("skipped", step.id, reason="no_email")
        return
    journey, event = run.journey, run.event
    run.intents.append(
        SendIntent(
            intent_id=stable_id(journey.id, str(journey.version), step.id, event.subscriber_id, run.entry_key),
            subscriber_id=event.subscriber_id,
            journey_id=journey.id,
            journey_version=journey.version,
            step_id=step.id,
            template_id=step.send,
            to=email,
            variables={
                "subscriber": dict(run.traits),
                "event": {"type": event.type, "properties": dict(event.properties)},
            },
            trigger_event_id=event.event_id,
            created_at=run.now,
            transactional=journey.transactional,
            priority=journey.priority,
        )
    )
    run.decide("sent", step.id)


__all__ = [
    "JourneyDecision",
    "JourneyDefinition",
    "JourneyOutcome",
    "SendStep",
    "Step",
    "Trigger",
    "apply_event",
    "parse_journey",
    "parse_journey_data",
]
