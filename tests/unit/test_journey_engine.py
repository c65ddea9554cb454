"""The journey engine: waits and timers, wait_for paths, branches, splits, goals, exit rules, keyed
entry, re-entry, versions, and that firing a timer twice does nothing the second time."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from domain.events import EventEnvelope, SegmentMembershipChanged
from domain.journeys import (
    JourneyCatalog,
    apply_event,
    apply_segment_change,
    fire_due,
    next_due,
    parse_journey_data,
    send_intent_id,
    split_bucket,
    timers_of,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)  # a Monday
EMAIL = {"email": "ada@example.test", "first_name": "Ada"}


def ev(type_: str, event_id: str, at: datetime = T0, subscriber: str = "sub-1", traits: dict[str, Any] | None = None,
       **properties: Any) -> EventEnvelope:
    return EventEnvelope(
        event_id=event_id, type=type_, subscriber_id=subscriber, occurred_at=at, received_at=at,
        properties=properties, context={"traits": traits} if traits else {},
    )


def define(version: int = 1, **body: Any):  # type: ignore[no-untyped-def]
    data = {"id": "j", "trigger": {"event": "go"}, **body}
    return parse_journey_data(data, version=version)


class Run:
    """One subscriber driven through the engine, collecting everything it decides."""

    def __init__(self, *journeys: Any, members: set[str] | None = None) -> None:
        self.catalog = journeys[0] if isinstance(journeys[0], JourneyCatalog) else JourneyCatalog(journeys)
        self.state: dict[str, Any] = {}
        self.members = members or set()
        self.intents: list[Any] = []
        self.decisions: list[Any] = []
        self.events: list[Any] = []

    def take(self, outcome: Any) -> Any:
        self.state = outcome.state
        self.intents += outcome.intents
        self.decisions += outcome.decisions
        self.events += outcome.events
        assert json.loads(json.dumps(self.state)) == self.state
        return outcome

    def event(self, event: EventEnvelope, now: datetime | None = None) -> Any:
        return self.take(apply_event(self.catalog, self.state, event, now or event.occurred_at, self.members))

    def change(self, segment: str, change: str, now: datetime, change_id: str = "c1") -> Any:
        message = SegmentMembershipChanged(
            change_id=change_id, segment_id=segment, segment_version=1, subscriber_id="sub-1", change=change,
            occurred_at=now,
        )
        return self.take(apply_segment_change(self.catalog, self.state, message, now, self.members))

    def fire(self, now: datetime) -> Any:
        return self.take(fire_due(self.catalog, self.state, now, self.members))

    def sent(self) -> list[str]:
        return [i.template_id for i in self.intents]

    def kinds(self) -> list[tuple[str, str, str]]:
        return [(d.kind, d.step_id, d.reason) for d in self.decisions]


def test_wait_sets_a_timer_that_fires_once_and_not_early() -> None:
    run = Run(define(steps=[{"wait": "10m"}, {"send": "t"}]))
    run.event(ev("go", "e1", traits=EMAIL))

    due = T0 + timedelta(minutes=10)
    assert timers_of(run.state) == {next(iter(timers_of(run.state))): due.isoformat()}
    assert next_due(run.state) == due
    assert run.fire(due - timedelta(seconds=1)).state is not None and run.sent() == []
    run.fire(due)
    assert run.sent() == ["t"] and timers_of(run.state) == {}
    before = run.state
    assert run.fire(due + timedelta(hours=1)).state is before  # a doubled or replayed timer does nothing
    assert run.sent() == ["t"]
    assert ("wait", "s1", f"until:{due.isoformat()}") in run.kinds()
    assert ("resumed", "s1", "wait_over") in run.kinds()


def test_a_late_timer_still_fires_with_the_late_clock() -> None:
    run = Run(define(steps=[{"wait": "10m"}, {"send": "t"}]))
    run.event(ev("go", "e1", traits=EMAIL))

    run.fire(T0 + timedelta(minutes=40))

    assert run.sent() == ["t"] and run.intents[0].created_at == T0 + timedelta(minutes=40)


def test_wait_for_event_takes_the_event_path_and_cancels_the_timeout() -> None:
    journey = define(steps=[{"wait_for": {"event": "email.clicked", "timeout": "1d"},
                             "on_event": [{"send": "thanks"}], "on_timeout": [{"send": "nudge"}]}])
    run = Run(journey)
    run.event(ev("go", "e1", traits=EMAIL))
    run.event(ev("email.clicked", "e2", T0 + timedelta(hours=2)))
    run.fire(T0 + timedelta(days=2))

    assert run.sent() == ["thanks"]
    assert ("resumed", "s1", "event:email.clicked") in run.kinds()
    assert timers_of(run.state) == {}


def test_wait_for_timeout_takes_the_timeout_path() -> None:
    journey = define(steps=[{"wait_for": {"event": "email.clicked", "timeout": "1d"},
                             "on_event": [{"send": "thanks"}], "on_timeout": [{"send": "nudge"}]}, {"send": "after"}])
    run = Run(journey)
    run.event(ev("go", "e1", traits=EMAIL))
    run.fire(T0 + timedelta(days=1))

    assert run.sent() == ["nudge", "after"]


def test_wait_for_segment_change() -> None:
    journey = define(steps=[{"wait_for": {"segment": "vip", "timeout": "1d"}, "on_event": [{"send": "welcome-vip"}]}])
    run = Run(journey)
    run.event(ev("go", "e1", traits=EMAIL))
    run.change("vip", "entered", T0 + timedelta(hours=1))

    assert run.sent() == ["welcome-vip"]


def test_branch_on_segment_and_attribute_and_trigger() -> None:
    journey = define(steps=[
        {"branch": {"if": {"segment": "vip"}, "then": [{"send": "vip"}], "else": [{"send": "regular"}]}},
        {"branch": {"if": {"all": [{"attribute": {"first_name": "Ada"}}, {"trigger": {"total": {"gt": 100}}}]},
                    "then": [{"send": "big-order"}]}},
    ])
    vip = Run(journey, members={"vip"})
    vip.event(ev("go", "e1", traits=EMAIL, total=150))
    other = Run(journey)
    other.event(ev("go", "e1", traits=EMAIL, total=50))

    assert vip.sent() == ["vip", "big-order"]
    assert other.sent() == ["regular"]
    assert ("branch", "s1", "else") in other.kinds()


def test_split_is_stable_and_holdout_is_tracked_not_sent() -> None:
    journey = define(steps=[{"split": [{"name": "a", "percent": 50, "steps": [{"send": "a"}]},
                                       {"name": "hold", "percent": 50, "holdout": True}]}])
    outcomes = {}
    for n in range(200):
        run = Run(journey)
        run.event(ev("go", f"e{n}", subscriber=f"sub-{n}", traits=EMAIL))
        outcomes[n] = (run.sent(), [d.kind for d in run.decisions])
        again = Run(journey)
        again.event(ev("go", f"x{n}", subscriber=f"sub-{n}", traits=EMAIL))
        assert again.sent() == run.sent()  # same person, same variant
    held = [n for n, (sent, kinds) in outcomes.items() if "holdout" in kinds]
    assert 70 < len(held) < 130
    assert all(outcomes[n][0] == [] for n in held)
    assert all(split_bucket(f"sub-{n}", "j") >= 50 for n in held)


def test_goal_within_window_counts_once_and_exits() -> None:
    journey = define(goal={"event": "order.placed", "within": "3d"}, steps=[{"wait": "1d"}, {"send": "t"}])
    run = Run(journey)
    run.event(ev("go", "e1", traits=EMAIL))
    run.event(ev("order.placed", "e2", T0 + timedelta(hours=5)))
    run.event(ev("order.placed", "e3", T0 + timedelta(hours=6)))
    run.fire(T0 + timedelta(days=2))

    assert [d.kind for d in run.decisions].count("goal") == 1
    assert ("exited", "s1", "goal_reached") in run.kinds()
    assert run.sent() == [] and run.state["active"] == {}


def test_goal_after_the_steps_still_counts_then_window_closes() -> None:
    journey = define(goal={"event": "order.placed", "within": "3d"}, steps=[{"send": "t"}])
    counted = Run(journey)
    counted.event(ev("go", "e1", traits=EMAIL))
    counted.event(ev("order.placed", "e2", T0 + timedelta(days=1)))
    late = Run(journey)
    late.event(ev("go", "e1", traits=EMAIL))
    late.event(ev("order.placed", "e2", T0 + timedelta(days=4)))

    assert "goal" in [d.kind for d in counted.decisions]
    assert "goal" not in [d.kind for d in late.decisions] and late.state["active"] == {}


def test_keyed_entry_exit_rule_matching_the_key() -> None:
    journey = define(
        trigger={"event": "cart.updated", "key": "properties.cart_id"},
        exit_when=[{"event": "order.placed", "match_key": True}],
        steps=[{"wait": "1h"}, {"send": "reminder"}],
    )
    run = Run(journey)
    run.event(ev("cart.updated", "e1", traits=EMAIL, cart_id="c1"))
    run.event(ev("cart.updated", "e2", T0 + timedelta(minutes=1), cart_id="c2"))
    run.event(ev("cart.updated", "e3", T0 + timedelta(minutes=2), cart_id="c1"))  # same cart: already enrolled
    run.event(ev("order.placed", "e4", T0 + timedelta(minutes=30), cart_id="c1"))
    run.fire(T0 + timedelta(hours=2))

    assert [i.intent_id for i in run.intents] == [send_intent_id("j", 1, "s2", "sub-1", "c2")]
    assert ("skipped", "", "already_enrolled") in run.kinds()
    assert ("exited", "s1", "exit_when:order.placed") in run.kinds()


def test_missing_entry_key_is_a_skip() -> None:
    run = Run(define(trigger={"event": "cart.updated", "key": "properties.cart_id"}, steps=[{"send": "t"}]))
    run.event(ev("cart.updated", "e1", traits=EMAIL))

    assert run.kinds() == [("skipped", "", "no_entry_key")] and run.sent() == []


def test_exit_on_leaving_a_segment() -> None:
    run = Run(define(exit_when=[{"left_segment": "subscribed"}], steps=[{"wait": "1d"}, {"send": "t"}]))
    run.event(ev("go", "e1", traits=EMAIL))
    run.change("subscribed", "exited", T0 + timedelta(hours=1))
    run.fire(T0 + timedelta(days=2))

    assert run.sent() == [] and ("exited", "s1", "left_segment:subscribed") in run.kinds()


def test_re_entry_after_a_duration_and_entry_limit() -> None:
    run = Run(define(re_entry={"after": "7d"}, entry_limit=2, steps=[{"send": "t"}]))
    for n, days in enumerate([0, 1, 8, 20]):
        run.event(ev("go", f"e{n}", T0 + timedelta(days=days), traits=EMAIL))

    assert len(run.intents) == 2
    reasons = [d.reason for d in run.decisions if d.kind == "skipped"]
    assert reasons == ["re_entry_too_soon", "entry_limit_reached"]
    assert run.intents[1].intent_id == send_intent_id("j", 1, "s1", "sub-1", "sub-1#2")


def test_segment_trigger_enters_on_the_change() -> None:
    run = Run(define(trigger={"segment": "buyers"}, steps=[{"send": "review"}]))
    run.event(ev("identify", "e0", traits=EMAIL))
    run.change("buyers", "entered", T0 + timedelta(minutes=1), change_id="ch-1")
    run.change("buyers", "entered", T0 + timedelta(minutes=1), change_id="ch-1")  # redelivered

    assert run.sent() == ["review"]
    assert run.intents[0].trigger_event_id == "ch-1"
    assert run.intents[0].variables["event"] == {"type": "segment.entered", "properties": {"segment_id": "buyers"}}


def test_set_attribute_updates_traits_and_emits_an_internal_identify_once() -> None:
    run = Run(define(steps=[{"set": {"vip": True}}, {"branch": {"if": {"attribute": {"vip": True}}, "then": [{"send": "vip"}]}},
                            {"webhook": "https://hooks.example.test/x"}]))
    run.event(ev("go", "e1", traits=EMAIL))
    (internal,) = run.events
    before = run.state
    run.event(internal)

    assert run.sent() == ["vip"] and run.state["traits"]["vip"] is True
    assert internal.source == "internal" and internal.traits == {"vip": True}
    assert run.state is before  # the looped-back identify is already applied
    assert ("webhook", "s3", "POST https://hooks.example.test/x") in run.kinds()


def test_exit_step_ends_the_journey() -> None:
    run = Run(define(steps=[{"branch": {"if": {"segment": "vip"}, "then": [{"exit": "vip_elsewhere"}]}}, {"send": "t"}]),
              members={"vip"})
    run.event(ev("go", "e1", traits=EMAIL))

    assert run.sent() == [] and ("exited", "s1.then.1", "vip_elsewhere") in run.kinds()


def test_wait_until_local_time_on_allowed_weekdays() -> None:
    journey = define(steps=[{"wait_until": {"time": "09:30", "weekdays": ["wed"]}}, {"send": "t"}])
    run = Run(journey)
    run.event(ev("go", "e1", traits={**EMAIL, "timezone": "America/New_York"}))

    # Monday 08:00 UTC -> Wednesday 09:30 in New York (EST, UTC-5) = 14:30 UTC
    assert next_due(run.state) == datetime(2026, 3, 4, 14, 30, tzinfo=timezone.utc)


def test_wait_until_date_attribute_with_offset_and_missing_attribute() -> None:
    journey = define(steps=[{"wait_until": {"attribute": "renews_on", "offset": "-2d"}}, {"send": "t"}])
    run = Run(journey)
    run.event(ev("go", "e1", traits={**EMAIL, "renews_on": "2026-03-10"}))
    missing = Run(journey)
    missing.event(ev("go", "e1", traits=EMAIL))
    past = Run(journey)
    past.event(ev("go", "e1", traits={**EMAIL, "renews_on": "2026-01-01"}))

    assert next_due(run.state) == datetime(2026, 3, 8, tzinfo=timezone.utc)
    assert missing.sent() == ["t"] and ("skipped", "s1", "no_date_attribute:renews_on") in missing.kinds()
    assert past.sent() == ["t"] and ("wait", "s1", "already_passed") in past.kinds()


@pytest.mark.parametrize(
    ("policy", "sent", "reason"),
    [("stay", ["old"], None), ("move", ["new"], "moved_to:v2"), ("exit", [], "version_replaced:v2")],
)
def test_publishing_a_new_version_keeps_moves_or_exits_in_flight_enrollments(policy: str, sent: list[str], reason: str | None) -> None:
    v1 = define(steps=[{"id": "w", "wait": "1h"}, {"id": "last", "send": "old"}])
    v2 = define(version=2, on_publish=policy, steps=[{"id": "w", "wait": "1h"}, {"id": "last", "send": "new"}])
    catalog = JourneyCatalog([v1])
    run = Run(catalog)
    run.event(ev("go", "e1", traits=EMAIL))
    catalog.update([v2])
    run.fire(T0 + timedelta(hours=1))

    assert run.sent() == sent
    if reason:
        assert reason in [d.reason for d in run.decisions]
    if sent:
        assert run.intents[0].journey_version == (1 if policy == "stay" else 2)


def test_new_entries_use_the_latest_version() -> None:
    catalog = JourneyCatalog([define(steps=[{"send": "old"}], re_entry="always")])
    run = Run(catalog)
    run.event(ev("go", "e1", traits=EMAIL))
    catalog.update([define(version=2, steps=[{"send": "new"}], re_entry="always")])
    run.event(ev("go", "e2", T0 + timedelta(minutes=1)))

    assert run.sent() == ["old", "new"]


def test_unpublished_journey_exits_its_enrollments() -> None:
    catalog = JourneyCatalog([define(steps=[{"wait": "1h"}, {"send": "t"}])])
    run = Run(catalog)
    run.event(ev("go", "e1", traits=EMAIL))
    catalog.update([])
    run.fire(T0 + timedelta(hours=1))

    assert run.sent() == [] and ("exited", "s1", "journey_unpublished") in run.kinds()


def test_decision_ids_are_unique_and_replay_gives_the_same_ids() -> None:
    journey = define(goal={"event": "order.placed", "within": "3d"}, steps=[
        {"wait": "1h"}, {"send": "a"}, {"wait_for": {"event": "email.clicked", "timeout": "1d"}, "on_timeout": [{"send": "b"}]},
    ])

    def replay() -> tuple[list[str], list[str]]:
        run = Run(journey)
        run.event(ev("go", "e1", traits=EMAIL))
        run.fire(T0 + timedelta(hours=1))
        run.fire(T0 + timedelta(days=2))
        run.event(ev("order.placed", "e2", T0 + timedelta(days=2, hours=1)))
        return [i.intent_id for i in run.intents], [d.decision_id for d in run.decisions]

    first, second = replay(), replay()
    assert first == second and len(first[0]) == 2
    assert len(set(first[1])) == len(first[1])


def test_states_from_the_first_format_keep_their_entry_history() -> None:
    run = Run(define(steps=[{"send": "t"}]))
    run.state = {"traits": EMAIL, "enrollments": {"j": {"version": 1, "entered_at": T0.isoformat(), "entries": 1,
                                                        "entry_key": "sub-1"}}, "recent": []}
    run.event(ev("go", "e9", T0 + timedelta(days=1)))

    assert run.sent() == [] and run.kinds() == [("skipped", "", "re_entry_never")]
    assert "enrollments" not in run.state
