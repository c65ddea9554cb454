"""Journeys stage: events + segment changes + durable timers -> enrollment state -> send intents and decisions.

Two changelogged tables, both keyed by subscriber:
- `journey-states`: the engine's state (enrollments, history, traits);
- `journey-timers`: `{timer_id: due_iso}`, the due times of that subscriber's waits, derived from
  the state and written with it.

A timer loop (`@app.timer`, in memory: it only decides *when to look*) scans the timers table every
`TIMER_INTERVAL_SECONDS` and runs the pure engine's `fire_due` for each subscriber with a due time
at or before `ctx.clock()`. Due times live in the changelogged table, so a restart, a rebalance or
a stopped worker loses none: the first scan after recovery fires everything overdue, once, because
firing moves the enrollment on and the new state (written after the outputs are durable) no longer
holds that due time. A redelivered event or a doubled fire is a no-op in the engine.

Versions: the stage keeps every journey version it has seen in memory (`JourneyCatalog`), so an
enrollment stays on the version it started with while the definitions follower only holds the latest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

import structlog

from domain import journeys, segments
from domain.events import EventEnvelope, SegmentMembershipChanged
from infra.logging import hashed
from infra.topics import Topic
from processors.app import WorkerContext

log = structlog.get_logger(__name__)

TIMER_INTERVAL_SECONDS = 1.0
# A batch shares one durable send of its outputs: the broker round trip is paid once per batch.
BATCH_MAX = 500
BATCH_WITHIN_SECONDS = 0.05


class JourneyStage:
    """The journey processor's logic over two tables; the Faust agents and the timer call into it."""

    def __init__(self, ctx: WorkerContext, states: Any, timers: Any) -> None:
        self.ctx = ctx
        self.states = states
        self.timers = timers
        self.catalog = journeys.JourneyCatalog()
        self._live_seen: object = None
        # The agents and the timer loop share one event loop; a subscriber's read-modify-write must
        # not interleave with another at an await, or the later write would lose the earlier one.
        self.lock = asyncio.Lock()

    def refresh_catalog(self) -> journeys.JourneyCatalog:
        live = self.ctx.definitions.current
        if live is not self._live_seen:
            self._live_seen = live
            self.catalog.update(live.journeys)
        return self.catalog

    def members(self, key: bytes) -> Collection[str]:
        profiles = self.ctx.resources.get("segment_profiles")
        if profiles is None:
            return ()
        return segments.members_of(profiles[key]).keys()

    async def on_event(self, envelope: EventEnvelope) -> None:
        await self.on_batch([envelope])

    async def on_segment_change(self, change: SegmentMembershipChanged) -> None:
        await self.on_batch([change])

    async def on_batch(self, items: list[EventEnvelope | SegmentMembershipChanged]) -> None:
        """Fold a batch of events and segment changes in order, with one durable send for all outputs."""
        catalog = self.refresh_catalog()

        def step(item: EventEnvelope | SegmentMembershipChanged) -> Step:
            if isinstance(item, EventEnvelope):
                return lambda state, key: journeys.apply_event(catalog, state, item, self.ctx.clock(), self.members(key))
            return lambda state, key: journeys.apply_segment_change(catalog, state, item, self.ctx.clock(), self.members(key))

        await self.run([(item.subscriber_id.encode(), step(item)) for item in items])

    async def fire_due_timers(self, now: datetime | None = None) -> int:
        """Fire every timer due at `now` (the injected clock); returns how many subscribers moved on."""
        now = now or self.ctx.clock()
        due_keys = [key for key, timers in list(self.timers.items()) if _any_due(timers, now)]
        catalog = self.refresh_catalog()

        def fire(state: dict[str, Any], key: bytes) -> journeys.JourneyOutcome | None:
            if not state:
                return None  # not recovered yet: never let an empty state erase a due time it does not know
            if not journeys.timers_of(state):
                self.timers.pop(key, None)  # the state moved on but a crash came before its timers were rewritten
                return None
            return journeys.fire_due(catalog, state, now, self.members(key))

        return await self.run([(key, fire) for key in due_keys])

    async def run(self, steps: list[tuple[bytes, Step]]) -> int:
        """Apply each step to its subscriber's state in order; outputs durable first, then states.

        Returns how many subscribers' states changed.
        """
        async with self.lock:
            originals: dict[bytes, dict[str, Any]] = {}
            current: dict[bytes, dict[str, Any]] = {}
            records: list[tuple[Topic, str, Any]] = []
            for key, apply in steps:
                if key not in current:
                    originals[key] = current[key] = self.states[key]
                outcome = apply(current[key], key)
                if outcome is None:
                    continue
                current[key] = outcome.state
                records += _records(outcome)
            if records:
                await self.ctx.emit_durably(records)
            changed = 0
            for key, state in current.items():
                if state is originals[key]:
                    continue
                changed += 1
                self.states[key] = state
                timers = journeys.timers_of(state)
                if timers != self.timers[key]:
                    if timers:
                        self.timers[key] = timers
                    else:
                        self.timers.pop(key, None)
            return changed


