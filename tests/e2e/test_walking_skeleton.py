"""Issue 2's promise: an event travels end to end through the real parts.

POST an event -> Kafka -> journeys -> send intent -> sender -> SMTP capture sink, and the event, the
intent and the delivery all land in ClickHouse; within 30 s.
"""

from __future__ import annotations

import time
import uuid
from email import message_from_bytes
from pathlib import Path

import pytest

from connectors.mailsink import list_messages

pytestmark = pytest.mark.e2e


def wait_until(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value {value!r}")


def test_an_event_becomes_an_email_and_analytics_rows_within_30s(running_stack):
    sid = f"walk-{uuid.uuid4().hex[:8]}"
    email = f"ada.{sid}@example.org"
    started = time.monotonic()
    response = running_stack.post_events(
        [
            {"event_id": f"{sid}-1", "type": "identify", "subscriber_id": sid,
             "context": {"traits": {"email": email, "first_name": "Ada"}}},
            {"event_id": f"{sid}-2", "type": "user.signed_up", "subscriber_id": sid, "properties": {"plan": "free"}},
        ]
    )
    assert response.status_code == 202, response.text
    sink = running_stack.settings.mailsink_dir

    mine = wait_until(lambda: [m for m in list_messages(sink) if email in m.rcpt_tos], 30, "the welcome email")
    assert len(mine) == 1
    message = message_from_bytes((sink / mine[0].file).read_bytes() if not Path(mine[0].file).is_absolute() else Path(mine[0].file).read_bytes())
    assert "Ada" in message["Subject"]
    assert message["Message-ID"] == mine[0].message_id

    def analytics_rows():  # type: ignore[no-untyped-def]
        events = running_stack.sql(f"SELECT count() FROM events WHERE subscriber_id = '{sid}'")[0][0]
        delivered = running_stack.sql(
            f"SELECT count() FROM deliveries WHERE subscriber_id = '{sid}' AND kind = 'accepted'"
        )[0][0]
        return (int(events), int(delivered)) if int(events) == 2 and int(delivered) == 1 else None

    wait_until(analytics_rows, 30 - (time.monotonic() - started), "rows in ClickHouse")
    assert time.monotonic() - started < 30
    # No personal data in analytics: the address is not stored with the event.
    assert running_stack.sql(f"SELECT count() FROM events WHERE position(context, '{email}') > 0")[0][0] == 0


def test_a_replayed_event_sends_nothing_twice(running_stack):
    sid = f"replay-{uuid.uuid4().hex[:8]}"
    email = f"grace.{sid}@example.org"
    events = [
        {"event_id": f"{sid}-1", "type": "identify", "subscriber_id": sid, "context": {"traits": {"email": email}}},
        {"event_id": f"{sid}-2", "type": "user.signed_up", "subscriber_id": sid},
    ]
    assert running_stack.post_events(events).status_code == 202
    sink = running_stack.settings.mailsink_dir
    wait_until(lambda: [m for m in list_messages(sink) if email in m.rcpt_tos], 30, "the first email")
    # The same signup again with a new event id: the journey's re-entry rule (never) holds.
    again = [{**events[1], "event_id": f"{sid}-3"}]
    assert running_stack.post_events(again).status_code == 202
    wait_until(
        lambda: int(running_stack.sql(f"SELECT count() FROM events WHERE subscriber_id = '{sid}'")[0][0]) == 3,
        30, "the repeat event in ClickHouse",
    )
    time.sleep(1.0)
    assert len([m for m in list_messages(sink) if email in m.rcpt_tos]) == 1
