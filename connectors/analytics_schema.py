"""The analytics schema in ClickHouse: table specs and versioned migrations.

Decisions:

- Tables live in their own database, `tidings` (chDB creates databases like a server does), so the
  analytics tables never mix with anything else on a shared ClickHouse server. Every statement names
  its tables fully qualified (`tidings.events`), so the client's default database never matters.
- Every table is a `ReplacingMergeTree` whose sorting key ends with the row id: the sink drops
  redelivered ids before inserting, and a merge collapses any duplicate that slipped past it
  (`SELECT ... FINAL` gives exact answers even before the merge).
- Columns that identify a row but are not in the sorting key get a `bloom_filter` skip index, so the
  sink's "which of these ids are stored already" lookup and per-subscriber queries skip granules.
- No email addresses: the projection in `projections/analytics_rows.py` strips them; `events.has_email`
  keeps the fact that one was present.
- The DDL is plain ClickHouse (no chDB-only syntax), so the same migrations run on chDB and a server.
  Migrations are append-only: a released migration's text never changes; later changes come as new
  versions with `ALTER TABLE` statements. `TABLES` describes the schema after the last migration and
  must be updated together with each new migration (an integration test compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass

DATABASE = "tidings"
MIGRATIONS_TABLE = "schema_migrations"


@dataclass(frozen=True)
class TableSpec:
    """One analytics table as the sink sees it: its columns (in order), row id and event time."""

    name: str
    id_column: str
    time_column: str
    columns: tuple[tuple[str, str], ...]

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


_TIME = "DateTime64(3, 'UTC')"

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "events",
            id_column="event_id",
            time_column="occurred_at",
            columns=(
                ("event_id", "String"),
                ("type", "LowCardinality(String)"),
                ("subscriber_id", "String"),
                ("occurred_at", _TIME),
                ("received_at", _TIME),
                ("source", "LowCardinality(String)"),
                ("properties", "String"),
                ("context", "String"),
                ("has_email", "UInt8"),
            ),
        ),
        TableSpec(
            "send_intents",
            id_column="intent_id",
            time_column="created_at",
            columns=(
                ("intent_id", "String"),
                ("subscriber_id", "String"),
                ("journey_id", "LowCardinality(String)"),
                ("journey_version", "UInt32"),
                ("step_id", "String"),
                ("template_id", "LowCardinality(String)"),
                ("trigger_event_id", "String"),
                ("created_at", _TIME),
                ("transactional", "UInt8"),
                ("priority", "Int32"),
            ),
        ),
        TableSpec(
            "deliveries",
            id_column="delivery_id",
            time_column="occurred_at",
            columns=(
                ("delivery_id", "String"),
                ("intent_id", "String"),
                ("subscriber_id", "String"),
                ("kind", "LowCardinality(String)"),
                ("occurred_at", _TIME),
                ("journey_id", "LowCardinality(String)"),
                ("template_id", "LowCardinality(String)"),
                ("sending_domain", "LowCardinality(String)"),
                ("recipient_domain", "LowCardinality(String)"),
                ("message_id", "String"),
                ("smtp_code", "Nullable(UInt16)"),
                ("enhanced_status", "LowCardinality(String)"),
                ("bounce_type", "LowCardinality(String)"),
                ("attempt", "UInt16"),
                ("detail", "String"),
            ),
        ),
        TableSpec(
            "segment_changes",
            id_column="change_id",
            time_column="occurred_at",
            columns=(
                ("change_id", "String"),
                ("segment_id", "LowCardinality(String)"),
                ("segment_version", "UInt32"),
                ("subscriber_id", "String"),
                ("change", "LowCardinality(String)"),
                ("occurred_at", _TIME),
                ("cause_event_ids", "Array(String)"),
            ),
        ),
        TableSpec(
            "journey_decisions",
            id_column="decision_id",
            time_column="occurred_at",
            columns=(
                ("decision_id", "String"),
                ("journey_id", "LowCardinality(String)"),
                ("journey_version", "UInt32"),
                ("subscriber_id", "String"),
                ("kind", "LowCardinality(String)"),
                ("step_id", "String"),
                ("reason", "String"),
                ("event_id", "String"),
                ("occurred_at", _TIME),
            ),
        ),
        TableSpec(
            "reputation_snapshots",
            id_column="snapshot_id",
            time_column="updated_at",
            columns=(
                ("snapshot_id", "String"),
                ("sending_domain", "LowCardinality(String)"),
                ("provider", "LowCardinality(String)"),
                ("sent", "UInt64"),
                ("accepted", "UInt64"),
                ("bounced", "UInt64"),
                ("deferred", "UInt64"),
                ("complained", "UInt64"),
                ("state", "LowCardinality(String)"),
                ("updated_at", _TIME),
                # migration 3
                ("score", "Nullable(Float64)"),
                ("hard_bounced", "UInt64"),
                ("soft_bounced", "UInt64"),
                ("opened", "UInt64"),
                ("clicked", "UInt64"),
                ("unsubscribed", "UInt64"),
                ("window_end", "Nullable(DateTime64(3, 'UTC'))"),
                ("windows", "String"),
                ("control", "String"),
            ),
        ),
        TableSpec(
            "reputation_changes",
            id_column="change_id",
            time_column="occurred_at",
            columns=(
                ("change_id", "String"),
                ("sending_domain", "LowCardinality(String)"),
                ("provider", "LowCardinality(String)"),
                ("traffic", "LowCardinality(String)"),
                ("from_state", "LowCardinality(String)"),
                ("to_state", "LowCardinality(String)"),
                ("reason", "String"),
                ("score", "Nullable(Float64)"),
                ("occurred_at", _TIME),
            ),
        ),
    )
}


def table_spec(table: str) -> TableSpec:
    try:
        return TABLES[table]
    except KeyError:
        raise ValueError(f"unknown analytics table {table!r}; known tables: {', '.join(TABLES)}") from None


def column_names(table: str) -> list[str]:
    """The columns of `table` in DDL order: the exact keys of a row for that table."""
    return table_spec(table).column_names


# Released migrations are literal text: never edit one, add the next version instead.
# Sorting keys: `events` by (type, occurred_at) answers "events by type" with a prefix scan and keeps
# each type in time order; "events per subscriber over time" uses the subscriber_id bloom index.
# Deliveries are read by kind (bounces, complaints), segment changes by segment, decisions by journey.
# PARTITION BY month of event time: old months can be dropped whole, and time filters prune parts.
_INITIAL_TABLES = (
    """\
