"""Journeys: parsing with located errors, enrollment, send intents, dedupe and re-entry."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from domain.events import EventEnvelope, SendIntent, stable_id
from domain.journeys import (
    JourneyDecision,
    JourneyDefinition,
    SendStep,
    apply_event,
    parse_journey,
    parse_journey_data,
)
from domain.yaml_source import DefinitionError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(hours=1)
TEMPLATES = {"welcome", "getting-started", "thanks-first-order"}

WELCOME = """\
id: welcome
name: Welcome series
trigger: {event: user.signed_up, where: {plan: free}}
re_entry: never
priority: 5
transactional: false
steps:
  - send: welcome
  - id: tips
    send: getting-started
"""


def event(
    type_: str,
    event_id: str,
    properties: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
    subscriber: str = "sub-1",
) -> EventEnvelope:
    return EventEnvelope(
        event_id=event_id,
        type=type_,
        subscriber_id=subscriber,
        occurred_at=T0,
        received_at=T0,
        properties=properties or {},
        context={"traits": traits} if traits is not None else {},
    )


def journey(**fields: Any) -> JourneyDefinition:
    body = {"id": "j", "trigger": {"event": "go"}, "steps": [{"send": "welcome"}], **fields}
    return parse_journey_data(body, known_templates=TEMPLATES)


def signup(event_id: str = "e1", plan: str = "free", email: str | None = "ada@example.test") -> EventEnvelope:
    traits = {"email": email, "first_name": "Ada"} if email else {"first_name": "Ada"}
    return event("user.signed_up", event_id, {"plan": plan}, traits)


# --- parsing -----------------------------------------------------------------------------


def test_parse_reads_every_field_and_numbers_steps() -> None:
    definition = parse_journey(WELCOME, "journeys/welcome.yaml", TEMPLATES, version=4)

    assert (definition.id, definition.version, definition.name) == ("welcome", 4, "Welcome series")
    assert definition.trigger.event == "user.signed_up"
    assert definition.trigger.where["plan"].body() == {"eq": "free"}
    assert (definition.re_entry, definition.priority, definition.transactional) == ("never", 5, False)
    assert definition.steps == (SendStep(id="s1", send="welcome"), SendStep(id="tips", send="getting-started"))
    assert definition.template_ids() == {"welcome", "getting-started"}


def test_defaults() -> None:
    definition = parse_journey("id: j\ntrigger: {event: go}\nsteps:\n  - send: t\n", "j.yaml")

    assert (definition.re_entry, definition.priority, definition.transactional) == ("never", 0, False)
    assert definition.trigger.where == {}


def test_templates_are_not_checked_without_a_known_set() -> None:
    definition = parse_journey("id: j\ntrigger: {event: go}\nsteps:\n  - send: anything\n", "j.yaml")

    assert definition.steps[0].send == "anything"


def test_body_round_trips_through_parse_journey_data() -> None:
    definition = parse_journey(WELCOME, "welcome.yaml", TEMPLATES, version=2)

    body = definition.body()
    assert json.loads(json.dumps(body)) == body
    assert JourneyDefinition.model_validate({**body, "version": 2}) == definition


def test_model_dump_json_round_trips_through_model_validate() -> None:
    # How published definitions travel: model_dump(mode="json") on apply, model_validate in the worker.
    definition = parse_journey(WELCOME, "welcome.yaml", TEMPLATES, version=2)

    data = json.loads(json.dumps(definition.model_dump(mode="json")))

    assert JourneyDefinition.model_validate(data) == definition


@pytest.mark.parametrize("name", ["welcome.yaml", "first-order.yaml"])
def test_examples_parse(name: str) -> None:
    path = EXAMPLES / "journeys" / name
    templates = {p.stem for p in (EXAMPLES / "templates").glob("*.yaml")}
    definition = parse_journey(path.read_text(), str(path), known_templates=templates)
    assert definition.id == path.stem


STEPS_OK = "steps:\n  - send: welcome\n"
BAD_JOURNEYS = [
    # (case, yaml, line, field, message fragment)
    ("syntax error", "id: j\ntrigger: {event: go}\nsteps:\n  - send: welcome\n - send: welcome\n", 5, "", "invalid YAML"),
    ("not a mapping", "just text\n", 1, "", "must be a mapping"),
    ("unknown key", "id: j\ntrigger: {event: go}\nexits_when: {event: x}\n" + STEPS_OK, 3, "exits_when", "unknown key 'exits_when'"),
    ("missing trigger", "id: j\n" + STEPS_OK, 1, "trigger", "needs 'trigger'"),
    ("missing steps", "id: j\ntrigger: {event: go}\n", 1, "steps", "needs 'steps'"),
    ("empty steps", "id: j\ntrigger: {event: go}\nsteps: []\n", 3, "steps", "must not be empty"),
    ("steps not a list", "id: j\ntrigger: {event: go}\nsteps: {send: welcome}\n", 3, "steps", "must be a list"),
    ("id wrong type", "id: [j]\ntrigger: {event: go}\n" + STEPS_OK, 1, "id", "valid string"),
    ("priority wrong type", "id: j\ntrigger: {event: go}\npriority: high\n" + STEPS_OK, 3, "priority", "valid integer"),
    ("transactional wrong type", "id: j\ntrigger: {event: go}\ntransactional: maybe\n" + STEPS_OK, 3, "transactional", "valid boolean"),
    ("bad re_entry", "id: j\ntrigger: {event: go}\nre_entry: sometimes\n" + STEPS_OK, 3, "re_entry", "'never', 'always' or {after: 7d}"),
    ("bad re_entry duration", "id: j\ntrigger: {event: go}\nre_entry: {after: soon}\n" + STEPS_OK, 3, "re_entry.after", "expected a duration"),
    ("trigger not a mapping", "id: j\ntrigger: go\n" + STEPS_OK, 2, "trigger", "must be a mapping"),
    ("trigger unknown key", "id: j\ntrigger:\n  event: go\n  keys: properties.cart_id\n" + STEPS_OK, 4, "trigger.keys", "unknown key 'keys'"),
    ("trigger without event", "id: j\ntrigger: {where: {plan: free}}\n" + STEPS_OK, 2, "trigger.event", "Field required"),
    ("trigger event wrong type", "id: j\ntrigger:\n  event: 7\n" + STEPS_OK, 3, "trigger.event", "valid string"),
    ("trigger where operator", "id: j\ntrigger:\n  event: go\n  where: {plan: {is: free}}\n" + STEPS_OK, 4, "trigger.where.plan.is", "unknown operator 'is'"),
    ("unknown step", "id: j\ntrigger: {event: go}\nsteps:\n  - send: welcome\n  - wait_fr: {event: email.clicked}\n", 5, "steps[1].wait_fr", "unknown step 'wait_fr'; supported: send, wait"),
    ("step without kind", "id: j\ntrigger: {event: go}\nsteps:\n  - id: first\n", 4, "steps[0]", "needs a kind"),
    ("step not a mapping", "id: j\ntrigger: {event: go}\nsteps:\n  - welcome\n", 4, "steps[0]", "must be a mapping"),
    ("unknown template", "id: j\ntrigger: {event: go}\nsteps:\n  - send: welcome\n  - send: welcom\n", 5, "steps[1].send", "unknown template 'welcom'"),
    ("send wrong type", "id: j\ntrigger: {event: go}\nsteps:\n  - send: [welcome]\n", 4, "steps[0].send", "valid string"),
    ("send extra key", "id: j\ntrigger: {event: go}\nsteps:\n  - send: welcome\n    delay: 1h\n", 5, "steps[0].delay", "unknown key 'delay'"),
    ("duplicate step id", "id: j\ntrigger: {event: go}\nsteps:\n  - send: welcome\n  - id: s1\n    send: welcome\n", 5, "steps[1].id", "already used by step steps[0] (line 4)"),
    ("step id wrong type", "id: j\ntrigger: {event: go}\nsteps:\n  - id: 3\n    send: welcome\n", 4, "steps[0].id", "valid string"),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [case[1:] for case in BAD_JOURNEYS],
    ids=[case[0] for case in BAD_JOURNEYS],
)
def test_bad_journey_names_file_line_and_field(text: str, line: int, field: str, fragment: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_journey(text, "journeys/bad.yaml", known_templates=TEMPLATES)

    error = caught.value
    assert (error.filename, error.line, error.field) == ("journeys/bad.yaml", line, field)
    assert fragment in error.message
    assert str(error).startswith(f"journeys/bad.yaml:{line}: {field or '<root>'}: ")


# --- evaluation --------------------------------------------------------------------------


def test_trigger_enrolls_and_sends_every_step() -> None:
    welcome = parse_journey(WELCOME, "welcome.yaml", TEMPLATES)

    outcome = apply_event([welcome], {}, signup(), NOW)

    assert [i.template_id for i in outcome.intents] == ["welcome", "getting-started"]
    first = outcome.intents[0]
    assert first == SendIntent(
        intent_id=stable_id("welcome", "1", "s1", "sub-1", "sub-1"),
        subscriber_id="sub-1",
        journey_id="welcome",
        journey_version=1,
        step_id="s1",
        template_id="welcome",
        to="ada@example.test",
        variables={
            "subscriber": {"email": "ada@example.test", "first_name": "Ada"},
            "event": {"type": "user.signed_up", "properties": {"plan": "free"}},
        },
        trigger_event_id="e1",
        created_at=NOW,
        transactional=False,
        priority=5,
    )
    assert outcome.intents[1].step_id == "tips"
    assert [(d.kind, d.step_id, d.reason) for d in outcome.decisions] == [
        ("entered", "", "trigger:user.signed_up"),
        ("sent", "s1", "template:welcome"),
        ("sent", "tips", "template:getting-started"),
        ("exited", "", "completed"),
    ]
    assert outcome.state["active"] == {}  # done, and no goal window to keep it for
    assert outcome.state["history"]["welcome"] == {"entries": 1, "keys": {"sub-1": [1, NOW.isoformat()]}}
    assert json.loads(json.dumps(outcome.state)) == outcome.state


def test_where_filter_must_match() -> None:
    welcome = parse_journey(WELCOME, "welcome.yaml", TEMPLATES)

    outcome = apply_event([welcome], {}, signup(plan="pro"), NOW)

    assert outcome.intents == [] and outcome.decisions == []
    assert outcome.state["active"] == {} and "welcome" not in outcome.state["history"]
    assert outcome.state["traits"]["email"] == "ada@example.test"


def test_other_event_types_do_not_trigger() -> None:
    state: dict[str, Any] = {}

    outcome = apply_event([journey()], state, event("something.else", "e1"), NOW)

    assert outcome.state is state and outcome.intents == [] and outcome.decisions == []


def test_no_email_skips_the_send_with_a_reason() -> None:
    outcome = apply_event([journey(id="welcome")], {}, event("go", "e1", traits={"first_name": "Ada"}), NOW)

    assert outcome.intents == []
    skipped = [d for d in outcome.decisions if d.kind == "skipped"]
    assert len(skipped) == 1
    assert (skipped[0].reason, skipped[0].step_id, skipped[0].journey_id) == ("no_email", "s1", "welcome")
    assert skipped[0].event_id == "e1" and skipped[0].occurred_at == NOW


def test_email_from_an_earlier_identify_is_used() -> None:
    state = apply_event([journey()], {}, event("identify", "e1", traits={"email": "b@example.test"}), NOW).state

    outcome = apply_event([journey()], state, event("go", "e2"), NOW)

    assert [i.to for i in outcome.intents] == ["b@example.test"]


def test_redelivered_event_produces_nothing() -> None:
    first = apply_event([journey()], {}, event("go", "e1", traits={"email": "a@example.test"}), NOW)

    again = apply_event([journey()], first.state, event("go", "e1", traits={"email": "a@example.test"}), NOW)

    assert again.state is first.state
    assert again.intents == [] and again.decisions == []


def test_re_entry_never_enrolls_once() -> None:
    never = journey(re_entry="never")
    first = apply_event([never], {}, event("go", "e1", traits={"email": "a@example.test"}), NOW)

    second = apply_event([never], first.state, event("go", "e2"), NOW)

    assert len(first.intents) == 1
    assert second.intents == []
    assert [(d.kind, d.reason, d.event_id) for d in second.decisions] == [("skipped", "re_entry_never", "e2")]
    assert second.state["history"]["j"]["entries"] == 1


def test_re_entry_always_enrolls_again_with_new_intent_ids() -> None:
    always = journey(re_entry="always")
    first = apply_event([always], {}, event("go", "e1", traits={"email": "a@example.test"}), NOW)

    second = apply_event([always], first.state, event("go", "e2"), NOW)

    assert len(second.intents) == 1
    assert second.intents[0].intent_id == stable_id("j", "1", "s1", "sub-1", "sub-1#2")
    assert second.intents[0].intent_id != first.intents[0].intent_id
    assert second.state["history"]["j"]["entries"] == 2


def test_replay_from_scratch_gives_the_same_ids() -> None:
    journeys = [parse_journey(WELCOME, "welcome.yaml", TEMPLATES), journey(re_entry="always")]
    history = [signup("e1"), event("go", "e2"), event("go", "e3")]

    def run() -> tuple[list[str], list[str]]:
        state: dict[str, Any] = {}
        intents, decisions = [], []
        for e in history:
            outcome = apply_event(journeys, state, e, NOW)
            state = outcome.state
            intents += [i.intent_id for i in outcome.intents]
            decisions += [d.decision_id for d in outcome.decisions]
        return intents, decisions

    first, second = run(), run()
    assert first == second
    assert len(set(first[1])) == len(first[1])  # decision ids are distinct


def test_higher_priority_journeys_go_first_and_pass_their_flags_on() -> None:
    low = journey(id="low", priority=1)
    high = journey(id="high", priority=9, transactional=True)

    outcome = apply_event([low, high], {}, event("go", "e1", traits={"email": "a@example.test"}), NOW)

    assert [(i.journey_id, i.priority, i.transactional) for i in outcome.intents] == [
        ("high", 9, True),
        ("low", 1, False),
    ]


def test_enrollment_pins_the_version() -> None:
    v3 = parse_journey_data(
        {"id": "j", "trigger": {"event": "go"}, "steps": [{"send": "welcome"}]}, version=3
    )

    outcome = apply_event([v3], {}, event("go", "e1", traits={"email": "a@example.test"}), NOW)

    assert {d.journey_version for d in outcome.decisions} == {3}
    assert outcome.intents[0].journey_version == 3
    assert outcome.intents[0].intent_id == stable_id("j", "3", "s1", "sub-1", "sub-1")


def test_traits_are_merged_scalars_only() -> None:
    state = apply_event([], {}, event("identify", "e1", traits={"email": "a@x.test", "plan": "free"}), NOW).state

    state = apply_event([], state, event("identify", "e2", traits={"plan": "pro", "address": {"city": "Oslo"}}), NOW).state

    assert state["traits"] == {"email": "a@x.test", "plan": "pro"}


def test_dedupe_window_is_bounded() -> None:
    state: dict[str, Any] = {}
    for i in range(100):
        state = apply_event([journey(re_entry="always")], state, event("go", f"e{i}"), NOW).state

    assert len(state["recent"]) == 64


def test_decision_is_a_serialisable_contract() -> None:
    outcome = apply_event([journey()], {}, event("go", "e1"), NOW)

    for decision in outcome.decisions:
        assert JourneyDecision.from_bytes(decision.to_bytes()) == decision
