"""The compacted definitions topic: read what is live, follow changes, publish new versions.

Every worker reads the whole topic (no consumer group): definitions are small and each worker
needs all of them, whichever subscriber partitions it owns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from confluent_kafka import Consumer, KafkaError, TopicPartition

from domain.events import DefinitionPublished
from connectors.kafka_admin import whole_topic_reader
from infra.settings import Settings
from infra.topics import Topic

log = structlog.get_logger(__name__)


def _consumer(settings: Settings) -> tuple[Consumer, list[TopicPartition]]:
    return whole_topic_reader(settings, Topic.DEFINITIONS, "definitions-reader")


class DefinitionsFollower:
    """Keeps `current` (key -> latest publication) up to date from the topic, in a thread."""

    def __init__(self, settings: Settings, on_change: Callable[[dict[str, DefinitionPublished]], None] | None = None):
        self.settings = settings
        self.current: dict[str, DefinitionPublished] = {}
        self._on_change = on_change
        self._consumer, self._assignment = _consumer(settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def catch_up(self, timeout: float = 30.0) -> dict[str, DefinitionPublished]:
        """Read up to the end of the topic as it is now; blocks."""
        ends = {
            tp.partition: self._consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in self._assignment
        }
        positions = {p: 0 for p in ends}
        deadline = time.monotonic() + timeout
        changed = False
        while any(positions[p] < ends[p] for p in ends):
            if time.monotonic() > deadline:
                raise TimeoutError("definitions topic not read to its end in time")
            msg = self._consumer.poll(0.2)
            if msg is None:
                continue
            positions[msg.partition()] = msg.offset() + 1
            changed |= self._apply(msg)
        if changed:
            self._notify()
        return self.current

    def _apply(self, msg) -> bool:  # type: ignore[no-untyped-def]
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("definitions.read_failed", error=str(msg.error()))
            return False
        if msg.value() is None:  # a tombstone removes the definition
            return self.current.pop((msg.key() or b"").decode(), None) is not None
        try:
            publication = DefinitionPublished.from_bytes(msg.value())
        except ValueError as exc:
            log.error("definitions.record_invalid", offset=msg.offset(), error=str(exc)[:300])
            return False
        known = self.current.get(publication.key)
        if known is not None and known.version >= publication.version:
            return False
        self.current[publication.key] = publication
        log.info("definitions.live", key=publication.key, version=publication.version)
        return True

    def _notify(self) -> None:
        if self._on_change is not None:
            self._on_change(dict(self.current))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="definitions-follower", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.5)
            if msg is not None and self._apply(msg):
                self._notify()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._consumer.close()


def read_definitions(settings: Settings, timeout: float = 30.0) -> dict[str, DefinitionPublished]:
    follower = DefinitionsFollower(settings)
    try:
        return follower.catch_up(timeout)
    finally:
        follower.stop()
