"""The send policy gate: suppression, consent, reputation, quiet hours, caps with priorities."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from domain import policy
from domain.events import DeliveryEvent, SendIntent
from domain.policy import Defer, GateInput, PolicyConfig, Send, Skip

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)  # 13:00 in Paris, 07:00 in New York
DOMAIN = "news.tidings.test"


def intent(n: int = 1, *, tz: str | None = None, transactional: bool = False, priority: int = 0,
           to: str = "ada@gmail.com") -> SendIntent:
    traits = {"email": to} | ({"timezone": tz} if tz else {})
    return SendIntent(
        intent_id=f"i-{n}", subscriber_id="s-1", journey_id="j", journey_version=1, step_id="st", template_id="t",
        to=to, variables={"subscriber": traits}, trigger_event_id="e", created_at=NOW,
        transactional=transactional, priority=priority,
    )


def decide(i: SendIntent, config: PolicyConfig = PolicyConfig(), now: datetime = NOW, **gate) -> policy.Decision:  # type: ignore[no-untyped-def]
    consent = gate.pop("consent", None)
    return policy.decide(i, now, config, GateInput(**gate), sending_domain=DOMAIN, may_send_marketing=consent)


def delivery(kind: str, bounce_type: str = "") -> DeliveryEvent:
    return DeliveryEvent(delivery_id="d", intent_id="i-0", subscriber_id="s-1", kind=kind, occurred_at=NOW,
                         bounce_type=bounce_type)


@pytest.mark.parametrize(
    "domain, provider",
    [("gmail.com", "gmail"), ("GoogleMail.com", "gmail"), ("ada@hotmail.com", "outlook"), ("live.com", "outlook"),
     ("msn.com", "outlook"), ("outlook.com", "outlook"), ("hotmail.co.uk", "outlook"), ("yahoo.fr", "yahoo"),
     ("aol.com", "yahoo"), ("ymail.com", "yahoo"), ("icloud.com", "apple"), ("me.com", "apple"), ("mac.com", "apple"),
     ("me.example.org", "other"), ("example.com", "other"), ("gmail.com.", "gmail")],
)
def test_provider_of(domain: str, provider: str) -> None:
    assert policy.provider_of(domain) == provider


def test_nothing_configured_sends() -> None:
    assert decide(intent()) == Send()


def test_hard_bounce_suppresses_everything_complaint_and_unsubscribe_only_marketing() -> None:
    bounced = policy.apply_delivery({}, delivery("bounced", "hard"))
    assert isinstance(decide(intent(), caps_state=bounced), Skip)
    assert isinstance(decide(intent(transactional=True), caps_state=bounced), Skip)
    for kind in ("complained", "unsubscribed"):
        state = policy.apply_delivery({}, delivery(kind))
        skipped = decide(intent(), caps_state=state)
        assert isinstance(skipped, Skip) and kind in skipped.reason
        assert decide(intent(transactional=True), caps_state=state) == Send()


def test_soft_bounces_and_opens_do_not_suppress_and_repeats_change_nothing() -> None:
    state: dict = {}
    for event in (delivery("bounced", "soft"), delivery("opened"), delivery("accepted")):
        assert policy.apply_delivery(state, event) is state
    once = policy.apply_delivery(state, delivery("complained"))
    assert policy.apply_delivery(once, delivery("complained")) is once


def test_consent_verdict_is_asked_for_marketing_only() -> None:
    asked = []

    def may_send(state: dict, list_id: str | None) -> tuple[bool, str]:
        asked.append((state, list_id))
        return False, "unsubscribed from all"

    assert decide(intent(), consent=may_send, consent_state={"status": "x"}) == Skip("consent: unsubscribed from all")
    assert decide(intent(transactional=True), consent=may_send, consent_state={}) == Send()
    assert asked == [({"status": "x"}, None)]


def test_quiet_hours_use_the_subscribers_zone_and_defer_to_their_end() -> None:
    config = PolicyConfig(quiet_hours=policy.parse_quiet_hours("21:00-08:00"))
    assert decide(intent(tz="Europe/Paris"), config) == Send()
    held = decide(intent(tz="America/New_York"), config)  # 07:00 there
    assert isinstance(held, Defer) and "America/New_York" in held.reason
    assert held.until == datetime(2026, 11, 2, 13, 0, tzinfo=timezone.utc)  # 08:00 EST
    assert decide(intent(tz="America/New_York", transactional=True), config) == Send()


def test_quiet_hours_skip_mode_and_unknown_zone_falls_back_to_default() -> None:
    config = PolicyConfig(quiet_hours=policy.parse_quiet_hours("06:00-08:00", "skip"), default_timezone="America/New_York")
    assert isinstance(decide(intent(tz="Not/AZone"), config), Skip)
    assert decide(intent(tz="Europe/Paris"), config) == Send()


def test_quiet_hours_defer_across_a_dst_change() -> None:
    # 2026-03-29 01:30 UTC is 02:30... Paris springs forward at 02:00 local on Mar 29.
    config = PolicyConfig(quiet_hours=policy.parse_quiet_hours("22:00-08:00"))
    now = datetime(2026, 3, 28, 23, 0, tzinfo=timezone.utc)  # 00:00 CET
    held = decide(intent(tz="Europe/Paris"), config, now)
    assert isinstance(held, Defer)
    assert held.until == datetime(2026, 3, 29, 6, 0, tzinfo=timezone.utc)  # 08:00 CEST


def test_frequency_cap_counts_marketing_sends_in_the_rolling_window() -> None:
    config = PolicyConfig(caps=policy.parse_caps("2/1d"))
    state: dict = {}
    for n in (1, 2):
        assert decide(intent(n), config, caps_state=state) == Send()
        state = policy.record_send(state, intent(n), NOW - timedelta(hours=n))
    capped = decide(intent(3), config, caps_state=state)
    assert isinstance(capped, Skip) and "2/1d" in capped.reason
    assert decide(intent(3, transactional=True), config, caps_state=state) == Send()
    assert decide(intent(3), config, NOW + timedelta(hours=23), caps_state=state) == Send()  # one slid out


def test_a_replayed_send_counts_once() -> None:
    state = policy.record_send({}, intent(1), NOW)
    assert policy.record_send(state, intent(1), NOW)["sends"] == state["sends"]
    assert policy.record_send({}, intent(1, transactional=True), NOW) == {}


def test_reserved_slots_are_left_for_higher_priority_journeys() -> None:
    config = PolicyConfig(caps=policy.parse_caps("3/7d+1"))
    state: dict = {}
    for n in (1, 2):
        state = policy.record_send(state, intent(n), NOW)
    low = decide(intent(3, priority=0), config, caps_state=state)
    assert isinstance(low, Skip) and "reserved" in low.reason
    assert decide(intent(3, priority=5), config, caps_state=state) == Send()


def test_paused_identity_or_provider_defers_even_transactional() -> None:
    paused = {f"{DOMAIN}|gmail": {"state": "paused", "until": (NOW + timedelta(hours=1)).isoformat()}}
    held = decide(intent(transactional=True), reputation=paused)
    assert isinstance(held, Defer) and held.until == NOW + timedelta(hours=1) and "gmail" in held.reason
    assert decide(intent(to="bob@example.com"), reputation=paused) == Send()
    all_paused = {f"{DOMAIN}|all": {"state": "paused"}}
    assert decide(intent(to="bob@example.com"), reputation=all_paused).until == NOW + policy.PAUSE_RECHECK  # type: ignore[union-attr]


def test_throttled_provider_spaces_sends_at_its_rate() -> None:
    reputation = {f"{DOMAIN}|gmail": {"state": "throttled", "rate_per_second": 2}}
    rate: dict = {}
    config = PolicyConfig()
    assert decide(intent(1), reputation=reputation, rate_state=rate) == Send()
    policy.take_rate_slot(rate, intent(1), NOW, reputation, sending_domain=DOMAIN, config=config)
    held = decide(intent(2), reputation=reputation, rate_state=rate)
    assert isinstance(held, Defer) and held.until == NOW + timedelta(seconds=0.5)
    assert decide(intent(2), now=NOW + timedelta(seconds=0.5), reputation=reputation, rate_state=rate) == Send()


@pytest.mark.parametrize(
    "caps, quiet, mode, zone, problem",
    [("3", "", "defer", "UTC", "LIMIT/WINDOW"), ("3/0d", "", "defer", "UTC", "positive"),
     ("3/1y", "", "defer", "UTC", "unit"), ("1/1d+2", "", "defer", "UTC", "reserves"),
     ("", "25:00-08:00", "defer", "UTC", "valid"), ("", "9pm-8am", "defer", "UTC", "HH:MM"),
     ("", "21:00-08:00", "later", "UTC", "quiet_hours_mode"), ("", "", "defer", "Mars/Base", "IANA")],
)
def test_bad_policy_settings_are_named(caps: str, quiet: str, mode: str, zone: str, problem: str) -> None:
    with pytest.raises(policy.PolicyConfigError, match=problem):
        policy.parse_caps(caps)
        policy.parse_quiet_hours(quiet, mode)
        policy.check_timezone(zone)
