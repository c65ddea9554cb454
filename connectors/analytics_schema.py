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

MIGRATIONS: list[Migration] = [
    Migration(1, "initial_tables", _INITIAL_TABLES),
]

MIGRATIONS_DDL = (
    f"CREATE DATABASE IF NOT EXISTS {DATABASE}",
    f"CREATE TABLE IF NOT EXISTS {DATABASE}.{MIGRATIONS_TABLE}\n"
    "(\n    `version` UInt32,\n    `name` String,\n    `applied_at` DateTime64(3, 'UTC')\n)\n"
    "ENGINE = ReplacingMergeTree\nORDER BY version",
)
