"""Crypto-shredding on the real key store (SQLite and PostgreSQL): the ingest writer seals with the
key the subscribers application uses, erasure leaves a tombstone that no later event re-keys, and
the sender's opening side sees the erasure."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from connectors.api.dedupe import RecentIds
from connectors.api.metrics import ApiMetrics
from connectors.api.writer import EventWriter
from connectors.crypto import ERASED_VALUE, KeyRing, PersonalDataErased, SubscriberKeyCipher, unseal_tree
from domain.events import EventEnvelope
from domain.subscribers import SubscribersApplication
from infra.event_store import database_for, open_event_store
from tests.integration.event_store_support import dump_event_store, on_backend

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgres"])
def store_settings(request, settings):
    yield from on_backend(settings, request.param)


class RecordingProducer:
    def __init__(self):
        self.records = []

    async def produce_all(self, records):
        self.records.extend(records)


def identify(event_id: str, subscriber_id: str, email: str) -> EventEnvelope:
    return EventEnvelope(event_id=event_id, type="identify", subscriber_id=subscriber_id, occurred_at=NOW,
                         received_at=NOW, context={"traits": {"email": email, "first_name": "Ottoline"}})


def fresh_ring(settings) -> KeyRing:  # type: ignore[no-untyped-def]
    return KeyRing(lambda: SubscriberKeyCipher(database_for(settings, SubscribersApplication.name)), ttl_seconds=0)


async def test_ingest_seals_with_the_subscribers_key_and_erasure_shreds_it(store_settings):
    store = open_event_store(store_settings)
    try:
        store.subscribers.register_or_update("s9", "otto.line@example.com", actor="test")
        producer = RecordingProducer()
        writer = EventWriter(store_settings, producer, RecentIds(), ApiMetrics())
        await writer.write([identify("e1", "s9", "otto.line@example.com")])
        produced = producer.records[0][2]
        assert b"otto.line" not in produced and b"Ottoline" not in produced
        sealed = EventEnvelope.from_bytes(produced)
        ring = fresh_ring(store_settings)
        assert unseal_tree(ring, "s9", sealed.traits) == {"email": "otto.line@example.com", "first_name": "Ottoline"}
        # The same key as the event store's own sealed email.
        assert store.subscribers.view("s9").email == "otto.line@example.com"

        assert store.subscribers.erase("s9", actor="dpo")
        with pytest.raises(PersonalDataErased):
            unseal_tree(ring, "s9", sealed.traits)
        # An event after the erasure keeps nothing readable (sealed under the destroyed key, or erased).
        await writer.write([identify("e2", "s9", "otto.line@example.com")])
        assert all(b"otto.line" not in value for _, _, value in producer.records)
        later = EventEnvelope.from_bytes(producer.records[-1][2])
        with pytest.raises(PersonalDataErased):
            unseal_tree(ring, "s9", later.traits)
        assert not store.subscribers.cipher.has_key("s9")
        dump = dump_event_store(store_settings)
        assert b"otto.line@example.com" not in dump and b"Ottoline" not in dump
    finally:
        store.close()


def test_an_erased_subscriber_gets_no_new_key(store_settings):
    cipher = SubscriberKeyCipher(database_for(store_settings, SubscribersApplication.name))
    ring = fresh_ring(store_settings)
    assert ring.sealing_key("s1") is not None
    cipher.destroy("s1")
    assert ring.sealing_key("s1") is None and ring.opening_key("s1") is None
    with pytest.raises(PersonalDataErased):
        cipher.seal("s1", "anything")
    cipher.destroy("never-seen")  # erasing someone without a key still leaves the tombstone
    assert ring.sealing_key("never-seen") is None
    from connectors.crypto import seal_envelope

    assert seal_envelope(ring, identify("e3", "s1", "a@example.com")).traits == {
        "email": ERASED_VALUE, "first_name": ERASED_VALUE}
