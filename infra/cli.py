"""The `tidings` command line."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from infra.logging import configure_logging
from infra.settings import Settings, get_settings

app = typer.Typer(help="Tidings: event-driven marketing automation on Kafka.", no_args_is_help=True)
kafka_app = typer.Typer(help="The local single-node Kafka broker (KRaft, from Maven Central jars).")
stack_app = typer.Typer(help="The local stack: broker, SMTP capture sink, worker and API.")
keys_app = typer.Typer(help="API keys (stored hashed).")
mailsink_app = typer.Typer(help="The local SMTP capture sink.", invoke_without_command=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(stack_app, name="stack")
app.add_typer(keys_app, name="keys")
app.add_typer(mailsink_app, name="mailsink")

console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


# -- services -------------------------------------------------------------------------------------
@app.command()
def worker() -> None:
    """Run the stream processors (segments, journeys, sender, reputation, analytics)."""
    from processors.worker import run_worker

    run_worker(get_settings())


@app.command()
def api() -> None:
    """Run the HTTP API (ingest, Segment-compatible endpoints, health, metrics)."""
    from connectors.api.app import run_api

    settings = _settings()
    run_api(settings)


@mailsink_app.callback()
def mailsink(ctx: typer.Context, list_: bool = typer.Option(False, "--list", help="List captured messages and exit.")) -> None:
    """Run the SMTP capture sink (or list what it captured)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings()
    from connectors.mailsink import list_messages, run_mailsink

    if list_:
        table = Table("received", "to", "subject", "message id")
        for message in list_messages(settings.mailsink_dir):
            table.add_row(str(message.received_at), ", ".join(message.rcpt_tos), message.subject, message.message_id)
        console.print(table)
        return
    run_mailsink(settings)


# -- kafka ----------------------------------------------------------------------------------------
@kafka_app.command("start")
def kafka_start() -> None:
    """Fetch the jars (once), format storage (once) and start the broker; waits until it is ready."""
    from infra.kafka_broker import KafkaBroker

    status = KafkaBroker(_settings()).start(wait=True)
    console.print(f"Kafka ready at {status.bootstrap} (pid {status.pid})")


@kafka_app.command("stop")
def kafka_stop() -> None:
    from infra.kafka_broker import KafkaBroker

    stopped = KafkaBroker(_settings()).stop()
    console.print("Kafka stopped" if stopped else "Kafka was not running (from this data dir)")


@kafka_app.command("status")
def kafka_status() -> None:
    from infra.kafka_broker import KafkaBroker

    status = KafkaBroker(_settings()).status()
    console.print(f"ready={status.ready} pid={status.pid} bootstrap={status.bootstrap}")
    raise typer.Exit(0 if status.ready else 1)


@app.command("topics")
def topics() -> None:
    """Create every topic in the registry that does not exist yet."""
    from connectors.kafka_admin import ensure_topics
    from infra.topics import Topic

    settings = _settings()
    created = set(ensure_topics(settings))
    table = Table("topic", "partitions", "cleanup", "payload", "")
    for topic in Topic:
        name = topic.name(settings)
        table.add_row(name, str(topic.partitions(settings)), topic.spec.cleanup_policy, topic.spec.payload.__name__,
                      "created" if name in created else "exists")
    console.print(table)


# -- stack ----------------------------------------------------------------------------------------
@stack_app.command("up")
def stack_up() -> None:
    """Start broker, mail sink, worker and API in the background."""
    from infra.stack import Stack

    settings = _settings()
    stack = Stack(settings)
    stack.up()
    _print_status(stack.status())
    console.print(f"API: http://{settings.api_host}:{settings.api_port}   logs: {settings.data_dir / 'logs'}")


@stack_app.command("down")
def stack_down(broker: bool = typer.Option(True, help="Stop the Kafka broker too.")) -> None:
    from infra.stack import Stack

    Stack(_settings()).down(stop_broker=broker)
    console.print("stack stopped")


