"""`simulate` predicts the live run (issue 5): a recorded set of events is simulated with the example
journeys, then fed to a real worker (segments + journeys stages, real broker) whose clock follows the
events; both must make exactly the same sends (same intent ids, templates and people) and the same
goal conversions."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from itertools import groupby

import pytest
from confluent_kafka import Consumer, TopicPartition

from domain.events import EventEnvelope
from infra.definitions_loader import load_definitions
from infra.publish import apply_paths
from infra.settings import Settings
from infra.simulate import simulate
from infra.topics import Topic
from processors.app import app_id
from tests.e2e.conftest import free_port
from tests.e2e.journey_support import REPO, ClockWorker, decisions, intents, produce_events, wait_until

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 7, 6, 9, 0, tzinfo=timezone.utc)
N = 30


def recorded_events() -> list[EventEnvelope]:
    """Sign-ups, carts left and kept, orders before and after the cart reminder, repeat orders."""

    def ev(n: int, type_: str, seconds: float, **props: object) -> EventEnvelope:
        at = T0 + timedelta(seconds=seconds)
        traits = {"email": f"p{n}@example.test", "first_name": f"P{n}", "plan": "pro" if n % 4 == 0 else "free"}
        return EventEnvelope(event_id=f"{type_}-{n}-{seconds}", type=type_, subscriber_id=f"p-{n:03d}", occurred_at=at,
                             received_at=at, properties=props, context={"traits": traits} if type_ == "identify" else {})

    events = []
    for n in range(N):
        events += [ev(n, "identify", 0), ev(n, "user.signed_up", 0)]
        if n % 3 == 0:
            events.append(ev(n, "cart.updated", 60, items=2, cart_id=f"c{n}"))          # left: reminder at +20s
            if n % 2 == 0:
                events.append(ev(n, "order.placed", 120, cart_id=f"c{n}"))            # ... then converts
        elif n % 3 == 1:
            events.append(ev(n, "cart.updated", 60, items=1, cart_id=f"c{n}"))
            events.append(ev(n, "order.placed", 70, cart_id=f"c{n}"))                 # before the reminder
            if n % 2 == 1:
                events.append(ev(n, "order.placed", 120, cart_id=f"c{n}"))            # a repeat order
        if n % 5 == 0:
            events.append(ev(n, "product.viewed", 30, product="mug"))
    return events


def lag(settings: Settings) -> int:
    """Records of events and segment changes the worker's consumer group has not committed yet."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": app_id(settings)})
    try:
        behind = 0
        for topic in (Topic.EVENTS, Topic.SEGMENT_CHANGES):
            name = topic.name(settings)
            parts = [TopicPartition(name, p) for p in range(topic.partitions(settings))]
            for committed in consumer.committed(parts, timeout=10):
                high = consumer.get_watermark_offsets(TopicPartition(name, committed.partition), timeout=10)[1]
                behind += high - max(committed.offset, 0)
        return behind
    finally:
        consumer.close()


def test_simulation_predicts_the_live_sends(kafka_settings, tmp_path):
    settings = kafka_settings.model_copy(update={"worker_port": free_port(), "log_level": "WARNING"})
    examples = REPO / "examples"
    apply_paths(settings, [examples])
    definitions = load_definitions(examples)
    events = recorded_events()
    end = T0 + timedelta(days=2)

    predicted = simulate(definitions.journeys, definitions.segments, events, T0, end)

    worker = ClockWorker(settings, tmp_path / "clock")
    worker.set_clock(T0)
    try:
        worker.start(journeys=len(definitions.journeys))
        for at, batch in groupby(sorted(events, key=lambda e: e.occurred_at), key=lambda e: e.occurred_at):
            worker.set_clock(at)
            time.sleep(2.5)  # timers due by `at` fire before the events of `at`, as in the simulation
            produce_events(settings, list(batch))
            wait_until(lambda: (lag(settings) == 0, lag(settings)), 120, f"the worker to process events at {at}")
            time.sleep(1.5)  # segment changes made by these events are consumed too
            wait_until(lambda: (lag(settings) == 0, lag(settings)), 120, "segment changes")
        worker.set_clock(end - timedelta(seconds=1))
        expected = len(predicted.intents)
        live = intents(settings, expect=expected, timeout=60)
        time.sleep(3)
        live = intents(settings)
    finally:
        worker.stop()

    def sends(items):  # type: ignore[no-untyped-def]
        return sorted((i.intent_id, i.subscriber_id, i.template_id, i.journey_id) for i in items)

    assert sends(live) == sends(predicted.intents)
    assert {i.template_id for i in live} >= {"welcome", "getting-started", "welcome-pro-tips", "cart-reminder",
                                              "cart-last-chance", "thanks-first-order", "review-request", "win-back"}
    live_goals = sorted((d.journey_id, d.subscriber_id) for d in decisions(settings) if d.kind == "goal")
    assert live_goals == sorted((d.journey_id, d.subscriber_id) for d in predicted.decisions if d.kind == "goal")
    assert live_goals, "the recorded set has conversions"
