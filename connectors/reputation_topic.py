"""The compacted reputation topic, read whole by every worker, and operator commands written to Kafka.

Every worker follows every partition of the reputation topic without a consumer group (like the
definitions topic): whichever subscriber partitions a worker sends for, it must obey the controls of
every sending identity and provider within seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import MutableMapping

import structlog
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from domain.events import ReputationSnapshot
from domain.reputation import ReputationCommand
from connectors.kafka_admin import whole_topic_reader
from infra.settings import Settings
from infra.topics import Topic

log = structlog.get_logger(__name__)

ControlKey = tuple[str, str]


def _consumer(settings: Settings) -> tuple[Consumer, list[TopicPartition]]:
    return whole_topic_reader(settings, Topic.REPUTATION, "reputation-reader")


class ReputationFollower:
    """Keeps `controls[(sending_domain, provider)]` and `snapshots[...]` current, in a thread."""

    def __init__(self, settings: Settings, controls: MutableMapping[ControlKey, dict] | None = None) -> None:
        self.controls: MutableMapping[ControlKey, dict] = controls if controls is not None else {}
        self.snapshots: dict[ControlKey, ReputationSnapshot] = {}
        self._consumer, self._assignment = _consumer(settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def catch_up(self, timeout: float = 30.0) -> dict[ControlKey, ReputationSnapshot]:
        """Read to the end of the topic as it is now; blocks."""
        ends = {tp.partition: self._consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in self._assignment}
        positions = {p: 0 for p in ends}
        deadline = time.monotonic() + timeout
        while any(positions[p] < ends[p] for p in ends):
            if time.monotonic() > deadline:
                raise TimeoutError("reputation topic not read to its end in time")
            msg = self._consumer.poll(0.2)
            if msg is not None and not msg.error():
                positions[msg.partition()] = msg.offset() + 1
            self._apply(msg)
        return self.snapshots

    def _apply(self, msg) -> None:  # type: ignore[no-untyped-def]
        if msg is None:
            return
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("reputation.read_failed", error=str(msg.error()))
            return
        if msg.value() is None:
            return
        try:
            snapshot = ReputationSnapshot.from_bytes(msg.value())
        except ValueError as exc:
            log.error("reputation.record_invalid", offset=msg.offset(), error=str(exc)[:300])
            return
        key = (snapshot.sending_domain, snapshot.provider)
        known = self.snapshots.get(key)
        if known is not None and known.updated_at > snapshot.updated_at:
            return
        self.snapshots[key] = snapshot
        if snapshot.control:
            self.controls[key] = dict(snapshot.control)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="reputation-follower", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._apply(self._consumer.poll(0.2))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._consumer.close()


def read_snapshots(settings: Settings, timeout: float = 30.0) -> dict[ControlKey, ReputationSnapshot]:
    follower = ReputationFollower(settings)
    try:
        return follower.catch_up(timeout)
    finally:
        follower.stop()


def publish_command(settings: Settings, command: ReputationCommand, timeout: float = 15.0) -> None:
    """Write one operator command and wait until the broker has it."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    errors: list[str] = []
    producer.produce(
        Topic.REPUTATION_COMMANDS.name(settings), key=command.key.encode(), value=command.to_bytes(),
        on_delivery=lambda err, _msg: errors.append(err.str()) if err is not None else None,
    )
    if producer.flush(timeout) != 0 or errors:
        raise RuntimeError(f"reputation command not acknowledged by Kafka: {'; '.join(errors) or 'timed out'}")
