"""Segment lookups: a subscriber's current segments, a segment's current size and members.

Served from ClickHouse's `segment_changes` history (connectors/segment_queries.py), not from the
worker's tables: the API process has none, with several workers the tables are split by partition,
and the same queries answer "as of" any past moment (`?at=2026-03-03T09:00:00Z`). The price is
freshness: ClickHouse trails the stream by the analytics batch interval (about a second).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from connectors.api.auth import authenticate
from connectors.api.errors import ApiError
from connectors.kafka_producer import KafkaProducer
from connectors.segment_queries import BadQueryInput, members_at, segments_of, size_at
from infra.analytics_client import AnalyticsQueryError
from infra.api_keys import ApiKeyStore
from infra.settings import Settings


def include(app: FastAPI, settings: Settings, producer: KafkaProducer) -> None:
    keys = ApiKeyStore(settings)

    async def answer(request: Request, query: Any, *args: Any) -> Any:
        authenticate(request.headers.get("authorization"), keys)
        try:
            return await asyncio.to_thread(query, settings, *args)
        except BadQueryInput as exc:
            raise ApiError(422, str(exc), reason="invalid_path") from None
        except AnalyticsQueryError as exc:
            raise ApiError(503, f"segment history is unavailable: {exc}", reason="analytics_unavailable") from None

    @app.get("/v1/subscribers/{subscriber_id}/segments")
    async def subscriber_segments(request: Request, subscriber_id: str, at: str | None = None) -> JSONResponse:
        """The segments a subscriber is in now (or at `at`), with version and since when."""
        moment = _moment(at)
        found = await answer(request, segments_of, subscriber_id, moment)
        body = {
            "subscriber_id": subscriber_id,
            "as_of": moment.isoformat(),
            "segments": [{"segment_id": m.segment_id, "version": m.version, "since": m.since.isoformat()} for m in found],
        }
        return JSONResponse(body)

    @app.get("/v1/segments/{segment_id}/size")
    async def segment_size(request: Request, segment_id: str, at: str | None = None) -> JSONResponse:
        """How many subscribers are in a segment now (or at `at`)."""
        moment = _moment(at)
        size = await answer(request, size_at, segment_id, moment)
        return JSONResponse({"segment_id": segment_id, "as_of": moment.isoformat(), "size": size})

    @app.get("/v1/segments/{segment_id}/members")
    async def segment_members(request: Request, segment_id: str, at: str | None = None, limit: int = 100) -> JSONResponse:
        """Members of a segment now (or at `at`), by subscriber id, up to `limit` (max 10000)."""
        moment = _moment(at)
        members = await answer(request, members_at, segment_id, moment, limit)
        return JSONResponse({"segment_id": segment_id, "as_of": moment.isoformat(), "members": members})


def _moment(at: str | None) -> datetime:
    if at is None:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise ApiError(422, f"'at' must be an ISO 8601 time like 2026-03-03T09:00:00Z, got {at!r}", reason="invalid_query", field="at") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
