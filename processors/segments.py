"""Segments stage: events + delivery + consent -> per-subscriber profile -> membership changes.

Three agents (one per source topic, all keyed by subscriber, so a worker owning partition p of one
owns p of all) fold records into the `segment-profiles` table under one lock, so a record and a
timer never interleave on a subscriber. Outputs go out durably before the state that says they
happened (`ctx.emit_durably`).

Durable timers: a profile that holds a window or duration stores its next expiry in `due`; the
`segment-timers` table holds the same due time per subscriber, written before the profile (a
timer that fires with nothing due is harmless, a lost one is not). Both tables are changelogged,
so they survive restarts and move with their partitions on rebalance. A heap in memory indexes
the local due times; it is rebuilt from the table after every partition assignment and table
recovery, and `@app.timer` pops what is due each second and re-evaluates it at `ctx.clock()`.

After a definitions change, every local profile is re-evaluated under the new definitions by the
same timer loop, a batch at a time: switch-over is atomic per subscriber (one profile write) and
its changes are marked `backfill`, so journeys do not start for entries that only a redefinition
produced.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from domain import segments
from domain.events import ConsentChanged, DeliveryEvent, EventEnvelope, SegmentMembershipChanged, stable_id
from domain.segment_engine import CompiledSegments, Observation
from domain.segment_rules import to_ms
from infra.topics import Topic
from processors.app import WorkerContext

log = structlog.get_logger(__name__)

TIMER_INTERVAL_SECONDS = 1.0
BATCH_RECORDS = 1000
BATCH_SECONDS = 0.05  # the most a record waits for its batch to fill: part of the change latency
REDEFINE_BATCH = 2000
INDEX_REFRESH_SECONDS = 300.0


class SegmentsStage:
    def __init__(self, ctx: WorkerContext, profiles: Any, timers: Any) -> None:
        self.ctx = ctx
        self.profiles = profiles
        self.timers = timers
        self.lock = asyncio.Lock()
        self.heap: list[tuple[int, bytes]] = []
        self.indexed_for: object = None
        self.indexed_at = 0.0
        self.redefining: list[bytes] = []
        self.defined_as = ""

    @property
    def compiled(self) -> CompiledSegments:
        return self.ctx.definitions.current.compiled_segments

    async def on_records(self, records: list[Observation]) -> None:
        """Fold a batch; emit all its changes with one wait for the broker; then write the state.

        One durable round trip per batch rather than per record is what lets the stage keep up:
        waiting for `acks=all` per record caps it at a few hundred records a second.
        """
        compiled = self.compiled
        async with self.lock:
            before: dict[bytes, dict[str, Any]] = {}
            after: dict[bytes, dict[str, Any]] = {}
            changes: list[SegmentMembershipChanged] = []
            for record in records:
                key = record.subscriber_id.encode()
                if key not in after:
                    before[key] = after[key] = self.profiles[key]
                after[key], new = segments.apply_record(compiled, after[key], record)
                changes += new
            await self.emit(changes, "records")
            for key, profile in after.items():
                self.write(key, before[key], profile)

    async def emit(self, changes: list[SegmentMembershipChanged], cause: str) -> None:
        # No log line per change: at thousands a second it costs more than the fold. The
        # changes themselves are the record (segment_changes in ClickHouse).
        if changes:
            await self.ctx.emit_durably([(Topic.SEGMENT_CHANGES, c.subscriber_id, c) for c in changes])
            log.debug("segment.changes_emitted", changes=len(changes), cause=cause)

    def write(self, key: bytes, previous: dict[str, Any], profile: dict[str, Any], fired: bool = False) -> None:
        """The timer before the profile: a spurious timer is harmless, a lost one is not.

        The timer entry is rewritten only when the profile's due time comes earlier than the one
        stored (or when the stored one just fired): an entry that is too early merely wakes the
        subscriber for nothing, and then gets corrected. That keeps timer writes off most records,
        whose windows only move the due time later.
        """
        due = profile.get("due")
        stored = self.timers.get(key)
        stored_due = stored.get("due") if stored else None
        if fired:
            if due is None:
                self.timers.pop(key, None)
            elif due != stored_due:
                self.timers[key] = {"due": due}
            if due is not None:
                heapq.heappush(self.heap, (due, key))
        elif due is not None and (stored_due is None or due < stored_due):
            self.timers[key] = {"due": due}
            heapq.heappush(self.heap, (due, key))
        if profile is not previous:
            self.profiles[key] = profile

    async def fire_due(self, now: datetime) -> int:
        """Re-evaluate every local subscriber whose window or duration expired by `now`, in batches."""
        now_ms = to_ms(now)
        fired = 0
        while self.heap and self.heap[0][0] <= now_ms:
            due_keys: list[bytes] = []
            while self.heap and self.heap[0][0] <= now_ms and len(due_keys) < BATCH_RECORDS:
                due, key = heapq.heappop(self.heap)
                entry = self.timers.get(key)
                if entry and entry.get("due") == due:  # else superseded by a newer due time
                    due_keys.append(key)
            fired += await self.advance_batch(due_keys, now, backfill=False)
        return fired

    async def advance_batch(self, keys: list[bytes], now: datetime, backfill: bool) -> int:
        compiled = self.compiled
        async with self.lock:
            before: dict[bytes, dict[str, Any]] = {}
            after: dict[bytes, dict[str, Any]] = {}
            changes: list[SegmentMembershipChanged] = []
            for key in dict.fromkeys(keys):
                previous = self.profiles[key]
                if not previous:
                    continue  # not recovered here; the table still holds the due time
                if backfill and previous.get("defs") == compiled.fingerprint:
                    continue
                before[key] = previous
                after[key], new = segments.advance(compiled, previous, key.decode(), now)
                changes += [_as_backfill(c) for c in new] if backfill else new
            await self.emit(changes, "timer")
            for key, profile in after.items():
                self.write(key, before[key], profile, fired=not backfill)
        return len(after)

    async def redefine_some(self, now: datetime) -> int:
        """Move a batch of local profiles onto the current definitions (marking changes backfill)."""
        compiled = self.compiled
        if compiled.fingerprint != self.defined_as:
            self.defined_as = compiled.fingerprint
            self.redefining = [k for k, p in list(self.profiles.items()) if p and p.get("defs") != compiled.fingerprint]
            if self.redefining:
                log.info("segments.redefining", subscribers=len(self.redefining), unusable=list(compiled.unusable))
        batch, self.redefining = self.redefining[:REDEFINE_BATCH], self.redefining[REDEFINE_BATCH:]
        return await self.advance_batch(batch, now, backfill=True) if batch else 0

    def refresh_index(self, assignment: object, monotonic: float) -> None:
        """Rebuild the due-time heap from the table after an assignment change (and now and then)."""
        if assignment == self.indexed_for and monotonic - self.indexed_at < INDEX_REFRESH_SECONDS:
            return
        self.heap = [(entry["due"], key) for key, entry in list(self.timers.items()) if entry and "due" in entry]
        heapq.heapify(self.heap)
        self.indexed_for = assignment
        self.indexed_at = monotonic
        log.info("segments.timers_indexed", due_entries=len(self.heap))


def _as_backfill(change: SegmentMembershipChanged) -> SegmentMembershipChanged:
    if change.cause_event_ids[:1] == ["backfill"]:
        return change
    causes = ["backfill", *change.cause_event_ids]
    return change.model_copy(update={"cause_event_ids": causes, "change_id": segments_change_id(change, causes)})


def segments_change_id(change: SegmentMembershipChanged, causes: list[str]) -> str:
    return stable_id(change.segment_id, str(change.segment_version), change.subscriber_id, change.change, *causes)


def register(ctx: WorkerContext) -> None:
    stage = SegmentsStage(ctx, ctx.table("segment-profiles"), ctx.table("segment-timers"))
    ctx.resources["segment_profiles"] = stage.profiles
    ctx.resources["segment_timers"] = stage.timers
    ctx.resources["segments_stage"] = stage

    def agent_for(topic: Topic, name: str, observe: Callable[[bytes], Observation]) -> None:
        async def fold(stream):  # type: ignore[no-untyped-def]
            # Offsets of a batch are acknowledged after the body returns, i.e. after its changes
            # are durable and its profiles written.
            async for events in stream.take_events(BATCH_RECORDS, within=BATCH_SECONDS):
                records = []
                for event in events:
                    try:
                        records.append(observe(event.value))
                    except ValueError as exc:
                        await ctx.dead_letter(name, event, exc)
                await stage.on_records(records)

        ctx.app.agent(ctx.topic(topic), name=name)(fold)

    agent_for(Topic.EVENTS, "segments", lambda raw: segments.observe_event(EventEnvelope.from_bytes(raw)))
    agent_for(Topic.DELIVERY, "segments-delivery", lambda raw: segments.observe_delivery(DeliveryEvent.from_bytes(raw)))
    agent_for(Topic.CONSENT, "segments-consent", lambda raw: segments.observe_consent(ConsentChanged.from_bytes(raw)))

    @ctx.app.timer(interval=TIMER_INTERVAL_SECONDS)
    async def segment_timers() -> None:
        # Before recovery finishes the tables hold due times without their profiles (or neither).
        if not ctx.app.tables.recovery.completed.is_set():
            stage.indexed_for = None
            return
        assignment = frozenset(ctx.app.consumer.assignment())
        stage.refresh_index(assignment, asyncio.get_running_loop().time())
        now = ctx.clock()
        fired = await stage.fire_due(now)
        moved = await stage.redefine_some(now)
        if fired or moved:
            log.info("segments.timers_fired", subscribers=fired, redefined=moved)


