"""Reading topics back in tests: what really reached the broker."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from infra.settings import Settings
from infra.topics import Topic


def read_topic(settings: Settings, topic: Topic, expect: int | None = None, timeout: float = 10.0) -> list[tuple[bytes | None, bytes]]:
    """Every record on `topic` from the beginning: stops at `expect` records or when the end is reached."""
    name = topic.name(settings)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        assignment = [TopicPartition(name, p, 0) for p in partitions]
        ends = {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in partitions}
        consumer.assign(assignment)
        records: list[tuple[bytes | None, bytes]] = []
        positions = {p: 0 for p in partitions}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if expect is None and all(positions[p] >= ends[p] for p in partitions):
                break
            if expect is not None and len(records) >= expect:
                break
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            positions[msg.partition()] = msg.offset() + 1
            records.append((msg.key(), msg.value()))
        return records
    finally:
        consumer.close()


def topic_size(settings: Settings, topic: Topic) -> int:
    """Records on `topic` by watermarks: cheap, and enough to assert that nothing was written."""
    name = topic.name(settings)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"test-size-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()
