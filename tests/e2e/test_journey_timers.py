"""Durable journey timers (issue 5's first promise): 1,000 enrollments wait 10 minutes; the worker
is stopped before any is due and stays down for 30 minutes of simulated time; after the restart
every wait fires exactly once, none early, none lost. Time is a file the test moves
(tests/e2e/clock_worker.py); everything else is the real worker code on the real broker."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from domain.events import EventEnvelope
from infra.publish import apply_paths
from tests.e2e.conftest import free_port
from tests.e2e.journey_support import ClockWorker, decisions, intents, produce_events, wait_until, write_definitions
from tests.kafka_helpers import topic_size
from infra.topics import Topic

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
N = 1000
JOURNEY = """\
id: ten-minutes
trigger: {event: test.enrolled}
steps:
  - wait: 10m
  - send: ping
"""


def test_thousand_waits_fire_exactly_once_after_a_30_minute_outage(kafka_settings, tmp_path):
    settings = kafka_settings.model_copy(update={"worker_port": free_port(), "log_level": "WARNING"})
    apply_paths(settings, [write_definitions(tmp_path / "defs", {"ten-minutes": JOURNEY}, ["ping"])])
    worker = ClockWorker(settings, tmp_path / "clock")
    worker.set_clock(T0)
    events = [
        EventEnvelope(event_id=f"enrol-{n}", type="test.enrolled", subscriber_id=f"sub-{n:04d}", occurred_at=T0,
                      received_at=T0, context={"traits": {"email": f"s{n}@example.test"}})
        for n in range(N)
    ]
    try:
        worker.start(journeys=1)
        produce_events(settings, events)
        # Each enrollment decides twice before it waits: entered, wait.
        wait_until(lambda: (lambda n: (n >= 2 * N, n))(topic_size(settings, Topic.JOURNEY_DECISIONS)), 240,
                   "1,000 enrollments waiting")
        assert sum(d.kind == "wait" for d in decisions(settings)) == N

        worker.set_clock(T0 + timedelta(minutes=9, seconds=59))
        time.sleep(3)  # three timer scans one second before anything is due
        assert topic_size(settings, Topic.SEND_INTENTS) == 0, "a timer fired early"
        worker.stop()

        worker.set_clock(T0 + timedelta(minutes=40))  # down for 30 minutes of simulated time
        worker.start(journeys=1)
        intents(settings, expect=N, timeout=240)
        time.sleep(3)
        worker.stop()
        worker.start(journeys=1)  # a second restart must fire nothing again
        time.sleep(3)
    finally:
        worker.stop()

    fired = intents(settings)
    by_subscriber = Counter(i.subscriber_id for i in fired)
    assert len(fired) == N and set(by_subscriber.values()) == {1}, "lost or duplicated sends"
    assert all(i.created_at == T0 + timedelta(minutes=40) for i in fired)
    resumed = [d for d in decisions(settings) if d.kind == "resumed"]
    assert len(resumed) == N and {d.reason for d in resumed} == {"wait_over"}
