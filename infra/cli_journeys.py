"""`tidings journeys ...`: validate, draw and backtest journey files before they go live."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from domain.journey_language import JourneyDefinition, parse_journey
from domain.yaml_source import DefinitionError

journeys_app = typer.Typer(help="Journeys: validate, graph and simulate journey files.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(journeys_app, name="journeys")


# --- loading ------------------------------------------------------------------------------------


def definitions_root(journey_file: Path, given: Path | None) -> Path | None:
    """Where the templates and segments a journey refers to live: given, else beside `journeys/`."""
    if given is not None:
        return given
    if journey_file.resolve().parent.name == "journeys":
        return journey_file.resolve().parent.parent
    return None


def _ids_in(directory: Path) -> set[str]:
    ids = set()
    for path in sorted(directory.glob("*.y*ml")) if directory.is_dir() else []:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            ids.add(data["id"])
    return ids


def load_journey(path: Path, root: Path | None) -> JourneyDefinition:
    """Parse one journey file, checking templates and segments when their folders are known."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(str(path), None, "", f"cannot read: {exc}") from None
    templates = _ids_in(root / "templates") if root and (root / "templates").is_dir() else None
    segments = _ids_in(root / "segments") if root and (root / "segments").is_dir() else None
    return parse_journey(text, str(path), known_templates=templates, known_segments=segments)


def load_segments(root: Path | None) -> list[Any]:
    if root is None or not (root / "segments").is_dir():
        return []
    from infra.definitions_loader import load_paths

    return list(load_paths([root / "segments"]).segments)


# --- validate -----------------------------------------------------------------------------------


@journeys_app.command("validate")
def validate(
    files: list[Path] = typer.Argument(..., help="Journey YAML files."),
    definitions: Optional[Path] = typer.Option(None, "--definitions", "-d", help="Folder with templates/ and segments/ (default: beside journeys/)."),
) -> None:
    """Check journey files: every error names file, line and field; unknown templates and
    segments and unreachable steps are errors."""
    failed = 0
    for path in files:
        try:
            journey = load_journey(path, definitions_root(path, definitions))
        except DefinitionError as exc:
            failed += 1
            err.print(f"[red]{exc}[/red]", highlight=False)
            continue
        console.print(f"[green]ok[/green] {path}: {journey.id}, {len(journey.plan.steps)} steps", highlight=False)
    if failed:
        err.print(f"{failed} of {len(files)} file(s) invalid")
        raise typer.Exit(1)


# --- graph ---------------------------------------------------------------------------------------


@journeys_app.command("graph")
def graph(
    file: Path = typer.Argument(..., help="A journey YAML file."),
    fmt: str = typer.Option("mermaid", "--format", "-f", help="mermaid, dot, svg or png."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of stdout (needed for png)."),
    definitions: Optional[Path] = typer.Option(None, "--definitions", "-d"),
) -> None:
    """Draw a journey: Mermaid text, Graphviz DOT, or SVG/PNG when Graphviz is installed."""
    from infra.journey_graph import GraphvizMissing, dot, mermaid, render

    try:
        journey = load_journey(file, definitions_root(file, definitions))
    except DefinitionError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    if fmt in ("mermaid", "dot"):
        text = mermaid(journey) if fmt == "mermaid" else dot(journey)
        if output:
            output.write_text(text)
        else:
            typer.echo(text, nl=False)
        return
    if fmt not in ("svg", "png"):
        err.print(f"unknown format {fmt!r}: use mermaid, dot, svg or png")
        raise typer.Exit(2)
    try:
        image = render(journey, fmt)
    except GraphvizMissing as exc:
        err.print(str(exc))
        raise typer.Exit(1) from None
    if output:
        output.write_bytes(image)
        console.print(f"wrote {output}")
    elif fmt == "svg":
        typer.echo(image.decode(), nl=False)
    else:
        err.print("a PNG needs --output FILE")
        raise typer.Exit(2)


# --- simulate -------------------------------------------------------------------------------------


def _when(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time such as 2026-11-01 or 2026-11-01T09:00:00Z", param_hint=option) from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


@journeys_app.command("simulate")
def simulate_command(
    file: Path = typer.Argument(..., help="A journey YAML file."),
    start: str = typer.Option(..., "--from", help="Replay events from this time (ISO 8601; UTC unless given)."),
    end: str = typer.Option(..., "--to", help="... up to this time; timers due before it fire."),
    events: Optional[Path] = typer.Option(None, "--events", help="JSONL of recorded events; default: ClickHouse `events` (stack running)."),
    definitions: Optional[Path] = typer.Option(None, "--definitions", "-d", help="Folder with segments/ used by triggers and branches."),
    live_version: bool = typer.Option(False, "--live-version", help="Also run the version live on the definitions topic and show the difference."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Backtest a journey on recorded events with a simulated clock; sends nothing."""
    from infra.simulate import EventsUnreadable, diff_reports, read_clickhouse, read_jsonl, simulate

    begin, finish = _when(start, "--from"), _when(end, "--to")
    if finish <= begin:
        raise typer.BadParameter("--to must be after --from", param_hint="--to")
    root = definitions_root(file, definitions)
    try:
        journey = load_journey(file, root)
        segments = load_segments(root)
    except DefinitionError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    settings = None
    try:
        if events is not None:
            recorded = list(read_jsonl(events))
        else:
            from infra.settings import get_settings

            settings = get_settings()
            recorded = read_clickhouse(settings, finish)
    except (EventsUnreadable, OSError) as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    except Exception as exc:  # the analytics client's errors say what to start
        err.print(f"[red]cannot read events from ClickHouse: {exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    report = simulate([journey], segments, recorded, begin, finish).report(journey)
    result: dict[str, Any] = {"window": {"from": begin.isoformat(), "to": finish.isoformat()}, "events": len(recorded),
                              "report": report.summary()}
    if live_version:
        live = _live_journey(settings, journey.id)
        if live is None:
            result["live"] = None
        else:
            live_report = simulate([live], segments, recorded, begin, finish).report(live)
            result["live"] = live_report.summary()
            result["difference"] = diff_reports(report, live_report)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    _print_report(result)


def _live_journey(settings: Any, journey_id: str) -> JourneyDefinition | None:
    from connectors.definitions_topic import read_definitions
    from infra.settings import get_settings

    live = read_definitions(settings or get_settings()).get(f"journey:{journey_id}")
    if live is None:
        return None
    return JourneyDefinition.model_validate({**live.body, "version": live.version})


def _print_report(result: dict[str, Any]) -> None:
    report = result["report"]
    console.rule(f"[bold]simulation of {report['journey']} over {result['events']} recorded events (nothing sent)")
    headline = Table("entries", "sends", "goal conversions", "conversion rate", "holdouts", "still waiting")
    headline.add_row(*(str(report[k]) for k in ("entries", "sends", "goal_conversions", "conversion_rate", "holdouts", "still_waiting")))
    console.print(headline)
    for title, key in (("people per step", "people_per_step"), ("sends per day", "sends_per_day"),
                       ("sends per template", "sends_per_template"), ("exits", "exits"), ("skips", "skips")):
        table = Table(title.split(" per ")[-1] if " per " in title else "reason", "count", title=title, title_justify="left")
        for name, count in report[key].items():
            table.add_row(str(name), str(count))
        console.print(table)
    if "live" in result:
        if result["live"] is None:
            console.print("no live version of this journey on the definitions topic")
        else:
            console.rule(f"difference from live v{result['difference']['live_version']} (this file minus live)")
            console.print_json(json.dumps(result["difference"]))
