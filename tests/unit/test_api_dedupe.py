"""The bounded LRU of acknowledged event ids, and the writer that uses it to skip repeats."""

from datetime import datetime, timezone

import pytest

from connectors.api.dedupe import RecentIds
from connectors.api.metrics import ApiMetrics
from connectors.api.writer import EventWriter
from domain.events import EventEnvelope
from infra.topics import Topic

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


def test_the_least_recently_seen_id_is_forgotten_first():
    recent = RecentIds(capacity=3)
    recent.add_all(["a", "b", "c"])
    assert "a" in recent  # touching "a" makes "b" the oldest
    recent.add_all(["d"])
    assert "b" not in recent
    assert all(event_id in recent for event_id in ("a", "c", "d"))
    assert len(recent) == 3


def test_capacity_bounds_memory():
    recent = RecentIds(capacity=100)
    recent.add_all(str(i) for i in range(1000))
    assert len(recent) == 100 and "999" in recent and "899" not in recent


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        RecentIds(capacity=0)


class RecordingProducer:
    def __init__(self):
        self.batches = []

    async def produce_all(self, records):
        self.batches.append(list(records))


def envelope(event_id, subscriber_id="s1"):
    return EventEnvelope(event_id=event_id, type="t", subscriber_id=subscriber_id, occurred_at=NOW, received_at=NOW)


async def test_the_writer_produces_each_id_once_and_counts_duplicates(settings):
    producer, metrics = RecordingProducer(), ApiMetrics()
    writer = EventWriter(settings, producer, RecentIds(), metrics)

    first = await writer.write([envelope("e1"), envelope("e2"), envelope("e1")])
    assert (first.accepted, first.duplicates, first.event_ids) == (2, 1, ["e1", "e2", "e1"])
    second = await writer.write([envelope("e2"), envelope("e3", "s2")])
    assert (second.accepted, second.duplicates) == (1, 1)

    topic = Topic.EVENTS.name(settings)
    assert [[(t, k, EventEnvelope.from_bytes(v).event_id) for t, k, v in batch] for batch in producer.batches] == [
        [(topic, b"s1", "e1"), (topic, b"s1", "e2")],
        [(topic, b"s2", "e3")],
    ]
    assert "tidings_events_duplicate_total 2" in metrics.render()


async def test_ids_are_remembered_only_after_kafka_acknowledged(settings):
    from connectors.api.errors import ApiError
    from connectors.kafka_producer import ProduceFailed

    class FailingOnce(RecordingProducer):
        async def produce_all(self, records):
            if not self.batches:
                self.batches.append([])
                raise ProduceFailed("broker down")
            await super().produce_all(records)

    producer = FailingOnce()
    writer = EventWriter(settings, producer, RecentIds(), ApiMetrics())
    with pytest.raises(ApiError) as caught:
        await writer.write([envelope("e1")])
    assert caught.value.status == 503 and "broker down" in caught.value.error
    retry = await writer.write([envelope("e1")])
    assert (retry.accepted, retry.duplicates) == (1, 0)
