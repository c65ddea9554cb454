"""The Faust app: one consumer group, memory tables recovered from their changelogs.

`create_worker_app(settings)` builds the app and registers every stage's agents; the stages live in
their own modules and stay thin: decode -> domain -> encode -> send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import faust
import structlog

from domain.events import Contract, DeadLetter, stable_id
from infra.settings import Settings
from infra.topics import Topic
from processors.live_definitions import LiveDefinitionsHolder

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class WorkerContext:
    """What every stage shares: the app, settings, topics, live definitions and the clock."""

    app: faust.App
    settings: Settings
    definitions: LiveDefinitionsHolder
    clock: Clock = system_clock
    topics: dict[Topic, faust.TopicT] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)

    def topic(self, topic: Topic) -> faust.TopicT:
        if topic not in self.topics:
            self.topics[topic] = self.app.topic(
                topic.name(self.settings),
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=topic.partitions(self.settings),
                internal=False,
            )
        return self.topics[topic]

    def table(self, name: str) -> faust.Table:
        """A per-subscriber table: bytes keys (the subscriber id), JSON-able dict values.

        `use_partitioner` sends each key's changelog to the partition the producer's murmur2
        partitioner picks for that key, which is the partition its subscriber's records live on
        in every subscriber-keyed topic, whatever record is being processed at the time.
        """
        return self.app.Table(
            name, default=dict, key_type=bytes, partitions=self.settings.partitions, use_partitioner=True
        )

    async def emit(self, topic: Topic, key: str, payload: Contract) -> None:
        await self.topic(topic).send(key=key.encode(), value=payload.to_bytes())

    async def emit_durably(self, records: list[tuple[Topic, str, Contract]]) -> None:
        """Send and wait until the broker has every record.

        Callers write their table state only after this returns: state that says "done" must never
        reach the changelog ahead of the output it stands for, or a crash would lose the output
        while the replayed input is deduplicated against that state. Records are handed to the
        producer in order (each `send` returns once queued, not once acknowledged), so one
        subscriber's outputs keep their order; the acknowledgements are awaited together after.
        """
        pending = [
            await self.topic(topic).send(key=key.encode(), value=payload.to_bytes()) for topic, key, payload in records
        ]
        for future in pending:
            await future

    async def dead_letter(self, processor: str, event: faust.EventT, error: Exception) -> None:
        """Keep an undecodable record aside instead of blocking the partition or dropping it silently."""
        message = event.message
        raw = message.value if isinstance(message.value, bytes) else bytes(str(message.value), "utf-8")
        letter = DeadLetter(
            dead_letter_id=stable_id(message.topic, str(message.partition), str(message.offset), processor),
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            error=str(error)[:2000],
            raw=raw[:65536].decode("utf-8", "replace"),
            processor=processor,
            occurred_at=self.clock(),
        )
        log.warning("record.dead_lettered", processor=processor, topic=message.topic, offset=message.offset)
        await self.emit(Topic.DEAD_LETTERS, message.topic, letter)


def app_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}.{settings.worker_id}"


def create_faust_app(settings: Settings) -> faust.App:
    return faust.App(
        app_id(settings),
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee="at_least_once",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=1000,
        # A worker killed without leaving the group holds its partitions until its session expires;
        # Faust's 60 s default would stall a restarted worker that long.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_commit_interval=1.0,
        table_standby_replicas=0,
        web_enabled=True,
        web_host=settings.worker_host,
        web_bind=settings.worker_host,  # Faust binds 0.0.0.0 unless told: loopback by default
        web_port=settings.worker_port,
        web_in_thread=False,
        stream_wait_empty=False,
        autodiscover=False,
        datadir=str((settings.data_dir / "faust").resolve()),
    )
