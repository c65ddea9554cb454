"""Segment-spec ingestion (`track`, `identify`, `page`, `batch`) so product systems keep their SDKs.

Mapping to `EventEnvelope` (source "segment"):
- subscriber_id = `userId`, else `anonymousId` (one is required; "" counts as absent, as
  RudderStack SDKs send it for anonymous users);
- event_id = `messageId` (an id that does not fit our id syntax is hashed to a stable one, so
  retries still dedupe), else a new uuid;
- occurred_at = `timestamp`, else `originalTimestamp`, else the time received;
- track: type = `event`, properties = `properties`;
- identify: type "identify", `context.traits` = the given context's traits updated with `traits`;
- page: type "page", properties = `properties` plus `name` and `category` when given.
A batch's top-level `context` is the default for each message's context.

Unlike the native endpoint, unknown fields are ignored: SDKs add their own (`integrations`,
`sentAt`, `_metadata`, `writeKey`, ...). Only track, identify and page calls are accepted.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.api.errors import invalid, issue
from connectors.api.ingest import ItemProblem, build_all, new_event_id, require_batch, require_object
from domain.events import EVENT_NAME_PATTERN, ID_PATTERN, EventEnvelope, stable_id

_ID = re.compile(ID_PATTERN)


class SegmentCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    call_type: ClassVar[str]

    userId: str | None = Field(default=None, pattern=ID_PATTERN)
    anonymousId: str | None = Field(default=None, pattern=ID_PATTERN)
    messageId: str | None = None
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("userId", "anonymousId", "messageId", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        return None if value == "" else value

    def to_envelope(self, shared_context: dict[str, Any], received_at: datetime) -> EventEnvelope:
        subscriber_id = self.userId or self.anonymousId
        if subscriber_id is None:
            raise ItemProblem(("userId",), "userId or anonymousId is required", "missing")
        return EventEnvelope(
            event_id=_event_id(self.messageId),
            type=self.event_type(),
            subscriber_id=subscriber_id,
            occurred_at=self.timestamp or self.originalTimestamp or received_at,
            received_at=received_at,
            source="segment",
            properties=self.event_properties(),
            context=self.event_context({**shared_context, **self.context}),
        )

    def event_type(self) -> str:
        return self.call_type

    def event_properties(self) -> dict[str, Any]:
        return {}

    def event_context(self, context: dict[str, Any]) -> dict[str, Any]:
        return context


class TrackCall(SegmentCall):
    call_type = "track"
    type: Literal["track"] | None = None
    event: str = Field(pattern=EVENT_NAME_PATTERN)
    properties: dict[str, Any] = Field(default_factory=dict)

    def event_type(self) -> str:
        return self.event

    def event_properties(self) -> dict[str, Any]:
        return self.properties


class IdentifyCall(SegmentCall):
    call_type = "identify"
    type: Literal["identify"] | None = None
    traits: dict[str, Any] = Field(default_factory=dict)

    def event_context(self, context: dict[str, Any]) -> dict[str, Any]:
        given = context.get("traits")
        return {**context, "traits": {**(given if isinstance(given, dict) else {}), **self.traits}}


class PageCall(SegmentCall):
    call_type = "page"
    type: Literal["page"] | None = None
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    def event_properties(self) -> dict[str, Any]:
        named = {key: value for key, value in (("name", self.name), ("category", self.category)) if value is not None}
        return {**self.properties, **named}


CALLS: dict[str, type[SegmentCall]] = {call.call_type: call for call in (TrackCall, IdentifyCall, PageCall)}


def parse_segment_call(call_type: str, payload: Any, received_at: datetime) -> list[EventEnvelope]:
    """The envelope for one `POST /v1/{track,identify,page}` body."""
    body = require_object(payload)
    return build_all([((), body)], lambda item: CALLS[call_type].model_validate(item).to_envelope({}, received_at))


def parse_segment_batch(payload: Any, received_at: datetime) -> list[EventEnvelope]:
    """The envelopes for a `POST /v1/batch` body: `{"batch": [...], "context": {...}}`."""
    body = require_object(payload)
    if "batch" not in body:
        raise invalid([issue(("batch",), "Field required", "missing")], events=1)
    shared_context = body.get("context")
    if shared_context is None:
        shared_context = {}
    if not isinstance(shared_context, dict):
        raise invalid([issue(("context",), "Input should be a valid dictionary", "dict_type")], events=1)
    items = require_batch(body["batch"], "batch")

    def build(item: dict[str, Any]) -> EventEnvelope:
        call_type = item.get("type")
        call = CALLS.get(call_type) if isinstance(call_type, str) else None
        if call is None:
            # The given value is not echoed: error texts are logged, and they must never carry personal data.
            raise ItemProblem(("type",), f"unsupported or missing call type; expected one of: {', '.join(CALLS)}")
        return call.model_validate(item).to_envelope(shared_context, received_at)

    return build_all([(("batch", index), item) for index, item in enumerate(items)], build)


def _event_id(message_id: str | None) -> str:
    if message_id is None:
        return new_event_id()
    return message_id if _ID.match(message_id) else stable_id("segment", message_id)
