"""Streaming segment membership: windows, expiry on time, email engagement, consent, buckets,
references, late events, definition changes; and the property that streaming equals batch."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st

from domain.events import ConsentChanged, DeliveryEvent, EventEnvelope
from domain.segment_engine import (
    Observation,
    advance,
    apply_record,
    compile_segments,
    observe_consent,
    observe_delivery,
    observe_event,
)
from domain.segment_reference import evaluate_at
from domain.segment_rules import SegmentDefinition, from_ms, parse_segment_data, to_ms

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
SUB = "sub-1"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(type_: str, event_id: str, minute: float = 0, properties=None, traits=None) -> Observation:
    return observe_event(
        EventEnvelope(
            event_id=event_id,
            type=type_,
            subscriber_id=SUB,
            occurred_at=at(minute),
            received_at=at(minute),
            properties=properties or {},
            context={"traits": traits} if traits is not None else {},
        )
    )


def delivery(kind: str, intent: str, delivery_id: str, minute: float = 0, template: str = "t1") -> Observation:
    return observe_delivery(
        DeliveryEvent(
            delivery_id=delivery_id, intent_id=intent, subscriber_id=SUB, kind=kind, occurred_at=at(minute), template_id=template
        )
    )


def consent(list_id: str, status: str, record_id: str, minute: float = 0) -> Observation:
    return observe_consent(
        ConsentChanged(consent_event_id=record_id, subscriber_id=SUB, status=status, list_id=list_id, occurred_at=at(minute))
    )


def seg(rule: dict[str, Any], segment_id: str = "seg", version: int = 1) -> SegmentDefinition:
    return parse_segment_data({"id": segment_id, "rule": rule}, version=version)


def run(segments, records, profile=None):
    profile = profile if profile is not None else {}
    changes = []
    for record in records:
        profile, new = apply_record(segments, profile, record)
        changes.extend(new)
    return profile, changes


def kinds(changes) -> list[tuple[str, str]]:
    return [(c.segment_id, c.change) for c in changes]


# --- windows and expiry ----------------------------------------------------------------------


def test_window_counts_only_recent_events_and_expires_on_time() -> None:
    active = seg({"performed": {"event": "login", "at_least": 2, "within": "1h"}}, "active")

    profile, changes = run([active], [ev("login", "e1", 0), ev("login", "e2", 30)])
    assert kinds(changes) == [("active", "entered")]
    assert profile["due"] == to_ms(at(60))  # e1 leaves the window at 01:00

    profile, changes = advance([active], profile, SUB, at(59))
    assert changes == [] and profile["clock"] == to_ms(at(59))
    same, changes = advance([active], profile, SUB, at(59))
    assert changes == [] and same is profile  # nothing due, clock unchanged: no write needed
    profile, changes = advance([active], profile, SUB, at(75))
    assert kinds(changes) == [("active", "exited")]
    assert changes[0].occurred_at == at(60)  # the exact moment, not when the timer ran
    assert changes[0].cause_event_ids == [f"expired@{at(60).isoformat()}"]
    assert profile["due"] == to_ms(at(90))


def test_expiry_between_records_is_processed_at_its_moment_before_the_next_record() -> None:
    active = seg({"performed": {"event": "login", "at_least": 1, "within": "1h"}}, "active")

    _, changes = run([active], [ev("login", "e1", 0), ev("login", "e2", 120)])

    assert [(c.change, c.occurred_at) for c in changes] == [("entered", at(0)), ("exited", at(60)), ("entered", at(120))]


def test_at_most_within_a_window_and_timestamp_list_stays_capped() -> None:
    calm = seg({"performed": {"event": "x", "at_least": 0, "at_most": 2, "within": "1d"}}, "calm")

    profile, changes = run([calm], [ev("x", f"e{i}", i) for i in range(10)])

    assert kinds(changes) == [("calm", "entered"), ("calm", "exited")]
    assert len(profile["times"]["x"]) == 3  # at_most + 1 decides it
    profile, changes = advance([calm], profile, SUB, at(24 * 60 + 8))
    assert kinds(changes) == [("calm", "entered")]
    assert changes[0].occurred_at == at(24 * 60 + 7)


def test_first_and_last_performed() -> None:
    newcomer = seg({"first_performed": {"event": "app.opened", "within": "7d"}}, "newcomer")
    lapsed = seg({"last_performed": {"event": "order.placed", "not_within": "30d"}}, "lapsed")
    day = 24 * 60

    profile, changes = run([newcomer, lapsed], [ev("app.opened", "a1", 0), ev("order.placed", "o1", day)])
    assert kinds(changes) == [("newcomer", "entered")]
    profile, changes = advance([newcomer, lapsed], profile, SUB, at(40 * day))
    assert [(c.segment_id, c.change, c.occurred_at) for c in changes] == [
        ("newcomer", "exited", at(7 * day)),
        ("lapsed", "entered", at(31 * day)),
    ]
    _, changes = run([newcomer, lapsed], [ev("order.placed", "o2", 41 * day)], profile)
    assert kinds(changes) == [("lapsed", "exited")]


def test_attribute_time_conditions_and_contains() -> None:
    recent = seg({"attribute": {"signed_up_at": {"within": "30d"}, "email": {"contains": "@gmail."}}}, "recent")
    old = seg({"attribute": {"signed_up_at": {"older_than": "30d"}}}, "old")
    early = seg({"attribute": {"signed_up_at": {"before": "2026-02-01"}}}, "early")
    traits = {"signed_up_at": at(0).isoformat(), "email": "a@gmail.com"}

    profile, changes = run([recent, old, early], [ev("identify", "i1", 0, traits=traits)])
    assert kinds(changes) == [("recent", "entered")]
    profile, changes = advance([recent, old, early], profile, SUB, at(31 * 24 * 60))
    assert sorted(kinds(changes)) == [("old", "entered"), ("recent", "exited")]
    assert {c.occurred_at for c in changes} == {at(30 * 24 * 60)}


def test_late_event_lands_where_event_time_order_would_put_it() -> None:
    twice = seg({"performed": {"event": "x", "at_least": 2, "within": "1h"}}, "twice")

    profile, changes = run([twice], [ev("x", "e1", 100), ev("y", "e2", 110), ev("x", "late", 80)])

    assert kinds(changes) == [("twice", "entered")]
    assert profile["due"] == to_ms(at(140))  # the late event leaves the window first
    assert changes[0].occurred_at == at(110)  # learned at the subscriber's clock


def test_late_identify_does_not_overwrite_a_newer_trait() -> None:
    us = seg({"attribute": {"country": "US"}}, "us")

    profile, changes = run([us], [ev("identify", "i2", 10, traits={"country": "US"}), ev("identify", "i1", 5, traits={"country": "DE"})])

    assert kinds(changes) == [("us", "entered")]
    assert profile["traits"]["country"][0] == "US"


# --- email engagement, consent, buckets, references --------------------------------------------


def test_email_activity_counts_delivery_events() -> None:
    openers = seg({"email": {"kind": "opened", "at_least": 1, "within": "30d", "where": {"template_id": "t1"}}}, "openers")
    bounced = seg({"email": {"kind": "bounced"}}, "bounced")

    _, changes = run(
        [openers, bounced],
        [delivery("accepted", "i1", "d1"), delivery("opened", "i1", "d2", 5, template="t2"), delivery("opened", "i1", "d3", 6)],
    )
    assert kinds(changes) == [("openers", "entered")]
    _, changes = run([bounced], [delivery("bounced", "i2", "d4")])
    assert kinds(changes) == [("bounced", "entered")]


def test_did_not_open_any_of_the_last_three_emails() -> None:
    unengaged = seg({"not_opened_last": 3}, "unengaged")
    sends = [delivery("accepted", f"i{i}", f"s{i}", i * 10) for i in range(3)]

    profile, changes = run([unengaged], [delivery("accepted", "i0", "s0"), delivery("opened", "i0", "o0", 1)])
    assert changes == []
    profile, changes = run([unengaged], sends[1:] + [delivery("ambiguous", "i3", "s3", 40)], profile)
    assert kinds(changes) == [("unengaged", "entered")]  # i1, i2, i3 unopened; i0 (opened) fell out
    assert len(profile["emails"]) == 3
    _, changes = run([unengaged], [delivery("clicked", "i2", "c2", 50)], profile)
    assert kinds(changes) == [("unengaged", "exited")]  # a click counts as an open


def test_subscribed_to_a_list_follows_consent_by_event_time() -> None:
    news = seg({"subscribed": {"list": "newsletter"}}, "news")

    profile, changes = run([news], [consent("newsletter", "subscribed", "c1", 0), consent("other", "unsubscribed", "c2", 1)])
    assert kinds(changes) == [("news", "entered")]
    assert set(profile["consent"]) == {"newsletter"}  # lists no rule reads are not kept
    profile, changes = run([news], [consent("", "suppressed", "c3", 2)], profile)
    assert kinds(changes) == [("news", "exited")]  # a global opt-out wins over the list
    _, changes = run([news], [consent("", "subscribed", "c4", 1)], profile)  # older: ignored
    assert changes == []


def test_bucket_is_stable_and_splits_evenly() -> None:
    holdout = seg({"bucket": {"modulo": 100, "lt": 10, "salt": "q1"}}, "holdout")
    rule = holdout.rule.bucket  # type: ignore[union-attr]

    inside = sum(rule.holds(f"user-{i}") for i in range(10_000))

    assert 850 < inside < 1150
    assert rule.holds("user-7") == rule.holds("user-7")
    assert [rule.slot(f"user-{i}") for i in range(5)] != [
        seg({"bucket": {"modulo": 100, "lt": 10, "salt": "q2"}}).rule.bucket.slot(f"user-{i}") for i in range(5)  # type: ignore[union-attr]
    ]


def test_segment_reference_follows_the_other_segment_in_one_pass() -> None:
    buyers = seg({"performed": {"event": "order.placed"}}, "buyers")
    vip_buyers = seg({"all": [{"segment": "buyers"}, {"attribute": {"vip": True}}]}, "vip-buyers")
    outsiders = seg({"not": {"segment": "vip-buyers"}}, "outsiders")
    segments = [outsiders, vip_buyers, buyers]  # any order: compiled in dependency order

    profile, changes = run(segments, [ev("identify", "i1", 0, traits={"vip": True})])
    assert kinds(changes) == [("outsiders", "entered")]
    _, changes = run(segments, [ev("order.placed", "o1", 1)], profile)
    assert kinds(changes) == [("buyers", "entered"), ("vip-buyers", "entered"), ("outsiders", "exited")]


def test_cyclic_segments_are_set_aside_by_the_engine() -> None:
    a = seg({"segment": "b"}, "a")
    b = seg({"segment": "a"}, "b")
    c = seg({"performed": {"event": "x"}}, "c")

    compiled = compile_segments([a, b, c])

    assert compiled.unusable == ("a", "b")
    assert [s.id for s in compiled.segments] == ["c"]


def test_redelivered_delivery_and_consent_records_are_ignored() -> None:
    bounced = seg({"email": {"kind": "bounced", "at_least": 2}}, "bounced")
    record = delivery("bounced", "i1", "d1")

    profile, _ = run([bounced], [record])
    again, changes = apply_record([bounced], profile, record)

    assert again is profile and changes == []


# --- definitions changing ----------------------------------------------------------------------


def test_backfill_marks_its_changes() -> None:
    buyers = seg({"performed": {"event": "order.placed"}}, "buyers")

    _, changes = apply_record([buyers], {}, ev("order.placed", "o1"), backfill=True)

    assert changes[0].cause_event_ids == ["backfill", "o1"]


def test_advance_re_evaluates_a_profile_under_new_definitions() -> None:
    v1 = seg({"performed": {"event": "order.placed"}}, "buyers", 1)
    v2 = seg({"performed": {"event": "order.placed", "at_least": 2}}, "buyers", 2)
    profile, _ = run([v1], [ev("order.placed", "o1")])

    profile, changes = advance([v2], profile, SUB, at(1))

    assert [(c.change, c.segment_version) for c in changes] == [("exited", 2)]


def test_profile_stays_under_a_kilobyte_with_twenty_segments() -> None:
    segments = [
        seg({"performed": {"event": f"e{i % 5}", "at_least": 1 + i % 3, "within": "30d"}}, f"w{i}") for i in range(10)
    ] + [seg({"attribute": {"plan": "pro"}}, "pros"), seg({"not_opened_last": 3}, "cold")] + [
        seg({"performed": {"event": f"e{i % 5}", "where": {"n": {"gt": i}}}}, f"c{i}") for i in range(8)
    ]
    records = [ev(f"e{i % 5}", f"{i:08d}-aaaa-4bbb-8ccc-{i:012d}", i, {"n": i % 7}) for i in range(200)]
    records += [ev("identify", "i", 300, traits={"plan": "pro", "email": "someone@example.com"})]
    records += [delivery("accepted", f"intent-{i}", f"d{i}", 400 + i) for i in range(5)]

    profile, _ = run(segments, records)

    encoded = json.dumps(profile, separators=(",", ":"))
    assert json.loads(encoded) == profile
    assert len(encoded.encode()) < 1024, len(encoded)


# --- property: streaming equals batch at every moment -----------------------------------------

EVENT_TYPES = ["a", "b"]
values = st.sampled_from([1, 2, "x"])
where_filters = st.dictionaries(st.just("p"), st.one_of(values, st.fixed_dictionaries({"gte": st.integers(0, 2)})), max_size=1)
windows = st.sampled_from(["30m", "1h", "3h"])


@st.composite
def leaf_rules(draw: st.DrawFn, earlier: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["performed", "windowed", "windowed", "recency", "attribute", "time_attribute", "email", "consent", "bucket"] + (["segment"] if earlier else [])))
    if kind in ("performed", "windowed"):
        spec: dict[str, Any] = {"event": draw(st.sampled_from(EVENT_TYPES + ["email.opened"])), "at_least": draw(st.integers(0, 3))}
        if draw(st.booleans()):
            spec["at_most"] = spec["at_least"] + draw(st.integers(0, 2))
        if kind == "windowed":
            spec["within"] = draw(windows)
        where = draw(where_filters)
        if where:
            spec["where"] = where
        return {"performed": spec}
    if kind == "recency":
        which = draw(st.sampled_from(["first_performed", "last_performed"]))
        return {which: {"event": draw(st.sampled_from(EVENT_TYPES)), draw(st.sampled_from(["within", "not_within"])): draw(windows)}}
    if kind == "attribute":
        return {"attribute": {"country": draw(st.one_of(st.sampled_from(["US", "DE"]), st.fixed_dictionaries({"exists": st.booleans()})))}}
    if kind == "time_attribute":
        return {"attribute": {"since": {draw(st.sampled_from(["within", "older_than"])): draw(windows)}}}
    if kind == "email":
        return {"not_opened_last": draw(st.integers(1, 3))}
    if kind == "consent":
        return {"subscribed": {"list": draw(st.sampled_from(["l1", "l2"]))}}
    if kind == "bucket":
        return {"bucket": {"modulo": 4, "lt": draw(st.integers(1, 3))}}
    return {"segment": draw(st.sampled_from(earlier))}


def rule_trees(earlier: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        leaf_rules(earlier),
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda rs: {"all": rs}),
            st.lists(children, min_size=1, max_size=3).map(lambda rs: {"any": rs}),
            children.map(lambda r: {"not": r}),
        ),
        max_leaves=5,
    )


@st.composite
def segment_sets(draw: st.DrawFn) -> list[SegmentDefinition]:
    out: list[SegmentDefinition] = []
    for i in range(draw(st.integers(1, 4))):
        out.append(seg(draw(rule_trees([s.id for s in out])), f"s{i}"))
    return out


@st.composite
def steps(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Records of one subscriber mostly in time order, some late, some redelivered, and timer ticks."""
    out: list[tuple[str, Any]] = []
    cursor = 0.0
    sent: list[str] = []
    records: list[Observation] = []
    for i in range(draw(st.integers(1, 25))):
        cursor += draw(st.sampled_from([0, 1, 20, 30, 60, 60, 200]))
        minute = cursor - draw(st.sampled_from([10, 30, 60, 70])) if draw(st.integers(0, 4)) == 0 else cursor
        choice = draw(st.sampled_from(["event", "event", "identify", "send", "open", "consent", "tick", "again"]))
        if choice == "tick":
            out.append(("tick", at(cursor + draw(st.sampled_from([0, 30, 60, 61, 500])))))
            continue
        if choice == "again" and records:
            record = draw(st.sampled_from(records))
        elif choice == "identify":
            traits = draw(st.dictionaries(st.sampled_from(["country", "since"]), st.sampled_from(["US", "DE", None, "t"]), max_size=2))
            traits = {k: (at(minute - 50).isoformat() if v == "t" else v) for k, v in traits.items()}
            record = ev("identify", f"e{i}", minute, traits=traits)
        elif choice == "send":
            sent.append(f"intent{i}")
            record = delivery(draw(st.sampled_from(["accepted", "ambiguous", "bounced"])), f"intent{i}", f"d{i}", minute)
        elif choice == "open" and sent:
            record = delivery(draw(st.sampled_from(["opened", "clicked"])), draw(st.sampled_from(sent)), f"d{i}", minute)
        elif choice == "consent":
            record = consent(draw(st.sampled_from(["l1", "l2", ""])), draw(st.sampled_from(["subscribed", "unsubscribed"])), f"c{i}", minute)
        else:
            properties = draw(st.dictionaries(st.just("p"), values, max_size=1))
            record = ev(draw(st.sampled_from(EVENT_TYPES)), f"e{i}", minute, properties)
        records.append(record)
        out.append(("record", record))
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments=segment_sets(), history=steps())
def test_streaming_membership_equals_batch_evaluation_at_every_moment(
    segments: list[SegmentDefinition], history: list[tuple[str, Any]]
) -> None:
    compiled = compile_segments(segments)
    profile: dict[str, Any] = {}
    seen: list[Observation] = []
    now: int | None = None
    by_changes: set[str] = set()
    last_change_at = None
    for kind, item in history:
        if kind == "tick":
            profile, changes = advance(compiled, profile, SUB, item)
            if now is not None:
                now = max(now, to_ms(item))
        else:
            profile, changes = apply_record(compiled, profile, item)
            seen.append(item)
            now = item.at if now is None else max(now, item.at)
        for change in changes:
            assert (change.segment_id in by_changes) == (change.change == "exited")
            (by_changes.add if change.change == "entered" else by_changes.discard)(change.segment_id)
            assert last_change_at is None or change.occurred_at >= last_change_at
            last_change_at = change.occurred_at
            if change.cause_event_ids[0].startswith("expired@"):
                # Expiry at an intermediate moment: the batch answer at that moment agrees.
                moment = to_ms(change.occurred_at)
                assert evaluate_at(segments, seen, SUB, moment)[change.segment_id] == (change.change == "entered")
        if now is None:
            assert profile == {} and not changes
            continue
        expected = {sid for sid, member in evaluate_at(segments, seen, SUB, now).items() if member}
        assert set(profile["members"]) == expected, (kind, item, from_ms(now))
        assert by_changes == expected
