"""KafkaProducer against the real broker, and the API's answers when Kafka is not there."""

import time

import pytest
from fastapi.testclient import TestClient

from connectors.api.app import create_api
from connectors.kafka_producer import KafkaProducer, ProduceFailed
from infra.api_keys import ApiKeyStore
from infra.topics import Topic
from tests.integration.api_support import events_written
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration

UNREACHABLE = "127.0.0.1:1"


def records(settings, n, prefix="r"):
    topic = Topic.EVENTS.name(settings)
    return [(topic, f"k{i % 7}".encode(), f"{prefix}{i}".encode()) for i in range(n)]


@pytest.fixture
def producer(kafka_settings):
    events_written(kafka_settings)  # waits until the just-created topic's partitions have leaders
    producer = KafkaProducer(kafka_settings)
    yield producer
    producer.close()


async def test_produce_all_returns_after_every_record_is_on_the_broker(producer, kafka_settings):
    await producer.produce_all(records(kafka_settings, 300))
    landed = read_topic(kafka_settings, Topic.EVENTS, expect=300)
    assert sorted(value for _, value in landed) == sorted(f"r{i}".encode() for i in range(300))
    assert {key for key, _ in landed} == {f"k{i}".encode() for i in range(7)}


async def test_produce_all_of_nothing_returns_at_once(producer):
    await producer.produce_all([])


def test_produce_all_sync_lands_with_lz4_compression(producer, kafka_settings):
    value = b"compressible " * 500
    producer.produce_all_sync([(Topic.EVENTS.name(kafka_settings), b"k", value)])
    assert read_topic(kafka_settings, Topic.EVENTS, expect=1) == [(b"k", value)]


async def test_a_full_local_queue_is_waited_out_not_failed(kafka_settings):
    events_written(kafka_settings)
    small = KafkaProducer(kafka_settings, config={"queue.buffering.max.messages": 5})
    try:
        await small.produce_all(records(kafka_settings, 200, "a"))
        small.produce_all_sync(records(kafka_settings, 200, "s"))
    finally:
        small.close()
    assert len(read_topic(kafka_settings, Topic.EVENTS, expect=400)) == 400


async def test_a_record_for_a_missing_topic_fails_naming_the_error(kafka_settings):
    strict = KafkaProducer(kafka_settings, delivery_timeout=2.5, config={"allow.auto.create.topics": False})
    try:
        with pytest.raises(ProduceFailed, match="no-such-topic: Local: Message timed out"):
            await strict.produce_all([(f"{kafka_settings.topic_prefix}.no-such-topic", b"k", b"v")])
    finally:
        strict.close(timeout=1)


async def test_an_unreachable_broker_fails_within_the_timeout(settings):
    down = KafkaProducer(settings.model_copy(update={"kafka_bootstrap": UNREACHABLE}), delivery_timeout=1)
    try:
        assert down.reachable(timeout=0.5) is False
        started = time.monotonic()
        with pytest.raises(ProduceFailed, match=UNREACHABLE):
            await down.produce_all(records(settings, 3))
        assert time.monotonic() - started < 3
        with pytest.raises(ProduceFailed, match="did not acknowledge"):
            down.produce_all_sync(records(settings, 1))
    finally:
        down.close(timeout=0.5)


def test_reachable_is_true_with_the_broker(producer):
    assert producer.reachable() is True


def test_the_api_answers_503_when_kafka_does_not_acknowledge(settings):
    down = KafkaProducer(settings.model_copy(update={"kafka_bootstrap": UNREACHABLE}), delivery_timeout=1)
    key = ApiKeyStore(settings).create("test")
    try:
        client = TestClient(create_api(settings, down), headers={"Authorization": f"Bearer {key}"})
        response = client.post("/v1/events", json={"event_id": "e1", "type": "t", "subscriber_id": "s"})
        assert response.status_code == 503
        assert "did not acknowledge" in response.json()["error"]
        assert response.json()["event_ids"] == ["e1"]
        segment = client.post("/v1/track", json={"event": "t", "userId": "s", "messageId": "e1"})
        assert segment.status_code == 503  # not a duplicate: e1 was never acknowledged
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json() == {"status": "unavailable", "kafka": False}
    finally:
        down.close(timeout=0.5)