Step = Callable[[dict[str, Any], bytes], "journeys.JourneyOutcome | None"]


def _records(outcome: journeys.JourneyOutcome) -> list[tuple[Topic, str, Any]]:
    for intent in outcome.intents:
        log.info(
            "journey.intent_created",
            journey_id=intent.journey_id,
            step_id=intent.step_id,
            intent_id=intent.intent_id,
            subscriber=hashed(intent.subscriber_id),
        )
    records: list[tuple[Topic, str, Any]] = [(Topic.SEND_INTENTS, i.subscriber_id, i) for i in outcome.intents]
    records += [(Topic.JOURNEY_DECISIONS, d.subscriber_id, d) for d in outcome.decisions]
    records += [(Topic.EVENTS, e.subscriber_id, e) for e in outcome.events]
    return records


def _any_due(timers: dict[str, str], now: datetime) -> bool:
    return any(datetime.fromisoformat(due) <= now for due in timers.values())


def register(ctx: WorkerContext) -> None:
    stage = JourneyStage(ctx, ctx.table("journey-states"), ctx.table("journey-timers"))
    ctx.resources["journey_states"] = stage.states
    ctx.resources["journey_timers"] = stage.timers
    ctx.resources["journey_stage"] = stage

    @ctx.app.agent(ctx.topic(Topic.EVENTS), name="journeys")
    async def journeys_agent(stream):  # type: ignore[no-untyped-def]
        async for batch in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_SECONDS):
            await stage.on_batch(await _decode(ctx, "journeys", batch, EventEnvelope))

    @ctx.app.agent(ctx.topic(Topic.SEGMENT_CHANGES), name="journeys-segment-changes")
    async def segment_changes_agent(stream):  # type: ignore[no-untyped-def]
        async for batch in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_SECONDS):
            changes = await _decode(ctx, "journeys-segment-changes", batch, SegmentMembershipChanged)
            # Entries recomputed over history (a new segment version) are not live activity:
            # they must not enrol anyone in a journey.
            live = [change for change in changes if not segments.is_backfill(change)]
            if live:
                await stage.on_batch(live)

    @ctx.app.timer(interval=TIMER_INTERVAL_SECONDS)
    async def journey_timers() -> None:
        # Scanning before table recovery finishes would see due times without their states.
        if not ctx.app.tables.recovery.completed.is_set():
            return
        fired = await stage.fire_due_timers()
        if fired:
            log.info("journey.timers_fired", subscribers=fired)


async def _decode(ctx: WorkerContext, processor: str, batch: list[Any], contract: Any) -> list[Any]:
    decoded = []
    for event in batch:
        try:
            decoded.append(contract.from_bytes(event.value))
        except ValueError as exc:
            await ctx.dead_letter(processor, event, exc)
    return decoded
