"""Reputation stage: delivery events, regrouped by sending domain, counted into a table.

Snapshots go to the compacted reputation topic at most once a second per domain.
"""

from __future__ import annotations

import time

import structlog

from domain.events import DeliveryEvent
from infra.topics import Topic
from processors.app import WorkerContext
from projections import reputation_counts

log = structlog.get_logger(__name__)

SNAPSHOT_EVERY_SECONDS = 1.0


def _sending_domain(value: bytes) -> bytes:
    try:
        return DeliveryEvent.from_bytes(value).sending_domain.encode() or b"unknown"
    except ValueError:
        return b"invalid"


def register(ctx: WorkerContext) -> None:
    counts = ctx.table("reputation-counts")
    ctx.resources["reputation_counts"] = counts
    last_published: dict[bytes, float] = {}

    @ctx.app.agent(ctx.topic(Topic.DELIVERY), name="reputation")
    async def reputation_agent(stream):  # type: ignore[no-untyped-def]
        async for value in stream.group_by(_sending_domain, name="delivery-by-sending-domain"):
            try:
                delivery = DeliveryEvent.from_bytes(value)
            except ValueError:
                log.warning("reputation.record_invalid")
                continue
            key = (delivery.sending_domain or "unknown").encode()
            counts[key] = reputation_counts.apply(counts[key], delivery)
            if time.monotonic() - last_published.get(key, 0.0) >= SNAPSHOT_EVERY_SECONDS:
                last_published[key] = time.monotonic()
                snapshot = reputation_counts.snapshot(key.decode(), counts[key], ctx.clock())
                await ctx.emit(Topic.REPUTATION, snapshot.key, snapshot)
