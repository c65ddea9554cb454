"""The real API app in front of the real broker, for the integration tests of the ingest API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import KafkaException
from fastapi.testclient import TestClient

from connectors.api.app import create_api
from domain.events import EventEnvelope
from infra.api_keys import ApiKeyStore
from infra.settings import Settings
from infra.topics import Topic
from tests.kafka_helpers import read_topic, topic_size


@contextmanager
def running_api(settings: Settings) -> Iterator[tuple[TestClient, str]]:
    """A client with a valid key set; the app makes its own KafkaProducer and closes it on exit."""
    events_written(settings)  # waits until the just-created topic's partitions have leaders
    key = ApiKeyStore(settings).create("integration")
    with TestClient(create_api(settings), headers={"Authorization": f"Bearer {key}"}) as client:
        yield client, key


def events_on_topic(settings: Settings, expect: int | None = None) -> list[tuple[bytes | None, EventEnvelope]]:
    return [(key, EventEnvelope.from_bytes(value)) for key, value in read_topic(settings, Topic.EVENTS, expect=expect)]


def events_written(settings: Settings, timeout: float = 10.0) -> int:
    """`topic_size` of the events topic, retried while a just-created topic has no leader yet.

    A rejected request finishes within milliseconds of the fixture creating the topics, before the
    broker is ready to answer offset requests for them (NOT_LEADER_FOR_PARTITION).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return topic_size(settings, Topic.EVENTS)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
