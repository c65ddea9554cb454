"""The documented as-of queries, run on the real embedded ClickHouse (chDB) over changes produced by
the streaming engine itself."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from connectors.clickhouse import analytics_for
from connectors.segment_queries import (
    BadQueryInput,
    cause_events_sql,
    history_sql,
    members_at_sql,
    segments_of_sql,
    size_at_sql,
)
from domain.events import EventEnvelope
from domain.segment_engine import advance, apply_record, observe_event
from domain.segment_rules import parse_segment_data
from projections.analytics_rows import row_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
ACTIVE = parse_segment_data({"id": "active", "rule": {"performed": {"event": "login", "within": "1h"}}})


def login(subscriber: str, minute: int, n: int) -> EventEnvelope:
    at = T0 + timedelta(minutes=minute)
    return EventEnvelope(event_id=f"{subscriber}-login-{n}", type="login", subscriber_id=subscriber, occurred_at=at, received_at=at)


@pytest.fixture
def analytics(settings):
    store = analytics_for(settings)
    store.migrate()
    changes, events = [], []
    # alice: logs in at 09:00 and 09:30 -> in from 09:00 until 10:30; bob: 09:10 -> until 10:10.
    for subscriber, minutes in (("alice", [0, 30]), ("bob", [10])):
        profile: dict = {}
        for n, minute in enumerate(minutes):
            event = login(subscriber, minute, n)
            events.append(event)
            profile, new = apply_record([ACTIVE], profile, observe_event(event))
            changes += new
        profile, new = advance([ACTIVE], profile, subscriber, T0 + timedelta(hours=3))
        changes += new
    for table, rows in _rows(events + changes).items():
        store.insert_rows(table, rows)
    store.insert_rows("segment_changes", [row_for(changes[0])[1]])  # a redelivered duplicate
    yield store
    store.close()


def _rows(records):
    out: dict[str, list] = {}
    for record in records:
        table, row = row_for(record)
        out.setdefault(table, []).append(row)
    return out


def rows(analytics, sql):
    return analytics.query(sql, None, True).rows


@pytest.mark.parametrize(
    ("minute", "members"),
    [(-1, []), (0, ["alice"]), (15, ["alice", "bob"]), (70, ["alice"]), (89, ["alice"]), (90, []), (500, [])],
)
def test_members_and_size_at_any_moment(analytics, minute: int, members: list[str]) -> None:
    at = T0 + timedelta(minutes=minute)

    assert [r[0] for r in rows(analytics, members_at_sql("active", at))] == members
    assert int(rows(analytics, size_at_sql("active", at))[0][0]) == len(members)


def test_segments_of_a_subscriber_with_since(analytics) -> None:
    found = rows(analytics, segments_of_sql("bob", T0 + timedelta(minutes=20)))

    assert [(r[0], int(r[1])) for r in found] == [("active", 1)]
    assert int(found[0][2]) == int((T0 + timedelta(minutes=10)).timestamp() * 1000)
    assert rows(analytics, segments_of_sql("bob", T0 + timedelta(hours=2))) == []


def test_when_and_why_did_alice_enter(analytics) -> None:
    history = rows(analytics, history_sql("alice", "active"))

    assert [(r[3], list(r[4])) for r in history] == [
        ("entered", ["alice-login-0"]),
        ("exited", [f"expired@{(T0 + timedelta(minutes=90)).isoformat()}"]),
    ]
    causes = rows(analytics, cause_events_sql(["alice-login-0"]))
    assert [(r[0], r[1]) for r in causes] == [("alice-login-0", "login")]


@pytest.mark.parametrize("bad", ["x' OR 1=1 --", "a b", ""])
def test_values_that_are_not_ids_are_refused_before_any_sql(bad: str) -> None:
    with pytest.raises(BadQueryInput):
        members_at_sql(bad, T0)
    with pytest.raises(BadQueryInput):
        segments_of_sql(bad, T0)


DOCS = __import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "segments.md"


def documented_queries() -> list[str]:
    text = DOCS.read_text()
    return [block.split("```", 1)[0] for block in text.split("```sql\n")[1:]]


def test_every_query_in_the_docs_runs(analytics) -> None:
    queries = documented_queries()
    assert len(queries) == 4
    for sql in queries:
        sql = sql.replace("'lapsed-buyers'", "'active'").replace("'alice'", "'alice'")
        analytics.query(sql, None, True)  # raises with ClickHouse's reason if the docs are wrong


def test_documented_why_query_joins_the_cause_events(analytics) -> None:
    sql = documented_queries()[2].replace("'lapsed-buyers'", "'active'")

    result = rows(analytics, sql)

    assert [(r[1], r[4]) for r in result] == [("entered", "login"), ("exited", "")]
