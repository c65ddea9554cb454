"""Segments stage: events -> per-subscriber profile -> membership changes."""

from __future__ import annotations

import structlog

from domain import segments
from domain.events import EventEnvelope
from infra.logging import hashed
from infra.topics import Topic
from processors.app import WorkerContext

log = structlog.get_logger(__name__)


def register(ctx: WorkerContext) -> None:
    profiles = ctx.table("segment-profiles")
    ctx.resources["segment_profiles"] = profiles

    @ctx.app.agent(ctx.topic(Topic.EVENTS), name="segments")
    async def segments_agent(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            try:
                envelope = EventEnvelope.from_bytes(event.value)
            except ValueError as exc:
                await ctx.dead_letter("segments", event, exc)
                continue
            key = envelope.subscriber_id.encode()
            live = ctx.definitions.current
            previous = profiles[key]
            profile, changes = segments.apply_event(live.compiled_segments, previous, envelope, ctx.clock())
            for change in changes:
                log.info(
                    "segment.changed",
                    segment_id=change.segment_id,
                    change=change.change,
                    subscriber=hashed(change.subscriber_id),
                    event_id=envelope.event_id,
                )
            if changes:
                await ctx.emit_durably([(Topic.SEGMENT_CHANGES, c.subscriber_id, c) for c in changes])
            if profile is not previous:  # unchanged (e.g. a redelivery): no changelog write
                profiles[key] = profile
