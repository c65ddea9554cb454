from datetime import datetime, timedelta, timezone

from domain import send_ledger
from domain.events import SendIntent
from domain.send_ledger import RetryPolicy, admit, remember, sending_entry, settle
from domain.smtp_replies import Accepted, Ambiguous, Bounced, Deferred

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
POLICY = RetryPolicy(base=timedelta(seconds=60), cap=timedelta(hours=1), max_age=timedelta(hours=24))


def intent(intent_id: str = "i1") -> SendIntent:
    return SendIntent(
        intent_id=intent_id, subscriber_id="u1", journey_id="welcome", journey_version=1, step_id="s1",
        template_id="welcome", to="ada@gmail.com", trigger_event_id="e1", created_at=NOW,
    )


def settle_with(outcome, entry=None, now=NOW):
    entry = entry or sending_entry(None, 1, NOW)
    return settle(intent(), outcome, entry, now, POLICY, sending_domain="news.example", message_id="<m@x>")


def test_a_new_intent_is_sent_and_a_settled_one_never_again():
    assert admit(None, NOW).action == "send"
    for state in ("accepted", "bounced", "ambiguous", "skipped"):
        assert admit({"state": state, "attempt": 1}, NOW).action == "duplicate"


def test_an_intent_found_in_flight_after_a_crash_is_ambiguous_not_resent():
    admission = admit(sending_entry(None, 2, NOW), NOW)
    assert admission.action == "ambiguous" and admission.attempt == 2


def test_accepted_outcome_records_a_delivery_with_the_recipient_domain():
    settled = settle_with(Accepted(250, "ok"))
    assert settled.entry["state"] == "accepted" and settled.retry_at is None
    assert settled.delivery.kind == "accepted" and settled.delivery.recipient_domain == "gmail.com"
    assert settled.delivery.sending_domain == "news.example"
    assert settled.delivery.delivery_id == settle_with(Accepted(250, "ok")).delivery.delivery_id


def test_hard_and_soft_bounces_are_told_apart():
    assert settle_with(Bounced(550, "5.1.1", "no such user", hard=True)).delivery.bounce_type == "hard"
    assert settle_with(Bounced(552, "5.2.2", "mailbox full", hard=False)).entry["bounce_type"] == "soft"


def test_deferral_schedules_a_jittered_retry_that_is_admitted_only_when_due():
    settled = settle_with(Deferred(451, "4.7.1", "greylisted"))
    assert settled.entry["state"] == "deferred" and settled.delivery.kind == "deferred"
    delay = settled.retry_at - NOW
    assert timedelta(seconds=48) <= delay <= timedelta(seconds=72)
    assert admit(settled.entry, NOW + delay - timedelta(seconds=1)).action == "not_due"
    retry = admit(settled.entry, NOW + delay)
    assert retry.action == "send" and retry.attempt == 2


def test_backoff_doubles_and_is_capped():
    delays = [POLICY.delay("i1", attempt) for attempt in range(1, 12)]
    assert delays[1] > delays[0] * 1.3
    assert max(delays) <= timedelta(hours=1) * 1.2


def test_deferral_past_the_maximum_age_becomes_a_soft_bounce():
    old = {**sending_entry(None, 9, NOW), "first_at": (NOW - timedelta(hours=23, minutes=59)).isoformat()}
    settled = settle_with(Deferred(421, "", "try later"), entry=old)
    assert settled.entry["state"] == "bounced" and settled.delivery.bounce_type == "soft"
    assert settled.retry_at is None and "gave up after 9 attempts" in settled.delivery.detail


def test_ambiguous_outcome_is_recorded_as_such():
    settled = settle_with(Ambiguous("connection lost after DATA"))
    assert settled.entry["state"] == "ambiguous" and settled.delivery.kind == "ambiguous"


def test_the_ledger_stays_bounded_but_keeps_open_entries():
    entries: dict = {}
    entries = remember(entries, "open", sending_entry(None, 1, NOW))
    for n in range(send_ledger.MAX_ENTRIES_PER_SUBSCRIBER + 50):
        entries = remember(entries, f"i{n}", {"state": "accepted"})
    assert len(entries) <= send_ledger.MAX_ENTRIES_PER_SUBSCRIBER + 1
    assert "open" in entries
