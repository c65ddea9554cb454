"""Sealing personal data at ingest and opening it in the sender (connectors/crypto.py), on an
in-memory key store: what is sealed, what stays clear, and what an erased key does."""

from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from connectors.crypto import (
    ERASED_VALUE,
    KeyRing,
    PersonalDataErased,
    is_sealed,
    needs_sealing,
    open_text,
    seal_envelope,
    seal_text,
    unseal_tree,
)
from domain.events import EventEnvelope, SendIntent
from domain.policy import provider_of

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


class MemoryKeys:
    """The key store's contract (`key_for`), tombstones included, without a database."""

    def __init__(self):
        self.rows: dict[str, bytes] = {}
        self.lookups = 0

    def key_for(self, subscriber_id, create):
        self.lookups += 1
        if subscriber_id not in self.rows and create:
            self.rows[subscriber_id] = AESGCM.generate_key(bit_length=256)
        return self.rows.get(subscriber_id) or None

    def destroy(self, subscriber_id):
        self.rows[subscriber_id] = b""


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def keys():
    return MemoryKeys()


@pytest.fixture
def ring(keys):
    return KeyRing(lambda: keys, ttl_seconds=0)


def event(**fields):
    return EventEnvelope(event_id="e1", type="identify", subscriber_id="s1", occurred_at=NOW, received_at=NOW, **fields)


def test_personal_traits_and_email_shaped_values_are_sealed_and_the_rest_stays_clear(ring):
    original = event(
        properties={"plan": "pro", "referrer": "Ask bob.ref@example.net", "name": "Pricing page", "items": 3},
        context={"ip": "203.0.113.9", "locale": "en",
                 "traits": {"email": "ann.secret@Example.COM", "first_name": "Annabel", "lastName": "Quill",
                            "phone": 5550100, "address": {"city": "Hammerfest", "country": "NO"}, "plan": "pro",
                            "timezone": "Europe/Oslo", "nickname": "a@b.co", "opted_in": True, "email2": ""}},
    )
    sealed = seal_envelope(ring, original)
    raw = sealed.to_bytes()
    for secret in (b"ann.secret", b"Annabel", b"Quill", b"5550100", b"Hammerfest", b"bob.ref", b"203.0.113.9", b"a@b.co"):
        assert secret not in raw
    traits = sealed.traits
    assert (traits["plan"], traits["timezone"], traits["opted_in"], traits["email2"]) == ("pro", "Europe/Oslo", True, "")
    assert sealed.properties["plan"] == "pro" and sealed.properties["items"] == 3
    assert sealed.properties["name"] == "Pricing page"  # a page name is no trait: only email-shaped values are sealed here
    assert sealed.context["locale"] == "en"
    # The domain of a sealed address stays readable: provider throttling and reputation need it.
    assert traits["email"].endswith("@example.com") and provider_of(traits["email"]) == "other"
    assert unseal_tree(ring, "s1", sealed.context) == {
        **original.context, "traits": {**original.traits, "phone": "5550100"}}  # numbers come back as text
    assert unseal_tree(ring, "s1", sealed.properties) == original.properties


def test_an_envelope_without_personal_data_is_returned_as_is_without_a_key_lookup(keys, ring):
    plain = event(properties={"plan": "pro"}, context={"traits": {"plan": "pro"}})
    assert not needs_sealing(plain)
    assert seal_envelope(ring, plain) is plain and keys.lookups == 0


def test_sealing_twice_changes_nothing(ring):
    once = seal_envelope(ring, event(context={"traits": {"email": "x@example.org"}}))
    assert not needs_sealing(once)
    assert seal_envelope(ring, once) is once


def test_a_value_sealed_for_one_subscriber_does_not_open_for_another(ring):
    sealed = seal_envelope(ring, event(context={"traits": {"email": "x@example.org"}})).traits["email"]
    ring.sealing_key("s2")
    with pytest.raises(PersonalDataErased):
        unseal_tree(ring, "s2", sealed)


def test_after_erasure_old_values_do_not_open_and_new_ones_are_not_kept(keys, ring):
    sealed = seal_envelope(ring, event(context={"traits": {"email": "x@example.org"}}))
    keys.destroy("s1")
    with pytest.raises(PersonalDataErased, match="erased"):
        unseal_tree(ring, "s1", sealed.context)
    again = seal_envelope(ring, event(context={"traits": {"email": "x@example.org", "first_name": "X"}}))
    assert again.traits == {"email": ERASED_VALUE, "first_name": ERASED_VALUE}
    assert "s1" in keys.rows and keys.rows["s1"] == b""  # no new key for an erased id
    with pytest.raises(PersonalDataErased):
        unseal_tree(ring, "s1", again.context)


def test_keys_are_cached_until_the_ttl_passes(keys):
    clock = Clock()
    ring = KeyRing(lambda: keys, ttl_seconds=5, clock=clock)
    key = ring.sealing_key("s1")
    assert ring.opening_key("s1") == key
    lookups = keys.lookups
    for _ in range(10):
        ring.opening_key("s1")
    assert keys.lookups == lookups
    keys.destroy("s1")
    clock.now = 6
    assert ring.opening_key("s1") is None


def test_the_lru_drops_the_least_recent_subscriber(keys):
    ring = KeyRing(lambda: keys, ttl_seconds=60, max_entries=2)
    for sid in ("a", "b", "c"):
        ring.opening_key(sid)
    lookups = keys.lookups
    ring.opening_key("c")
    assert keys.lookups == lookups
    ring.opening_key("a")
    assert keys.lookups == lookups + 1


def test_tampered_or_malformed_sealed_values_do_not_open():
    key = AESGCM.generate_key(bit_length=256)
    sealed = seal_text(key, "s1", "hello")
    assert open_text(key, "s1", sealed) == "hello"
    assert open_text(key, "s1", sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]) is None
    assert open_text(key, "s1", "pd1.not base64!") is None
    assert open_text(key, "s1", ERASED_VALUE) is None
    assert open_text(key, "s1", "plain") is None


def test_unsealing_leaves_clear_values_alone_and_opens_nested_ones(ring):
    key = ring.sealing_key("s1")
    tree = {"subscriber": {"first_name": seal_text(key, "s1", "Ann"), "plan": "pro", "tags": [seal_text(key, "s1", "t")]},
            "n": 1}
    assert unseal_tree(ring, "s1", tree) == {"subscriber": {"first_name": "Ann", "plan": "pro", "tags": ["t"]}, "n": 1}
    assert unseal_tree(ring, "nobody", {"plain": "value"}) == {"plain": "value"}


def test_a_sealed_intent_opens_for_rendering(ring, monkeypatch):
    import connectors.crypto as crypto

    monkeypatch.setattr(crypto, "key_ring_for", lambda settings: ring)
    key = ring.sealing_key("s1")
    intent = SendIntent(intent_id="i1", subscriber_id="s1", journey_id="j", journey_version=1, step_id="st",
                        template_id="t", to=seal_text(key, "s1", "ann@example.com"),
                        variables={"subscriber": {"first_name": seal_text(key, "s1", "Ann")}},
                        trigger_event_id="e1", created_at=NOW)
    assert is_sealed(intent.to)
    opened = crypto.open_intent(None, intent)  # type: ignore[arg-type]
    assert (opened.to, opened.variables) == ("ann@example.com", {"subscriber": {"first_name": "Ann"}})
    clear = intent.model_copy(update={"to": "bo@example.com", "variables": {}})
    assert crypto.open_intent(None, clear) is clear  # type: ignore[arg-type]