@stack_app.command("status")
def stack_status() -> None:
    from infra.stack import Stack

    _print_status(Stack(_settings()).status())


def _print_status(status: dict[str, str]) -> None:
    table = Table("service", "state")
    for name, state in status.items():
        table.add_row(name, state)
    console.print(table)


# -- keys -----------------------------------------------------------------------------------------
@keys_app.command("create")
def keys_create(name: str) -> None:
    """Create an API key; it is shown once and stored only as a hash."""
    from infra.api_keys import ApiKeyStore

    key = ApiKeyStore(_settings()).create(name)
    console.print(f"API key '{name}': [bold]{key}[/bold]  (store it now: only its hash is kept)")


@keys_app.command("list")
def keys_list() -> None:
    from infra.api_keys import ApiKeyStore

    table = Table("name", "created")
    for entry in ApiKeyStore(_settings()).list():
        table.add_row(entry["name"], str(entry.get("created_at", "")))
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(name: str) -> None:
    from infra.api_keys import ApiKeyStore

    if not ApiKeyStore(_settings()).revoke(name):
        err.print(f"[red]no API key named '{name}'[/red]")
        raise typer.Exit(1)
    console.print(f"revoked '{name}'")


# -- definitions ----------------------------------------------------------------------------------
@app.command()
def validate(paths: list[Path]) -> None:
    """Validate segment, journey and template YAML; errors name file, line and field."""
    from infra.definitions_loader import validate_paths

    errors = validate_paths(paths)
    for error in errors:
        err.print(f"[red]{error}[/red]")
    if errors:
        raise typer.Exit(1)
    console.print(f"[green]valid[/green]: {', '.join(str(p) for p in paths)}")


@app.command()
def apply(paths: list[Path]) -> None:
    """Validate definitions and publish new versions (unchanged content creates none)."""
    from infra.publish import DefinitionsInvalidError, apply_paths

    settings = _settings()
    try:
        published = apply_paths(settings, paths)
    except DefinitionsInvalidError as exc:
        for error in exc.errors:
            err.print(f"[red]{error}[/red]")
        raise typer.Exit(1)
    if not published:
        console.print("nothing changed: every definition is already live")
    for publication in published:
        console.print(f"published {publication.kind} [bold]{publication.definition_id}[/bold] v{publication.version}")


# -- analytics ------------------------------------------------------------------------------------
@app.command()
def sql(
    query: str,
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json"),
    key: Optional[str] = typer.Option(None, envvar="TIDINGS_API_KEY", help="API key for the worker's query port."),
) -> None:
    """Run a read-only query against the analytics store and print a table, CSV or JSON."""
    from infra.analytics_client import AnalyticsQueryError, run_query

    settings = _settings()
    try:
        result = run_query(settings, query, api_key=key)
    except AnalyticsQueryError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1)
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result["columns"])
        writer.writerows(result["rows"])
    elif fmt == "json":
        console.print_json(json.dumps(result))
    else:
        table = Table(*result["columns"])
        for row in result["rows"]:
            table.add_row(*("" if v is None else str(v) for v in row))
        console.print(table)


# -- demo -----------------------------------------------------------------------------------------
@app.command()
def demo(
    subscribers: int = typer.Option(600, help="Synthetic subscribers to simulate."),
    keep_running: bool = typer.Option(False, help="Leave the stack running afterwards."),
) -> None:
    """Start the local stack, apply the examples, send synthetic events and show the result."""
    from infra.demo import run_demo

    configure_logging("WARNING", get_settings().log_format)  # the demo prints its own progress
    raise typer.Exit(run_demo(subscribers=subscribers, keep_running=keep_running, console=console))


def _register_extensions() -> None:
    import importlib

    from infra.cli_extensions import CLI_MODULES

    for module_name in CLI_MODULES:
        importlib.import_module(module_name).register(app)


_register_extensions()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
