"""The send ledger: at most one accepted message per send intent.

The sender records `sending` (and waits for the record to be durable) before the SMTP exchange and
the outcome after it. An intent found in `sending` when it comes round again was in flight when a
worker died: whether the relay accepted it is unknown (RFC 1047), so it is recorded as ambiguous and
not sent again. Entries are JSON-able dicts kept per subscriber in a changelogged table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from domain.events import DeliveryEvent, SendIntent, stable_id
from domain.smtp_replies import Accepted, Ambiguous, Bounced, Deferred, SendOutcome

MAX_ENTRIES_PER_SUBSCRIBER = 256


@dataclass(frozen=True)
class RetryPolicy:
    base: timedelta = timedelta(seconds=60)
    cap: timedelta = timedelta(hours=1)
    max_age: timedelta = timedelta(hours=24)

    def delay(self, intent_id: str, attempt: int) -> timedelta:
        """Exponential backoff with +-20% jitter, deterministic per intent and attempt."""
        raw = min(self.base * (2 ** max(attempt - 1, 0)), self.cap)
        spread = int(hashlib.sha256(f"{intent_id}:{attempt}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return raw * (0.8 + 0.4 * spread)


@dataclass(frozen=True)
class Admission:
    action: Literal["send", "duplicate", "ambiguous", "not_due"]
    attempt: int = 1


def admit(entry: dict | None, now: datetime) -> Admission:
    """What to do with an intent, given its ledger entry (None when never seen)."""
    if entry is None:
        return Admission("send", 1)
    state = entry.get("state")
    if state == "sending":
        return Admission("ambiguous", int(entry.get("attempt", 1)))
    if state == "deferred":
        retry_at = entry.get("retry_at")
        if retry_at is not None and datetime.fromisoformat(retry_at) <= now:
            return Admission("send", int(entry.get("attempt", 1)) + 1)
        return Admission("not_due", int(entry.get("attempt", 1)))
    return Admission("duplicate", int(entry.get("attempt", 1)))


def sending_entry(previous: dict | None, attempt: int, now: datetime) -> dict:
    first_at = (previous or {}).get("first_at", now.isoformat())
    return {"state": "sending", "attempt": attempt, "first_at": first_at, "updated_at": now.isoformat()}


@dataclass(frozen=True)
class Settlement:
    entry: dict
    delivery: DeliveryEvent
    retry_at: datetime | None


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].strip(" >").lower() if "@" in address else ""


def delivery_event(
    intent: SendIntent,
    kind: str,
    attempt: int,
    now: datetime,
    *,
    sending_domain: str,
    message_id: str = "",
    code: int | None = None,
    enhanced: str = "",
    bounce_type: str = "",
    detail: str = "",
) -> DeliveryEvent:
    return DeliveryEvent(
        delivery_id=stable_id(intent.intent_id, kind, str(attempt)),
        intent_id=intent.intent_id,
        subscriber_id=intent.subscriber_id,
        kind=kind,  # type: ignore[arg-type]
        occurred_at=now,
        journey_id=intent.journey_id,
        template_id=intent.template_id,
        sending_domain=sending_domain,
        recipient_domain=_domain(intent.to),
        message_id=message_id,
        smtp_code=code,
        enhanced_status=enhanced,
        bounce_type=bounce_type,  # type: ignore[arg-type]
        attempt=attempt,
        detail=detail[:500],
    )


def settle(
    intent: SendIntent,
    outcome: SendOutcome,
    entry: dict,
    now: datetime,
    policy: RetryPolicy,
    *,
    sending_domain: str,
    message_id: str,
) -> Settlement:
    """The ledger entry and delivery event an SMTP outcome leads to."""
    attempt = int(entry.get("attempt", 1))
    base = {"attempt": attempt, "first_at": entry.get("first_at", now.isoformat()), "updated_at": now.isoformat()}
    common = {"sending_domain": sending_domain, "message_id": message_id}
    if isinstance(outcome, Accepted):
        event = delivery_event(intent, "accepted", attempt, now, code=outcome.code, detail=outcome.message, **common)
        return Settlement({**base, "state": "accepted"}, event, None)
    if isinstance(outcome, Bounced):
        bounce_type = "hard" if outcome.hard else "soft"
        event = delivery_event(
            intent, "bounced", attempt, now, code=outcome.code, enhanced=outcome.enhanced,
            bounce_type=bounce_type, detail=outcome.message, **common,
        )
        return Settlement({**base, "state": "bounced", "bounce_type": bounce_type}, event, None)
    if isinstance(outcome, Ambiguous):
        event = delivery_event(intent, "ambiguous", attempt, now, detail=outcome.detail, **common)
        return Settlement({**base, "state": "ambiguous"}, event, None)
    assert isinstance(outcome, Deferred)
    first_at = datetime.fromisoformat(base["first_at"])
    retry_at = now + policy.delay(intent.intent_id, attempt)
    if retry_at - first_at > policy.max_age:
        event = delivery_event(
            intent, "bounced", attempt, now, code=outcome.code, enhanced=outcome.enhanced, bounce_type="soft",
            detail=f"gave up after {attempt} attempts: {outcome.message}", **common,
        )
        return Settlement({**base, "state": "bounced", "bounce_type": "soft"}, event, None)
    event = delivery_event(
        intent, "deferred", attempt, now, code=outcome.code, enhanced=outcome.enhanced, detail=outcome.message, **common
    )
    return Settlement({**base, "state": "deferred", "retry_at": retry_at.isoformat()}, event, retry_at)


def remember(entries: dict, intent_id: str, entry: dict) -> dict:
    """The subscriber's ledger with `entry` recorded, oldest entries dropped past the bound."""
    updated = {k: v for k, v in entries.items() if k != intent_id}
    updated[intent_id] = entry
    if len(updated) > MAX_ENTRIES_PER_SUBSCRIBER:
        for stale in list(updated)[: len(updated) - MAX_ENTRIES_PER_SUBSCRIBER]:
            if updated[stale].get("state") not in ("sending", "deferred"):
                del updated[stale]
    return updated
