"""Backtesting journeys: replay recorded events through the same segment and journey engines the
worker runs, on a simulated clock, and send nothing.

The clock jumps from event to event. Before each event, every timer due at or before the event's time
fires, in due order, with `now` = its due time; then the event is applied with `now` = its
`occurred_at`, its segment changes right after it. Events before `start` only build profiles (traits,
segment counters); journeys see the events in `[start, end)`; timers due before `end` fire at the end.
That is what the live worker does when events arrive at the time they happened, so the sends a
simulation predicts are the sends the live run makes (tests/e2e/test_journey_simulate_vs_live.py).
"""

from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from domain import journeys as engine
from domain import segments as segment_engine
from domain.events import EventEnvelope, SendIntent
from domain.journey_engine import JourneyDecision
from domain.journey_language import JourneyDefinition
from domain.segments import SegmentDefinition
from infra.settings import Settings


class EventsUnreadable(ValueError):
    pass


@dataclass
class JourneyReport:
    """What one journey would have done over the replayed events."""

    journey_id: str
    version: int
    entries: int = 0
    people_per_step: dict[str, int] = field(default_factory=dict)
    sends_per_template: dict[str, int] = field(default_factory=dict)
    sends_per_day: dict[str, int] = field(default_factory=dict)
    exits: dict[str, int] = field(default_factory=dict)
    skips: dict[str, int] = field(default_factory=dict)
    goals: int = 0
    holdouts: int = 0
    still_waiting: int = 0

    @property
    def sends(self) -> int:
        return sum(self.sends_per_template.values())

    def summary(self) -> dict[str, Any]:
        return {
            "journey": self.journey_id,
            "version": self.version,
            "entries": self.entries,
            "sends": self.sends,
            "goal_conversions": self.goals,
            "conversion_rate": round(self.goals / self.entries, 4) if self.entries else 0.0,
            "holdouts": self.holdouts,
            "still_waiting": self.still_waiting,
            "people_per_step": self.people_per_step,
            "sends_per_template": self.sends_per_template,
            "sends_per_day": self.sends_per_day,
            "exits": self.exits,
            "skips": self.skips,
        }


@dataclass
class Simulation:
    intents: list[SendIntent] = field(default_factory=list)
    decisions: list[JourneyDecision] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    events_replayed: int = 0

    def report(self, journey: JourneyDefinition) -> JourneyReport:
        report = JourneyReport(journey.id, journey.version)
        mine = [d for d in self.decisions if d.journey_id == journey.id]
        at_step: dict[str, set[str]] = defaultdict(set)
        exits: Counter[str] = Counter()
        skips: Counter[str] = Counter()
        for d in mine:
            if d.kind == "entered":
                report.entries += 1
            elif d.kind == "goal":
                report.goals += 1
            elif d.kind == "holdout":
                report.holdouts += 1
            elif d.kind == "exited":
                exits[d.reason] += 1
            elif d.kind == "skipped":
                skips[d.reason] += 1
            if d.step_id and d.kind in ("sent", "wait", "branch", "holdout", "set", "webhook", "skipped"):
                at_step[d.step_id].add(d.subscriber_id)
        sends = [i for i in self.intents if i.journey_id == journey.id]
        report.people_per_step = {step: len(people) for step, people in sorted(at_step.items())}
        report.sends_per_template = dict(sorted(Counter(i.template_id for i in sends).items()))
        report.sends_per_day = dict(sorted(Counter(i.created_at.date().isoformat() for i in sends).items()))
        report.exits = dict(sorted(exits.items()))
        report.skips = dict(sorted(skips.items()))
        report.still_waiting = sum(
            1 for s in self.states.values() for e in s.get("active", {}).values()
            if e["journey"] == journey.id and e.get("at") is not None
        )
        return report