CREATE DATABASE IF NOT EXISTS tidings
""",
    """\
CREATE TABLE IF NOT EXISTS tidings.events
(
    `event_id` String,
    `type` LowCardinality(String),
    `subscriber_id` String,
    `occurred_at` DateTime64(3, 'UTC'),
    `received_at` DateTime64(3, 'UTC'),
    `source` LowCardinality(String),
    `properties` String,
    `context` String,
    `has_email` UInt8,
    INDEX idx_event_id event_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_subscriber_id subscriber_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (type, occurred_at, event_id)
""",
    """\
CREATE TABLE IF NOT EXISTS tidings.send_intents
(
    `intent_id` String,
    `subscriber_id` String,
    `journey_id` LowCardinality(String),
    `journey_version` UInt32,
    `step_id` String,
    `template_id` LowCardinality(String),
    `trigger_event_id` String,
    `created_at` DateTime64(3, 'UTC'),
    `transactional` UInt8,
    `priority` Int32,
    INDEX idx_intent_id intent_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_subscriber_id subscriber_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (journey_id, created_at, intent_id)
""",
    """\
CREATE TABLE IF NOT EXISTS tidings.deliveries
(
    `delivery_id` String,
    `intent_id` String,
    `subscriber_id` String,
    `kind` LowCardinality(String),
    `occurred_at` DateTime64(3, 'UTC'),
    `journey_id` LowCardinality(String),
    `template_id` LowCardinality(String),
    `sending_domain` LowCardinality(String),
    `recipient_domain` LowCardinality(String),
    `message_id` String,
    `smtp_code` Nullable(UInt16),
    `enhanced_status` LowCardinality(String),
    `bounce_type` LowCardinality(String),
    `attempt` UInt16,
    `detail` String,
    INDEX idx_delivery_id delivery_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_intent_id intent_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_subscriber_id subscriber_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (kind, occurred_at, delivery_id)
""",
    """\
CREATE TABLE IF NOT EXISTS tidings.segment_changes
(
    `change_id` String,
    `segment_id` LowCardinality(String),
    `segment_version` UInt32,
    `subscriber_id` String,
    `change` LowCardinality(String),
    `occurred_at` DateTime64(3, 'UTC'),
    `cause_event_ids` Array(String),
    INDEX idx_change_id change_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_subscriber_id subscriber_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (segment_id, occurred_at, change_id)
""",
    """\
CREATE TABLE IF NOT EXISTS tidings.journey_decisions
(
    `decision_id` String,
    `journey_id` LowCardinality(String),
    `journey_version` UInt32,
    `subscriber_id` String,
    `kind` LowCardinality(String),
    `step_id` String,
    `reason` String,
    `event_id` String,
    `occurred_at` DateTime64(3, 'UTC'),
    INDEX idx_decision_id decision_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_subscriber_id subscriber_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (journey_id, occurred_at, decision_id)
""",
    """\
CREATE TABLE IF NOT EXISTS tidings.reputation_snapshots
(
    `snapshot_id` String,
    `sending_domain` LowCardinality(String),
    `provider` LowCardinality(String),
    `sent` UInt64,
    `accepted` UInt64,
    `bounced` UInt64,
    `deferred` UInt64,
    `complained` UInt64,
    `state` LowCardinality(String),
    `updated_at` DateTime64(3, 'UTC'),
    INDEX idx_snapshot_id snapshot_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(updated_at)
ORDER BY (sending_domain, provider, updated_at, snapshot_id)
""",
)


# Migration 2: what analysts and the dashboard read.
#
# Daily rollups are SummingMergeTree tables fed by materialized views on the base tables. A
# materialized view sees each INSERT block, not the merged table, so it would count a duplicate
# that reached a base table twice. None does: `Analytics.insert_rows` drops ids already stored or
# repeated in the batch BEFORE the insert, and it is the only write path, so every row reaches the
# base table and its rollups exactly once. (ReplacingMergeTree stays as the second line for the base
# tables; rollups have no second line, which is why the sink must never skip that check.)
# Rollup rows are partial sums until merged: always read them with sum() ... GROUP BY.
#
# Each rollup is created empty, back-filled from its base table, and only then gets its view; no
# insert runs during a migration (the worker migrates before its sink starts), and a migration
# interrupted half way is rerun from the top (the TRUNCATE makes the back-fill repeatable).
#
# TTLs: raw per-subscriber activity (events, send intents, deliveries, journey decisions) is kept
# 400 days, i.e. 13 months for year-over-year plus a margin, and then dropped a whole monthly part
# at a time (ttl_only_drop_parts); the daily rollups keep the counts forever (a few rows a day).
# Reputation snapshots are kept 90 days: they are operational, the sender's windows are shorter.
# Segment changes have NO TTL: membership as of a time folds the whole history, and expiring an
# old "entered" would silently drop a member.
_ROLLUPS_AND_VIEWS = (
    """\
CREATE TABLE IF NOT EXISTS tidings.daily_events
(
    `day` Date,
    `type` LowCardinality(String),
    `events` UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, type)
""",
    "TRUNCATE TABLE IF EXISTS tidings.daily_events",
    """\
INSERT INTO tidings.daily_events (day, type, events)
SELECT toDate(occurred_at) AS day, type, count() AS events
FROM tidings.events FINAL
GROUP BY day, type
""",
    """\
CREATE MATERIALIZED VIEW IF NOT EXISTS tidings.daily_events_mv TO tidings.daily_events AS
SELECT toDate(occurred_at) AS day, type, count() AS events
FROM tidings.events
GROUP BY day, type
""",
    """\
CREATE TABLE IF NOT EXISTS tidings.daily_send_intents
(
    `day` Date,
    `journey_id` LowCardinality(String),
    `step_id` LowCardinality(String),
    `template_id` LowCardinality(String),
    `intents` UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, journey_id, step_id, template_id)
""",
    "TRUNCATE TABLE IF EXISTS tidings.daily_send_intents",
    """\
INSERT INTO tidings.daily_send_intents (day, journey_id, step_id, template_id, intents)
SELECT toDate(created_at) AS day, journey_id, step_id, template_id, count() AS intents
FROM tidings.send_intents FINAL
GROUP BY day, journey_id, step_id, template_id
""",
    """\
CREATE MATERIALIZED VIEW IF NOT EXISTS tidings.daily_send_intents_mv TO tidings.daily_send_intents AS
SELECT toDate(created_at) AS day, journey_id, step_id, template_id, count() AS intents
FROM tidings.send_intents
GROUP BY day, journey_id, step_id, template_id
""",
    """\
CREATE TABLE IF NOT EXISTS tidings.daily_deliveries
(
    `day` Date,
    `journey_id` LowCardinality(String),
    `template_id` LowCardinality(String),
    `sending_domain` LowCardinality(String),
    `recipient_domain` LowCardinality(String),
    `kind` LowCardinality(String),
    `deliveries` UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, kind, sending_domain, recipient_domain, journey_id, template_id)
""",
    "TRUNCATE TABLE IF EXISTS tidings.daily_deliveries",
    """\
INSERT INTO tidings.daily_deliveries (day, journey_id, template_id, sending_domain, recipient_domain, kind, deliveries)
SELECT toDate(occurred_at) AS day, journey_id, template_id, sending_domain, recipient_domain, kind, count() AS deliveries
FROM tidings.deliveries FINAL
GROUP BY day, journey_id, template_id, sending_domain, recipient_domain, kind
""",
    """\
CREATE MATERIALIZED VIEW IF NOT EXISTS tidings.daily_deliveries_mv TO tidings.daily_deliveries AS
SELECT toDate(occurred_at) AS day, journey_id, template_id, sending_domain, recipient_domain, kind, count() AS deliveries
FROM tidings.deliveries
GROUP BY day, journey_id, template_id, sending_domain, recipient_domain, kind
""",
    """\
CREATE TABLE IF NOT EXISTS tidings.daily_journey_steps
(
    `day` Date,
    `journey_id` LowCardinality(String),
    `step_id` LowCardinality(String),
    `kind` LowCardinality(String),
    `decisions` UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, journey_id, step_id, kind)
""",
    "TRUNCATE TABLE IF EXISTS tidings.daily_journey_steps",
    """\
INSERT INTO tidings.daily_journey_steps (day, journey_id, step_id, kind, decisions)
SELECT toDate(occurred_at) AS day, journey_id, step_id, kind, count() AS decisions
FROM tidings.journey_decisions FINAL
GROUP BY day, journey_id, step_id, kind
""",
    """\
CREATE MATERIALIZED VIEW IF NOT EXISTS tidings.daily_journey_steps_mv TO tidings.daily_journey_steps AS
SELECT toDate(occurred_at) AS day, journey_id, step_id, kind, count() AS decisions
FROM tidings.journey_decisions
GROUP BY day, journey_id, step_id, kind
""",
    """\
CREATE VIEW IF NOT EXISTS tidings.messages AS
SELECT
    i.intent_id AS intent_id,
    i.subscriber_id AS subscriber_id,
    i.journey_id AS journey_id,
    i.journey_version AS journey_version,
    i.step_id AS step_id,
    i.template_id AS template_id,
    i.trigger_event_id AS trigger_event_id,
    i.transactional AS transactional,
    i.created_at AS intended_at,
    d.rendered_at AS rendered_at,
    d.accepted_at AS accepted_at,
    d.deferred_at AS deferred_at,
    d.bounced_at AS bounced_at,
    d.ambiguous_at AS ambiguous_at,
    d.skipped_at AS skipped_at,
    d.opened_at AS opened_at,
    d.clicked_at AS clicked_at,
    d.complained_at AS complained_at,
    d.unsubscribed_at AS unsubscribed_at,
    d.attempts AS attempts,
    d.sending_domain AS sending_domain,
    d.recipient_domain AS recipient_domain,
    d.message_id AS message_id,
    multiIf(
        d.complained_at IS NOT NULL, 'complained',
        d.bounced_at IS NOT NULL, 'bounced',
        d.accepted_at IS NOT NULL, 'delivered',
        d.ambiguous_at IS NOT NULL, 'ambiguous',
        d.skipped_at IS NOT NULL, 'skipped',
        d.deferred_at IS NOT NULL, 'deferred',
        'pending'
    ) AS status
FROM tidings.send_intents AS i
LEFT JOIN
(
    SELECT
        intent_id,
        minIfOrNull(occurred_at, kind IN ('accepted', 'deferred', 'bounced', 'ambiguous')) AS rendered_at,
        minIfOrNull(occurred_at, kind = 'accepted') AS accepted_at,
        minIfOrNull(occurred_at, kind = 'deferred') AS deferred_at,
        minIfOrNull(occurred_at, kind = 'bounced') AS bounced_at,
        minIfOrNull(occurred_at, kind = 'ambiguous') AS ambiguous_at,
        minIfOrNull(occurred_at, kind = 'skipped') AS skipped_at,
        minIfOrNull(occurred_at, kind = 'opened') AS opened_at,
        minIfOrNull(occurred_at, kind = 'clicked') AS clicked_at,
        minIfOrNull(occurred_at, kind = 'complained') AS complained_at,
        minIfOrNull(occurred_at, kind = 'unsubscribed') AS unsubscribed_at,
        toUInt16(countIf(kind IN ('accepted', 'deferred', 'bounced', 'ambiguous'))) AS attempts,
        anyIf(sending_domain, sending_domain != '') AS sending_domain,
        anyIf(recipient_domain, recipient_domain != '') AS recipient_domain,
        anyIf(message_id, message_id != '') AS message_id
    FROM tidings.deliveries
    GROUP BY intent_id
) AS d ON d.intent_id = i.intent_id
""",
    "ALTER TABLE tidings.events MODIFY TTL toDateTime(occurred_at) + INTERVAL 400 DAY",
    "ALTER TABLE tidings.send_intents MODIFY TTL toDateTime(created_at) + INTERVAL 400 DAY",
    "ALTER TABLE tidings.deliveries MODIFY TTL toDateTime(occurred_at) + INTERVAL 400 DAY",
    "ALTER TABLE tidings.journey_decisions MODIFY TTL toDateTime(occurred_at) + INTERVAL 400 DAY",
    "ALTER TABLE tidings.reputation_snapshots MODIFY TTL toDateTime(updated_at) + INTERVAL 90 DAY",
    "ALTER TABLE tidings.events MODIFY SETTING ttl_only_drop_parts = 1",
    "ALTER TABLE tidings.send_intents MODIFY SETTING ttl_only_drop_parts = 1",
    "ALTER TABLE tidings.deliveries MODIFY SETTING ttl_only_drop_parts = 1",
    "ALTER TABLE tidings.journey_decisions MODIFY SETTING ttl_only_drop_parts = 1",
    "ALTER TABLE tidings.reputation_snapshots MODIFY SETTING ttl_only_drop_parts = 1",
)


# Migration 3: the reputation stage's scores and transitions (docs/reputation.md).
#
# Snapshots gain the 24h score, the counters the flat columns lacked, the end of the windows, and
# the three windows and the sender's control as JSON text (their shape may grow; JSONExtract reads
# them). New columns go last, so positional inserts written against migration 1 fail loudly rather
# than shift. Rows stored before this migration read score NULL, counters 0, windows/control '{}'.
# Transitions get their own table: a few rows per identity and provider a day, the audit trail of
# every throttle and pause, so they keep the 400-day TTL of the other event tables (not the 90 days
# of the snapshots).
_REPUTATION_SCORES_AND_CHANGES = (
    """\
ALTER TABLE tidings.reputation_snapshots
    ADD COLUMN IF NOT EXISTS `score` Nullable(Float64),
    ADD COLUMN IF NOT EXISTS `hard_bounced` UInt64,
    ADD COLUMN IF NOT EXISTS `soft_bounced` UInt64,
    ADD COLUMN IF NOT EXISTS `opened` UInt64,
    ADD COLUMN IF NOT EXISTS `clicked` UInt64,
    ADD COLUMN IF NOT EXISTS `unsubscribed` UInt64,
    ADD COLUMN IF NOT EXISTS `window_end` Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS `windows` String DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS `control` String DEFAULT '{}'
""",
    """\
CREATE TABLE IF NOT EXISTS tidings.reputation_changes
(
    `change_id` String,
    `sending_domain` LowCardinality(String),
    `provider` LowCardinality(String),
    `traffic` LowCardinality(String),
    `from_state` LowCardinality(String),
    `to_state` LowCardinality(String),
    `reason` String,
    `score` Nullable(Float64),
    `occurred_at` DateTime64(3, 'UTC'),
    INDEX idx_change_id change_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (sending_domain, provider, occurred_at, change_id)
TTL toDateTime(occurred_at) + INTERVAL 400 DAY
SETTINGS ttl_only_drop_parts = 1
""",
)

MIGRATIONS: list[Migration] = [
    Migration(1, "initial_tables", _INITIAL_TABLES),
    Migration(2, "rollups_messages_ttls", _ROLLUPS_AND_VIEWS),
    Migration(3, "reputation_scores_changes", _REPUTATION_SCORES_AND_CHANGES),
]

# Tables and views that migrations create but the sink never writes: their columns after the last
# migration (an integration test compares them with the database).
DERIVED: dict[str, tuple[tuple[str, str], ...]] = {
    "daily_events": (("day", "Date"), ("type", "LowCardinality(String)"), ("events", "UInt64")),
    "daily_send_intents": (
        ("day", "Date"),
        ("journey_id", "LowCardinality(String)"),
        ("step_id", "LowCardinality(String)"),
        ("template_id", "LowCardinality(String)"),
        ("intents", "UInt64"),
    ),
    "daily_deliveries": (
        ("day", "Date"),
        ("journey_id", "LowCardinality(String)"),
        ("template_id", "LowCardinality(String)"),
        ("sending_domain", "LowCardinality(String)"),
        ("recipient_domain", "LowCardinality(String)"),
        ("kind", "LowCardinality(String)"),
        ("deliveries", "UInt64"),
    ),
    "daily_journey_steps": (
        ("day", "Date"),
        ("journey_id", "LowCardinality(String)"),
        ("step_id", "LowCardinality(String)"),
        ("kind", "LowCardinality(String)"),
        ("decisions", "UInt64"),
    ),
}

MIGRATIONS_DDL = (
    f"CREATE DATABASE IF NOT EXISTS {DATABASE}",
    f"CREATE TABLE IF NOT EXISTS {DATABASE}.{MIGRATIONS_TABLE}\n"
    "(\n    `version` UInt32,\n    `name` String,\n    `applied_at` DateTime64(3, 'UTC')\n)\n"
    "ENGINE = ReplacingMergeTree\nORDER BY version",
)


@dataclass(frozen=True)
class RollupSpec:
    """A daily rollup and the base table its materialized view counts: `measure` = count() per day and `dimensions`."""

    name: str
    source: str
    time_column: str
    dimensions: tuple[str, ...]
    measure: str


ROLLUPS: dict[str, RollupSpec] = {
    spec.name: spec
    for spec in (
        RollupSpec("daily_events", "events", "occurred_at", ("type",), "events"),
        RollupSpec("daily_send_intents", "send_intents", "created_at", ("journey_id", "step_id", "template_id"), "intents"),
        RollupSpec(
            "daily_deliveries",
            "deliveries",
            "occurred_at",
            ("journey_id", "template_id", "sending_domain", "recipient_domain", "kind"),
            "deliveries",
        ),
        RollupSpec("daily_journey_steps", "journey_decisions", "occurred_at", ("journey_id", "step_id", "kind"), "decisions"),
    )
}

