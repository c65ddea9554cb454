"""Shared by the reputation e2e tests: inject delivery outcomes, read snapshots and transitions."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from confluent_kafka import Producer

from connectors.reputation_topic import read_snapshots
from domain.events import DeliveryEvent, ReputationSnapshot
from domain.reputation import ReputationChanged
from infra.settings import Settings
from infra.topics import Topic
from tests.kafka_helpers import read_topic

IDENTITY = "news.tidings.test"  # the domain of Settings.mail_from's default


def outcome(kind: str, recipient_domain: str, *, sending_domain: str = IDENTITY, at: datetime | None = None,
            bounce_type: str = "") -> DeliveryEvent:
    n = uuid.uuid4().hex[:12]
    return DeliveryEvent(
        delivery_id=f"inj-{n}", intent_id=f"inj-intent-{n}", subscriber_id=f"inj-sub-{n}", kind=kind,  # type: ignore[arg-type]
        occurred_at=at or datetime.now(timezone.utc), sending_domain=sending_domain,
        recipient_domain=recipient_domain, bounce_type=bounce_type,  # type: ignore[arg-type]
    )


def inject(settings: Settings, events: list[DeliveryEvent]) -> None:
    """Straight onto the delivery topic, keyed by subscriber, as the sender and feedback API would."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True, "linger.ms": 5})
    topic = Topic.DELIVERY.name(settings)
    for event in events:
        producer.produce(topic, key=event.subscriber_id.encode(), value=event.to_bytes())
        producer.poll(0)
    assert producer.flush(30) == 0


def snapshot(settings: Settings, provider: str, sending_domain: str = IDENTITY) -> ReputationSnapshot | None:
    return read_snapshots(settings, timeout=20).get((sending_domain, provider))


def changes(settings: Settings) -> list[ReputationChanged]:
    return [ReputationChanged.from_bytes(v) for _, v in read_topic(settings, Topic.REPUTATION_CHANGES, timeout=20)]
