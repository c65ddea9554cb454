import pytest
from confluent_kafka import Producer

from infra.topics import Topic
from tests.kafka_helpers import read_topic, topic_size

pytestmark = pytest.mark.integration


def test_ensure_topics_is_idempotent_and_follows_the_registry(kafka_settings):
    from connectors.kafka_admin import admin_client, ensure_topics

    assert ensure_topics(kafka_settings) == []  # the fixture already created them
    metadata = admin_client(kafka_settings).list_topics(timeout=10)
    for topic in Topic:
        assert len(metadata.topics[topic.name(kafka_settings)].partitions) == topic.partitions(kafka_settings)


def test_a_record_round_trips_through_the_real_broker(kafka_settings):
    producer = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    producer.produce(Topic.EVENTS.name(kafka_settings), key=b"s1", value=b"{}")
    assert producer.flush(10) == 0
    assert topic_size(kafka_settings, Topic.EVENTS) == 1
    assert read_topic(kafka_settings, Topic.EVENTS) == [(b"s1", b"{}")]
