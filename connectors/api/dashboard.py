"""The analytics dashboard: one static page and JSON endpoints running the named queries.

`GET /dashboard` serves a page of HTML, CSS and vanilla JS from `connectors/static/` (no build step,
nothing fetched from the network); it calls `GET /dashboard/api/query/{name}` for each panel every
few seconds. The queries are the documented ones in `connectors/analytics_queries.py`, run through
`infra.analytics_client.run_query`: with embedded chDB the worker owns the data, so this process
never opens it.

Who may read: a request carrying a valid API key (`Authorization: Bearer <key>`, or HTTP Basic
with the key as user) from anywhere; a request with no Authorization header only from the loopback
interface and only when no proxy header (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`) says it came
from somewhere else, because a reverse proxy on the same host makes every client look local. A
wrong key is refused even from loopback. The page itself is public: it holds no data.
"""

from __future__ import annotations

import asyncio
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse

from connectors.analytics_queries import DASHBOARD_QUERIES, QUERIES, QueryParameterError, named_query
from connectors.api.auth import CHALLENGE, authenticate
from connectors.api.errors import ApiError
from connectors.kafka_producer import KafkaProducer
from infra.analytics_client import AnalyticsQueryError, run_query
from infra.api_keys import ApiKeyStore
from infra.settings import Settings

log = structlog.get_logger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")
REFRESH_SECONDS = 5


def is_loopback_request(request: Request) -> bool:
    """True when the peer is loopback and no proxy header claims another origin."""
    if any(request.headers.get(name) for name in PROXY_HEADERS):
        return False
    host = request.client.host if request.client else ""
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def authorize(request: Request, keys: ApiKeyStore) -> str:
    """The caller: a key name, or 'loopback'; 401 otherwise."""
    header = request.headers.get("authorization")
    if header:
        return authenticate(header, keys)
    if is_loopback_request(request):
        return "loopback"
    raise ApiError(
        401,
        "the dashboard's data needs an API key from outside this machine: send 'Authorization: Bearer <key>'",
        reason="unauthorized",
        field="Authorization",
        headers=dict(CHALLENGE),
    )


def include(app: FastAPI, settings: Settings, producer: KafkaProducer) -> None:
    keys = ApiKeyStore(settings)

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_page() -> FileResponse:
        return FileResponse(STATIC / "dashboard.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/dashboard/static/{asset}", include_in_schema=False)
    async def dashboard_asset(asset: str) -> FileResponse:
        if asset not in ASSETS:
            raise ApiError(404, f"no dashboard asset {asset!r}", reason="not_found", field="asset")
        return FileResponse(STATIC / asset, media_type=ASSETS[asset], headers={"Cache-Control": "no-cache"})

    @app.get("/dashboard/api/queries")
    async def dashboard_queries(request: Request) -> JSONResponse:
        """The named queries: name, title, question, parameters, and which feed panels."""
        authorize(request, keys)
        return JSONResponse({
            "refresh_seconds": REFRESH_SECONDS,
            "panels": list(DASHBOARD_QUERIES),
            "queries": [_describe(name) for name in QUERIES],
        })

    @app.get("/dashboard/api/query/{name}")
    async def dashboard_query(name: str, request: Request) -> JSONResponse:
        """Run named query `name`; query-string values fill its parameters."""
        caller = authorize(request, keys)
        try:
            sql = named_query(name).render(**dict(request.query_params))
        except QueryParameterError as exc:
            status = 404 if name not in QUERIES else 422
            raise ApiError(status, str(exc), reason="bad_query", field="name" if status == 404 else "query") from None
        try:
            result = await asyncio.to_thread(run_query, settings, sql)
        except AnalyticsQueryError as exc:
            log.warning("dashboard.query_failed", query=name, caller=caller, error=str(exc)[:300])
            raise ApiError(502, f"analytics query {name} failed: {exc}", reason="analytics_unavailable") from None
        return JSONResponse({"name": name, "columns": result["columns"], "rows": result["rows"]})


def _describe(name: str) -> dict[str, Any]:
    query = QUERIES[name]
    return {
        "name": query.name,
        "title": query.title,
        "question": query.question,
        "dashboard": query.dashboard,
        "params": [{"name": p.name, "type": p.type, "default": p.default, "doc": p.doc} for p in query.params],
    }
