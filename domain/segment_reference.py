"""Plain batch evaluation: membership at a moment, recomputed from a subscriber's whole history.

No profile, no caps, no pruning, no compiled closures: each rule is read straight off the records.
This is the definition the streaming engine (`domain.segment_engine`) is tested against, and what
`tidings segments preview` runs over recorded history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from domain.conditions import is_scalar, matches_where
from domain.subscriber_state import event_digest
from domain.segment_engine import GLOBAL_LIST, OPT_OUTS, Observation, compile_segments
from domain.segment_rules import (
    AllRule,
    AnyRule,
    AttributeRule,
    BucketRule,
    FirstPerformedRule,
    LastPerformedRule,
    NotOpenedLastRule,
    NotRule,
    PerformedRule,
    Rule,
    SegmentDefinition,
    SegmentRefRule,
    SubscribedRule,
)


def evaluate_at(
    segments: Sequence[SegmentDefinition], records: Sequence[Observation], subscriber_id: str, now: int
) -> dict[str, bool]:
    """Membership of every segment at `now` (ms) given the records seen so far (arrival order).

    Records after `now` are ignored; each record id counts once. A subscriber with no records is
    in no segment: it does not exist yet. Segments in a reference cycle are in nobody.
    """
    unique: list[Observation] = []
    seen: set[str] = set()
    for record in records:
        if record.record_id not in seen and record.at <= now:
            seen.add(record.record_id)
            unique.append(record)
    compiled = compile_segments(segments)
    members: dict[str, bool] = {sid: False for sid in compiled.unusable}
    history = _History(unique, subscriber_id, now, members)
    for segment in compiled.segments:
        members[segment.id] = bool(unique) and history.holds(segment.rule)
    return {s.id: members.get(s.id, False) for s in segments}


class _History:
    def __init__(self, records: list[Observation], subscriber_id: str, now: int, members: Mapping[str, bool]) -> None:
        self.records = records
        self.subscriber_id = subscriber_id
        self.now = now
        self.members = members
        self.traits = _traits(records)
        self.consent = _consent(records)

    def matching(self, event: str, where: Mapping[str, Any]) -> list[int]:
        return [r.at for r in self.records if event in r.types and (not where or matches_where(where, r.properties))]

    def holds(self, rule: Rule) -> bool:
        if isinstance(rule, PerformedRule):
            spec = rule.performed
            times = self.matching(spec.event, spec.where)
            if spec.window_ms is not None:
                times = [t for t in times if t > self.now - spec.window_ms]
            return spec.counts_in(len(times))
        if isinstance(rule, (FirstPerformedRule, LastPerformedRule)):
            first = isinstance(rule, FirstPerformedRule)
            spec = rule.first_performed if first else rule.last_performed  # type: ignore[union-attr]
            times = self.matching(spec.event, spec.where)
            if not times:
                return False
            moment = min(times) if first else max(times)
            return moment > self.now - spec.span_ms if spec.recent else moment <= self.now - spec.span_ms
        if isinstance(rule, AttributeRule):
            return all(
                c.holds(name in self.traits, self.traits.get(name), self.now) for name, c in rule.attribute.items()
            )
        if isinstance(rule, NotOpenedLastRule):
            sends = _last_sends(self.records)
            n = rule.not_opened_last
            return len(sends) >= n and not any(opened for _, opened in sends[-n:])
        if isinstance(rule, SubscribedRule):
            own = self.consent.get(rule.subscribed.list)
            overall = self.consent.get(GLOBAL_LIST)
            return own == "subscribed" and overall not in OPT_OUTS
        if isinstance(rule, BucketRule):
            return rule.bucket.holds(self.subscriber_id)
        if isinstance(rule, SegmentRefRule):
            return self.members.get(rule.segment, False)
        if isinstance(rule, AllRule):
            return all(self.holds(child) for child in rule.all)
        if isinstance(rule, AnyRule):
            return any(self.holds(child) for child in rule.any)
        assert isinstance(rule, NotRule)
        return not self.holds(rule.negated)


def _traits(records: list[Observation]) -> dict[str, Any]:
    """Each trait's value from the latest record (by event time, then arrival) that set it; null removes."""
    latest: dict[str, tuple[int, Any]] = {}
    for record in records:
        for name, value in record.traits.items():
            if (value is None or is_scalar(value)) and (name not in latest or record.at >= latest[name][0]):
                latest[name] = (record.at, value)
    return {name: value for name, (_, value) in latest.items() if value is not None}


def _consent(records: list[Observation]) -> dict[str, str]:
    latest: dict[str, tuple[int, str]] = {}
    for record in records:
        if record.consent is not None:
            list_id, status = record.consent
            if list_id not in latest or record.at >= latest[list_id][0]:
                latest[list_id] = (record.at, status)
    return {list_id: status for list_id, (_, status) in latest.items()}


def _last_sends(records: list[Observation]) -> list[tuple[int, bool]]:
    """Sent emails in send-time order, each with whether an open or click for it came after it."""
    sends: dict[str, int] = {}
    opened: set[str] = set()
    for record in records:
        if record.sends and record.intent not in sends:
            sends[record.intent] = record.at
        elif record.opens and record.intent in sends:
            opened.add(record.intent)
    ordered = sorted(sends.items(), key=lambda item: (item[1], event_digest(item[0])))
    return [(at, intent in opened) for intent, at in ordered]
