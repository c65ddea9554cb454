"""Segment rules: parsing with located errors, streaming membership, and its plain reference."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from domain.conditions import Condition
from domain.segment_rules import AttrCondition
from domain.events import EventEnvelope, stable_id
from domain.segments import (
    AllRule,
    AnyRule,
    AttributeRule,
    NotRule,
    PerformedRule,
    SegmentDefinition,
    apply_event,
    compile_segments,
    evaluate_history,
    parse_segment,
    parse_segment_data,
)
from domain.yaml_source import DefinitionError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=1)

ENGAGED = """\
id: engaged-shoppers
name: Engaged shoppers
description: Looks a lot, from North America or never bought
rule:
  all:
    - performed: {event: product.viewed, at_least: 3}
    - any:
        - attribute: {country: {in: [US, CA]}}
        - not: {performed: {event: order.placed, at_least: 1}}
"""


def event(
    type_: str,
    event_id: str,
    properties: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
    subscriber: str = "sub-1",
    minute: int = 0,
) -> EventEnvelope:
    return EventEnvelope(
        event_id=event_id,
        type=type_,
        subscriber_id=subscriber,
        occurred_at=T0 + timedelta(minutes=minute),
        received_at=T0 + timedelta(minutes=minute),
        properties=properties or {},
        context={"traits": traits} if traits is not None else {},
    )


def segment(rule: dict[str, Any], segment_id: str = "seg", version: int = 1) -> SegmentDefinition:
    return parse_segment_data({"id": segment_id, "rule": rule}, version=version)


def fold(segments, events, profile=None):
    profile = profile if profile is not None else {}
    changes = []
    for e in events:
        profile, new = apply_event(segments, profile, e, NOW)
        changes.extend(new)
    return profile, changes


# --- parsing -----------------------------------------------------------------------------


def test_parse_builds_the_rule_tree() -> None:
    definition = parse_segment(ENGAGED, "segments/engaged.yaml", version=3)

    assert definition.id == "engaged-shoppers"
    assert definition.version == 3
    assert definition.name == "Engaged shoppers"
    rule = definition.rule
    assert isinstance(rule, AllRule)
    performed, either = rule.all
    assert isinstance(performed, PerformedRule)
    assert (performed.performed.event, performed.performed.at_least) == ("product.viewed", 3)
    assert isinstance(either, AnyRule)
    attribute, negation = either.any
    assert isinstance(attribute, AttributeRule)
    assert attribute.attribute["country"] == AttrCondition(op="in", value=("US", "CA"))
    assert isinstance(negation, NotRule)
    assert isinstance(negation.negated, PerformedRule)


def test_defaults_and_shorthands() -> None:
    definition = parse_segment("id: s\nrule:\n  all:\n    - performed: {event: a}\n    - attribute: {plan: pro}\n", "s.yaml")

    performed, attribute = definition.rule.all  # type: ignore[union-attr]
    assert performed.performed.at_least == 1 and performed.performed.at_most is None
    assert attribute.attribute["plan"] == AttrCondition(op="eq", value="pro")
    assert definition.version == 1 and definition.name == ""


def test_body_round_trips_through_parse_segment_data() -> None:
    definition = parse_segment(ENGAGED, "engaged.yaml", version=2)

    body = definition.body()
    assert json.loads(json.dumps(body)) == body
    assert parse_segment_data(body, version=2) == definition


def test_model_dump_json_round_trips_through_model_validate() -> None:
    # How published definitions travel: model_dump(mode="json") on apply, model_validate in the worker.
    definition = parse_segment(ENGAGED, "engaged.yaml", version=2)

    data = json.loads(json.dumps(definition.model_dump(mode="json")))
    again = SegmentDefinition.model_validate(data)

    assert again == definition
    assert compile_segments([again]).fingerprint == compile_segments([definition]).fingerprint


@pytest.mark.parametrize("name", ["engaged.yaml", "buyers.yaml"])
def test_examples_parse(name: str) -> None:
    path = EXAMPLES / "segments" / name
    definition = parse_segment(path.read_text(), str(path))
    assert definition.id == path.stem


BAD_SEGMENTS = [
    # (case, yaml, line, field, message fragment)
    ("syntax error", "id: s\nrule:\n  performed: {event: a\n", 4, "", "invalid YAML"),
    ("not a mapping", "- id: s\n", 1, "", "must be a mapping"),
    ("empty file", "", 1, "", "must be a mapping"),
    ("unknown top key", "id: s\nrules:\n  performed: {event: a}\n", 2, "rules", "unknown key 'rules'"),
    ("rule at top level", "id: s\nall:\n  - performed: {event: a}\n", 2, "all", "rules go under 'rule:'"),
    ("missing id", "rule:\n  performed: {event: a}\n", 1, "id", "Field required"),
    ("id wrong type", "id: 42\nrule:\n  performed: {event: a}\n", 1, "id", "valid string"),
    ("id with spaces", "id: my segment\nrule:\n  performed: {event: a}\n", 1, "id", "pattern"),
    ("missing rule", "id: s\nname: S\n", 1, "rule", "needs a 'rule'"),
    ("name wrong type", "id: s\nname: [a]\nrule:\n  performed: {event: a}\n", 2, "name", "valid string"),
    ("unknown rule kind", "id: s\nrule:\n  any:\n    - did: {event: a}\n", 4, "rule.any[0].did", "unknown rule 'did'"),
    ("two kinds in one rule", "id: s\nrule:\n  performed: {event: a}\n  attribute: {x: 1}\n", 2, "rule", "exactly one"),
    ("empty all", "id: s\nrule:\n  all: []\n", 3, "rule.all", "must not be empty"),
    ("empty any", "id: s\nrule:\n  all:\n    - any: []\n", 4, "rule.all[0].any", "must not be empty"),
    ("all not a list", "id: s\nrule:\n  all: {performed: {event: a}}\n", 3, "rule.all", "must be a list"),
    ("unknown performed key", "id: s\nrule:\n  performed:\n    event: a\n    during: 3d\n", 5, "rule.performed.during", "unknown key 'during'"),
    ("missing event", "id: s\nrule:\n  performed: {at_least: 2}\n", 3, "rule.performed.event", "Field required"),
    ("negative at_least", "id: s\nrule:\n  performed:\n    event: a\n    at_least: -1\n", 5, "rule.performed.at_least", "greater than or equal to 0"),
    ("at_least text", "id: s\nrule:\n  performed:\n    event: a\n    at_least: three\n", 5, "rule.performed.at_least", "valid integer"),
    ("at_least bool", "id: s\nrule:\n  performed:\n    event: a\n    at_least: true\n", 5, "rule.performed.at_least", "valid integer"),
    ("at_most below at_least", "id: s\nrule:\n  performed:\n    event: a\n    at_least: 3\n    at_most: 1\n", 6, "rule.performed.at_most", "less than at_least"),
    ("where not a mapping", "id: s\nrule:\n  performed:\n    event: a\n    where: [x]\n", 5, "rule.performed.where", "must be a mapping"),
    ("unknown operator", "id: s\nrule:\n  attribute:\n    country: {like: U%}\n", 4, "rule.attribute.country.like", "unknown operator 'like'"),
    ("in without list", "id: s\nrule:\n  attribute:\n    country: {in: US}\n", 4, "rule.attribute.country.in", "list of values"),
    ("exists not bool", "id: s\nrule:\n  attribute:\n    email: {exists: maybe}\n", 4, "rule.attribute.email.exists", "true or false"),
    ("gt of a list", "id: s\nrule:\n  attribute:\n    age: {gt: [1]}\n", 4, "rule.attribute.age.gt", "number or text"),
    ("bare list value", "id: s\nrule:\n  attribute:\n    country: [US, CA]\n", 4, "rule.attribute.country", "{in: [...]}"),
    ("two operators", "id: s\nrule:\n  attribute:\n    age: {gt: 1, lt: 9}\n", 4, "rule.attribute.age", "exactly one operator"),
    ("empty attribute", "id: s\nrule:\n  attribute: {}\n", 3, "rule.attribute", "at least one trait"),
    ("not of a list", "id: s\nrule:\n  not:\n    - performed: {event: a}\n", 3, "rule.not", "must be a mapping"),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [case[1:] for case in BAD_SEGMENTS],
    ids=[case[0] for case in BAD_SEGMENTS],
)
def test_bad_segment_names_file_line_and_field(text: str, line: int, field: str, fragment: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_segment(text, "segments/bad.yaml")

    error = caught.value
    assert (error.filename, error.line, error.field) == ("segments/bad.yaml", line, field)
    assert fragment in error.message
    assert str(error).startswith(f"segments/bad.yaml:{line}: {field or '<root>'}: ")


# --- conditions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "present", "actual", "expected"),
    [
        (Condition(op="eq", value="US"), True, "US", True),
        (Condition(op="eq", value="US"), False, None, False),
        (Condition(op="eq", value=1), True, True, False),  # true is not 1
        (Condition(op="eq", value=1), True, 1.0, True),
        (Condition(op="ne", value="US"), True, "CA", True),
        (Condition(op="ne", value="US"), False, None, True),  # absent is not US
        (Condition(op="in", value=("US", "CA")), True, "CA", True),
        (Condition(op="in", value=("US", "CA")), True, "DE", False),
        (Condition(op="exists", value=True), True, "x", True),
        (Condition(op="exists", value=True), True, None, False),
        (Condition(op="exists", value=False), False, None, True),
        (Condition(op="gt", value=10), True, 11, True),
        (Condition(op="gte", value=10), True, 10, True),
        (Condition(op="lt", value=10), True, 10, False),
        (Condition(op="lte", value="b"), True, "a", True),
        (Condition(op="gt", value=10), True, "11", False),  # text is not ordered against numbers
        (Condition(op="gt", value=0), True, True, False),
    ],
)
def test_condition_semantics(condition: Condition, present: bool, actual: Any, expected: bool) -> None:
    assert condition.holds(present, actual) is expected


# --- streaming evaluation --------------------------------------------------------------------


def test_enters_on_the_third_view_and_emits_one_change() -> None:
    engaged = segment({"performed": {"event": "product.viewed", "at_least": 3}}, "engaged")
    views = [event("product.viewed", f"e{i}", minute=i) for i in range(4)]

    profile, changes = fold([engaged], views[:2])
    assert changes == [] and profile["members"] == {}

    profile, changes = apply_event([engaged], profile, views[2], NOW)
    assert profile["members"] == {"engaged": 1}
    assert len(changes) == 1
    change = changes[0]
    assert change.change == "entered"
    assert (change.segment_id, change.segment_version, change.subscriber_id) == ("engaged", 1, "sub-1")
    assert change.change_id == stable_id("engaged", "1", "sub-1", "entered", "e2")
    assert change.cause_event_ids == ["e2"]
    assert change.occurred_at == views[2].occurred_at

    profile, changes = apply_event([engaged], profile, views[3], NOW)
    assert changes == [] and profile["counts"] == {"product.viewed": 4}


def test_redelivered_event_is_not_counted_twice() -> None:
    engaged = segment({"performed": {"event": "product.viewed", "at_least": 2}}, "engaged")
    first = event("product.viewed", "e1")

    profile, _ = apply_event([engaged], {}, first, NOW)
    again, changes = apply_event([engaged], profile, first, NOW)

    assert again is profile
    assert changes == []
    assert profile["counts"] == {"product.viewed": 1}
    assert profile["members"] == {}


def test_redelivered_identify_does_not_restore_old_traits() -> None:
    # e2 changes nothing when first applied (country is already US), then e3 moves to DE;
    # redelivering e2 must not move the subscriber back.
    north_america = segment({"attribute": {"country": "US"}}, "na")
    e1 = event("identify", "e1", traits={"country": "US"})
    e2 = event("identify", "e2", traits={"country": "US"})
    e3 = event("identify", "e3", traits={"country": "DE"})

    profile, changes = fold([north_america], [e1, e2, e3, e2])

    assert profile["traits"]["country"][0] == "DE"
    assert profile["members"] == {}
    assert [c.change for c in changes] == ["entered", "exited"]


def test_at_most_makes_a_subscriber_leave() -> None:
    browsers = segment({"performed": {"event": "a", "at_least": 1, "at_most": 2}}, "browsers")

    _, changes = fold([browsers], [event("a", f"e{i}") for i in range(3)])

    assert [c.change for c in changes] == ["entered", "exited"]
    assert changes[1].change_id == stable_id("browsers", "1", "sub-1", "exited", "e2")


def test_where_filter_counts_only_matching_events() -> None:
    big = segment({"performed": {"event": "order.placed", "where": {"total": {"gte": 100}, "currency": "EUR"}}}, "big")

    profile, changes = fold(
        [big],
        [
            event("order.placed", "e1", {"total": 150, "currency": "USD"}),
            event("order.placed", "e2", {"total": 50, "currency": "EUR"}),
        ],
    )
    assert changes == []
    profile, changes = fold([big], [event("order.placed", "e3", {"total": 150, "currency": "EUR"})], profile)
    assert [c.change for c in changes] == ["entered"]
    assert list(profile["counts"].values()) == [1]


def test_where_filter_reads_dotted_paths() -> None:
    nested = segment({"performed": {"event": "a", "where": {"cart.items": {"gt": 0}}}}, "nested")

    _, changes = fold([nested], [event("a", "e1", {"cart": {"items": 2}})])

    assert [c.change for c in changes] == ["entered"]


def test_traits_from_identify_move_membership_both_ways() -> None:
    north_america = segment({"attribute": {"country": {"in": ["US", "CA"]}}}, "na")

    profile, changes = fold([north_america], [event("identify", "e1", traits={"country": "US", "email": "a@x.test"})])
    assert [c.change for c in changes] == ["entered"]
    assert set(profile["traits"]) == {"country"}  # only traits a live rule reads are kept

    profile, changes = fold([north_america], [event("identify", "e2", traits={"country": "DE"})], profile)
    assert [c.change for c in changes] == ["exited"]
    assert profile["traits"]["country"][0] == "DE"


def test_only_scalar_traits_are_kept_and_null_removes_one() -> None:
    has_plan = segment({"attribute": {"plan": {"exists": True}}}, "has-plan")

    profile, _ = fold(
        [has_plan], [event("identify", "e1", traits={"plan": "pro", "address": {"city": "Oslo"}, "tags": ["a"]})]
    )
    assert {k: v[0] for k, v in profile["traits"].items()} == {"plan": "pro"}
    assert profile["members"] == {"has-plan": 1}

    profile, changes = fold([has_plan], [event("identify", "e2", traits={"plan": None})], profile)
    assert profile["traits"]["plan"][0] is None  # a tombstone, so a late older identify cannot revive it
    assert [c.change for c in changes] == ["exited"]


def test_negated_rule_holds_from_the_first_event_of_any_type() -> None:
    never_bought = segment({"not": {"performed": {"event": "order.placed"}}}, "never-bought")

    profile, changes = fold([never_bought], [event("page.viewed", "e1")])
    assert [c.change for c in changes] == ["entered"]

    profile, changes = fold([never_bought], [event("order.placed", "e2")], profile)
    assert [c.change for c in changes] == ["exited"]


def test_engaged_example_tree() -> None:
    engaged = parse_segment(ENGAGED, "engaged.yaml")
    views = [event("product.viewed", f"v{i}") for i in range(3)]

    profile, changes = fold([engaged], views)
    assert [c.change for c in changes] == ["entered"]  # never bought
    profile, changes = fold([engaged], [event("order.placed", "o1")], profile)
    assert [c.change for c in changes] == ["exited"]
    profile, changes = fold([engaged], [event("identify", "i1", traits={"country": "CA"})], profile)
    assert [c.change for c in changes] == ["entered"]


def test_irrelevant_event_only_moves_the_clock() -> None:
    buyers = segment({"performed": {"event": "order.placed"}}, "buyers")
    profile, _ = fold([buyers], [event("order.placed", "e1")])

    after, changes = apply_event([buyers], profile, event("page.viewed", "e2", minute=5), NOW)

    assert changes == []
    assert after["counts"] == profile["counts"] and after["members"] == profile["members"]
    assert after["clock"] == profile["clock"] + 5 * 60_000


def test_profile_keeps_only_live_counters_and_segments() -> None:
    buyers = segment({"performed": {"event": "order.placed"}}, "buyers")
    viewers = segment({"performed": {"event": "page.viewed"}}, "viewers")
    profile, _ = fold([buyers, viewers], [event("order.placed", "e1"), event("page.viewed", "e2")])
    assert profile["members"] == {"buyers": 1, "viewers": 1}

    profile, changes = fold([viewers], [event("page.viewed", "e3")], profile)

    assert profile["counts"] == {"page.viewed": 2}
    assert profile["members"] == {"viewers": 1}
    assert changes == []


def test_new_version_with_same_meaning_keeps_membership_quietly() -> None:
    v1 = segment({"performed": {"event": "order.placed"}}, "buyers", version=1)
    v2 = segment({"performed": {"event": "order.placed"}}, "buyers", version=2)
    profile, _ = fold([v1], [event("order.placed", "e1")])

    profile, changes = fold([v2], [event("page.viewed", "e2", traits={"x": 1})], profile)

    assert changes == []
    assert profile["members"] == {"buyers": 2}


def test_new_version_that_excludes_the_subscriber_emits_exit() -> None:
    v1 = segment({"performed": {"event": "order.placed"}}, "buyers", version=1)
    v2 = segment({"attribute": {"vip": True}}, "buyers", version=2)
    profile, _ = fold([v1], [event("order.placed", "e1")])

    profile, changes = fold([v2], [event("page.viewed", "e2")], profile)

    assert [(c.change, c.segment_version) for c in changes] == [("exited", 2)]
    assert profile["members"] == {}


def test_compiled_segments_and_plain_list_agree() -> None:
    segments = [parse_segment(ENGAGED, "engaged.yaml"), segment({"performed": {"event": "order.placed"}}, "buyers")]
    compiled = compile_segments(segments)
    history = [event("product.viewed", f"v{i}") for i in range(3)] + [event("order.placed", "o1")]

    assert fold(compiled, history) == fold(segments, history)
    assert compile_segments(compiled) is compiled


def test_counter_keys_are_shared_between_equal_filters() -> None:
    a = segment({"performed": {"event": "x", "where": {"p": 1, "q": "y"}}}, "a")
    b = segment({"performed": {"event": "x", "at_least": 2, "where": {"q": "y", "p": {"eq": 1}}}}, "b")

    compiled = compile_segments([a, b])

    assert len(compiled.count_keys) == 1


def test_profile_stays_small_and_json_able() -> None:
    segments = [
        parse_segment(ENGAGED, "engaged.yaml"),
        segment({"performed": {"event": "order.placed", "where": {"total": {"gt": 100}}}}, "big-buyers"),
        segment({"attribute": {"plan": "pro"}}, "pros"),
    ]
    traits = {"email": "someone.long-name@example.com", "country": "US", "plan": "pro", "first_name": "Alexandra"}
    history = [event("identify", "00000000-0000-4000-8000-000000000000", traits=traits)]
    history += [
        event(kind, f"{i:08d}-aaaa-4bbb-8ccc-{i:012d}", {"total": i})
        for i in range(300)
        for kind in ("product.viewed", "order.placed")
    ]

    profile, _ = fold(segments, history)

    encoded = json.dumps(profile)
    assert json.loads(encoded) == profile
    assert len(encoded.encode()) < 1024, encoded


def test_dedupe_window_is_bounded() -> None:
    counted = segment({"performed": {"event": "a", "at_least": 1000}}, "many")

    profile, _ = fold([counted], [event("a", f"e{i}") for i in range(200)])

    assert len(profile["recent"]) == 40 * 6
    assert profile["counts"]["a"] == 200


def test_reference_evaluator_on_an_empty_history_puts_nobody_anywhere() -> None:
    never_bought = segment({"not": {"performed": {"event": "order.placed"}}}, "never-bought")

    assert evaluate_history([never_bought], []) == {"never-bought": False}
    assert evaluate_history([never_bought], [event("a", "e1")]) == {"never-bought": True}


# --- property: streaming equals the reference after every prefix ----------------------------

EVENT_TYPES = ["a", "b", "c"]
values = st.sampled_from([1, 2, 3, "x", True])
conditions = st.one_of(
    values,
    st.fixed_dictionaries({"in": st.lists(values, max_size=3)}),
    st.fixed_dictionaries({"ne": values}),
    st.fixed_dictionaries({"exists": st.booleans()}),
    st.fixed_dictionaries({"gte": st.integers(0, 3)}),
    st.fixed_dictionaries({"lt": st.integers(0, 3)}),
)


@st.composite
def performed_rules(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"event": draw(st.sampled_from(EVENT_TYPES)), "at_least": draw(st.integers(0, 3))}
    if draw(st.booleans()):
        spec["at_most"] = spec["at_least"] + draw(st.integers(0, 2))
    if draw(st.booleans()):
        spec["where"] = draw(st.dictionaries(st.sampled_from(["p", "q"]), conditions, min_size=1, max_size=2))
    return {"performed": spec}


attribute_rules = st.dictionaries(st.sampled_from(["country", "score"]), conditions, min_size=1, max_size=2).map(
    lambda a: {"attribute": a}
)
rule_trees = st.recursive(
    st.one_of(performed_rules(), attribute_rules),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda rs: {"all": rs}),
        st.lists(children, min_size=1, max_size=3).map(lambda rs: {"any": rs}),
        children.map(lambda r: {"not": r}),
    ),
    max_leaves=6,
)


@st.composite
def histories(draw: st.DrawFn) -> list[EventEnvelope]:
    """Events of one subscriber, with redeliveries of earlier events mixed in."""
    out: list[EventEnvelope] = []
    for i in range(draw(st.integers(1, 30))):
        if out and draw(st.integers(0, 4)) == 0:
            out.append(draw(st.sampled_from(out)))
            continue
        properties = draw(st.dictionaries(st.sampled_from(["p", "q"]), values, max_size=2))
        traits = draw(
            st.none()
            | st.dictionaries(
                st.sampled_from(["country", "score"]),
                st.sampled_from(["US", "CA", "DE", None, 0, 2, 5, True]),
                max_size=2,
            )
        )
        out.append(event(draw(st.sampled_from(EVENT_TYPES + ["identify"])), f"e{i}", properties, traits, minute=i))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=st.lists(rule_trees, min_size=1, max_size=3), history=histories())
def test_streaming_membership_equals_reference_after_every_prefix(
    rules: list[dict[str, Any]], history: list[EventEnvelope]
) -> None:
    segments = [segment(rule, f"s{i}") for i, rule in enumerate(rules)]
    compiled = compile_segments(segments)
    profile: dict[str, Any] = {}
    members_by_changes: set[str] = set()
    for n, e in enumerate(history, start=1):
        profile, changes = apply_event(compiled, profile, e, NOW)
        for change in changes:
            if change.change == "entered":
                assert change.segment_id not in members_by_changes
                members_by_changes.add(change.segment_id)
            else:
                members_by_changes.remove(change.segment_id)

        expected = {sid for sid, member in evaluate_history(segments, history[:n]).items() if member}
        assert set(profile.get("members", {})) == expected, (n, e)
        assert members_by_changes == expected
