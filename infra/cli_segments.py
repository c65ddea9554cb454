"""`tidings segments ...`: preview a segment file over recorded history; look up membership.

`preview` evaluates the rule with the plain batch evaluator (domain.segment_reference) over the
events and deliveries recorded in ClickHouse (through the worker), or over a JSONL file of events,
and prints the member count and a sample. Nothing is published. `show`, `size`, `members` and
`history` read the segment_changes history (connectors/segment_queries.py).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from domain.events import ConsentChanged, DeliveryEvent, EventEnvelope
from domain.segment_engine import Observation, compile_segments, observe_consent, observe_delivery, observe_event
from domain.segment_reference import evaluate_at
from domain.segment_rules import SegmentDefinition, parse_segment, segment_reference_errors, to_ms
from domain.yaml_source import DefinitionError

segments_app = typer.Typer(help="Segments: preview over recorded history, membership lookups.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(segments_app, name="segments")


def _settings():  # type: ignore[no-untyped-def]
    from infra.logging import configure_logging
    from infra.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _moment(at: Optional[str]) -> datetime:
    if at is None:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        err.print(f"[red]--at must be an ISO 8601 time like 2026-03-03T09:00:00Z, got {at!r}[/red]")
        raise typer.Exit(2) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# --- preview ----------------------------------------------------------------------------------------


def load_for_preview(file: Path, definitions_dir: Path | None) -> list[SegmentDefinition]:
    """The previewed segment plus the segments it may refer to (from `definitions_dir/segments`).

    Raises DefinitionError for a bad file, an unknown reference or a reference cycle.
    """
    texts: dict[str, str] = {}
    if definitions_dir is not None and (definitions_dir / "segments").is_dir():
        for path in sorted((definitions_dir / "segments").glob("*.y*ml")):
            if path.resolve() != file.resolve():
                texts[str(path)] = path.read_text(encoding="utf-8")
    try:
        own_text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(str(file), None, "", f"cannot read: {exc}") from None
    own = parse_segment(own_text, str(file))
    others = {}
    for name, text in texts.items():
        try:
            other = parse_segment(text, name)
        except DefinitionError:
            continue  # a broken neighbour matters only if referred to; the reference check says so
        if other.id != own.id:
            others[name] = (other, text)
    errors = segment_reference_errors({**{n: t for n, (_, t) in others.items()}, str(file): own_text})
    mine = [e for e in errors if e.filename == str(file) or str(file) in e.message]
    if mine:
        raise mine[0]
    return [own, *(o for o, _ in others.values())]


def read_jsonl(path: Path) -> dict[str, list[Observation]]:
    """Events, deliveries and consent changes, one JSON object a line, grouped by subscriber."""
    out: dict[str, list[Observation]] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if "delivery_id" in data:
                    record = observe_delivery(DeliveryEvent.model_validate(data))
                elif "consent_event_id" in data:
                    record = observe_consent(ConsentChanged.model_validate(data))
                else:
                    data.setdefault("received_at", data.get("occurred_at"))
                    record = observe_event(EventEnvelope.model_validate(data))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not an event, delivery or consent record: {str(exc)[:300]}") from None
            out.setdefault(record.subscriber_id, []).append(record)
    return out


def preview_members(segments: list[SegmentDefinition], histories: dict[str, list[Observation]], at: datetime) -> list[str]:
    """Subscribers in `segments[0]` at `at`, evaluated plainly over each history."""
    target = segments[0].id
    now = to_ms(at)
    return sorted(sid for sid, records in histories.items() if evaluate_at(segments, records, sid, now)[target])


@segments_app.command("preview")
def preview(
    file: Path = typer.Argument(..., help="The segment YAML file to try."),
    events: Optional[Path] = typer.Option(None, "--events", help="A JSONL file of events instead of ClickHouse."),
    at: Optional[str] = typer.Option(None, help="Evaluate at this moment (ISO 8601); default now."),
    sample: int = typer.Option(10, min=0, max=1000, help="How many member ids to show."),
    definitions: Optional[Path] = typer.Option(None, help="Where referred segments live; default the configured definitions dir."),
) -> None:
    """Member count and a sample of a segment file over recorded history, before publishing it."""
    started = time.perf_counter()
    moment = _moment(at)
    settings = None if events is not None and definitions is not None else _settings()
    try:
        segments = load_for_preview(file, definitions or settings.definitions_dir)  # type: ignore[union-attr]
    except DefinitionError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    try:
        if events is not None:
            histories = read_jsonl(events)
        else:
            from connectors.segment_queries import recorded_history
            from infra.analytics_client import AnalyticsQueryError

            try:
                histories = recorded_history(settings, compile_segments(segments), moment)  # type: ignore[arg-type]
            except AnalyticsQueryError as exc:
                err.print(f"[red]cannot read recorded history: {exc}[/red]")
                raise typer.Exit(1) from None
    except (OSError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    members = preview_members(segments, histories, moment)
    elapsed = time.perf_counter() - started
    console.print(
        f"[bold]{segments[0].id}[/bold]: {len(members)} of {len(histories)} subscribers at {moment.isoformat()} "
        f"({elapsed:.2f} s)"
    )
    for sid in members[:sample]:
        console.print(f"  {sid}")


# --- lookups ----------------------------------------------------------------------------------------


def _query(fn, *args):  # type: ignore[no-untyped-def]
    from connectors.segment_queries import BadQueryInput
    from infra.analytics_client import AnalyticsQueryError

    try:
        return fn(_settings(), *args)
    except BadQueryInput as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    except AnalyticsQueryError as exc:
        err.print(f"[red]segment history is unavailable: {exc}[/red]")
        raise typer.Exit(1) from None


@segments_app.command("show")
def show(subscriber: str, at: Optional[str] = typer.Option(None, help="As of this moment (ISO 8601).")) -> None:
    """The segments a subscriber is in (now, or at --at)."""
    from connectors.segment_queries import segments_of

    found = _query(segments_of, subscriber, _moment(at))
    table = Table("segment", "version", "since")
    for membership in found:
        table.add_row(membership.segment_id, str(membership.version), membership.since.isoformat())
    console.print(table if found else f"{subscriber} is in no segment")


@segments_app.command("size")
def size(segment_id: str, at: Optional[str] = typer.Option(None, help="As of this moment (ISO 8601).")) -> None:
    """How many subscribers a segment holds (now, or at --at)."""
    from connectors.segment_queries import size_at

    console.print(str(_query(size_at, segment_id, _moment(at))))


@segments_app.command("members")
def members(
    segment_id: str,
    at: Optional[str] = typer.Option(None, help="As of this moment (ISO 8601)."),
    limit: int = typer.Option(100, min=1, max=10_000),
) -> None:
    """Subscriber ids in a segment (now, or at --at)."""
    from connectors.segment_queries import members_at

    for sid in _query(members_at, segment_id, _moment(at), limit):
        console.print(sid)


@segments_app.command("history")
def history(subscriber: str, segment: Optional[str] = typer.Option(None, help="Only this segment.")) -> None:
    """When and why a subscriber entered and left segments, with the events that caused it."""
    from connectors.segment_queries import history as history_of

    table = Table("at", "segment", "v", "change", "because")
    for entry in _query(history_of, subscriber, segment):
        because = ", ".join(f"{e['type']} ({e['event_id']})" for e in entry.cause_events) or ", ".join(entry.causes)
        if entry.backfill:
            because = f"backfill: {because}"
        table.add_row(entry.at.isoformat(), entry.segment_id, str(entry.version), entry.change, because)
    console.print(table)
