"""The same event store cases on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from infra.event_store import open_event_store
from tests.integration.event_store_support import dump_event_store, on_backend

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def store_settings(request, settings):
    yield from on_backend(settings, request.param)


@pytest.fixture
def store(store_settings):
    store = open_event_store(store_settings)
    yield store
    store.close()


def test_subscriber_round_trip_with_history(store):
    store.subscribers.register_or_update("s1", "ann@example.com", lists=["news"], double_opt_in=True, actor="api:t")
    store.subscribers.change("s1", "confirm_opt_in", list_id="news", actor="link:confirm")
    store.subscribers.change("s1", "unsubscribe", list_id=None, actor="link:one-click", reason="one-click")
    view = store.subscribers.view("s1")
    assert (view.email, view.lists, view.globally_unsubscribed) == ("ann@example.com", {"news": "subscribed"}, True)
    assert [(h.event, h.actor) for h in store.subscribers.history("s1")] == [
        ("Registered", "api:t"), ("OptInRequested", "api:t"), ("OptInConfirmed", "link:confirm"),
        ("GloballyUnsubscribed", "link:one-click")]


def test_personal_data_is_stored_only_sealed_and_erasure_makes_it_unreadable(store, store_settings):
    store.subscribers.register_or_update("s2", "bea.secret@example.com", attributes="Bea Secret, likes owls")
    store.subscribers.register_or_update("s2", "bea.other@example.com", attributes="Bea Secret, likes owls")
    dump = dump_event_store(store_settings)
    assert b"bea.secret@example.com" not in dump and b"likes owls" not in dump
    assert store.subscribers.cipher.has_key("s2")
    assert store.subscribers.erase("s2", actor="dpo")
    assert not store.subscribers.cipher.has_key("s2")
    view = store.subscribers.view("s2")
    assert view.erased and view.email is None and view.attributes is None
    # Old events still hold the sealed values; without the key they open to nothing.
    sealed = [e.email_sealed for e in store.subscribers.events.get(view_id(store, "s2")) if hasattr(e, "email_sealed")]
    assert sealed and all(store.subscribers.cipher.open("s2", s) is None for s in sealed if s)


def view_id(store, subscriber_id):
    return store.subscribers.find(subscriber_id).id


def test_a_reopened_store_sees_what_was_saved(store, store_settings):
    store.subscribers.register_or_update("s3", "cy@example.com")
    store.definitions.publish("journey", "welcome", {"steps": [1]}, "ann", "welcome.yaml")
    again = open_event_store(store_settings)
    try:
        assert again.subscribers.view("s3").email == "cy@example.com"
        assert again.definitions.publish("journey", "welcome", {"steps": [1]}, "ann", "welcome.yaml") is None
        assert again.definitions.publish("journey", "welcome", {"steps": [2]}, "bob", "welcome.yaml") == 2
        assert [d.live_version for d in again.definitions.list()] == [2]
    finally:
        again.close()


def test_sending_identities_record_operator_and_remediation_states(store):
    store.sending_identities.register("news.example.com", "hello@news.example.com", ip_pool="warm")
    store.sending_identities.set_state("news.example.com", "throttled", "bounce rate 6%", "remediation:bounce-rate")
    identity = store.sending_identities.set_state("news.example.com", "active", "fixed list", "operator:ann")
    assert identity.state == "active" and identity.version == 3


def test_relay_tracking_never_moves_backwards(store):
    from processors.relay import Tracking

    tracking = Tracking(store.database("Subscribers"), "Subscribers")
    assert tracking.position() == 0
    tracking.advance(7)
    tracking.advance(3)
    assert tracking.position() == 7
