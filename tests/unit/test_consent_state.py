from datetime import datetime, timezone

import pytest

from domain.consent import fold_consent, fold_delivery, may_send_marketing
from domain.events import ConsentChanged, DeliveryEvent

AT = datetime(2026, 11, 1, tzinfo=timezone.utc)


def change(n, status, list_id="", reason=""):
    return ConsentChanged(consent_event_id=f"c{n}", subscriber_id="s", status=status, list_id=list_id,
                          reason=reason, occurred_at=AT)


def fold(*changes):
    state = {}
    for c in changes:
        state = fold_consent(state, c)
    return state


def test_an_unknown_subscriber_may_be_sent_marketing():
    assert may_send_marketing({}, None) == (True, "unknown")


def test_a_registered_subscriber_may_be_sent_marketing():
    assert may_send_marketing(fold(change(1, "subscribed", reason="registered")), None) == (True, "subscribed")


def test_a_global_unsubscribe_refuses_marketing_and_a_profile_update_does_not_undo_it():
    state = fold(change(1, "subscribed", reason="registered"), change(2, "unsubscribed", reason="one-click"),
                 change(3, "subscribed", reason="profile-updated"))
    assert may_send_marketing(state, None) == (False, "unsubscribed")


def test_a_list_unsubscribe_refuses_that_list_only():
    state = fold(change(1, "subscribed", reason="registered"), change(2, "unsubscribed", "news"))
    assert may_send_marketing(state, "news") == (False, "unsubscribed:news")
    assert may_send_marketing(state, "offers") == (True, "subscribed")


def test_pending_double_opt_in_refuses_until_confirmed():
    pending = fold(change(1, "unsubscribed", "news", "double-opt-in-pending"))
    assert may_send_marketing(pending, "news") == (False, "pending:news")
    confirmed = fold_consent(pending, change(2, "subscribed", "news", "double-opt-in-confirmed"))
    assert may_send_marketing(confirmed, "news") == (True, "subscribed")


def test_suppression_refuses_until_an_operator_lifts_it_and_lifting_does_not_resubscribe():
    state = fold(change(1, "subscribed", reason="registered"), change(2, "unsubscribed"), change(3, "suppressed", reason="complaint"))
    assert may_send_marketing(state, None) == (False, "suppressed:complaint")
    lifted = fold_consent(state, change(4, "subscribed", reason="unsuppressed"))
    assert may_send_marketing(lifted, None) == (False, "unsubscribed")


def test_erasure_refuses_and_keeps_nothing_but_the_fact():
    state = fold(change(1, "subscribed", "news"), change(2, "erased"))
    assert may_send_marketing(state, None) == (False, "erased")
    assert state["lists"] == {}


def test_a_redelivered_record_changes_nothing():
    state = fold(change(1, "subscribed", reason="registered"), change(2, "unsubscribed"))
    assert fold_consent(state, change(2, "unsubscribed")) is state


@pytest.mark.parametrize("kind,bounce,expected", [("bounced", "hard", "hard_bounce"), ("complained", "", "complaint")])
def test_hard_bounces_and_complaints_suppress(kind, bounce, expected):
    event = DeliveryEvent(delivery_id="d", intent_id="i", subscriber_id="s", kind=kind, bounce_type=bounce, occurred_at=AT)
    assert may_send_marketing(fold_delivery({}, event), None) == (False, f"suppressed:{expected}")


def test_soft_bounces_do_not_suppress():
    event = DeliveryEvent(delivery_id="d", intent_id="i", subscriber_id="s", kind="bounced", bounce_type="soft", occurred_at=AT)
    assert fold_delivery({}, event) == {}
