"""CLI for the event store: `tidings relay`, `tidings definitions ...`, `tidings subscribers show`,
`tidings tokens rotate`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from infra.logging import configure_logging
from infra.settings import Settings, get_settings

console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def register(app: typer.Typer) -> None:
    definitions_app = typer.Typer(help="Definition versions in the event store.")
    subscribers_app = typer.Typer(help="Subscribers in the event store.")
    tokens_app = typer.Typer(help="Keys that sign unsubscribe, preference and confirmation links.")
    app.add_typer(definitions_app, name="definitions")
    app.add_typer(subscribers_app, name="subscribers")
    app.add_typer(tokens_app, name="tokens")

    @app.command("relay")
    def relay() -> None:
        """Relay every stored event to Kafka until stopped (the API also runs one in a thread)."""
        import signal
        import threading

        from processors.relay import run_relay

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        run_relay(_settings(), stop)

    @definitions_app.command("list")
    def definitions_list() -> None:
        """Every journey, segment and template with its live version and state."""
        from infra.event_store import open_event_store

        store = open_event_store(_settings())
        try:
            table = Table("kind", "id", "version", "state", "content hash")
            for d in store.definitions.list():
                table.add_row(d.kind, d.definition_id, str(d.live_version), d.state, d.content_hash[:12])
            console.print(table)
        finally:
            store.close()

    @definitions_app.command("history")
    def definitions_history(definition: str = typer.Argument(..., help="kind:id, e.g. journey:welcome")) -> None:
        """Who published, paused, resumed or archived which version, and when."""
        from domain.definitions_store import DefinitionStoreError, split_key
        from infra.event_store import open_event_store

        store = open_event_store(_settings())
        try:
            kind, definition_id = split_key(definition)
            table = Table("when", "event", "version", "who", "from", "content hash")
            for e in store.definitions.history(kind, definition_id):
                table.add_row(e.at.isoformat(timespec="seconds"), e.event, "" if e.version is None else str(e.version),
                              e.actor, e.source, e.content_hash[:12])
            console.print(table)
        except DefinitionStoreError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1)
        finally:
            store.close()

    @definitions_app.command("diff")
    def definitions_diff(definition: str, v1: int, v2: int) -> None:
        """What changed between two versions (unified diff of their YAML)."""
        from domain.definitions_store import DefinitionStoreError, split_key
        from infra.event_store import open_event_store

        store = open_event_store(_settings())
        try:
            kind, definition_id = split_key(definition)
            text = store.definitions.diff(kind, definition_id, v1, v2)
            typer.echo(text or f"v{v1} and v{v2} have the same content")
        except DefinitionStoreError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1)
        finally:
            store.close()

    @subscribers_app.command("show")
    def subscribers_show(subscriber_id: str) -> None:
        """Current consent and its history (who, what, when)."""
        from infra.event_store import open_event_store

        store = open_event_store(_settings())
        try:
            view = store.subscribers.view(subscriber_id)
            if view is None:
                err.print(f"[red]no subscriber {subscriber_id!r}[/red]")
                raise typer.Exit(1)
            console.print(f"subscriber [bold]{view.subscriber_id}[/bold]  email: {view.email or '(erased)'}  "
                          f"timezone: {view.timezone}  locale: {view.locale}")
            console.print(f"marketing: {'unsubscribed' if view.globally_unsubscribed else 'subscribed'}  "
                          f"suppressed: {view.suppressed_reason or 'no'}  erased: {view.erased}")
            lists = Table("list", "status")
            for list_id, status in sorted(view.lists.items()):
                lists.add_row(list_id, status)
            console.print(lists)
            history = Table("version", "when", "event", "who", "status", "list", "reason")
            for h in store.subscribers.history(subscriber_id):
                history.add_row(str(h.version), h.at, h.event, h.actor, h.detail["status"], h.detail["list_id"],
                                h.detail["reason"])
            console.print(history)
        finally:
            store.close()

    @tokens_app.command("rotate")
    def tokens_rotate() -> None:
        """Sign new links with a new key; links signed with older keys keep working until they expire."""
        from infra.token_keys import rotate

        keys = rotate(_settings())
        console.print(f"signing with key {keys.current_id}; accepted: {', '.join(sorted(keys.keys))}")
