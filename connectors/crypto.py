"""Per-subscriber keys for personal data (crypto-shredding).

Each subscriber gets a random 256-bit AES-GCM key, stored in the `subscriber_keys` table of the
event store database. Personal data is sealed with it before it enters an event or a topic;
erasure replaces the key row with an empty one (a tombstone), after which every sealed value of that
person, in the store or anywhere it was copied, is noise, and no new key is ever made for that id.
The subscriber id is the associated data, so a sealed value cannot be moved to another person.

Sealed values are strings: `pd1.<base64 nonce+ciphertext>`. A sealed email address keeps its domain
in clear (`pd1.<...>@example.com`): mailbox-provider throttling, reputation and the delivery
events' `recipient_domain` need it, and the local part is what names the person.

Who seals and who opens (docs/consent.md, "Erasure"):
- the subscribers application (email, free-text attributes) through `SubscriberKeyCipher`;
- the ingest API (`seal_envelopes`, from connectors/api/writer.py) seals personal traits and any
  email-shaped value of every event before it is produced;
- the sender opens `to` and template variables just before rendering (`open_intent`); a value that
  no longer opens (erased) raises `PersonalDataErased`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.events import EventEnvelope, SendIntent
from infra.event_store import Database
from infra.settings import Settings

SEALED_PREFIX = "pd1."
# What personal data sent for an erased subscriber becomes: it opens to nothing, like old values.
ERASED_VALUE = "pd1.erased"
_CREATE = "CREATE TABLE IF NOT EXISTS subscriber_keys (subscriber_id TEXT PRIMARY KEY, key_bytes BLOB NOT NULL)"

# Trait names whose values are personal data whatever they look like (Segment spec and snake_case).
PERSONAL_TRAITS = frozenset({
    "email", "first_name", "firstname", "firstName", "last_name", "lastname", "lastName", "name", "full_name",
    "fullName", "username", "phone", "phone_number", "phoneNumber", "mobile", "address", "street", "street_address",
    "postal_code", "postalCode", "zip", "zipcode", "birthday", "date_of_birth", "description",
})
# Context keys that identify a person's device or network.
PERSONAL_CONTEXT = frozenset({"ip"})
_EMAIL_INSIDE = re.compile(r"[^\s@<>\"',;:()\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+")
_EMAIL_ONLY = re.compile(r"^[^\s@<>\"',;:()\[\]]+@([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+)$")


class PersonalDataErased(ValueError):
    """A sealed value of this subscriber cannot be opened: the key was destroyed (erasure)."""


# -- the key store ------------------------------------------------------------------------------


class SubscriberKeyCipher:
    """Implements domain.subscribers.PersonalDataCipher on the `subscriber_keys` table.

    A row with an empty key is a tombstone: the subscriber was erased and gets no key again.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        db.execute(_CREATE)
        if not db.is_postgres:
            # A deleted key must not linger in free pages of the file.
            db.execute("PRAGMA secure_delete=ON")

    def key_for(self, subscriber_id: str, create: bool) -> bytes | None:
        """The subscriber's key; made when absent and `create`; None when absent or erased."""
        rows = self.db.execute("SELECT key_bytes FROM subscriber_keys WHERE subscriber_id = ?", (subscriber_id,))
        if rows:
            return bytes(rows[0][0]) or None
        if not create:
            return None
        self.db.execute(
            "INSERT INTO subscriber_keys (subscriber_id, key_bytes) VALUES (?, ?) ON CONFLICT (subscriber_id) DO NOTHING",
            (subscriber_id, AESGCM.generate_key(bit_length=256)),
        )
        return self.key_for(subscriber_id, create=False)

    def seal(self, subscriber_id: str, plaintext: str) -> str:
        key = self.key_for(subscriber_id, create=True)
        if key is None:
            raise PersonalDataErased(f"subscriber_id: {subscriber_id!r} was erased; nothing is sealed for it")
        return seal_text(key, subscriber_id, plaintext)

    def open(self, subscriber_id: str, sealed: str) -> str | None:
        key = self.key_for(subscriber_id, create=False)
        return None if key is None else open_text(key, subscriber_id, sealed)

    def destroy(self, subscriber_id: str) -> None:
        self.db.execute("DELETE FROM subscriber_keys WHERE subscriber_id = ?", (subscriber_id,))
        self.db.execute(
            "INSERT INTO subscriber_keys (subscriber_id, key_bytes) VALUES (?, ?) ON CONFLICT (subscriber_id) DO NOTHING",
            (subscriber_id, b""),
        )
        self._forget_old_pages()

    def has_key(self, subscriber_id: str) -> bool:
        return self.key_for(subscriber_id, create=False) is not None

    def _forget_old_pages(self) -> None:
        # Best effort: SQLite's WAL still holds the old page until a checkpoint; PostgreSQL keeps the
        # dead tuple until a vacuum. Neither may fail an erasure that is already recorded.
        try:
            if self.db.is_postgres:
                self.db.execute("VACUUM subscriber_keys")
            else:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception:  # noqa: BLE001
            pass


