"""Segments: who belongs, written as a rule tree in YAML and kept up to date record by record.

This module is the front door; the parts live beside it:

- `domain.segment_rules`: the rule language (every rule kind), its parser with file/line errors,
  and the checks across segment files (unknown references, reference cycles);
- `domain.segment_engine`: the compact per-subscriber profile and the streaming fold, with
  window expiry processed at its exact moment (`advance`) for the durable timers;
- `domain.segment_reference`: plain batch evaluation at a moment, the definition the streaming
  fold is tested against and what previews run over recorded history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from domain.events import EventEnvelope, SegmentMembershipChanged
from domain.segment_engine import (
    EMAIL_TYPES,
    CompiledSegments,
    Observation,
    advance,
    apply_record,
    compile_segments,
    members_of,
    next_due,
    observe_consent,
    observe_delivery,
    observe_event,
)
from domain.segment_reference import evaluate_at
from domain.segment_rules import (
    RULE_KINDS,
    AllRule,
    AnyRule,
    AttributeRule,
    BucketRule,
    FirstPerformedRule,
    LastPerformedRule,
    NotOpenedLastRule,
    NotRule,
    Performed,
    PerformedRule,
    Rule,
    SegmentDefinition,
    SegmentRefRule,
    SubscribedRule,
    counter_key,
    parse_segment,
    parse_segment_data,
    segment_reference_errors,
    to_ms,
)


def apply_event(
    segments: Sequence[SegmentDefinition] | CompiledSegments,
    profile: Mapping[str, Any],
    event: EventEnvelope,
    now: datetime | None = None,
) -> tuple[dict[str, Any], list[SegmentMembershipChanged]]:
    """Fold one product event into a profile. Windows run on event time, so `now` is not read:
    time passes through `advance`, which the worker's timers call with its clock."""
    return apply_record(segments, profile, observe_event(event))


def is_backfill(change: SegmentMembershipChanged) -> bool:
    """A change computed over recorded history or by a redefinition, not by live activity:
    consumers that act on entries (journeys) skip these."""
    return change.cause_event_ids[:1] == ["backfill"]


def evaluate_history(
    segments: Sequence[SegmentDefinition], events: Sequence[EventEnvelope], now: datetime | None = None
) -> dict[str, bool]:
    """Membership from a whole event history, at `now` (default: the latest event's time)."""
    records = [observe_event(e) for e in events]
    if not records:
        return {s.id: False for s in segments}
    at = to_ms(now) if now is not None else max(r.at for r in records)
    return evaluate_at(segments, records, records[0].subscriber_id, at)


__all__ = [
    "EMAIL_TYPES",
    "RULE_KINDS",
    "AllRule",
    "AnyRule",
    "AttributeRule",
    "BucketRule",
    "CompiledSegments",
    "FirstPerformedRule",
    "LastPerformedRule",
    "NotOpenedLastRule",
    "NotRule",
    "Observation",
    "Performed",
    "PerformedRule",
    "Rule",
    "SegmentDefinition",
    "SegmentRefRule",
    "SubscribedRule",
    "advance",
    "apply_event",
    "apply_record",
    "compile_segments",
    "counter_key",
    "evaluate_at",
    "evaluate_history",
    "is_backfill",
    "members_of",
    "next_due",
    "observe_consent",
    "observe_delivery",
    "observe_event",
    "parse_segment",
    "parse_segment_data",
    "segment_reference_errors",
]
