"""The ingest HTTP API: native and Segment-compatible event intake, health and metrics.

Every write endpoint authenticates, reads the body within its limit, validates the whole request,
and answers 2xx only after Kafka acknowledged every record (DESIGN.md, guarantee 1). A rejected
request writes nothing.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from functools import partial
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.api.auth import authenticate
from connectors.api.body import parse_json, read_body
from connectors.api.dedupe import RecentIds
from connectors.api.errors import ApiError
from connectors.api.ingest import MAX_BODY_BYTES, parse_native
from connectors.api.metrics import ApiMetrics
from connectors.api.segment_compat import parse_segment_batch, parse_segment_call
from connectors.api.writer import EventWriter, WriteOutcome
from connectors.kafka_producer import KafkaProducer
from domain.events import EventEnvelope
from infra.api_keys import ApiKeyStore
from infra.logging import configure_logging
from infra.settings import Settings

log = structlog.get_logger(__name__)

Parser = Callable[[Any, datetime], list[EventEnvelope]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


from connectors.api.routers import ROUTER_MODULES  # noqa: E402


def create_api(settings: Settings, producer: KafkaProducer | None = None) -> FastAPI:
    """The API app. A producer passed in stays the caller's to close; one made here closes on shutdown."""
    owns_producer = producer is None
    kafka = producer if producer is not None else KafkaProducer(settings)
    keys = ApiKeyStore(settings)
    metrics = ApiMetrics()
    writer = EventWriter(settings, kafka, RecentIds(), metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        yield
        if owns_producer:
            await asyncio.to_thread(kafka.close)

    app = FastAPI(title="Tidings ingest API", version="1", lifespan=lifespan)
    app.state.metrics = metrics
    app.state.producer = kafka

    async def accept(request: Request, parse: Parser) -> WriteOutcome:
        authenticate(request.headers.get("authorization"), keys)
        raw = await read_body(request, MAX_BODY_BYTES)
        envelopes = parse(parse_json(raw), datetime.now(timezone.utc))
        outcome = await writer.write(envelopes)
        log.info("events.accepted", events=len(envelopes), accepted=outcome.accepted, duplicates=outcome.duplicates)
        return outcome

    @app.post("/v1/events", status_code=202)
    async def post_events(request: Request) -> JSONResponse:
        """One event object, or `{"events": [...]}` with 1..500 events."""
        outcome = await accept(request, parse_native)
        body = {"accepted": outcome.accepted, "duplicates": outcome.duplicates, "event_ids": outcome.event_ids}
        return JSONResponse(body, status_code=202)

    def segment_route(path: str, parse: Parser) -> None:
        async def endpoint(request: Request) -> JSONResponse:
            await accept(request, parse)
            return JSONResponse({"success": True})  # what Segment's SDKs look for

        endpoint.__name__ = f"segment_{path.rsplit('/', 1)[-1]}"
        app.add_api_route(path, endpoint, methods=["POST"], summary=f"Segment-compatible {path.rsplit('/', 1)[-1]}")

    for call_type in ("track", "identify", "page"):
        segment_route(f"/v1/{call_type}", partial(parse_segment_call, call_type))
    segment_route("/v1/batch", parse_segment_batch)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        kafka_ok = await asyncio.to_thread(kafka.reachable)
        return JSONResponse({"status": "ok" if kafka_ok else "unavailable", "kafka": kafka_ok}, status_code=200 if kafka_ok else 503)

    @app.get("/metrics")
    async def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.exception_handler(ApiError)
    async def rejected(_request: Request, exc: ApiError) -> JSONResponse:
        metrics.events_rejected(exc.reason, exc.events)
        log.info("request.rejected", status=exc.status, reason=exc.reason, field=exc.field, error=exc.error)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    for module_name in ROUTER_MODULES:
        # Each feature area (consent, tracking, feedback, dashboard, ...) adds its own routes.
        importlib.import_module(module_name).include(app, settings, kafka)

    known_paths = frozenset(route.path for route in app.routes if hasattr(route, "path"))
    app.add_middleware(RequestObserver, metrics=metrics, known_paths=known_paths)
    return app


class RequestObserver:
    """Binds a request id and path to every log line of a request; counts requests by route and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, known_paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        # Unknown paths share one label so scanners cannot blow up the metric's cardinality.
        path = scope["path"] if scope["path"] in self.known_paths else "other"
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id, path=path, method=scope["method"]):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                self.metrics.request_finished(path, status)
                log.info("request.finished", status=status, duration_ms=round((time.perf_counter() - started) * 1000, 2))


def run_api(settings: Settings) -> None:
    """Serve the API on `settings.api_host:api_port` until interrupted."""
    import uvicorn

    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_api(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,  # RequestObserver logs and counts requests
    )
