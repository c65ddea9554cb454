"""The journey language: every construct parses, and every bad input names file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain.journey_language import (
    BranchStep,
    JourneyDefinition,
    SplitStep,
    WaitForStep,
    duration_text,
    parse_duration_text,
    parse_journey,
)
from domain.yaml_source import DefinitionError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TEMPLATES = {"a", "b", "c", "reminder"}
SEGMENTS = {"vip", "buyers", "subscribed"}

FULL = """\
id: everything
trigger: {event: cart.updated, where: {items: {gt: 0}}, key: properties.cart_id}
re_entry: {after: 7d}
entry_limit: 5
on_publish: move
priority: 3
exit_when:
  - {event: order.placed, match_key: true}
  - {left_segment: subscribed}
goal: {event: order.placed, within: 3d, match_key: true}
steps:
  - wait: 1h30m
  - wait_until: {time: "09:00", weekdays: [mon, tue, wed, thu, fri], default_timezone: Europe/Paris}
  - wait_until: {attribute: renews_on, offset: -2d}
  - id: clicked
    wait_for: {event: email.clicked, timeout: 1d}
    on_event: [{send: a}]
    on_timeout:
      - branch:
          if: {any: [{segment: vip}, {not: {attribute: {country: US}}}]}
          then: [{send: b}]
          else: [{exit: not_interested}]
  - split:
      - {name: control, percent: 45, steps: [{send: c}]}
      - {name: variant, percent: 45, steps: [{send: reminder}]}
      - {name: holdout, percent: 10, holdout: true}
  - set: {cart_reminded: true}
  - webhook: {url: "https://hooks.example.test/cart", method: POST}
