"""Contracts as analytics rows: which table a payload goes to and the row it becomes.

Pure. Rows carry exactly the columns of their table (`connectors/analytics_schema.py`) and never an
email address: `SendIntent.to` is dropped, `email` keys and email-shaped values are removed from
event properties and context (the row keeps `has_email`), and addresses inside free text (SMTP
replies in `detail`, decision reasons) are masked. Times stay aware UTC datetimes; the connector
turns them into `DateTime64(3, 'UTC')`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from domain.events import (
    DeliveryEvent,
    EventEnvelope,
    ReputationSnapshot,
    SegmentMembershipChanged,
    SendIntent,
)
from domain.reputation import ReputationChanged

EMAIL_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+")
EMAIL_MASK = "<email>"

DECISION_FIELDS = (
    "decision_id",
    "journey_id",
    "journey_version",
    "subscriber_id",
    "kind",
    "step_id",
    "reason",
    "event_id",
    "occurred_at",
)

Row = dict[str, Any]


def row_for(payload: object) -> tuple[str, Row]:
    """The analytics table for `payload` and its row. Unknown payloads raise `TypeError`."""
    for contract, mapper in _MAPPERS:
        if isinstance(payload, contract):
            return mapper(payload)
    if hasattr(payload, "decision_id"):
        return "journey_decisions", _decision_row(payload)
    raise TypeError(f"no analytics table for {type(payload).__name__}; expected one of {_KNOWN}")


def rows_by_table(payloads: Iterable[object]) -> dict[str, list[Row]]:
    """Payloads grouped into one row list per table, in arrival order: one insert per table."""
    grouped: dict[str, list[Row]] = {}
    for payload in payloads:
        table, row = row_for(payload)
        grouped.setdefault(table, []).append(row)
    return grouped


def _event_row(event: EventEnvelope) -> tuple[str, Row]:
    properties, props_had_email = _without_email(event.properties)
    context, context_had_email = _without_email(event.context)
    return "events", {
        "event_id": event.event_id,
        "type": event.type,
        "subscriber_id": event.subscriber_id,
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "source": event.source,
        "properties": _json(properties),
        "context": _json(context),
        "has_email": int(props_had_email or context_had_email),
    }


def _intent_row(intent: SendIntent) -> tuple[str, Row]:
    # `to` and `variables` are personal data: analytics keys on subscriber_id instead.
    return "send_intents", {
        "intent_id": intent.intent_id,
        "subscriber_id": intent.subscriber_id,
        "journey_id": intent.journey_id,
        "journey_version": intent.journey_version,
        "step_id": intent.step_id,
        "template_id": intent.template_id,
        "trigger_event_id": intent.trigger_event_id,
        "created_at": intent.created_at,
        "transactional": int(intent.transactional),
        "priority": intent.priority,
    }


def _delivery_row(delivery: DeliveryEvent) -> tuple[str, Row]:
    return "deliveries", {
        "delivery_id": delivery.delivery_id,
        "intent_id": delivery.intent_id,
        "subscriber_id": delivery.subscriber_id,
        "kind": delivery.kind,
        "occurred_at": delivery.occurred_at,
        "journey_id": delivery.journey_id,
        "template_id": delivery.template_id,
        "sending_domain": delivery.sending_domain,
        "recipient_domain": delivery.recipient_domain,
        "message_id": delivery.message_id,
        "smtp_code": delivery.smtp_code,
        "enhanced_status": delivery.enhanced_status,
        "bounce_type": delivery.bounce_type,
        "attempt": delivery.attempt,
        # SMTP replies often quote the recipient ("550 5.1.1 <bob@example.com>... unknown").
        "detail": mask_emails(delivery.detail),
    }


def _segment_change_row(change: SegmentMembershipChanged) -> tuple[str, Row]:
    return "segment_changes", {
        "change_id": change.change_id,
        "segment_id": change.segment_id,
        "segment_version": change.segment_version,
        "subscriber_id": change.subscriber_id,
        "change": change.change,
        "occurred_at": change.occurred_at,
        "cause_event_ids": list(change.cause_event_ids),
    }


def _reputation_row(snapshot: ReputationSnapshot) -> tuple[str, Row]:
    return "reputation_snapshots", {
        "snapshot_id": f"{snapshot.sending_domain}|{snapshot.provider}|{snapshot.updated_at.isoformat()}",
        "sending_domain": snapshot.sending_domain,
        "provider": snapshot.provider,
        "sent": snapshot.sent,
        "accepted": snapshot.accepted,
        "bounced": snapshot.bounced,
        "deferred": snapshot.deferred,
        "complained": snapshot.complained,
        "state": snapshot.state,
        "updated_at": snapshot.updated_at,
        "score": snapshot.score,
        "hard_bounced": snapshot.hard_bounced,
        "soft_bounced": snapshot.soft_bounced,
        "opened": snapshot.opened,
        "clicked": snapshot.clicked,
        "unsubscribed": snapshot.unsubscribed,
        "window_end": _utc(snapshot.window_end),
        "windows": _json(snapshot.windows),
        "control": _json(snapshot.control),
    }


def _reputation_change_row(change: ReputationChanged) -> tuple[str, Row]:
    return "reputation_changes", {
        "change_id": change.change_id,
        "sending_domain": change.sending_domain,
        "provider": change.provider,
        "traffic": change.traffic,
        "from_state": change.from_state,
        "to_state": change.to_state,
        "reason": mask_emails(change.reason),
        "score": change.score,
        "occurred_at": _utc(change.occurred_at),
    }


def _decision_row(decision: object) -> Row:
    """A journey decision by duck typing: any object with the `DECISION_FIELDS` attributes."""
    missing = [name for name in DECISION_FIELDS if not hasattr(decision, name)]
    if missing:
        raise TypeError(f"{type(decision).__name__} has decision_id but lacks {', '.join(missing)} for journey_decisions")
    row = {name: getattr(decision, name) for name in DECISION_FIELDS}
    if not isinstance(row["occurred_at"], datetime):
        raise TypeError(f"{type(decision).__name__}.occurred_at must be a datetime, got {type(row['occurred_at']).__name__}")
    for name in ("decision_id", "journey_id", "subscriber_id", "kind", "step_id", "reason", "event_id"):
        row[name] = "" if row[name] is None else str(row[name])
    row["journey_version"] = int(row["journey_version"])
    row["reason"] = mask_emails(row["reason"])
    return row


_MAPPERS: tuple[tuple[type, Callable[[Any], tuple[str, Row]]], ...] = (
    (EventEnvelope, _event_row),
    (SendIntent, _intent_row),
    (DeliveryEvent, _delivery_row),
    (SegmentMembershipChanged, _segment_change_row),
    (ReputationSnapshot, _reputation_row),
    (ReputationChanged, _reputation_change_row),
)
_KNOWN = ", ".join([contract.__name__ for contract, _ in _MAPPERS] + ["any model with decision_id"])


def mask_emails(text: str) -> str:
    return EMAIL_ADDRESS.sub(EMAIL_MASK, text) if "@" in text else text


def _is_email(value: object) -> bool:
    return isinstance(value, str) and EMAIL_ADDRESS.fullmatch(value.strip()) is not None


def _without_email(value: Any) -> tuple[Any, bool]:
    """`value` with every `email` key and every email-shaped string removed, and whether any was."""
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        removed = False
        for key, item in value.items():
            if str(key).lower() == "email" or _is_email(item):
                removed = True
                continue
            kept[key], nested = _without_email(item)
            removed = removed or nested
        return kept, removed
    if isinstance(value, list):
        items = []
        removed = False
        for item in value:
            if _is_email(item):
                removed = True
                continue
            cleaned, nested = _without_email(item)
            items.append(cleaned)
            removed = removed or nested
        return items, removed
    if isinstance(value, str) and "@" in value:
        masked = mask_emails(value)
        return masked, masked != value
    return value, False


def _utc(value: datetime | None) -> datetime | None:
    """Aware UTC; a naive time (these contracts do not normalise every field) is taken as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)
