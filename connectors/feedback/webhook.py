"""A generic HMAC-signed feedback webhook, for ESPs and MTAs that can post JSON.

The sender signs `<timestamp>.<raw body>` with HMAC-SHA256 and the shared secret and sends
`X-Tidings-Timestamp: <unix seconds>` and `X-Tidings-Signature: v1=<hex>`. A request is accepted
when the signature matches, the timestamp is within the tolerance, and the same signature has not
been seen within that window (a replay). The body:

    {"events": [{"id": "esp-event-id", "type": "bounced|deferred|complained|unsubscribed|opened|clicked",
                 "intent_id": "...", "subscriber_id": "...",       # or "ref": "<X-Tidings-Ref value>"
                 "occurred_at": "2026-11-02T09:30:00Z", "recipient": "a@b.test",
                 "bounce_type": "hard|soft", "smtp_code": 550, "status": "5.1.1", "detail": "..."}]}

The event `id` (the ESP's own) makes retries of the same event count once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.feedback.report import Feedback, FeedbackError

TIMESTAMP_HEADER = "X-Tidings-Timestamp"
SIGNATURE_HEADER = "X-Tidings-Signature"
MAX_EVENTS = 500
ID = r"^[A-Za-z0-9_.:@+\-]{1,128}$"


class WebhookRefused(FeedbackError):
    """The request is unsigned, badly signed, stale or a replay."""


def signature_for(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


class ReplayGuard:
    """Signatures seen within the tolerance window (bounded; per process)."""

    def __init__(self, window_seconds: float, max_entries: int = 100_000) -> None:
        self.window = window_seconds
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, signature: str, now: float) -> bool:
        while self._seen and (next(iter(self._seen.values())) < now - 2 * self.window or len(self._seen) > self.max_entries):
            self._seen.popitem(last=False)
        if signature in self._seen:
            return False
        self._seen[signature] = now
        return True


@dataclass
class WebhookVerifier:
    secret: str
    tolerance_seconds: float = 300
    guard: ReplayGuard | None = None

    def __post_init__(self) -> None:
        if self.guard is None:
            self.guard = ReplayGuard(self.tolerance_seconds)

    def verify(self, headers: dict[str, str], body: bytes, now: float | None = None) -> None:
        if not self.secret:
            raise WebhookRefused("the generic webhook is disabled: TIDINGS_WEBHOOK_SECRET is not set")
        now = time.time() if now is None else now
        timestamp = headers.get(TIMESTAMP_HEADER.lower(), "")
        signature = headers.get(SIGNATURE_HEADER.lower(), "")
        if not timestamp or not signature:
            raise WebhookRefused(f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers are required")
        if not timestamp.isdigit() or len(timestamp) > 12:
            raise WebhookRefused(f"{TIMESTAMP_HEADER}: must be Unix seconds")
        expected = signature_for(self.secret, timestamp, body)
        if not any(hmac.compare_digest(expected, s.strip()) for s in signature.split(",")[:5]):
            raise WebhookRefused("bad signature")
        if abs(now - int(timestamp)) > self.tolerance_seconds:
            raise WebhookRefused(f"timestamp outside the {self.tolerance_seconds:.0f}s tolerance")
        assert self.guard is not None
        if not self.guard.first_time(expected, now):
            raise WebhookRefused("replayed request")


class WebhookEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=ID)
    type: str = Field(pattern="^(bounced|deferred|complained|unsubscribed|opened|clicked)$")
    intent_id: str = Field("", max_length=128)
    subscriber_id: str = Field("", max_length=128)
    ref: str = Field("", max_length=1024)
    occurred_at: datetime | None = None
    recipient: str = Field("", max_length=320)
    bounce_type: str = Field("", pattern="^(|hard|soft)$")
    smtp_code: int | None = Field(None, ge=200, le=599)
    status: str = Field("", pattern=r"^(|[245]\.\d{1,3}\.\d{1,3})$")
    detail: str = Field("", max_length=500)


def parse_events(body: bytes) -> list[tuple[Feedback, str, str]]:
    """(report, intent id, subscriber id) per event; a bad body is a FeedbackError naming the field."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        raise FeedbackError("body: not JSON") from None
    items = data.get("events") if isinstance(data, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_EVENTS:
        raise FeedbackError(f"events: must be a list of 1 to {MAX_EVENTS} events")
    out = []
    for index, item in enumerate(items):
        try:
            event = WebhookEvent.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise FeedbackError(f"events[{index}].{where}: {first['msg']}") from None
        if not event.ref and not (event.intent_id and event.subscriber_id):
            raise FeedbackError(f"events[{index}]: needs intent_id and subscriber_id, or ref")
        if event.type == "bounced" and not event.bounce_type:
            raise FeedbackError(f"events[{index}].bounce_type: required for a bounce (hard or soft)")
        occurred = event.occurred_at
        if occurred is not None and occurred.tzinfo is None:
            occurred = occurred.replace(tzinfo=timezone.utc)
        feedback = Feedback(
            kind=event.type,  # type: ignore[arg-type]
            source="webhook", source_id=event.id, recipient=event.recipient, ref=event.ref,
            code=event.smtp_code, status=event.status, bounce_type=event.bounce_type,  # type: ignore[arg-type]
            detail=event.detail, occurred_at=occurred,
        )
        out.append((feedback, event.intent_id, event.subscriber_id))
    return out
