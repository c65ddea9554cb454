"""Journeys stage: events -> enrollment state -> send intents and decisions."""

from __future__ import annotations

import structlog

from domain import journeys
from domain.events import EventEnvelope
from infra.logging import hashed
from infra.topics import Topic
from processors.app import WorkerContext

log = structlog.get_logger(__name__)


def register(ctx: WorkerContext) -> None:
    states = ctx.table("journey-states")
    ctx.resources["journey_states"] = states

    @ctx.app.agent(ctx.topic(Topic.EVENTS), name="journeys")
    async def journeys_agent(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            try:
                envelope = EventEnvelope.from_bytes(event.value)
            except ValueError as exc:
                await ctx.dead_letter("journeys", event, exc)
                continue
            key = envelope.subscriber_id.encode()
            previous = states[key]
            outcome = journeys.apply_event(ctx.definitions.current.journeys, previous, envelope, ctx.clock())
            for intent in outcome.intents:
                log.info(
                    "journey.intent_created",
                    journey_id=intent.journey_id,
                    step_id=intent.step_id,
                    intent_id=intent.intent_id,
                    subscriber=hashed(intent.subscriber_id),
                )
            records = [(Topic.SEND_INTENTS, i.subscriber_id, i) for i in outcome.intents]
            records += [(Topic.JOURNEY_DECISIONS, d.subscriber_id, d) for d in outcome.decisions]
            if records:
                await ctx.emit_durably(records)
            if outcome.state is not previous:
                states[key] = outcome.state