"""


def test_every_construct_parses_and_round_trips() -> None:
    journey = parse_journey(FULL, "everything.yaml", TEMPLATES, known_segments=SEGMENTS)

    assert journey.re_entry == "after" and journey.re_entry_after_seconds == 7 * 86400
    assert journey.goal is not None and journey.goal.within_seconds == 3 * 86400
    assert journey.template_ids() == {"a", "b", "c", "reminder"}
    assert journey.segment_ids() == {"vip", "subscribed"}
    wait_for = journey.steps[3]
    assert isinstance(wait_for, WaitForStep) and wait_for.id == "clicked"
    assert isinstance(wait_for.on_timeout[0], BranchStep) and wait_for.on_timeout[0].id == "clicked.timeout.1"
    assert isinstance(journey.steps[4], SplitStep) and journey.steps[4].variants[2].holdout
    plan = journey.plan
    assert plan.next["s1"] == "s2" and plan.path_start[("clicked", "event")] == "clicked.event.1"
    assert plan.next["clicked.event.1"] == "s5" and plan.next["clicked.timeout.1.else.1"] is None
    assert plan.path_start[("s5", "variant:holdout")] == "s6"
    body = json.loads(json.dumps(journey.body()))
    assert JourneyDefinition.model_validate({**body, "version": 1}) == journey


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("1h30m", 5400), ("2w", 1209600), ("1d", 86400)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration_text(text) == seconds and parse_duration_text(duration_text(seconds)) == seconds


@pytest.mark.parametrize("name", sorted(p.name for p in (EXAMPLES / "journeys").glob("*.yaml")))
def test_examples_parse_against_their_templates_and_segments(name: str) -> None:
    templates = {p.stem for p in (EXAMPLES / "templates").glob("*.yaml")}
    segments = {p.stem for p in (EXAMPLES / "segments").glob("*.yaml")}
    path = EXAMPLES / "journeys" / name
    assert parse_journey(path.read_text(), str(path), templates, known_segments=segments).id == path.stem


HEAD = "id: j\ntrigger: {event: go}\n"
BAD = [
    ("bad duration", HEAD + "steps:\n  - wait: soon\n", 4, "steps[0].wait", "expected a duration"),
    ("zero wait", HEAD + "steps:\n  - wait: 0s\n", 4, "steps[0].wait", "longer than 0s"),
    ("unknown template nested", HEAD + "steps:\n  - branch:\n      if: {segment: vip}\n      then:\n        - send: nope\n",
     7, "steps[0].branch.then[0].send", "unknown template 'nope'"),
    ("unknown segment", HEAD + "steps:\n  - branch:\n      if: {segment: vipp}\n      then: [{send: a}]\n",
     5, "steps[0].branch.if.segment", "unknown segment 'vipp'"),
    ("unreachable after exit", HEAD + "steps:\n  - exit: done\n  - send: a\n", 5, "steps[1]", "unreachable"),
    ("unreachable nested", HEAD + "steps:\n  - wait_for: {event: x, timeout: 1h}\n    on_event:\n      - exit: bye\n      - send: a\n",
     7, "steps[0].on_event[1]", "unreachable"),
    ("wait_for needs timeout", HEAD + "steps:\n  - wait_for: {event: x}\n", 4, "steps[0].wait_for.timeout", "needs a 'timeout'"),
    ("wait_for both", HEAD + "steps:\n  - wait_for: {event: x, segment: vip, timeout: 1h}\n", 4, "steps[0].wait_for", "exactly one"),
    ("split sum", HEAD + "steps:\n  - split:\n      - {percent: 50, steps: [{send: a}]}\n      - {percent: 40, steps: [{send: b}]}\n",
     4, "steps[0].split", "add up to 100, they add up to 90"),
    ("holdout with steps", HEAD + "steps:\n  - split:\n      - {percent: 50, holdout: true, steps: [{send: a}]}\n      - {percent: 50}\n",
     5, "steps[0].split[0].steps", "receives nothing"),
    ("bad time", HEAD + "steps:\n  - wait_until: {time: 9am}\n", 4, "steps[0].wait_until.time", "HH:MM"),
    ("bad weekday", HEAD + "steps:\n  - wait_until: {time: \"09:00\", weekdays: [monday]}\n", 4, "steps[0].wait_until.weekdays[0]", "unknown weekday"),
    ("bad zone", HEAD + "steps:\n  - wait_until: {time: \"09:00\", default_timezone: Mars/Base}\n", 4,
     "steps[0].wait_until.default_timezone", "unknown time zone"),
    ("two kinds", HEAD + "steps:\n  - send: a\n    wait: 1h\n", 5, "steps[0].wait", "one kind"),
    ("match_key without key", HEAD + "exit_when: {event: order.placed, match_key: true}\nsteps:\n  - send: a\n",
     3, "exit_when.match_key", "keyed trigger"),
    ("goal needs within", HEAD + "goal: {event: order.placed}\nsteps:\n  - send: a\n", 3, "goal.within", "needs 'within'"),
    ("bad on_publish", HEAD + "on_publish: later\nsteps:\n  - send: a\n", 3, "on_publish", "'stay', 'move' or 'exit'"),
    ("exit rule needs one", HEAD + "exit_when: [{match_key: false}]\nsteps:\n  - send: a\n", 3, "exit_when[0]", "exactly one"),
    ("bad condition", HEAD + "steps:\n  - branch:\n      if: {segmnt: vip}\n      then: [{send: a}]\n", 5,
     "steps[0].branch.if.segmnt", "unknown condition"),
    ("branch without paths", HEAD + "steps:\n  - branch: {if: {segment: vip}}\n", 4, "steps[0].branch", "needs 'then' or 'else'"),
    ("set nested value", HEAD + "steps:\n  - set: {address: {city: Oslo}}\n", 4, "steps[0].set.address", "single values"),
    ("webhook url", HEAD + "steps:\n  - webhook: ftp://x\n", 4, "steps[0].webhook.url", "should match pattern"),
    ("key not a property", "id: j\ntrigger: {event: go, key: cart_id}\nsteps:\n  - send: a\n", 2, "trigger.key", "event property"),
    ("schedule not yet", "id: j\ntrigger: {schedule: {at: '2026-12-01T09:00:00Z'}}\nsteps:\n  - send: a\n", 2,
     "trigger.schedule", "not supported yet"),
    ("segment trigger change", "id: j\ntrigger: {segment: vip, change: left}\nsteps:\n  - send: a\n", 2, "trigger.change", "'entered' or 'exited'"),
    ("entry_limit zero", HEAD + "entry_limit: 0\nsteps:\n  - send: a\n", 3, "entry_limit", "greater than or equal to 1"),
    ("duplicate nested id", HEAD + "steps:\n  - id: x\n    send: a\n  - branch:\n      if: {segment: vip}\n      then:\n        - id: x\n          send: b\n",
     9, "steps[1].branch.then[0].id", "already used by step steps[0]"),
]


@pytest.mark.parametrize(("text", "line", "field", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_journeys_name_file_line_and_field(text: str, line: int, field: str, fragment: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_journey(text, "journeys/bad.yaml", TEMPLATES, known_segments=SEGMENTS)

    error = caught.value
    assert (error.filename, error.line, error.field) == ("journeys/bad.yaml", line, field), str(error)
    assert fragment in error.message, error.message
