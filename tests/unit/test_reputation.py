"""Reputation: event-time windows, rates, score, the state machine, warm-up and send admission."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from domain import reputation
from domain.events import DeliveryEvent, ReputationSnapshot
from domain.reputation import ReputationCommand, Thresholds
from projections import reputation_counts

T0 = datetime(2026, 11, 27, 12, 0, 30, tzinfo=timezone.utc)
SMALL = Thresholds(min_sent=100, min_accepted=100)
_n = 0


def delivery(kind: str, at: datetime = T0, to: str = "gmail.com", bounce_type: str = "", detail: str = "") -> DeliveryEvent:
    global _n
    _n += 1
    return DeliveryEvent(delivery_id=f"d{_n}", intent_id=f"i{_n}", subscriber_id=f"s{_n}", kind=kind,  # type: ignore[arg-type]
                         occurred_at=at, sending_domain="news.example", recipient_domain=to,
                         bounce_type=bounce_type, detail=detail)  # type: ignore[arg-type]


def fold_all(events: list[DeliveryEvent], windows: dict | None = None) -> dict:
    windows = windows or {}
    for event in events:
        windows = reputation.fold(windows, event)
    return windows


# -- counting and windows -----------------------------------------------------------------------


def test_each_kind_moves_its_counters():
    assert reputation.counters_of(delivery("accepted")) == ("sent", "accepted")
    assert reputation.counters_of(delivery("bounced", bounce_type="hard")) == ("sent", "hard_bounced")
    assert reputation.counters_of(delivery("bounced", bounce_type="")) == ("sent", "hard_bounced")
    assert reputation.counters_of(delivery("bounced", bounce_type="soft")) == ("sent", "soft_bounced")
    assert reputation.counters_of(delivery("ambiguous")) == ("sent",)
    assert reputation.counters_of(delivery("deferred")) == ("deferred",)
    assert reputation.counters_of(delivery("deferred", detail="policy: reputation:paused")) == ()
    assert reputation.counters_of(delivery("skipped")) == ()
    for kind in ("complained", "opened", "clicked", "unsubscribed"):
        assert reputation.counters_of(delivery(kind)) == (kind,)


def test_windows_follow_event_time_not_arrival_order():
    events = [delivery("accepted", T0 - timedelta(hours=h)) for h in (0, 0.5, 2, 30, 100, 200)]
    windows = fold_all(list(reversed(events)))
    assert reputation.window_end(windows) == T0
    assert reputation.window_counts(windows, "1h")["sent"] == 2
    assert reputation.window_counts(windows, "24h")["sent"] == 3
    assert reputation.window_counts(windows, "7d")["sent"] == 5  # 200h ago is outside 7 days


def test_window_is_whole_buckets_up_to_the_newest_event():
    start, end = reputation.window_bounds(T0, "1h")
    assert (start, end) == (datetime(2026, 11, 27, 11, 1, tzinfo=timezone.utc), T0)
    start, _ = reputation.window_bounds(T0, "24h")
    assert start == datetime(2026, 11, 26, 13, 0, tzinfo=timezone.utc)
    windows = fold_all([delivery("accepted", start), delivery("accepted", start - timedelta(seconds=1)), delivery("accepted")])
    assert reputation.window_counts(windows, "24h")["sent"] == 2


def test_old_buckets_are_dropped_and_late_events_beyond_retention_ignored():
    windows = fold_all([delivery("accepted", T0 - timedelta(days=8)), delivery("accepted")])
    assert len(windows["h"]) == 1 and len(windows["m"]) == 1
    late = reputation.fold(windows, delivery("accepted", T0 - timedelta(days=9)))
    assert reputation.window_counts(late, "7d")["sent"] == 1


def test_unknown_window_is_refused():
    with pytest.raises(reputation.ReputationConfigError, match="window '2h'"):
        reputation.window_counts({}, "2h")


def test_since_counts_only_buckets_starting_after_it():
    windows = fold_all([delivery("accepted", T0 - timedelta(minutes=5)), delivery("accepted", T0)])
    assert reputation.window_counts(windows, "1h", since=T0 - timedelta(minutes=3))["sent"] == 1


# -- rates and score ------------------------------------------------------------------------------


def counts(**values: int) -> dict[str, int]:
    return {**dict.fromkeys(reputation.COUNTERS, 0), **values}


def test_rates():
    r = reputation.rates(counts(sent=1000, accepted=950, hard_bounced=40, soft_bounced=10, complained=2, deferred=0))
    assert r["bounce_rate"] == 0.04 and r["soft_bounce_rate"] == 0.01
    assert r["complaint_rate"] == pytest.approx(2 / 950, abs=1e-6)
    assert reputation.rates(counts())["bounce_rate"] == 0.0


def test_score_anchors_match_the_thresholds():
    t = Thresholds()
    assert reputation.score(counts(sent=1000, accepted=1000), t) == 100
    assert reputation.score(counts(sent=1000, accepted=1000, complained=1), t) == 80  # 0.1% warn
    assert reputation.score(counts(sent=1000, accepted=1000, hard_bounced=50), t) == 50  # 5% throttle
    assert reputation.score(counts(sent=1000, accepted=1000, complained=5), t) == 20  # 0.5% pause
    assert reputation.score(counts(sent=1000, accepted=1000, hard_bounced=500), t) == 0


def test_no_score_and_no_judgement_below_minimum_volume():
    t = Thresholds()
    few = counts(sent=499, accepted=499, hard_bounced=200, complained=100)
    assert reputation.score(few, t) is None
    assert reputation.severity(few, t)[0] is None


# -- state machine --------------------------------------------------------------------------------


def bad_windows(sent: int, complained: int = 0, hard: int = 0, at: datetime = T0) -> dict:
    events = [delivery("accepted", at) for _ in range(sent - hard)]
    events += [delivery("bounced", at, bounce_type="hard") for _ in range(hard)]
    events += [delivery("complained", at) for _ in range(complained)]
    return fold_all(events)


@pytest.mark.parametrize(("complained", "hard", "expected"), [
    (0, 0, "healthy"), (1, 0, "warning"), (3, 0, "throttled"), (5, 0, "paused"),
    (0, 20, "warning"), (0, 50, "throttled"), (0, 100, "paused"),
])
def test_escalates_to_the_level_the_rates_reach(complained, hard, expected):
    # 1000 sent: 1 complaint = 0.1%, 3 = 0.3%, 5 = 0.5%; 20 hard bounces = 2%, 50 = 5%, 100 = 10%
    windows = bad_windows(1000, complained, hard)
    record, transitions = reputation.evaluate({}, windows, Thresholds(min_sent=100), T0)
    assert record["state"] == expected
    assert [(t.from_state, t.to_state) for t in transitions if t.traffic == "marketing"] == (
        [] if expected == "healthy" else [("healthy", expected)])


def test_below_minimum_volume_nothing_changes():
    windows = bad_windows(50, complained=20, hard=20)
    record, transitions = reputation.evaluate({}, windows, SMALL, T0)
    assert record["state"] == "healthy" and transitions == []
    warned = {**reputation.new_record(T0), "state": "warning"}
    record, transitions = reputation.evaluate(warned, windows, SMALL, T0)
    assert record["state"] == "warning" and transitions == []


def test_throttled_comes_down_when_rates_recover_but_paused_stays():
    clean = bad_windows(1000)
    throttled = {**reputation.new_record(T0), "state": "throttled"}
    record, transitions = reputation.evaluate(throttled, clean, SMALL, T0)
    assert record["state"] == "healthy" and transitions[0].to_state == "healthy"
    paused = {**reputation.new_record(T0), "state": "paused"}
    record, transitions = reputation.evaluate(paused, clean, SMALL, T0 + timedelta(days=3))
    assert record["state"] == "paused" and transitions == []


def test_coming_down_needs_rates_20_percent_below_the_threshold():
    throttled = {**reputation.new_record(T0), "state": "throttled"}
    hovering = bad_windows(1000, complained=3)  # 0.30% -> 0.299% after a few more deliveries
    record, transitions = reputation.evaluate(throttled, fold_all([delivery("accepted")] * 4, hovering), SMALL, T0)
    assert record["state"] == "throttled" and transitions == []
    lower = fold_all([delivery("accepted") for _ in range(300)], hovering)  # 3/1300 = 0.23% < 0.8 * 0.3%
    record, transitions = reputation.evaluate(throttled, lower, SMALL, T0)
    assert record["state"] == "warning" and transitions[0].from_state == "throttled"


def test_paused_resumes_after_cool_down_when_configured():
    paused = {**reputation.new_record(T0), "state": "paused"}
    windows = bad_windows(1000, complained=10)
    cool = Thresholds(min_sent=100, cooldown=timedelta(minutes=30))
    record, _ = reputation.evaluate(paused, windows, cool, T0 + timedelta(minutes=29))
    assert record["state"] == "paused"
    record, transitions = reputation.evaluate(paused, windows, cool, T0 + timedelta(minutes=30))
    assert record["state"] == "healthy" and transitions[0].reason.startswith("cool-down")
    # the bad minute before the resume is no longer judged, so it does not pause again at once
    again, transitions = reputation.evaluate(record, windows, cool, T0 + timedelta(minutes=31))
    assert again["state"] == "healthy" and transitions == []


def test_operator_resume_judges_only_what_follows():
    windows = bad_windows(1000, complained=10)
    paused, _ = reputation.evaluate({}, windows, SMALL, T0)
    assert paused["state"] == "paused"
    resumed, transitions = reputation.resume(paused, T0 + timedelta(seconds=5), "resumed by ops")
    assert [(t.from_state, t.to_state) for t in transitions] == [("paused", "healthy")]
    record, _ = reputation.evaluate(resumed, windows, SMALL, T0 + timedelta(seconds=10))
    assert record["state"] == "healthy"
    later = T0 + timedelta(minutes=2)
    worse = fold_all([delivery("accepted", later) for _ in range(200)] + [delivery("complained", later)] * 2, windows)
    record, _ = reputation.evaluate(resumed, worse, SMALL, later)
    assert record["state"] == "paused"


def test_transactional_pauses_only_on_hard_bounces_above_its_own_threshold():
    complaints = bad_windows(1000, complained=50)
    record, transitions = reputation.evaluate({}, complaints, SMALL, T0)
    assert record["state"] == "paused" and record["tx_state"] == "healthy"
    bounces = bad_windows(1000, hard=200)
    record, transitions = reputation.evaluate({}, bounces, SMALL, T0)
    assert record["tx_state"] == "paused"
    assert ("transactional", "paused") in [(t.traffic, t.to_state) for t in transitions]


# -- thresholds from settings ---------------------------------------------------------------------


def test_parse_thresholds():
    t = reputation.parse_thresholds("complaint=0.2%/0.4%/0.6%, bounce=0.01/0.03/0.08, min_sent=20,"
                                    "min_accepted=20, throttle_per_minute=5, transactional_bounce=25%", 60)
    assert t.complaint == pytest.approx((0.002, 0.004, 0.006)) and t.bounce == (0.01, 0.03, 0.08)
    assert (t.min_sent, t.min_accepted, t.throttle_per_minute) == (20, 20, 5)
    assert t.transactional_bounce == 0.25 and t.cooldown == timedelta(seconds=60)
    assert reputation.parse_thresholds("") == Thresholds()
    skip = reputation.parse_thresholds("on_pause=skip")
    paused = {**reputation.new_record(T0), "state": "paused"}
    assert reputation.admit_send(reputation.control_of(paused, skip, T0), False, 0, 0) == ("skip", "reputation:paused")


@pytest.mark.parametrize(("text", "message"), [
    ("complaint=0.1%/0.3%", "warn/throttle/pause"),
    ("bounce=5%/2%/10%", "warn < throttle < pause"),
    ("bounce=2%/5%/abc", "not a rate"),
    ("bounce=2%/5%/200%", "at most 100%"),
    ("min_sent=0", "positive integer"),
    ("min_sent", "name=value"),
    ("speed=3", "unknown name 'speed'"),
    ("on_pause=drop", "'defer' or 'skip'"),
])
def test_bad_thresholds_are_refused_with_the_field_named(text, message):
    with pytest.raises(reputation.ReputationConfigError, match=message):
        reputation.parse_thresholds(text)


def test_negative_cooldown_is_refused():
    with pytest.raises(reputation.ReputationConfigError, match="cooldown"):
        reputation.parse_thresholds("", -1)


# -- warm-up --------------------------------------------------------------------------------------


def test_parse_plan():
    assert reputation.parse_plan("50,100*2, 200") == [50, 100, 100, 200]


@pytest.mark.parametrize("text", ["", "0,10", "10,x", "10*0", "-5"])
def test_bad_plan_is_refused(text):
    with pytest.raises(reputation.ReputationConfigError, match="warm-up plan"):
        reputation.parse_plan(text)


def test_warmup_advances_a_step_a_day_only_after_a_healthy_day():
    plan = reputation.start_warmup([10, 20, 40], T0)
    assert reputation.warmup_cap(plan) == 10
    same_day = reputation.roll_warmup(plan, "healthy", T0 + timedelta(hours=3))
    assert reputation.warmup_cap(same_day) == 10
    day2 = reputation.roll_warmup(same_day, "healthy", T0 + timedelta(days=1))
    assert reputation.warmup_cap(day2) == 20
    troubled = reputation.roll_warmup(day2, "warning", T0 + timedelta(days=1, hours=1))
    day3 = reputation.roll_warmup(troubled, "healthy", T0 + timedelta(days=2))
    assert reputation.warmup_cap(day3) == 20  # held: day 2 was not healthy throughout
    day4 = reputation.roll_warmup(day3, "healthy", T0 + timedelta(days=3))
    day5 = reputation.roll_warmup(day4, "healthy", T0 + timedelta(days=4))
    assert reputation.warmup_cap(day4) == 40 and reputation.warmup_cap(day5) is None  # plan complete
    assert reputation.roll_warmup(None, "healthy", T0) is None


# -- admission ------------------------------------------------------------------------------------


def control(state: str = "healthy", **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"state": state, "max_per_minute": None, "daily_cap": None, "transactional_state": "healthy", **extra}


def test_admit_send():
    assert reputation.admit_send(None, False, 10**6, 10**6) == ("send", "")
    assert reputation.admit_send(control(), False, 10**6, 10**6) == ("send", "")
    assert reputation.admit_send(control("paused"), False, 0, 0) == ("defer", "reputation:paused")
    assert reputation.admit_send(control("paused", on_pause="skip"), False, 0, 0) == ("skip", "reputation:paused")
    assert reputation.admit_send(control("throttled", max_per_minute=5), False, 4, 0) == ("send", "")
    assert reputation.admit_send(control("throttled", max_per_minute=5), False, 5, 0) == ("defer", "reputation:throttled")
    assert reputation.admit_send(control(daily_cap=10), False, 0, 10) == ("defer", "reputation:warmup")


def test_transactional_ignores_marketing_pause_rate_and_warmup():
    assert reputation.admit_send(control("paused", max_per_minute=1, daily_cap=1), True, 9, 9) == ("send", "")
    assert reputation.admit_send(control(transactional_state="paused"), True, 0, 0) == ("defer", "reputation:paused")


def test_defer_until():
    now = datetime(2026, 11, 27, 23, 59, 30, tzinfo=timezone.utc)
    assert reputation.defer_until(control(), "reputation:warmup", now) == datetime(2026, 11, 28, tzinfo=timezone.utc)
    assert reputation.defer_until(control(), "reputation:throttled", now) == datetime(2026, 11, 28, tzinfo=timezone.utc)
    assert reputation.defer_until(control("paused"), "reputation:paused", now) == now + timedelta(seconds=60)
    assert reputation.defer_until(control("paused", recheck_seconds=2), "reputation:paused", now) == now + timedelta(seconds=2)
    soon = (now + timedelta(seconds=10)).isoformat()
    assert reputation.defer_until(control("paused", resume_at=soon), "reputation:paused", now) == now + timedelta(seconds=10)


def test_send_counters_reset_by_minute_and_day():
    counter: dict = {}
    for _ in range(3):
        counter = reputation.count_send(counter, T0)
    assert reputation.sent_counts(counter, T0) == (3, 3)
    assert reputation.sent_counts(counter, T0 + timedelta(minutes=1)) == (0, 3)
    assert reputation.sent_counts(counter, T0 + timedelta(days=1)) == (0, 0)
    assert reputation.count_send(counter, T0 + timedelta(days=1))["today"] == 1


# -- contracts and the projection ----------------------------------------------------------------


def test_command_contract_rejects_bad_input():
    with pytest.raises(ValueError, match="positive"):
        ReputationCommand(command_id="c1", action="warmup", sending_domain="d", plan=[0], issued_at=T0)
    with pytest.raises(ValueError):
        ReputationCommand(command_id="c1", action="explode", sending_domain="d", issued_at=T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ReputationCommand(command_id="c1", action="resume", sending_domain="", issued_at=T0)


def test_projection_counts_identity_and_provider_and_snapshots_roundtrip():
    state: dict = {}
    for event in [delivery("accepted", to="gmail.com"), delivery("accepted", to="outlook.com"),
                  delivery("complained", to="gmail.com")]:
        state = reputation_counts.apply(state, event)
    assert set(state["providers"]) == {"all", "gmail", "outlook"}
    snap = reputation_counts.snapshot("news.example", "gmail", state, SMALL, T0)
    assert (snap.sent, snap.accepted, snap.complained, snap.state) == (1, 1, 1, "healthy")
    assert snap.windows["1h"]["complaint_rate"] == 1.0 and snap.score is None
    assert snap.control["state"] == "healthy"
    assert ReputationSnapshot.from_bytes(snap.to_bytes()) == snap


def test_projection_applies_each_command_once():
    state: dict = {}
    warmup = ReputationCommand(command_id="c1", action="warmup", sending_domain="news.example", plan=[5, 10], issued_at=T0)
    state, _ = reputation_counts.apply_command(state, warmup, T0)
    assert reputation_counts.snapshot("news.example", "all", state, SMALL, T0).control["daily_cap"] == 5
    state["providers"]["all"]["record"]["state"] = "paused"
    resume = ReputationCommand(command_id="c2", action="resume", sending_domain="news.example", issued_at=T0)
    state, transitions = reputation_counts.apply_command(state, resume, T0)
    assert [(p, t.to_state) for p, t in transitions] == [("all", "healthy")]
    state["providers"]["all"]["record"]["state"] = "paused"
    again, transitions = reputation_counts.apply_command(state, resume, T0)
    assert transitions == [] and again["providers"]["all"]["record"]["state"] == "paused"
    clear = ReputationCommand(command_id="c3", action="warmup-clear", sending_domain="news.example", issued_at=T0)
    state, _ = reputation_counts.apply_command(state, clear, T0)
    assert reputation_counts.snapshot("news.example", "all", state, SMALL, T0).control["daily_cap"] is None
