"""`tidings worker`: every stage in one Faust worker process.

The worker also owns the embedded analytics engine (chDB allows one process per data directory), so
analytics queries from the CLI and the dashboard go through its web port.
"""

from __future__ import annotations

import hmac
import logging
import importlib
from typing import Any

import faust
import structlog
from faust.web import Request, Response, View

from connectors.clickhouse import Analytics, AnalyticsError, QueryRefused, analytics_for
from connectors.definitions_topic import DefinitionsFollower
from connectors.kafka_admin import ensure_topics
from infra.analytics_client import write_local_token
from infra.api_keys import ApiKeyStore
from infra.logging import configure_logging
from infra.settings import Settings
from processors import analytics as analytics_stage
from processors.stages import STAGE_MODULES
from processors.app import Clock, WorkerContext, create_faust_app, system_clock
from processors.live_definitions import LiveDefinitionsHolder

log = structlog.get_logger(__name__)


def build_worker(settings: Settings, analytics: Analytics, clock: Clock = system_clock) -> WorkerContext:
    holder = LiveDefinitionsHolder()
    ctx = WorkerContext(app=create_faust_app(settings), settings=settings, definitions=holder, clock=clock)
    ctx.resources["analytics"] = analytics
    for module_name in STAGE_MODULES:
        importlib.import_module(module_name).register(ctx)
    analytics_stage.register(ctx, analytics)
    _register_web(ctx, analytics)
    return ctx


def _register_web(ctx: WorkerContext, analytics: Analytics) -> None:
    keys = ApiKeyStore(ctx.settings)
    local_token = write_local_token(ctx.settings)

    def authorized(request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        credential = header[7:].strip()
        return hmac.compare_digest(credential, local_token) or keys.verify(credential) is not None

    @ctx.app.page("/healthz/")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "app_id": ctx.app.conf.id, "definitions": _definition_counts(ctx)})

    @ctx.app.page("/analytics/sql/")
    class Sql(View):
        async def post(self, request: Request) -> Response:
            if not authorized(request):
                return self.json({"error": "missing or invalid API key"}, status=401)
            try:
                body = await request.json()
                sql = body["sql"]
                if not isinstance(sql, str):
                    raise TypeError("sql must be a string")
            except (ValueError, KeyError, TypeError) as exc:
                return self.json({"error": f"body must be JSON with a string field 'sql': {exc}"}, status=422)
            try:
                result = await _query(analytics, sql)
            except QueryRefused as exc:
                return self.json({"error": str(exc)[:2000]}, status=403)
            except AnalyticsError as exc:  # the engine's message is what the analyst needs to see
                return self.json({"error": str(exc)[:2000]}, status=400)
            return self.json(result)


async def _query(analytics: Analytics, sql: str) -> dict[str, Any]:
    import asyncio

    result = await asyncio.to_thread(analytics.query, sql, None, True)
    return {"columns": result.columns, "rows": result.rows}


def _definition_counts(ctx: WorkerContext) -> dict[str, int]:
    live = ctx.definitions.current
    return {"segments": len(live.segments), "journeys": len(live.journeys), "templates": len(live.templates)}


class _Worker(faust.Worker):
    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        # Left at NOTSET, the root logger lets aiokafka and Faust build a LogRecord for every
        # debug call on the per-message path (~8% of the worker's CPU) only for handlers to drop it.
        logger.setLevel(max(level or logging.INFO, logging.INFO))
        logging.getLogger("aiokafka").setLevel(max(level or logging.INFO, logging.WARNING))


def run_worker(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    ensure_topics(settings)
    analytics = analytics_for(settings)
    analytics.migrate()
    ctx = build_worker(settings, analytics)
    follower = DefinitionsFollower(settings, on_change=ctx.definitions.replace)
    follower.catch_up()
    follower.start()
    log.info("worker.starting", app_id=ctx.app.conf.id, definitions=_definition_counts(ctx))
    worker = _Worker(ctx.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        follower.stop()
        analytics.close()
