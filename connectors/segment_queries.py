"""Segment history in ClickHouse: who was in a segment at any moment, and when and why someone entered.

Every membership change lands in `segment_changes` (one row per change, ids deduplicated). The
state of one (segment, subscriber) pair at moment T is its latest change at or before T, so
"members at T" is:

```sql
SELECT subscriber_id
FROM segment_changes
WHERE segment_id = 'lapsed-buyers' AND occurred_at <= toDateTime64('2026-03-03 09:00:00', 3, 'UTC')
GROUP BY subscriber_id
HAVING argMax(change, (occurred_at, change_id)) = 'entered'
```

`argMax` over `(occurred_at, change_id)` picks the latest change and is immune to the duplicate
rows a ReplacingMergeTree holds until it merges (a duplicate carries the same change). "When and
why did X enter" is the subscriber's rows for the segment in time order with their
`cause_event_ids`: event ids (look them up in `events`), `expired@<time>` (a window or duration
ran out at that moment), `redefined@<time>` (a new segment version), and a leading `backfill` for
changes computed over recorded history rather than live (journeys do not start for those).

ClickHouse trails the live stream by the analytics batch interval (about a second), so "now"
queries answer as of a second or two ago. docs/segments.md carries these queries for analysts.
This module builds the SQL (quoting every value) and runs it through `infra.analytics_client`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from domain.definition_parsing import DEFINITION_ID_PATTERN
from domain.events import ID_PATTERN
from domain.segment_engine import EMAIL_TYPES, CompiledSegments, Observation
from domain.segment_rules import from_ms, to_ms
from infra.analytics_client import run_query
from infra.settings import Settings

MAX_MEMBERS = 10_000


class BadQueryInput(ValueError):
    """A segment id, subscriber id or time that cannot be asked about."""


def _segment_id(value: str) -> str:
    if not re.match(DEFINITION_ID_PATTERN, value):
        raise BadQueryInput(f"'{value}' is not a segment id (letters, digits, '_', '.', '-'; up to 64)")
    return value


def _subscriber_id(value: str) -> str:
    if not re.match(ID_PATTERN, value):
        raise BadQueryInput(f"'{value}' is not a subscriber id (letters, digits and _.:@+-; up to 128)")
    return value


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _moment(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return f"fromUnixTimestamp64Milli(toInt64({to_ms(at)}), 'UTC')"


# --- SQL ------------------------------------------------------------------------------------------


def members_at_sql(segment_id: str, at: datetime, limit: int = 100) -> str:
    """Subscribers in `segment_id` at `at`, by id."""
    limit = max(1, min(limit, MAX_MEMBERS))
    return (
        "SELECT subscriber_id FROM segment_changes "
        f"WHERE segment_id = {_quote(_segment_id(segment_id))} AND occurred_at <= {_moment(at)} "
        "GROUP BY subscriber_id HAVING argMax(change, (occurred_at, change_id)) = 'entered' "
        f"ORDER BY subscriber_id LIMIT {limit}"
    )


def size_at_sql(segment_id: str, at: datetime) -> str:
    """How many subscribers were in `segment_id` at `at`."""
    return (
        "SELECT count() FROM (SELECT subscriber_id FROM segment_changes "
        f"WHERE segment_id = {_quote(_segment_id(segment_id))} AND occurred_at <= {_moment(at)} "
        "GROUP BY subscriber_id HAVING argMax(change, (occurred_at, change_id)) = 'entered')"
    )


def segments_of_sql(subscriber_id: str, at: datetime) -> str:
    """The segments `subscriber_id` was in at `at`, with the version and the moment they entered."""
    return (
        "SELECT segment_id, argMax(segment_version, (occurred_at, change_id)) AS version, "
        "toUnixTimestamp64Milli(max(occurred_at)) AS since_ms FROM segment_changes "
        f"WHERE subscriber_id = {_quote(_subscriber_id(subscriber_id))} AND occurred_at <= {_moment(at)} "
        "GROUP BY segment_id HAVING argMax(change, (occurred_at, change_id)) = 'entered' ORDER BY segment_id"
    )


def history_sql(subscriber_id: str, segment_id: str | None = None) -> str:
    """When and why: every change of `subscriber_id` (in one segment, or all), oldest first."""
    segment_filter = f" AND segment_id = {_quote(_segment_id(segment_id))}" if segment_id else ""
    return (
        "SELECT toUnixTimestamp64Milli(occurred_at) AS at_ms, segment_id, segment_version, change, cause_event_ids "
        f"FROM segment_changes WHERE subscriber_id = {_quote(_subscriber_id(subscriber_id))}{segment_filter} "
        "GROUP BY at_ms, segment_id, segment_version, change, cause_event_ids, change_id ORDER BY at_ms, change_id"
    )


def cause_events_sql(event_ids: list[str]) -> str:
    """The events behind changes: type, time and properties."""
    ids = ", ".join(_quote(_subscriber_id(i)) for i in event_ids) or "''"
    return (
        "SELECT event_id, type, toUnixTimestamp64Milli(any(occurred_at)), any(properties) FROM events "
        f"WHERE event_id IN ({ids}) GROUP BY event_id, type"
    )


# --- answers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Membership:
    segment_id: str
    version: int
    since: datetime


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    segment_id: str
    version: int
    change: str
    causes: list[str]
    cause_events: list[dict[str, Any]]

    @property
    def backfill(self) -> bool:
        return self.causes[:1] == ["backfill"]


def segments_of(settings: Settings, subscriber_id: str, at: datetime) -> list[Membership]:
    rows = run_query(settings, segments_of_sql(subscriber_id, at))["rows"]
    return [Membership(r[0], int(r[1]), from_ms(int(r[2]))) for r in rows]


def size_at(settings: Settings, segment_id: str, at: datetime) -> int:
    return int(run_query(settings, size_at_sql(segment_id, at))["rows"][0][0])


def members_at(settings: Settings, segment_id: str, at: datetime, limit: int = 100) -> list[str]:
    return [r[0] for r in run_query(settings, members_at_sql(segment_id, at, limit))["rows"]]


def history(settings: Settings, subscriber_id: str, segment_id: str | None = None) -> list[HistoryEntry]:
    rows = run_query(settings, history_sql(subscriber_id, segment_id))["rows"]
    event_ids = sorted({c for r in rows for c in r[4] if re.match(ID_PATTERN, c) and c != "backfill"})
    events: dict[str, dict[str, Any]] = {}
    if event_ids:
        for event_id, type_, at_ms, properties in run_query(settings, cause_events_sql(event_ids))["rows"]:
            events[event_id] = {"event_id": event_id, "type": type_, "occurred_at": from_ms(int(at_ms)).isoformat(),
                                "properties": _json(properties)}
    return [
        HistoryEntry(from_ms(int(r[0])), r[1], int(r[2]), r[3], list(r[4]), [events[c] for c in r[4] if c in events])
        for r in rows
    ]


# --- recorded history for previews -------------------------------------------------------------------


def recorded_history(settings: Settings, compiled: CompiledSegments, until: datetime) -> dict[str, list[Observation]]:
    """Per subscriber, the recorded events and deliveries the given segments read, up to `until`.

    Each subscriber also gets a bare record at its first event, since rules like `not performed`
    hold for anyone who exists. Consent is not stored in ClickHouse, so `subscribed` rules see none.
    """
    moment = _moment(until)
    out: dict[str, list[Observation]] = {}
    for sid, first_ms in run_query(
        settings, f"SELECT subscriber_id, toUnixTimestamp64Milli(min(occurred_at)) FROM events WHERE occurred_at <= {moment} GROUP BY subscriber_id"
    )["rows"]:
        out.setdefault(sid, []).append(Observation(record_id=f"exists:{sid}", subscriber_id=sid, at=int(first_ms)))
    types = sorted({t for t in compiled.keys_by_type if not t.startswith("email.")})
    type_filter = f"type IN ({', '.join(_quote(t) for t in types)})" if types else "0"
    trait_filter = "position(context, '\"traits\"') > 0" if compiled.trait_names else "0"
    rows = run_query(
        settings,
        "SELECT event_id, subscriber_id, type, toUnixTimestamp64Milli(occurred_at), properties, context FROM events "
        f"WHERE occurred_at <= {moment} AND ({type_filter} OR {trait_filter}) ORDER BY occurred_at",
    )["rows"]
    for event_id, sid, type_, at_ms, properties, context in rows:
        traits = _json(context).get("traits")
        out.setdefault(sid, []).append(
            Observation(event_id, sid, int(at_ms), (type_,), _json(properties), traits if isinstance(traits, dict) else {})
        )
    if any(t.startswith("email.") for t in compiled.keys_by_type) or compiled.emails_kept:
        kinds = ", ".join(_quote(k) for k in EMAIL_TYPES)
        for delivery_id, intent, sid, kind, at_ms, template, journey in run_query(
            settings,
            "SELECT delivery_id, intent_id, subscriber_id, kind, toUnixTimestamp64Milli(occurred_at), template_id, journey_id "
            f"FROM deliveries WHERE occurred_at <= {moment} AND kind IN ({kinds}) ORDER BY occurred_at",
        )["rows"]:
            out.setdefault(sid, []).append(
                Observation(
                    record_id=f"delivery:{delivery_id}", subscriber_id=sid, at=int(at_ms), types=EMAIL_TYPES[kind],
                    properties={"template_id": template, "journey_id": journey}, intent=intent,
                    sends=kind in ("accepted", "ambiguous"), opens=kind in ("opened", "clicked"),
                )
            )
    return out


def _json(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
