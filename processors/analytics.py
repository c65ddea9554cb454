"""Analytics stage: every topic into ClickHouse, in batches, idempotent on each record's id.

One agent per source topic; `take_events` acks a batch only after the loop body returns, i.e.
after ClickHouse has the rows, so a crash replays (and the sink dedupes) rather than loses.
"""

from __future__ import annotations

import asyncio

import structlog

from connectors.clickhouse import Analytics
from infra.topics import Topic
from processors.app import WorkerContext
from projections.analytics_rows import row_for

log = structlog.get_logger(__name__)

ANALYTICS_TOPICS = (
    Topic.EVENTS,
    Topic.SEND_INTENTS,
    Topic.DELIVERY,
    Topic.SEGMENT_CHANGES,
    Topic.JOURNEY_DECISIONS,
    Topic.REPUTATION,
    Topic.REPUTATION_CHANGES,
)


def register(ctx: WorkerContext, analytics: Analytics) -> None:
    for topic in ANALYTICS_TOPICS:
        _register_sink(ctx, analytics, topic)


def _register_sink(ctx: WorkerContext, analytics: Analytics, topic: Topic) -> None:
    payload_type = topic.spec.payload

    async def sink(stream):  # type: ignore[no-untyped-def]
        async for events in stream.take_events(ctx.settings.analytics_batch_rows, within=ctx.settings.analytics_batch_seconds):
            by_table: dict[str, list[dict]] = {}
            for event in events:
                try:
                    table, row = row_for(payload_type.from_bytes(event.value))
                except ValueError as exc:
                    await ctx.dead_letter(f"analytics-{topic.spec.suffix}", event, exc)
                    continue
                by_table.setdefault(table, []).append(row)
            for table, rows in by_table.items():
                inserted = await asyncio.to_thread(analytics.insert_rows, table, rows)
                log.debug("analytics.batch_inserted", table=table, rows=len(rows), inserted=inserted)

    ctx.app.agent(ctx.topic(topic), name=f"analytics-{topic.spec.suffix}")(sink)