def seal_text(key: bytes, subscriber_id: str, plaintext: str) -> str:
    """`plaintext` sealed under `key`; an email address keeps its domain in clear after the sealed part."""
    nonce = os.urandom(12)
    sealed = SEALED_PREFIX + base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), subscriber_id.encode())).decode()
    address = _EMAIL_ONLY.match(plaintext)
    return f"{sealed}@{address.group(1).lower()}" if address else sealed


def open_text(key: bytes, subscriber_id: str, sealed: str) -> str | None:
    """The plaintext of a sealed value, or None when it does not open with `key`."""
    if not sealed.startswith(SEALED_PREFIX) or sealed == ERASED_VALUE:
        return None
    body = sealed[len(SEALED_PREFIX):].partition("@")[0]  # base64 has no "@"
    try:
        raw = base64.b64decode(body, validate=True)
        return AESGCM(key).decrypt(raw[:12], raw[12:], subscriber_id.encode()).decode()
    except (InvalidTag, binascii.Error, ValueError):
        return None


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


# -- keys for a process: cached, opened lazily --------------------------------------------------


class KeyRing:
    """Per-subscriber keys read from the key store, cached for `ttl_seconds` in an LRU.

    Sealing with a key erased within the TTL is harmless (the value opens to nothing afterwards);
    opening with it is what the TTL bounds: an erasure reaches every process within `ttl_seconds`.
    The store is opened on first use, so a process that never meets personal data never opens it.
    """

    def __init__(self, open_store: Callable[[], SubscriberKeyCipher], ttl_seconds: float = 5.0,
                 max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._open_store = open_store
        self._store: SubscriberKeyCipher | None = None
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._cache: OrderedDict[tuple[str, bool], tuple[float, bytes | None]] = OrderedDict()
        self._lock = threading.Lock()

    def sealing_key(self, subscriber_id: str) -> bytes | None:
        """The key to seal with, made when the subscriber has none; None when erased."""
        return self._lookup(subscriber_id, create=True)

    def opening_key(self, subscriber_id: str) -> bytes | None:
        """The key to open with; None when the subscriber has none (never sealed, or erased)."""
        return self._lookup(subscriber_id, create=False)

    def _lookup(self, subscriber_id: str, create: bool) -> bytes | None:
        now = self._clock()
        with self._lock:
            hit = self._cache.get((subscriber_id, create))
            if hit is not None and hit[0] > now:
                self._cache.move_to_end((subscriber_id, create))
                return hit[1]
            if self._store is None:
                self._store = self._open_store()
            key = self._store.key_for(subscriber_id, create=create)
            self._cache[(subscriber_id, create)] = (now + self._ttl, key)
            self._cache.move_to_end((subscriber_id, create))
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
            return key


_RINGS: dict[tuple[Any, ...], KeyRing] = {}
_RINGS_LOCK = threading.Lock()


def key_ring_for(settings: Settings) -> KeyRing:
    """The process's key ring for the event store `settings` name (one per store)."""
    from domain.subscribers import SubscribersApplication
    from infra.event_store import database_for

    where = (settings.event_store, str(settings.data_dir.resolve()), settings.postgres_host, settings.postgres_port,
             settings.postgres_dbname, settings.postgres_schema)
    with _RINGS_LOCK:
        if where not in _RINGS:
            _RINGS[where] = KeyRing(lambda: SubscriberKeyCipher(database_for(settings, SubscribersApplication.name)))
        return _RINGS[where]


# -- sealing at ingest --------------------------------------------------------------------------


def seal_envelopes(ring: KeyRing, envelopes: Iterable[EventEnvelope]) -> list[EventEnvelope]:
    """Every envelope with its personal data sealed under its subscriber's key (blocking I/O)."""
    return [seal_envelope(ring, envelope) for envelope in envelopes]


def needs_sealing(envelope: EventEnvelope) -> bool:
    """Whether `envelope` carries anything `seal_envelope` would change (pure, no key lookup)."""
    return _has_personal(envelope.properties, personal_keys=frozenset()) or _has_personal(
        envelope.context, personal_keys=PERSONAL_CONTEXT, traits_level=True)


def seal_envelope(ring: KeyRing, envelope: EventEnvelope) -> EventEnvelope:
    """`envelope` with personal traits, `context.ip` and every email-shaped value sealed.

    For an erased subscriber those values become `ERASED_VALUE`: nothing new is kept about them.
    """
    if not needs_sealing(envelope):
        return envelope
    key = ring.sealing_key(envelope.subscriber_id)

    def seal(text: str) -> str:
        return ERASED_VALUE if key is None else seal_text(key, envelope.subscriber_id, text)

    properties = _seal_tree(envelope.properties, seal, personal_keys=frozenset())
    context = _seal_tree(envelope.context, seal, personal_keys=PERSONAL_CONTEXT, traits_level=True)
    return envelope.model_copy(update={"properties": properties, "context": context})


def _has_personal(value: Any, personal_keys: frozenset[str], traits_level: bool = False, whole: bool = False) -> bool:
    if isinstance(value, str):
        return value != "" and not is_sealed(value) and (whole or _EMAIL_INSIDE.search(value) is not None)
    if isinstance(value, dict):
        return any(
            _has_personal(v, PERSONAL_TRAITS if traits_level and k == "traits" else frozenset(),
                          whole=whole or (k in personal_keys))
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_has_personal(v, personal_keys, whole=whole) for v in value)
    return whole and value is not None and not isinstance(value, bool)


def _seal_tree(value: Any, seal: Callable[[str], str], personal_keys: frozenset[str], traits_level: bool = False,
               whole: bool = False) -> Any:
    """Seal strings under a personal key (numbers too, as text) and any string holding an email address."""
    if isinstance(value, str):
        if value == "" or is_sealed(value):
            return value  # an empty value stays empty: the journeys' `no_email` check still sees it
        return seal(value) if whole or _EMAIL_INSIDE.search(value) else value
    if isinstance(value, dict):
        return {
            k: _seal_tree(v, seal, PERSONAL_TRAITS if traits_level and k == "traits" else frozenset(),
                          whole=whole or (k in personal_keys))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_seal_tree(v, seal, personal_keys, whole=whole) for v in value]
    if whole and value is not None and not isinstance(value, bool):
        return seal(str(value))
    return value


# -- opening in the sender ----------------------------------------------------------------------


def unseal_tree(ring: KeyRing, subscriber_id: str, value: Any) -> Any:
    """`value` with every sealed string opened; `PersonalDataErased` when one does not open."""
    if not _contains_sealed(value):
        return value
    key = ring.opening_key(subscriber_id)
    if key is None:
        raise PersonalDataErased("erased")

    def open_(node: Any) -> Any:
        if isinstance(node, str):
            if not is_sealed(node):
                return node
            text = open_text(key, subscriber_id, node)
            if text is None:
                raise PersonalDataErased("erased")
            return text
        if isinstance(node, dict):
            return {k: open_(v) for k, v in node.items()}
        if isinstance(node, list):
            return [open_(v) for v in node]
        return node

    return open_(value)


def open_intent(settings: Settings, intent: SendIntent) -> SendIntent:
    """`intent` with `to` and `variables` opened, for rendering and the SMTP envelope only.

    The result must not be stored or produced anywhere: it carries personal data in clear.
    Raises `PersonalDataErased` when the subscriber was erased.
    """
    if not (is_sealed(intent.to) or _contains_sealed(intent.variables)):
        return intent
    opened = unseal_tree(key_ring_for(settings), intent.subscriber_id, {"to": intent.to, "variables": intent.variables})
    return intent.model_copy(update=opened)


def _contains_sealed(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith(SEALED_PREFIX)
    if isinstance(value, dict):
        return any(_contains_sealed(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_sealed(v) for v in value)
    return False
