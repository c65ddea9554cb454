"""The segment rule language: every kind parses and round-trips; bad input names file, line, rule;
references across files are checked for unknown ids and cycles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain.segment_rules import (
    BucketRule,
    FirstPerformedRule,
    LastPerformedRule,
    NotOpenedLastRule,
    PerformedRule,
    SegmentDefinition,
    SegmentRefRule,
    SubscribedRule,
    duration_ms,
    find_cycles,
    parse_segment,
    parse_segment_data,
    segment_reference_errors,
)
from domain.yaml_source import DefinitionError
from infra.definitions_loader import DefinitionsInvalid, load_paths

EVERY_KIND = """\
id: everything
rule:
  all:
    - performed: {event: order.placed, at_least: 2, at_most: 5, within: 30d, where: {total: {gte: 100}}}
    - first_performed: {event: app.opened, within: 7d}
    - last_performed: {event: order.placed, not_within: 90d}
    - email: {kind: opened, at_least: 1, within: 14d, where: {template_id: weekly}}
    - not_opened_last: 3
    - attribute:
        email: {contains: "@gmail."}
        signed_up_at: {within: 30d}
        trial_ends_at: {older_than: 1h}
        birthday: {before: 2000-01-01}
        age: {gte: 18}
    - subscribed: {list: newsletter}
    - bucket: {modulo: 100, lt: 10, salt: holdout-2026}
    - any:
        - segment: vip
        - not: {segment: churned}
