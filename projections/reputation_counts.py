"""Delivery outcomes counted per sending domain: the reputation stage's read model."""

from __future__ import annotations

from datetime import datetime

from domain.events import DeliveryEvent, ReputationSnapshot

COUNTED_KINDS = ("accepted", "bounced", "deferred", "complained", "ambiguous")


def apply(counts: dict, delivery: DeliveryEvent) -> dict:
    """Counts with `delivery` folded in; `sent` counts attempts that reached a final SMTP answer."""
    updated = dict(counts)
    if delivery.kind in COUNTED_KINDS:
        updated[delivery.kind] = updated.get(delivery.kind, 0) + 1
    if delivery.kind in ("accepted", "bounced", "ambiguous"):
        updated["sent"] = updated.get("sent", 0) + 1
    return updated


def snapshot(sending_domain: str, counts: dict, now: datetime) -> ReputationSnapshot:
    return ReputationSnapshot(
        sending_domain=sending_domain,
        provider="all",
        sent=counts.get("sent", 0),
        accepted=counts.get("accepted", 0),
        bounced=counts.get("bounced", 0),
        deferred=counts.get("deferred", 0),
        complained=counts.get("complained", 0),
        updated_at=now,
    )
