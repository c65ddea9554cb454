"""`tidings analytics ...`: schema migrations, the documented queries, a dashboard screenshot."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

analytics_app = typer.Typer(help="Analytics in ClickHouse: migrations, named queries, dashboard screenshot.")
console = Console()
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(analytics_app, name="analytics")


def _settings():  # type: ignore[no-untyped-def]
    from infra.logging import configure_logging
    from infra.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


@analytics_app.command("migrate")
def migrate() -> None:
    """Apply pending schema migrations (the worker also does this when it starts)."""
    from connectors.clickhouse import AnalyticsError, analytics_for

    settings = _settings()
    try:
        with analytics_for(settings) as analytics:
            applied = analytics.migrate()
    except AnalyticsError as exc:
        err.print(f"[red]{exc}[/red]")
        if settings.resolved_clickhouse_dsn.startswith("chdb://"):
            err.print("with embedded chDB the running worker owns the data and has migrated it when it started")
        raise typer.Exit(1)
    console.print("\n".join(f"applied {label}" for label in applied) or "schema is up to date")


@analytics_app.command("queries")
def queries() -> None:
    """List the named, documented queries and their parameters."""
    from connectors.analytics_queries import QUERIES

    table = Table("name", "question", "parameters (default)")
    for query in QUERIES.values():
        params = ", ".join(f"{p.name}={p.default!r}" for p in query.params)
        table.add_row(query.name + (" *" if query.dashboard else ""), query.question, params)
    console.print(table)
    console.print("* feeds a dashboard panel")


@analytics_app.command("run")
def run(
    name: str,
    param: list[str] = typer.Option([], "--param", "-p", help="name=value, repeatable"),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json"),
    show_sql: bool = typer.Option(False, "--sql", help="Print the SQL instead of running it."),
    key: Optional[str] = typer.Option(None, envvar="TIDINGS_API_KEY", help="API key for the worker's query port."),
) -> None:
    """Run a named query, e.g. `tidings analytics run holdout_lift -p journey_id=welcome`."""
    from connectors.analytics_queries import QueryParameterError, render
    from infra.analytics_client import AnalyticsQueryError, run_query

    values = {}
    for item in param:
        name_, sep, value = item.partition("=")
        if not sep or not name_:
            err.print(f"[red]--param {item!r} must look like name=value[/red]")
            raise typer.Exit(2)
        values[name_] = value
    try:
        sql = render(name, **values)
    except QueryParameterError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    if show_sql:
        sys.stdout.write(sql + "\n")
        return
    try:
        result = run_query(_settings(), sql, api_key=key)
    except AnalyticsQueryError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1)
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result["columns"])
        writer.writerows(result["rows"])
    elif fmt == "json":
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        table = Table(*result["columns"])
        for row in result["rows"]:
            table.add_row(*("" if v is None else str(v) for v in row))
        console.print(table)


@analytics_app.command("screenshot")
def screenshot(
    path: Path = typer.Argument(Path("var/dashboard.png"), help="Where to write the PNG."),
    url: Optional[str] = typer.Option(None, help="Dashboard URL; default the local API's /dashboard."),
) -> None:
    """Capture the dashboard as a PNG with headless Chromium."""
    from infra.screenshot import ScreenshotError, capture_dashboard

    settings = _settings()
    try:
        written = capture_dashboard(url or f"http://{settings.api_host}:{settings.api_port}/dashboard", path)
    except ScreenshotError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1)
    console.print(f"wrote {written}")
