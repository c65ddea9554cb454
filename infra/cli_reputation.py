"""`tidings reputation`: the table of sending identities x mailbox providers with scores and state;
`resume` and `warmup` publish operator commands to Kafka (the reputation stage applies them)."""

from __future__ import annotations

import getpass
import uuid
from datetime import datetime, timezone

import typer
from rich.console import Console
from rich.table import Table

from infra.logging import configure_logging
from infra.settings import Settings, get_settings

console = Console()
err = Console(stderr=True)
TABLE_WIDTH = 200


def _settings() -> Settings:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def render_table(snapshots: dict) -> Table:  # type: ignore[type-arg]
    table = Table("identity", "provider", "state", "score 24h", "sent 1h", "bounce 1h", "complaint 1h",
                  "sent 24h", "bounce 24h", "complaint 24h", "rate/min", "daily cap", "transactional", "updated")
    for (domain, provider), snap in sorted(snapshots.items()):
        hour, day = snap.windows.get("1h", {}), snap.windows.get("24h", {})
        control = snap.control or {}
        table.add_row(
            domain, provider, snap.state, "-" if snap.score is None else f"{snap.score:.0f}",
            str(int(hour.get("sent") or 0)), _percent(hour.get("bounce_rate")), _percent(hour.get("complaint_rate")),
            str(snap.sent), _percent(day.get("bounce_rate")), _percent(day.get("complaint_rate")),
            str(control.get("max_per_minute") or "-"), str(control.get("daily_cap") or "-"),
            str(control.get("transactional_state", "healthy")), snap.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table


def _command(action: str, identity: str, provider: str, plan: list[int] | None = None):  # type: ignore[no-untyped-def]
    from domain.reputation import ReputationCommand

    try:
        return ReputationCommand(
            command_id=f"{action}-{uuid.uuid4().hex[:16]}", action=action, sending_domain=identity.strip().lower(),  # type: ignore[arg-type]
            provider=provider.strip().lower(), plan=plan or [], issued_at=datetime.now(timezone.utc),
            issued_by=getpass.getuser(),
        )
    except ValueError as exc:
        err.print(f"[red]invalid command:[/red] {exc}")
        raise typer.Exit(2) from None


def _publish(settings: Settings, command) -> None:  # type: ignore[no-untyped-def]
    from connectors.reputation_topic import publish_command

    try:
        publish_command(settings, command)
    except Exception as exc:  # noqa: BLE001 - the operator needs the broker's reason
        err.print(f"[red]could not publish to Kafka:[/red] {exc}")
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    reputation_app = typer.Typer(help="Sender reputation: scores, state, resume and warm-up plans.")
    app.add_typer(reputation_app, name="reputation")

    @reputation_app.callback(invoke_without_command=True)
    def show(ctx: typer.Context) -> None:
        """Every sending identity x mailbox provider: windows, score, state and the controls senders obey."""
        if ctx.invoked_subcommand is not None:
            return
        from connectors.reputation_topic import read_snapshots

        snapshots = read_snapshots(_settings())
        if not snapshots:
            console.print("no reputation snapshots yet (nothing delivered?)")
            return
        out = console if console.is_terminal else Console(width=TABLE_WIDTH)  # piped: don't squeeze to 80 columns
        out.print(render_table(snapshots))

    @reputation_app.command("resume")
    def resume(
        identity: str = typer.Argument(..., help="Sending domain, e.g. news.example.com"),
        provider: str = typer.Option("all", help="gmail, outlook, yahoo, apple, other, or all (the identity)"),
    ) -> None:
        """Resume a paused (or throttled) identity, for one provider or as a whole."""
        settings = _settings()
        command = _command("resume", identity, provider)
        _publish(settings, command)
        console.print(f"resume published for {command.sending_domain} / {command.provider} ({command.command_id})")

    @reputation_app.command("warmup")
    def warmup(
        identity: str = typer.Argument(..., help="Sending domain, e.g. news.example.com"),
        plan: str = typer.Option("", help="Daily caps, one per day: 50,100,200 or 50*2,100*2,200"),
        provider: str = typer.Option("all", help="Cap one provider only, or all (the identity)"),
        clear: bool = typer.Option(False, "--clear", help="Remove the identity's warm-up plan"),
    ) -> None:
        """Start a warm-up plan: marketing sends capped per UTC day, one step a day while healthy."""
        from domain.reputation import ReputationConfigError, parse_plan

        settings = _settings()
        if clear:
            command = _command("warmup-clear", identity, provider)
        else:
            try:
                caps = parse_plan(plan)
            except ReputationConfigError as exc:
                err.print(f"[red]{exc}[/red]")
                raise typer.Exit(2) from None
            command = _command("warmup", identity, provider, caps)
        _publish(settings, command)
        console.print(f"{command.action} published for {command.sending_domain} / {command.provider}"
                      + (f": {command.plan}" if command.plan else ""))
