"""Consent stage: `tidings.consent` (and hard bounces/complaints on `tidings.delivery`) -> the
per-subscriber consent table the sender checks (`domain.consent.may_send_marketing`)."""

from __future__ import annotations

import structlog

from domain.consent import fold_consent, fold_delivery
from domain.events import ConsentChanged, DeliveryEvent
from infra.logging import hashed
from infra.topics import Topic
from processors.app import WorkerContext

log = structlog.get_logger(__name__)


def register(ctx: WorkerContext) -> None:
    states = ctx.table("consent-states")
    ctx.resources["consent_states"] = states

    @ctx.app.agent(ctx.topic(Topic.CONSENT), name="consent")
    async def consent_agent(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            try:
                change = ConsentChanged.from_bytes(event.value)
            except ValueError as exc:
                await ctx.dead_letter("consent", event, exc)
                continue
            key = change.subscriber_id.encode()
            states[key] = fold_consent(states[key], change)
            log.info("consent.changed", subscriber=hashed(change.subscriber_id), status=change.status,
                     list_id=change.list_id, reason=change.reason)

    @ctx.app.agent(ctx.topic(Topic.DELIVERY), name="consent-suppressions")
    async def suppression_agent(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            try:
                delivery = DeliveryEvent.from_bytes(event.value)
            except ValueError:
                continue  # the stages that own delivery events dead-letter them
            if delivery.kind not in ("bounced", "complained"):
                continue
            key = delivery.subscriber_id.encode()
            before = states[key]
            after = fold_delivery(before, delivery)
            if after is not before:
                states[key] = after
                log.info("consent.suppressed", subscriber=hashed(delivery.subscriber_id), reason=after["suppressed"])
