"""The event store relay: every stored event, in notification order, onto its Kafka topic.

For each application it reads the notification log after the last relayed notification id, produces
the records, waits until Kafka acknowledged all of them, and only then moves its tracking row
(`relay_tracking`, a table in the same database as the events). A crash between the two re-sends a
few records on restart: at-least-once, and every record carries a stable id consumers dedupe on
(`consent_event_id`; `kind:id` + version for definitions). Within one run the idempotent producer
keeps per-key order, and a restart re-sends from the tracking row forward, so the first occurrence
of each id is always in store order.

Where it runs: inside the API process as a thread (`RelayThread`, started with the API, nudged after
every write) and as `tidings relay` for deployments that want it apart. Several relays may run at
once: they only duplicate records, and tracking never moves backwards.

- Subscribers -> `Topic.CONSENT`, key subscriber_id, `ConsentChanged` (no personal data).
- Definitions -> `Topic.DEFINITIONS` (compacted), key `kind:id`, `DefinitionPublished` for
  published and resumed versions, a tombstone for paused and archived ones.
- SendingIdentities: no topic in the registry yet; tracked and skipped.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import structlog
from eventsourcing.application import Application

from connectors.kafka_producer import KafkaProducer, ProduceFailed, Record
from domain.definitions_store import DefinitionsApplication, publication_of
from domain.events import ConsentChanged, stable_id
from domain.subscribers import SubscribersApplication, consent_change_of
from infra.event_store import Database, EventStore
from infra.settings import Settings
from infra.topics import Topic

log = structlog.get_logger(__name__)

BATCH = 500
_CREATE_TRACKING = (
    "CREATE TABLE IF NOT EXISTS relay_tracking (application_name TEXT PRIMARY KEY, notification_id BIGINT NOT NULL)"
)


class Tracking:
    """The last relayed notification id of one application, stored beside its events."""

    def __init__(self, db: Database, application_name: str) -> None:
        self.db = db
        self.application_name = application_name
        db.execute(_CREATE_TRACKING)

    def position(self) -> int:
        rows = self.db.execute(
            "SELECT notification_id FROM relay_tracking WHERE application_name = ?", (self.application_name,)
        )
        return int(rows[0][0]) if rows else 0

    def advance(self, notification_id: int) -> None:
        greatest = "GREATEST" if self.db.is_postgres else "MAX"
        self.db.execute(
            "INSERT INTO relay_tracking (application_name, notification_id) VALUES (?, ?) "
            "ON CONFLICT (application_name) DO UPDATE SET notification_id = "
            f"{greatest}(relay_tracking.notification_id, excluded.notification_id)",
            (self.application_name, notification_id),
        )


@dataclass
class RelayedBatch:
    application: str
    first_id: int
    last_id: int
    records: int


class Relay:
    def __init__(self, settings: Settings, store: EventStore, producer: KafkaProducer) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.trackings = {app.name: Tracking(store.database(app.name), app.name) for app in store.applications}
        self._subscriber_ids: dict[uuid.UUID, str] = {}

    def relay_once(self, app: Application, limit: int = BATCH) -> RelayedBatch | None:
        """Relay the next batch of one application; None when it is caught up."""
        tracking = self.trackings[app.name]
        start = tracking.position() + 1
        notifications = app.notification_log.select(start=start, limit=min(limit, app.log_section_size))
        if not notifications:
            return None
        records: list[Record] = []
        for notification in notifications:
            records.extend(self._records_of(app, app.mapper.to_domain_event(notification)))
        if records:
            self.producer.produce_all_sync(records)
        tracking.advance(notifications[-1].id)
        return RelayedBatch(app.name, notifications[0].id, notifications[-1].id, len(records))

    def relay_all(self) -> int:
        """Relay until every application is caught up; the number of notifications relayed."""
        total = 0
        for app in self.store.applications:
            while (batch := self.relay_once(app)) is not None:
                total += batch.last_id - batch.first_id + 1
                log.info("relay.batch_relayed", application=batch.application, last_id=batch.last_id, records=batch.records)
        return total

    def _records_of(self, app: Application, domain_event: object) -> list[Record]:
        if isinstance(app, SubscribersApplication):
            return [self._consent_record(app, domain_event)]
        if isinstance(app, DefinitionsApplication):
            return self._definition_records(domain_event)
        return []

    def _consent_record(self, app: SubscribersApplication, domain_event: object) -> Record:
        aggregate_id = domain_event.originator_id  # type: ignore[attr-defined]
        subscriber_id = self._subscriber_id(app, aggregate_id)
        status, list_id, reason = consent_change_of(domain_event)
        change = ConsentChanged(
            consent_event_id=stable_id(app.name, str(aggregate_id), str(domain_event.originator_version)),  # type: ignore[attr-defined]
            subscriber_id=subscriber_id,
            status=status,
            list_id=list_id,
            reason=reason,
            occurred_at=domain_event.timestamp,  # type: ignore[attr-defined]
        )
        return Topic.CONSENT.name(self.settings), subscriber_id.encode(), change.to_bytes()

    def _subscriber_id(self, app: SubscribersApplication, aggregate_id: uuid.UUID) -> str:
        # Only the first event names the subscriber; it is read once per aggregate.
        if aggregate_id not in self._subscriber_ids:
            first = next(iter(app.events.get(aggregate_id, lte=1)))
            if len(self._subscriber_ids) > 100_000:
                self._subscriber_ids.clear()
            self._subscriber_ids[aggregate_id] = first.subscriber_id  # type: ignore[attr-defined]
        return self._subscriber_ids[aggregate_id]

    def _definition_records(self, domain_event: object) -> list[Record]:
        name = type(domain_event).__name__
        if name == "Created":
            return []
        topic = Topic.DEFINITIONS.name(self.settings)
        publication = publication_of(domain_event)
        if publication is not None:
            return [(topic, publication.key.encode(), publication.to_bytes())]
        key = f"{domain_event.kind}:{domain_event.definition_id}"  # type: ignore[attr-defined]
        return [(topic, key.encode(), None)]  # type: ignore[list-item]  # tombstone: not live any more


class RelayThread:
    """Runs a relay in a daemon thread; `nudge()` after a write makes it look at once."""

    def __init__(self, relay: Relay, idle_seconds: float = 0.5) -> None:
        self.relay = relay
        self.idle_seconds = idle_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-store-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def nudge(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = self.idle_seconds
        while not self._stop.is_set():
            try:
                relayed = self.relay.relay_all()
                backoff = self.idle_seconds
            except (ProduceFailed, Exception) as exc:  # keep relaying after a broker or database outage
                log.warning("relay.failed", error=str(exc)[:300])
                relayed, backoff = 0, min(backoff * 2, 10.0)
            if not relayed:
                self._wake.wait(backoff)
                self._wake.clear()


def run_relay(settings: Settings, stop: threading.Event | None = None, poll_seconds: float = 0.2) -> None:
    """`tidings relay`: relay until stopped (SIGTERM/SIGINT) — or killed; tracking makes that safe."""
    from infra.event_store import open_event_store

    store = open_event_store(settings)
    producer = KafkaProducer(settings)
    relay = Relay(settings, store, producer)
    stop = stop or threading.Event()
    log.info("relay.started", applications=[a.name for a in store.applications])
    try:
        while not stop.is_set():
            if not relay.relay_all():
                time.sleep(poll_seconds)
    finally:
        producer.close()
        store.close()
        log.info("relay.stopped")