def simulate(
    journeys: Sequence[JourneyDefinition],
    segments: Sequence[SegmentDefinition],
    events: Iterable[EventEnvelope],
    start: datetime,
    end: datetime,
) -> Simulation:
    """Replay `events` (any order; sorted here by time, stable) on a simulated clock; nothing is sent."""
    catalog = engine.JourneyCatalog(journeys)
    compiled = segment_engine.compile_segments(list(segments))
    profiles: dict[str, dict[str, Any]] = defaultdict(dict)
    states: dict[str, dict[str, Any]] = defaultdict(dict)
    # (due, kind, subscriber): journey waits and segment window expiries, fired in time order.
    timers: list[tuple[datetime, str, str]] = []
    sim = Simulation(states=states)

    def track(subscriber: str) -> None:
        due = engine.next_due(states[subscriber])
        if due is not None:
            heapq.heappush(timers, (due, "journey", subscriber))
        segment_due = segment_engine.next_due(profiles[subscriber])
        if segment_due is not None:
            heapq.heappush(timers, (segment_due, "segment", subscriber))

    def members(subscriber: str) -> set[str]:
        return set(segment_engine.members_of(profiles[subscriber]))

    def take(subscriber: str, outcome: engine.JourneyOutcome, now: datetime) -> None:
        states[subscriber] = outcome.state
        sim.intents += outcome.intents
        sim.decisions += outcome.decisions
        for internal in outcome.events:  # a `set` step's identify goes round like on Kafka
            apply(internal, now, live=True)
        track(subscriber)

    def changed(subscriber: str, changes: list[Any], now: datetime) -> None:
        for change in changes:
            take(subscriber, engine.apply_segment_change(catalog, states[subscriber], change, now, members(subscriber)), now)

    def apply(event: EventEnvelope, now: datetime, live: bool) -> None:
        subscriber = event.subscriber_id
        profile, changes = segment_engine.apply_event(compiled, profiles[subscriber], event, now)
        profiles[subscriber] = profile
        if not live:
            # Warm-up: profiles and traits only, no journey sees the event.
            states[subscriber] = {**states[subscriber], "traits": engine_traits(states[subscriber], event)}
            return
        take(subscriber, engine.apply_event(catalog, states[subscriber], event, now, members(subscriber)), now)
        changed(subscriber, changes, now)

    def fire_until(limit: datetime, inclusive: bool) -> None:
        while timers and (timers[0][0] <= limit if inclusive else timers[0][0] < limit):
            due, kind, subscriber = heapq.heappop(timers)
            if kind == "segment":
                profile, changes = segment_engine.advance(compiled, profiles[subscriber], subscriber, due)
                if profile is not profiles[subscriber]:
                    profiles[subscriber] = profile
                    changed(subscriber, changes, due)
                    track(subscriber)
                continue
            outcome = engine.fire_due(catalog, states[subscriber], due, members(subscriber))
            if outcome.state is not states[subscriber]:
                take(subscriber, outcome, due)

    for event in sorted(events, key=lambda e: e.occurred_at):
        if event.occurred_at >= end:
            break
        live = event.occurred_at >= start
        if live:
            fire_until(event.occurred_at, inclusive=True)
            sim.events_replayed += 1
        apply(event, event.occurred_at, live)
    fire_until(end, inclusive=False)
    return sim


def engine_traits(state: dict[str, Any], event: EventEnvelope) -> dict[str, Any]:
    from domain.subscriber_state import merge_traits

    return merge_traits(state.get("traits", {}), event.traits)


def diff_reports(candidate: JourneyReport, live: JourneyReport) -> dict[str, Any]:
    """Candidate minus live for each headline figure, and per template / exit reason."""

    def delta(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
        return {k: a.get(k, 0) - b.get(k, 0) for k in sorted(a.keys() | b.keys()) if a.get(k, 0) != b.get(k, 0)}

    return {
        "live_version": live.version,
        "candidate_version": candidate.version,
        "entries": candidate.entries - live.entries,
        "sends": candidate.sends - live.sends,
        "goal_conversions": candidate.goals - live.goals,
        "sends_per_template": delta(candidate.sends_per_template, live.sends_per_template),
        "exits": delta(candidate.exits, live.exits),
    }


# --- where events come from ---------------------------------------------------------------------------


def read_jsonl(path: Path) -> Iterator[EventEnvelope]:
    """EventEnvelope dicts, one a line (blank lines skipped); a bad line names its number."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                data.setdefault("received_at", data.get("occurred_at"))
                yield EventEnvelope.model_validate(data)
            except ValueError as exc:
                raise EventsUnreadable(f"{path}:{number}: not an event: {str(exc).splitlines()[0][:300]}") from None


def read_clickhouse(settings: Settings, end: datetime, limit: int = 5_000_000) -> list[EventEnvelope]:
    """Every recorded event before `end`, from the analytics `events` table."""
    from infra.analytics_client import run_query

    sql = (
        "SELECT event_id, type, subscriber_id, toString(occurred_at), toString(received_at), source, properties, context "
        f"FROM events WHERE occurred_at < toDateTime64('{end.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}', 3, 'UTC') "
        f"ORDER BY occurred_at LIMIT 1 BY event_id LIMIT {int(limit)}"
    )
    rows = run_query(settings, sql)["rows"]
    return [_row_event(row) for row in rows]


def _row_event(row: list[Any]) -> EventEnvelope:
    event_id, type_, subscriber_id, occurred, received, source, properties, context = row
    return EventEnvelope(
        event_id=event_id, type=type_, subscriber_id=subscriber_id,
        occurred_at=_utc(occurred), received_at=_utc(received),
        source=source if source in ("api", "segment", "kafka", "demo", "internal") else "api",
        properties=json.loads(properties or "{}"), context=json.loads(context or "{}"),
    )


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(str(text).replace(" ", "T"))
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