"""


def test_every_kind_parses_into_its_node() -> None:
    definition = parse_segment(EVERY_KIND, "segments/everything.yaml")

    kinds = [type(node) for node in definition.rule.all]  # type: ignore[union-attr]
    assert kinds[:7] == [PerformedRule, FirstPerformedRule, LastPerformedRule, PerformedRule, NotOpenedLastRule,
                         type(definition.rule.all[5]), SubscribedRule]  # type: ignore[union-attr]
    performed = definition.rule.all[0].performed  # type: ignore[union-attr]
    assert (performed.within, performed.window_ms, performed.keep) == ("30d", 30 * 86_400_000, 6)
    assert definition.rule.all[3].performed.event == "email.opened"  # type: ignore[union-attr]
    assert isinstance(definition.rule.all[7], BucketRule)  # type: ignore[union-attr]
    assert isinstance(definition.rule.all[8].any[0], SegmentRefRule)  # type: ignore[union-attr]
    birthday = definition.rule.all[5].attribute["birthday"]  # type: ignore[union-attr]
    assert birthday.value == "2000-01-01T00:00:00+00:00"


def test_every_kind_round_trips_through_body_and_published_json() -> None:
    definition = parse_segment(EVERY_KIND, "everything.yaml", version=4)

    assert parse_segment_data(definition.body(), version=4) == definition
    published = json.loads(json.dumps(definition.model_dump(mode="json")))
    assert SegmentDefinition.model_validate(published) == definition


@pytest.mark.parametrize(("text", "ms"), [("45s", 45_000), ("15m", 900_000), ("12h", 43_200_000), ("30d", 2_592_000_000), ("2w", 1_209_600_000)])
def test_durations(text: str, ms: int) -> None:
    assert duration_ms(text) == ms


BAD = [
    ("window not a duration", "rule:\n  performed: {event: a, within: 30 days}\n", 3, "rule.performed.within", "duration like 30d"),
    ("window zero", "rule:\n  performed: {event: a, within: 0d}\n", 3, "rule.performed.within", "duration like 30d"),
    ("window unit unknown", "rule:\n  performed: {event: a, within: 3y}\n", 3, "rule.performed.within", "duration like 30d"),
    ("recency needs one span", "rule:\n  first_performed: {event: a}\n", 3, "rule.first_performed", "exactly one of 'within' or 'not_within'"),
    ("recency with both", "rule:\n  last_performed: {event: a, within: 1d, not_within: 2d}\n", 3, "rule.last_performed", "exactly one"),
    ("recency unknown key", "rule:\n  last_performed: {event: a, within: 1d, at_least: 2}\n", 3, "rule.last_performed.at_least", "unknown key"),
    ("email kind unknown", "rule:\n  email: {kind: read}\n", 3, "rule.email.kind", "one of sent, delivered, opened"),
    ("email kind missing", "rule:\n  email: {at_least: 1}\n", 3, "rule.email.kind", "'kind' must be one of"),
    ("not_opened_last zero", "rule:\n  not_opened_last: 0\n", 3, "rule.not_opened_last", "greater than or equal to 1"),
    ("not_opened_last text", "rule:\n  not_opened_last: three\n", 3, "rule.not_opened_last", "valid integer"),
    ("contains a number", "rule:\n  attribute: {email: {contains: 5}}\n", 3, "rule.attribute.email.contains", "non-empty text"),
    ("within of an attribute", "rule:\n  attribute: {signed_up_at: {within: soon}}\n", 3, "rule.attribute.signed_up_at.within", "duration"),
    ("before not a date", "rule:\n  attribute: {birthday: {before: yesterday}}\n", 3, "rule.attribute.birthday.before", "date or time"),
    ("unknown attribute operator", "rule:\n  attribute: {age: {between: [1, 2]}}\n", 3, "rule.attribute.age.between", "contains, before, after, within, older_than"),
    ("subscribed without list", "rule:\n  subscribed: {}\n", 3, "rule.subscribed.list", "Field required"),
    ("subscribed unknown key", "rule:\n  subscribed: {list: a, status: x}\n", 3, "rule.subscribed.status", "unknown key"),
    ("bucket lt beyond modulo", "rule:\n  bucket: {modulo: 10, lt: 20}\n", 3, "rule.bucket", "0 <= gte < lt <= modulo"),
    ("bucket missing modulo", "rule:\n  bucket: {lt: 20}\n", 3, "rule.bucket.modulo", "Field required"),
    ("segment not an id", "rule:\n  segment: {id: vip}\n", 3, "rule.segment", "takes a segment id"),
    ("segment refers to itself", "rule:\n  any:\n    - segment: s\n", 2, "rule", "refers to itself"),
]


@pytest.mark.parametrize(("text", "line", "field", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_rules_name_file_line_and_rule(text: str, line: int, field: str, fragment: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_segment("id: s\n" + text, "segments/s.yaml")

    error = caught.value
    assert (error.filename, error.line, error.field) == ("segments/s.yaml", line, field)
    assert fragment in error.message


def test_find_cycles_reports_each_cycle_once() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}

    assert find_cycles(graph) == [["a", "b", "c"], ["d"]]


def test_reference_errors_name_unknown_segments_and_every_file_in_a_cycle() -> None:
    files = {
        "segments/a.yaml": "id: a\nrule:\n  all:\n    - performed: {event: x}\n    - segment: b\n",
        "segments/b.yaml": "id: b\nrule:\n  not:\n    segment: a\n",
        "segments/c.yaml": "id: c\nrule:\n  segment: nowhere\n",
    }

    errors = segment_reference_errors(files)

    unknown = [e for e in errors if "unknown segment" in e.message]
    cycle = [e for e in errors if "cycle" in e.message]
    assert [(e.filename, e.line, e.field) for e in unknown] == [("segments/c.yaml", 3, "rule.segment")]
    assert len(cycle) == 1
    assert (cycle[0].filename, cycle[0].line, cycle[0].field) == ("segments/a.yaml", 5, "rule.all[1].segment")
    assert "a (segments/a.yaml) -> b (segments/b.yaml) -> a (segments/a.yaml)" in cycle[0].message


def test_validate_rejects_a_cycle_across_files(tmp_path: Path) -> None:
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "a.yaml").write_text("id: a\nrule:\n  segment: b\n")
    (tmp_path / "segments" / "b.yaml").write_text("id: b\nrule:\n  segment: a\n")

    with pytest.raises(DefinitionsInvalid) as caught:
        load_paths([tmp_path])

    assert any("cycle" in e.message and "b.yaml" in e.message for e in caught.value.errors)
