"""Native ingest input: what `POST /v1/events` accepts, its limits, and its mapping to `EventEnvelope`.

A body is ONE event object or `{"events": [...]}` with 1..500 events. The whole request is checked
before anything is produced, so a rejected request writes nothing.

`event_id` is optional: without it the server makes one (uuid4 hex) and returns it, but a retried
request then gets new ids and is NOT deduplicated. Clients that retry should send their own ids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.api.errors import ApiError, field_path, invalid, issue, issues_from
from domain.events import EVENT_NAME_PATTERN, ID_PATTERN, EventEnvelope

MAX_EVENT_BYTES = 32 * 1024
MAX_BODY_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 500

Loc = tuple[str | int, ...]


class ItemProblem(Exception):
    """One event is invalid in a way pydantic does not express; `loc` is relative to the event."""

    def __init__(self, loc: Loc, message: str, kind: str = "value_error") -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
        self.kind = kind


class EventIn(BaseModel):
    """One event as a product system sends it to `POST /v1/events`."""

    model_config = ConfigDict(extra="forbid")

    event_id: str | None = Field(default=None, pattern=ID_PATTERN)
    type: str = Field(pattern=EVENT_NAME_PATTERN)
    subscriber_id: str = Field(pattern=ID_PATTERN)
    occurred_at: datetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)

    def to_envelope(self, received_at: datetime) -> EventEnvelope:
        return EventEnvelope(
            event_id=self.event_id or new_event_id(),
            type=self.type,
            subscriber_id=self.subscriber_id,
            occurred_at=self.occurred_at or received_at,
            received_at=received_at,
            source="api",
            properties=self.properties,
            context=self.context,
        )


def new_event_id() -> str:
    return uuid.uuid4().hex


def parse_native(payload: Any, received_at: datetime) -> list[EventEnvelope]:
    """Envelopes for a `POST /v1/events` body, or an `ApiError` naming the first problem."""
    body = require_object(payload)
    if "events" not in body:
        return build_all([((), body)], lambda item: EventIn.model_validate(item).to_envelope(received_at))
    unknown = [issue((name,), "unknown field; a batch body has only 'events'", "extra_forbidden") for name in body if name != "events"]
    if unknown:
        raise invalid(unknown, events=1)
    items = require_batch(body["events"], "events")
    located = [(("events", index), item) for index, item in enumerate(items)]
    return build_all(located, lambda item: EventIn.model_validate(item).to_envelope(received_at))


def require_object(payload: Any, field: str = "body") -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ApiError(422, f"invalid {field}: expected a JSON object, got {_json_type(payload)}", reason="invalid", field=field)
    return payload


def require_batch(items: Any, field: str) -> list[Any]:
    """A batch list of 1..MAX_BATCH_EVENTS items. Too many is 413, like every other size limit."""
    if not isinstance(items, list):
        raise ApiError(422, f"invalid {field}: expected a JSON array, got {_json_type(items)}", reason="invalid", field=field)
    if not items:
        raise ApiError(422, f"invalid {field}: the batch is empty; send 1 to {MAX_BATCH_EVENTS} events", reason="invalid", field=field)
    if len(items) > MAX_BATCH_EVENTS:
        raise ApiError(
            413,
            f"{field} has {len(items)} events; a batch may have at most {MAX_BATCH_EVENTS}",
            reason="batch_too_large",
            field=field,
            events=len(items),
        )
    return items


def build_all(located: Sequence[tuple[Loc, Any]], build: Callable[[Any], EventEnvelope]) -> list[EventEnvelope]:
    """Every item built, or one error listing every problem. Sizes are checked before contents."""
    for loc, item in located:
        check_event_size(item, loc, events=len(located))
    envelopes: list[EventEnvelope] = []
    issues: list[dict[str, Any]] = []
    for loc, item in located:
        try:
            if not isinstance(item, dict):
                raise ItemProblem((), f"expected an event object, got {_json_type(item)}", "model_type")
            envelopes.append(build(item))
        except ValidationError as exc:
            issues.extend(issues_from(exc, loc))
        except ItemProblem as problem:
            issues.append(issue((*loc, *problem.loc), problem.message, problem.kind))
    if issues:
        for entry in issues:
            entry["field"] = entry["field"] or "body"
        raise invalid(issues, events=len(located))
    return envelopes


def check_event_size(item: Any, loc: Loc, events: int = 1) -> None:
    size = len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_EVENT_BYTES:
        field = field_path(loc) or "body"
        raise ApiError(
            413,
            f"{field} is {size} bytes of JSON; one event may be at most {MAX_EVENT_BYTES} bytes (32 KiB)",
            reason="event_too_large",
            field=field,
            events=events,
        )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )
