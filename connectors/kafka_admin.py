"""Topic creation from the registry, idempotent: existing topics are left as they are."""

from __future__ import annotations

import time
import uuid

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from infra.settings import Settings
from infra.topics import Topic

log = structlog.get_logger(__name__)


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap})


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create every registry topic that does not exist yet. Returns the names it created."""
    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(
            topic.name(settings),
            num_partitions=topic.partitions(settings),
            replication_factor=settings.replication_factor,
            config=topic.config(),
        )
        for topic in Topic
        if topic.name(settings) not in existing
    ]
    if not wanted:
        return []
    created: list[str] = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    log.info("topics.created", topics=created)
    _wait_for_leaders(admin, created, timeout)
    return created


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """A new topic's partitions take a moment to get leaders; writers and readers need them."""
    deadline = time.monotonic() + timeout
    while names and time.monotonic() < deadline:
        topics = admin.list_topics(timeout=timeout).topics
        if all(
            name in topics and topics[name].partitions and all(p.leader >= 0 for p in topics[name].partitions.values())
            for name in names
        ):
            return
        time.sleep(0.1)


def delete_topics(settings: Settings, names: list[str], timeout: float = 30.0) -> None:
    if not names:
        return
    for future in admin_client(settings).delete_topics(names, operation_timeout=timeout).values():
        try:
            future.result(timeout=timeout)
        except KafkaException:
            pass


def delete_topics_with_prefix(settings: Settings, prefix: str, timeout: float = 30.0) -> list[str]:
    """Remove every topic whose name starts with `prefix` (registry topics and Faust's own)."""
    names = [n for n in admin_client(settings).list_topics(timeout=timeout).topics if n.startswith(prefix)]
    delete_topics(settings, names, timeout)
    return names


def whole_topic_reader(settings: Settings, topic: Topic, purpose: str) -> tuple[Consumer, list[TopicPartition]]:
    """A consumer assigned every partition of `topic` from the start, outside any consumer group's
    assignment: for compacted state every process needs whole (definitions, reputation controls)."""
    name = topic.name(settings)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.topic_prefix}.{purpose}.{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
    assignment = [TopicPartition(name, p, 0) for p in partitions]
    consumer.assign(assignment)
    return consumer, assignment
