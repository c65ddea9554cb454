"""Analytics queries from any process.

With a ClickHouse server every process connects directly. With embedded chDB the worker owns the
data directory, so queries go through its web port, authorised by an API key or by the local token
the worker writes (readable only by its user) into the data dir.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx

from infra.settings import Settings


class AnalyticsQueryError(RuntimeError):
    pass


def token_file(settings: Settings) -> Path:
    return settings.data_dir / "run" / "worker.token"


def write_local_token(settings: Settings) -> str:
    path = token_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token)
    return token


def run_query(settings: Settings, sql: str, api_key: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
    dsn = settings.resolved_clickhouse_dsn
    if dsn.startswith(("http://", "https://")):
        from connectors.clickhouse import Analytics

        from connectors.clickhouse import AnalyticsError

        try:
            with Analytics(dsn) as analytics:
                result = analytics.query(sql, None, True)
        except AnalyticsError as exc:
            raise AnalyticsQueryError(str(exc)) from None
        return {"columns": result.columns, "rows": result.rows}
    credential = api_key
    if credential is None:
        try:
            credential = token_file(settings).read_text().strip()
        except FileNotFoundError:
            raise AnalyticsQueryError(
                "the worker owns the embedded analytics store and is not running here "
                f"(no {token_file(settings)}); start it with `tidings worker` or `tidings stack up`"
            ) from None
    url = f"http://{settings.worker_host}:{settings.worker_port}/analytics/sql/"
    try:
        response = httpx.post(url, json={"sql": sql}, headers={"Authorization": f"Bearer {credential}"}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise AnalyticsQueryError(f"cannot reach the worker at {url}: {exc}") from None
    body = response.json()
    if response.status_code != 200:
        raise AnalyticsQueryError(body.get("error", response.text))
    return body
