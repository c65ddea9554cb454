"""Contracts that cross process boundaries: what travels on Kafka topics.

Every payload is a pydantic model serialised as UTF-8 JSON. `schema_version` lets consumers
upcast old records when a contract changes.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

EVENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\- ]{0,127}$"
ID_PATTERN = r"^[A-Za-z0-9_.:@+\-]{1,128}$"


def _aware(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; everything is stored in UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def stable_id(*parts: str) -> str:
    """A deterministic id from its parts: replays produce the same id, so effects dedupe on it."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes | str):  # type: ignore[no-untyped-def]
        return cls.model_validate_json(raw)


class EventEnvelope(Contract):
    """One thing a subscriber did, as reported by a product system. Key: `subscriber_id`."""

    event_id: str = Field(pattern=ID_PATTERN)
    type: str = Field(pattern=EVENT_NAME_PATTERN)
    subscriber_id: str = Field(pattern=ID_PATTERN)
    occurred_at: datetime
    received_at: datetime
    source: Literal["api", "segment", "kafka", "demo", "internal"] = "api"
    schema_version: int = 1
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)

    _aware_times = field_validator("occurred_at", "received_at")(_aware)

    @property
    def traits(self) -> dict[str, Any]:
        """Profile attributes carried by an `identify` (Segment puts them in `traits`)."""
        traits = self.context.get("traits")
        return traits if isinstance(traits, dict) else {}


class SegmentMembershipChanged(Contract):
    """A subscriber entered or left a segment. Key: `subscriber_id`."""

    change_id: str
    segment_id: str
    segment_version: int
    subscriber_id: str
    change: Literal["entered", "exited"]
    occurred_at: datetime
    cause_event_ids: list[str] = Field(default_factory=list)
    schema_version: int = 1

    _aware_times = field_validator("occurred_at")(_aware)


class SendIntent(Contract):
    """A decision to send one template to one subscriber. Key: `subscriber_id`.

    `intent_id` is derived from (journey, version, step, subscriber, entry key), so replaying the
    events that produced it produces the same id and the sender's ledger sends it at most once.
    """

    intent_id: str
    subscriber_id: str
    journey_id: str
    journey_version: int
    step_id: str
    template_id: str
    to: str
    variables: dict[str, Any] = Field(default_factory=dict)
    trigger_event_id: str
    created_at: datetime
    transactional: bool = False
    priority: int = 0
    schema_version: int = 1

    _aware_times = field_validator("created_at")(_aware)


DeliveryKind = Literal[
    "accepted",
    "deferred",
    "bounced",
    "ambiguous",
    "skipped",
    "complained",
    "opened",
    "clicked",
    "unsubscribed",
]


class DeliveryEvent(Contract):
    """Something that happened to a send intent's message. Key: `subscriber_id`."""

    delivery_id: str
    intent_id: str
    subscriber_id: str
    kind: DeliveryKind
    occurred_at: datetime
    journey_id: str = ""
    template_id: str = ""
    sending_domain: str = ""
    recipient_domain: str = ""
    message_id: str = ""
    smtp_code: int | None = None
    enhanced_status: str = ""
    bounce_type: Literal["", "hard", "soft"] = ""
    attempt: int = 1
    detail: str = ""
    schema_version: int = 1

    _aware_times = field_validator("occurred_at")(_aware)


class ReputationSnapshot(Contract):
    """Current counts and state for one sending identity and mailbox provider. Compacted by key."""

    sending_domain: str
    provider: str = "all"
    sent: int = 0
    accepted: int = 0
    bounced: int = 0
    deferred: int = 0
    complained: int = 0
    state: Literal["healthy", "warning", "throttled", "paused"] = "healthy"
    updated_at: datetime
    schema_version: int = 1
    # Added by the reputation stage (docs/reputation.md); the flat counts above are the 24h window.
    hard_bounced: int = 0
    soft_bounced: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    score: float | None = None
    window_end: datetime | None = None
    windows: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    control: dict[str, Any] = Field(default_factory=dict)

    _aware_times = field_validator("updated_at")(_aware)

    @property
    def key(self) -> str:
        return f"{self.sending_domain}|{self.provider}"


class DefinitionPublished(Contract):
    """A journey, segment or template version went live. Compacted by `kind:id`."""

    kind: Literal["journey", "segment", "template"]
    definition_id: str
    version: int
    content_hash: str
    body: dict[str, Any]
    published_at: datetime
    schema_version: int = 1

    _aware_times = field_validator("published_at")(_aware)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.definition_id}"


class ConsentChanged(Contract):
    """A subscriber's consent changed (filled in by the event store relay). Key: `subscriber_id`."""

    consent_event_id: str
    subscriber_id: str
    status: Literal["subscribed", "unsubscribed", "suppressed", "erased"]
    list_id: str = ""
    reason: str = ""
    occurred_at: datetime
    schema_version: int = 1

    _aware_times = field_validator("occurred_at")(_aware)


class DeadLetter(Contract):
    """A record a processor could not decode, kept with where it came from and why."""

    dead_letter_id: str
    topic: str
    partition: int
    offset: int
    error: str
    raw: str
    processor: str
    occurred_at: datetime
    schema_version: int = 1

    _aware_times = field_validator("occurred_at")(_aware)
