"""The analytics connector against a real embedded chDB engine.

chDB hosts one data directory per process at a time, and reopening (the same or another directory)
works once every client on the previous one is closed. So each test opens its own directory under
the `settings` fixture's tmp dir and the fixture closes it on teardown (~0.4 s per open).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import structlog

from connectors.analytics_schema import DATABASE, DERIVED, MIGRATIONS, TABLES
from connectors.clickhouse import Analytics, AnalyticsError, QueryFailed, QueryRefused, analytics_for
from domain.events import DeliveryEvent, EventEnvelope
from projections.analytics_rows import row_for
from tests.unit.test_analytics_rows import ALL_PAYLOADS

pytestmark = pytest.mark.integration

log = structlog.get_logger(__name__)
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture
def analytics(settings):
    store = analytics_for(settings)
    store.migrate()
    yield store
    store.close()


def event_rows(start: int, stop: int) -> list[dict]:
    return [
        row_for(
            EventEnvelope(
                event_id=f"ev-{n}",
                type=("page.viewed", "cart.updated", "order.placed")[n % 3],
                subscriber_id=f"sub-{n % 500}",
                occurred_at=T0 + timedelta(seconds=n * 7),
                received_at=T0 + timedelta(seconds=n * 7, milliseconds=250),
                properties={"n": n},
            )
        )[1]
        for n in range(start, stop)
    ]


def test_migrate_applies_once_and_builds_the_declared_schema(settings):
    with analytics_for(settings) as store:
        assert store.migrate() == [migration.label for migration in MIGRATIONS]
        assert store.migrate() == []
        columns = store.query(
            "SELECT table, name, type FROM system.columns WHERE database = {db:String} AND table IN "
            "(SELECT name FROM system.tables WHERE database = {db:String} AND engine NOT LIKE '%View') "
            "ORDER BY table, position",
            {"db": DATABASE},
        ).rows
    stored: dict[str, list[tuple[str, str]]] = {}
    for table, name, type_ in columns:
        stored.setdefault(table, []).append((name, type_))
    assert stored.pop("schema_migrations")
    assert stored == {name: list(spec.columns) for name, spec in TABLES.items()} | {
        name: list(columns) for name, columns in DERIVED.items()
    }


def test_redelivered_and_overlapping_batches_store_each_event_once(analytics):
    batches = [event_rows(start, start + 2000) for start in range(0, 8000, 2000)]
    started = time.perf_counter()
    inserted = sum(analytics.insert_rows("events", batch) for batch in batches)
    elapsed = time.perf_counter() - started
    log.info("analytics.bench", rows=8000, batch=2000, seconds=round(elapsed, 3), rows_per_s=round(8000 / elapsed))
    assert inserted == 8000

    everything = event_rows(0, 10000)
    assert analytics.insert_rows("events", everything[6000:10000]) == 2000  # 2000 redelivered, 2000 new
    assert analytics.insert_rows("events", everything) == 0  # a full replay
    assert analytics.count("events") == 10000
    raw = analytics.query(f"SELECT count() FROM {DATABASE}.events").rows[0][0]
    assert raw == 10000  # no duplicate reached the table, not merely hidden by FINAL


def test_a_10k_batch_goes_in_as_one_insert(analytics):
    rows = event_rows(0, 10000)
    started = time.perf_counter()
    assert analytics.insert_rows("events", rows) == 10000
    elapsed = time.perf_counter() - started
    replay_started = time.perf_counter()
    assert analytics.insert_rows("events", rows) == 0
    replay = time.perf_counter() - replay_started
    log.info(
        "analytics.bench",
        rows=10000,
        seconds=round(elapsed, 3),
        rows_per_s=round(10000 / elapsed),
        replay_seconds=round(replay, 3),
    )
    parts = analytics.query(
        "SELECT count() FROM system.parts WHERE database = {db:String} AND table = 'events' AND active", {"db": DATABASE}
    ).rows[0][0]
    assert parts <= 3  # one insert: at most one part per month partition (the rows span 2 months)


def test_duplicates_within_a_batch_are_inserted_once(analytics):
    rows = event_rows(0, 3)
    assert analytics.insert_rows("events", rows + rows[:2] + rows) == 3
    assert analytics.count("events") == 3


def test_every_contract_row_round_trips_through_its_table(analytics):
    for table, payload in ALL_PAYLOADS:
        mapped_table, row = row_for(payload)
        assert analytics.insert_rows(mapped_table, [row]) == 1
        assert analytics.insert_rows(mapped_table, [row]) == 0
        assert analytics.count(table) == 1


def test_user_queries_run_while_the_sink_writes(analytics):
    batches = [event_rows(start, start + 1000) for start in range(0, 5000, 1000)]
    failures: list[Exception] = []
    seen: list[int] = []
    writing = threading.Event()
    writing.set()

    def dashboard() -> None:
        while writing.is_set():
            try:
                seen.append(analytics.query(f"SELECT count() FROM {DATABASE}.events", readonly=True).rows[0][0])
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                failures.append(exc)
                return

    reader = threading.Thread(target=dashboard)
    reader.start()
    try:
        for batch in batches:
            analytics.insert_rows("events", batch)
    finally:
        writing.clear()
        reader.join(timeout=30)
    assert failures == []
    assert seen and seen == sorted(seen)  # counts only grow: every read saw whole inserts
    assert analytics.count("events") == 5000


def test_query_returns_typed_json_friendly_rows(analytics):
    local = timezone(timedelta(hours=2))
    deliveries = [
        DeliveryEvent(
            delivery_id="d1",
            intent_id="i1",
            subscriber_id="s1",
            kind="accepted",
            occurred_at=datetime(2026, 11, 2, 12, 0, 0, 5000, tzinfo=local),
            smtp_code=250,
        ),
        DeliveryEvent(delivery_id="d2", intent_id="i2", subscriber_id="s1", kind="deferred", occurred_at=T0),
    ]
    analytics.insert_rows("deliveries", [row_for(delivery)[1] for delivery in deliveries])
    result = analytics.query(
        f"SELECT delivery_id, occurred_at, smtp_code, attempt, [kind] AS kinds FROM {DATABASE}.deliveries "
        "WHERE subscriber_id = {sub:String} ORDER BY delivery_id",
        {"sub": "s1"},
        readonly=True,
    )
    assert result.columns == ["delivery_id", "occurred_at", "smtp_code", "attempt", "kinds"]
    assert result.types[1] == "DateTime64(3, 'UTC')"
    assert result.rows == [
        ["d1", "2026-11-02T10:00:00.005000+00:00", 250, 1, ["accepted"]],
        ["d2", "2026-11-01T00:00:00+00:00", None, 1, ["deferred"]],
    ]


REFUSED_USER_QUERIES = [
    f"DROP TABLE {DATABASE}.events",
    f"INSERT INTO {DATABASE}.events SELECT * FROM {DATABASE}.events",
    f"SELECT 1; DROP TABLE {DATABASE}.events",
    "SELECT 1 INTO OUTFILE 'leak.csv'",
    # these two pass the statement check and are refused by the engine's readonly=1 session
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT 1 SETTINGS readonly = 0",
]


def test_user_queries_that_are_not_reads_are_refused_and_change_nothing(analytics):
    # One test, one engine: each open costs ~0.4 s.
    analytics.insert_rows("events", event_rows(0, 5))
    for sql in REFUSED_USER_QUERIES:
        with pytest.raises(QueryRefused):
            analytics.query(sql, readonly=True)
    assert analytics.count("events") == 5
    assert analytics.insert_rows("events", event_rows(5, 6)) == 1  # the writer session is still writable
    assert analytics.query(f"SELECT count() FROM {DATABASE}.events", readonly=True).rows == [[6]]


def test_a_broken_user_query_fails_with_clickhouses_reason(analytics):
    with pytest.raises(QueryFailed, match="UNKNOWN_TABLE|Unknown table"):
        analytics.query(f"SELECT * FROM {DATABASE}.nope", readonly=True)


def test_bad_rows_and_tables_are_refused_by_name(analytics):
    row = event_rows(0, 1)[0]
    with pytest.raises(ValueError, match="unknown analytics table 'nope'"):
        analytics.insert_rows("nope", [row])
    with pytest.raises(ValueError, match=r"missing \['has_email'\], unexpected \['extra'\]"):
        analytics.insert_rows("events", [{k: v for k, v in row.items() if k != "has_email"} | {"extra": 1}])
    with pytest.raises(ValueError, match="row 0 has no event_id"):
        analytics.insert_rows("events", [row | {"event_id": ""}])
    assert analytics.insert_rows("events", []) == 0
    assert analytics.count("events") == 0


def test_one_engine_per_process_shared_by_dsn_and_reopenable(settings, tmp_path):
    first = analytics_for(settings)
    second = analytics_for(settings)  # same directory: shares the engine
    first.migrate()
    first.insert_rows("events", event_rows(0, 10))
    with pytest.raises(AnalyticsError, match="one data directory per process"):
        Analytics(f"chdb://{tmp_path / 'other'}")
    first.close()
    assert second.count("events") == 10  # still open: the engine closes with its last user
    second.close()
    with pytest.raises(AnalyticsError, match="is closed"):
        second.count("events")

    with Analytics(f"chdb://{tmp_path / 'other'}") as other:  # another directory, once the first is closed
        assert other.migrate() == [migration.label for migration in MIGRATIONS]
    with analytics_for(settings) as reopened:  # and the first again, with its data
        assert reopened.migrate() == []
        assert reopened.count("events") == 10


def test_a_second_process_cannot_open_the_same_directory(analytics, settings):
    script = (
        "from connectors.clickhouse import Analytics, AnalyticsError\n"
        f"try:\n    Analytics({settings.resolved_clickhouse_dsn!r})\n"
        "except AnalyticsError as exc:\n    print(exc)\n    raise SystemExit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "another process" in done.stdout


@pytest.mark.parametrize("dsn", ["chdb://var/analytics", "chdb:relative", "postgres://x", "clickhouse://h"])
def test_dsns_that_would_open_the_wrong_place_are_refused(dsn):
    with pytest.raises(AnalyticsError, match="DSN"):
        Analytics(dsn)
