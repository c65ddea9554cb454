"""Migration 2 on real chDB: rollups back-filled from rows stored before it, fed once per row after it."""

from __future__ import annotations

import pytest

from connectors.analytics_queries import render
from connectors.analytics_schema import MIGRATIONS, ROLLUPS
from connectors.clickhouse import analytics_for
from tests.integration.analytics_seed import day_d, seed_rows

pytestmark = pytest.mark.integration


def test_rollup_backfill_counts_rows_stored_before_migration_2(settings):
    rows = seed_rows()
    with analytics_for(settings) as store:
        for statement in MIGRATIONS[0].statements:
            store.query(statement)
        for table in {rollup.source for rollup in ROLLUPS.values()}:  # tables as migration 1 made them
            store.insert_rows(table, rows[table])
        store.migrate()  # applies 1 (idempotent DDL) and 2, whose back-fill must count the rows above
        assert _run(store, "journey_funnel") == [["cart", 25, 20, 16, 0, 0], ["welcome", 200, 200, 200, 100, 35]]
        store.insert_rows("deliveries", rows["deliveries"])  # a replay after the migration adds nothing
        assert _run(store, "sends_over_time") == [[day_d().date().isoformat(), 220, 216, 100, 35, 2, 1, 1]]


def test_rollups_ignore_rows_the_sink_drops_as_duplicates(settings):
    rows = seed_rows()
    with analytics_for(settings) as store:
        store.migrate()
        half = len(rows["journey_decisions"]) // 2
        store.insert_rows("journey_decisions", rows["journey_decisions"][:half])
        store.insert_rows("journey_decisions", rows["journey_decisions"])  # overlapping redelivery
        store.insert_rows("journey_decisions", rows["journey_decisions"] + rows["journey_decisions"][:10])
        total = store.query("SELECT sum(decisions) FROM tidings.daily_journey_steps").rows[0][0]
        assert total == len(rows["journey_decisions"]) == 550


def test_ttls_are_set_where_chosen_and_absent_on_segment_changes(settings):
    with analytics_for(settings) as store:
        store.migrate()
        ddl = dict(store.query("SELECT name, create_table_query FROM system.tables WHERE database = 'tidings'").rows)
    for table in ("events", "send_intents", "deliveries", "journey_decisions", "reputation_changes"):
        assert "toIntervalDay(400)" in ddl[table] and "ttl_only_drop_parts = 1" in ddl[table], table
    assert "toIntervalDay(90)" in ddl["reputation_snapshots"]
    assert "TTL" not in ddl["segment_changes"]
    assert "TTL" not in ddl["daily_deliveries"]


def _run(store, name: str, **params) -> list[list]:
    return store.query(render(name, **params), readonly=True).rows


def test_a_rollup_left_short_by_a_crash_is_repaired_when_the_worker_migrates(settings):
    rows = seed_rows()
    with analytics_for(settings) as store:
        store.migrate()
        for table, table_rows in rows.items():
            store.insert_rows(table, table_rows)
        # What SIGKILL between the base part and the view's part leaves behind: a row the rollup never saw.
        store.query("ALTER TABLE tidings.daily_deliveries DELETE WHERE kind = 'bounced' SETTINGS mutations_sync = 2")
        store.query("ALTER TABLE tidings.daily_events DELETE WHERE type = 'order.placed' SETTINGS mutations_sync = 2")
        assert _run(store, "sends_over_time")[0][5] == 0
        assert store.migrate() == []  # nothing to migrate, but the rollups are checked and rebuilt
        assert _run(store, "sends_over_time") == [[day_d().date().isoformat(), 220, 216, 100, 35, 2, 1, 1]]
        assert store.repair_rollups() == []
        totals = store.query("SELECT sum(events) FROM tidings.daily_events").rows[0][0]
        assert totals == store.count("events") == 376


def test_id_lookup_bounded_by_the_batch_times_still_drops_every_redelivery(settings):
    from datetime import timedelta

    rows = seed_rows()["events"]
    with analytics_for(settings) as store:
        store.migrate()
        assert store.insert_rows("events", rows[:200]) == 200
        # A replay mixed with new rows spanning other hours, and one id re-sent 2 minutes off.
        shifted = dict(rows[0], occurred_at=rows[0]["occurred_at"] + timedelta(minutes=2))
        assert store.insert_rows("events", rows[100:] + [shifted]) == len(rows) - 200
        assert store.query("SELECT count() - uniqExact(event_id) FROM tidings.events").rows[0][0] == 0
        assert store.query("SELECT sum(events) FROM tidings.daily_events").rows[0][0] == len(rows) == 376


def test_migration_3_adds_reputation_columns_to_snapshots_stored_before_it(settings):
    from datetime import datetime, timezone

    old_columns = ["snapshot_id", "sending_domain", "provider", "sent", "accepted", "bounced", "deferred", "complained",
                   "state", "updated_at"]
    at = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
    with analytics_for(settings) as store:
        for migration in MIGRATIONS[:2]:
            for statement in migration.statements:
                store.query(statement)
        store.query(f"INSERT INTO tidings.reputation_snapshots ({', '.join(old_columns)}) "
                    "VALUES ('old|gmail|t', 'old.example', 'gmail', 600, 590, 10, 4, 1, 'warning', '2026-11-20 10:00:00')")
        applied = store.migrate()  # records 1 and 2 (idempotent DDL), then runs 3 over the stored row
        assert applied[-1] == "0003_reputation_scores_changes"
        old = store.query("SELECT sent, state, score, hard_bounced, opened, window_end, windows, control "
                          "FROM tidings.reputation_snapshots WHERE snapshot_id = 'old|gmail|t'").rows
        assert old == [[600, "warning", None, 0, 0, None, "{}", "{}"]]
        change = {"change_id": "rc1", "sending_domain": "old.example", "provider": "gmail", "traffic": "marketing",
                  "from_state": "healthy", "to_state": "warning", "reason": "bounce rate 2.10% >= 2.00% over 1h",
                  "score": 78.5, "occurred_at": at}
        assert store.insert_rows("reputation_changes", [change, change]) == 1
        assert store.insert_rows("reputation_changes", [change]) == 0  # a redelivered transition
        assert store.query("SELECT to_state, score FROM tidings.reputation_changes").rows == [["warning", 78.5]]
