"""Writing accepted envelopes to the events topic: each id once, answered only after Kafka acknowledged."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

import structlog

from connectors.api.dedupe import RecentIds
from connectors.api.errors import ApiError
from connectors.api.metrics import ApiMetrics
from connectors.crypto import key_ring_for, needs_sealing, seal_envelopes
from connectors.kafka_producer import ProduceFailed, Record
from domain.events import EventEnvelope
from infra.settings import Settings
from infra.topics import Topic

log = structlog.get_logger(__name__)


class Producer(Protocol):
    async def produce_all(self, records: list[Record]) -> None: ...


@dataclass(frozen=True)
class WriteOutcome:
    accepted: int
    duplicates: int
    event_ids: list[str]


class EventWriter:
    def __init__(self, settings: Settings, producer: Producer, recent: RecentIds, metrics: ApiMetrics) -> None:
        self._topic = Topic.EVENTS.name(settings)
        self._producer = producer
        self._recent = recent
        self._metrics = metrics
        self._keys = key_ring_for(settings)

    async def write(self, envelopes: list[EventEnvelope]) -> WriteOutcome:
        """Produce every envelope whose id was not acknowledged before; 503 if Kafka did not acknowledge."""
        fresh: dict[str, EventEnvelope] = {}
        for envelope in envelopes:
            if envelope.event_id not in fresh and envelope.event_id not in self._recent:
                fresh[envelope.event_id] = envelope
        duplicates = len(envelopes) - len(fresh)
        event_ids = [envelope.event_id for envelope in envelopes]
        outgoing = list(fresh.values())
        if any(needs_sealing(envelope) for envelope in outgoing):
            # Personal data leaves this process only sealed with the subscriber's key (docs/consent.md).
            try:
                outgoing = await asyncio.to_thread(seal_envelopes, self._keys, outgoing)
            except Exception as exc:  # noqa: BLE001 - the key store's driver errors differ (sqlite3, psycopg)
                log.error("events.seal_failed", events=len(outgoing), error=type(exc).__name__)
                raise ApiError(503, "the personal-data key store is unavailable, nothing is confirmed; retry",
                               reason="key_store_unavailable", events=len(envelopes),
                               headers={"Retry-After": "1"}, extra={"event_ids": event_ids}) from exc
        records: list[Record] = [
            (self._topic, envelope.subscriber_id.encode(), envelope.to_bytes()) for envelope in outgoing
        ]
        if records:
            started = time.perf_counter()
            try:
                await self._producer.produce_all(records)
            except ProduceFailed as exc:
                log.error("events.produce_failed", events=len(records), error=str(exc))
                raise ApiError(
                    503,
                    f"Kafka did not acknowledge the events, nothing is confirmed: {exc}. Retry with the same event ids.",
                    reason="kafka_unavailable",
                    events=len(envelopes),
                    headers={"Retry-After": "1"},
                    extra={"event_ids": event_ids},
                ) from exc
            finally:
                self._metrics.produce_latency(time.perf_counter() - started)
            self._recent.add_all(fresh)
        self._metrics.events_accepted(len(records))
        self._metrics.events_duplicate(duplicates)
        return WriteOutcome(accepted=len(records), duplicates=duplicates, event_ids=event_ids)
