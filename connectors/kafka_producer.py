"""Writing records to Kafka so that "acknowledged" means the broker really has them.

One confluent-kafka producer per process: idempotent, `acks=all`, lz4, a short linger so
concurrent requests share batches. A background thread polls so delivery reports fire without
anyone calling `poll()`/`flush()` per message (the classic anti-pattern, REFERENCE.md). Callers
hand over a whole batch and wait for every delivery report of that batch.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from infra.settings import Settings

log = structlog.get_logger(__name__)

Record = tuple[str, bytes | None, bytes]
"""(topic name, key, value)."""

DEFAULT_DELIVERY_TIMEOUT = 15.0
# librdkafka expires records a little before we stop waiting (it checks timeouts about once a
# second), so a failure usually carries librdkafka's precise reason rather than a plain timeout.
_VERDICT_MARGIN = 1.5
_QUEUE_FULL_BACKOFF = 0.01


class ProduceFailed(Exception):
    """Kafka did not acknowledge every record of a batch; the message names the error."""


class _DeliveryBatch:
    """Counts delivery reports of one batch; calls `on_complete(errors)` once all are in.

    The expected count is only known once every record has been handed to librdkafka
    (`seal`), so completion waits for both: all produced and all reported.
    """

    def __init__(self, on_complete: Callable[[list[str]], None]) -> None:
        self._on_complete = on_complete
        self._lock = threading.Lock()
        self._reported = 0
        self._expected: int | None = None
        self._errors: list[str] = []
        self._completed = False

    def report(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            self._reported += 1
            if err is not None:
                self._errors.append(f"{msg.topic()}: {err.str()}")
        self._complete_if_done()

    def fail(self, error: str) -> None:
        with self._lock:
            self._errors.append(error)

    def seal(self, produced: int) -> None:
        with self._lock:
            self._expected = produced
        self._complete_if_done()

    def _complete_if_done(self) -> None:
        with self._lock:
            if self._completed or self._expected is None or self._reported < self._expected:
                return
            self._completed = True
            errors = list(self._errors)
        self._on_complete(errors)


class KafkaProducer:
    """An idempotent producer whose `produce_all` returns only once Kafka acknowledged every record."""

    def __init__(
        self,
        settings: Settings,
        *,
        delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.delivery_timeout = delivery_timeout
        self._bootstrap = settings.kafka_bootstrap
        self._producer = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                # Java's and aiokafka's partitioner (murmur2), not librdkafka's CRC32 default: the
                # worker's tables put a subscriber's state on murmur2(subscriber_id), and that must
                # be the partition the subscriber's events arrive on.
                "partitioner": "murmur2_random",
                # librdkafka gives up on a record when we stop waiting for it, so a request that was
                # answered "failed" does not land much later behind the client's retry (which the
                # consumers would drop as a duplicate event_id anyway).
                "message.timeout.ms": max(int((delivery_timeout - _VERDICT_MARGIN) * 1000), 1000),
                **(config or {}),
            }
        )
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll_forever, name="kafka-producer-poll", daemon=True)
        self._poller.start()

    async def produce_all(self, records: Sequence[Record]) -> None:
        """Produce every record, then wait for all delivery reports. Raises `ProduceFailed`."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[str]] = loop.create_future()

        def settle(errors: list[str]) -> None:
            if not done.done():
                done.set_result(errors)

        def on_complete(errors: list[str]) -> None:
            try:
                loop.call_soon_threadsafe(settle, errors)
            except RuntimeError:  # the loop closed while we waited; nobody is listening any more
                pass

        batch = _DeliveryBatch(on_complete)
        produced = 0
        try:
            for topic, key, value in records:
                while not self._try_produce(batch, topic, key, value):
                    await asyncio.sleep(_QUEUE_FULL_BACKOFF)  # the poll thread drains the queue
                produced += 1
        except KafkaException as exc:
            batch.fail(f"produce refused: {_describe(exc)}")
        finally:
            batch.seal(produced)
        try:
            errors = await asyncio.wait_for(done, timeout=self.delivery_timeout)
        except TimeoutError:
            raise ProduceFailed(self._timeout_message(len(records))) from None
        self._raise_on(errors, len(records))

    def produce_all_sync(self, records: Sequence[Record]) -> None:
        """Blocking `produce_all` for CLI tools and the demo."""
        finished = threading.Event()
        outcome: list[str] = []

        def on_complete(errors: list[str]) -> None:
            outcome.extend(errors)
            finished.set()

        batch = _DeliveryBatch(on_complete)
        produced = 0
        try:
            for topic, key, value in records:
                while not self._try_produce(batch, topic, key, value):
                    time.sleep(_QUEUE_FULL_BACKOFF)  # the poll thread drains the queue
                produced += 1
        except KafkaException as exc:
            batch.fail(f"produce refused: {_describe(exc)}")
        finally:
            batch.seal(produced)
        if not finished.wait(self.delivery_timeout):
            raise ProduceFailed(self._timeout_message(len(records)))
        self._raise_on(outcome, len(records))

    def reachable(self, timeout: float = 2.0) -> bool:
        """Whether a broker answers a metadata request within `timeout` seconds."""
        try:
            self._producer.list_topics(timeout=timeout)
        except KafkaException:
            return False
        return True

    @property
    def closed(self) -> bool:
        return self._stopping.is_set()

    def close(self, timeout: float = 10) -> None:
        """Deliver what is queued (up to `timeout` seconds), then stop the poll thread."""
        remaining = self._producer.flush(timeout)
        self._stopping.set()
        self._poller.join(timeout=2)
        if remaining:
            log.warning("producer.closed_with_undelivered", undelivered=remaining)

    def _try_produce(self, batch: _DeliveryBatch, topic: str, key: bytes | None, value: bytes) -> bool:
        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=batch.report)
        except BufferError:
            return False
        return True

    def _poll_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                self._producer.poll(0.1)
            except Exception:  # a failing callback must not kill the thread that serves all callbacks
                log.exception("producer.poll_failed")

    def _timeout_message(self, count: int) -> str:
        return f"Kafka at {self._bootstrap} did not acknowledge {count} record(s) within {self.delivery_timeout:g} s"

    def _raise_on(self, errors: list[str], count: int) -> None:
        if errors:
            distinct = sorted(set(errors))
            raise ProduceFailed(f"Kafka at {self._bootstrap} failed {len(errors)} of {count} record(s): {'; '.join(distinct[:3])}")


def _describe(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)
