"""Analytics storage in ClickHouse: embedded chDB by default, a ClickHouse server over http(s).

One code path for both, through clickhouse-connect: `chdb:///absolute/path` runs the engine inside
this process, `http(s)://user:pass@host:port` talks to a server.

What chDB allows (chdb 4.4 + clickhouse-connect 1.12, checked here):

- A DSN must be `chdb:///absolute/path` (three slashes). `chdb://var/analytics` parses as location
  `var` and database `analytics`, so relative paths are refused here. `chdb://memory` is in-memory.
- One engine per process, on one path at a time. Several clients (handles) on the same path share
  the engine; opening a different path while any client is open fails ("EmbeddedServer already
  initialized with path ..."). After every client is closed, the process may open another path, or
  reopen the same one (data persists).
- A data directory is open in one process at a time; a second process fails at connect with
  "Error initializing EmbeddedServer".
- Calls are synchronous; async callers use `asyncio.to_thread`.

So this module keeps one shared engine per DSN per process (reference counted by `Analytics`
instances), with two clients on it: a writer, guarded by a lock so inserts are single-writer, and
a reader whose session is `readonly=1` for queries typed by users. A per-call `readonly` setting is
not used because clickhouse-connect applies per-call settings of non-SELECT statements on chDB with
`SET` and cannot restore `readonly` afterwards (`Cannot modify 'readonly' setting in readonly
mode`), which would leave the writer read-only. readonly=1 also refuses DDL, inserts, `SETTINGS`
overrides and table functions (file(), url()); it does NOT stop `SELECT ... INTO OUTFILE`, which chDB
executes by writing a local file, so user queries also pass a statement check first.

Inserts are idempotent across redelivery: ids already stored (one lookup per batch) and ids repeated
within the batch are dropped before the one insert; `ReplacingMergeTree` on the id is the second line.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from urllib.parse import urlparse
from uuid import UUID

import clickhouse_connect
import structlog
from clickhouse_connect.driver.binding import format_str
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from pydantic import BaseModel

from connectors.analytics_schema import DATABASE, MIGRATIONS, MIGRATIONS_DDL, MIGRATIONS_TABLE, ROLLUPS, table_spec
from infra.settings import Settings

log = structlog.get_logger(__name__)

READONLY_ERROR_CODE = 164
# The writer's id lookups put a whole batch of ids in one query; the default 256 KiB limit on query
# text would cap a batch near 7k ids.
MAX_QUERY_SIZE = 64 * 1024 * 1024
# Ids are sent as one string split server side: parsing one literal is ~5x faster than a
# 10k-element IN list. An id containing the separator falls back to the IN list.
ID_SEPARATOR = "\x1e"
READ_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"})


class AnalyticsError(Exception):
    """Analytics storage could not do what was asked; the message says why."""


class QueryRefused(AnalyticsError):
    """A user query that is not a single read-only statement."""


class QueryFailed(AnalyticsError):
    """ClickHouse rejected a query (syntax, unknown table, ...); the message is ClickHouse's."""


class QueryResult(BaseModel):
    """A query's answer in JSON-friendly values: datetimes as ISO 8601 strings."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]


@dataclass
class _Engine:
    """The clients one process keeps on one DSN, shared by every `Analytics` on it."""

    key: str
    is_chdb: bool
    writer: Client
    reader: Client
    write_lock: threading.Lock
    read_lock: threading.Lock
    users: int = 0


_engines: dict[str, _Engine] = {}
_engines_lock = threading.Lock()


class Analytics:
    """Analytics tables behind one DSN. Synchronous; call from asyncio through `asyncio.to_thread`."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._engine: _Engine | None = _acquire(dsn)

    # ---- schema ----------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply pending migrations in version order; returns the labels applied (empty when none)."""
        engine = self._open()
        applied_now: list[str] = []
        with engine.write_lock:
            for statement in MIGRATIONS_DDL:
                engine.writer.command(statement)
            done = {row[0] for row in engine.writer.query(f"SELECT version FROM {DATABASE}.{MIGRATIONS_TABLE} FINAL").result_rows}
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                for statement in migration.statements:
                    engine.writer.command(statement)
                engine.writer.insert(
                    f"{DATABASE}.{MIGRATIONS_TABLE}",
                    [[migration.version, migration.name, datetime.now(timezone.utc)]],
                    column_names=["version", "name", "applied_at"],
                )
                applied_now.append(migration.label)
                log.info("analytics.migrated", version=migration.version, migration=migration.name)
        if engine.is_chdb:
            self.repair_rollups()
        return applied_now

    def repair_rollups(self) -> list[tuple[str, str]]:
        """Rebuild every (rollup, day) whose sum differs from its base table's row count; returns them.

        A materialized view is not atomic with the insert into its source table: a process killed in
        the middle of an insert can leave a base-table part committed without its rollup part. The
        replayed batch is then (rightly) dropped as already stored, and the rollup would stay short
        forever. chDB dies with its process, so the worker calls this on start (through `migrate`),
        before its sink runs, when nothing else writes. Not run against a ClickHouse server: other
        workers may be inserting, and a server finishes or aborts an insert whole when a client dies.
        """
        engine = self._open()
        repaired: list[tuple[str, str]] = []
        with engine.write_lock:
            for rollup in ROLLUPS.values():
                days = engine.writer.query(
                    f"SELECT toString(day) FROM "
                    f"(SELECT toDate({rollup.time_column}) AS day, count() AS n FROM {DATABASE}.{rollup.source} GROUP BY day) AS b "
                    f"FULL OUTER JOIN (SELECT day, sum({rollup.measure}) AS n FROM {DATABASE}.{rollup.name} GROUP BY day) AS r "
                    f"USING (day) WHERE b.n != r.n ORDER BY day"
                ).result_rows
                for (day,) in days:
                    dimensions = ", ".join(rollup.dimensions)
                    engine.writer.command(
                        f"ALTER TABLE {DATABASE}.{rollup.name} DELETE WHERE day = {format_str(day)}",
                        settings={"mutations_sync": 2},
                    )
                    engine.writer.command(
                        f"INSERT INTO {DATABASE}.{rollup.name} (day, {dimensions}, {rollup.measure}) "
                        f"SELECT toDate({rollup.time_column}) AS day, {dimensions}, count() FROM {DATABASE}.{rollup.source} "
                        f"WHERE toDate({rollup.time_column}) = {format_str(day)} GROUP BY day, {dimensions}"
                    )
                    repaired.append((rollup.name, day))
                    log.warning("analytics.rollup_repaired", rollup=rollup.name, day=day)
        return repaired

    # ---- writes ----------------------------------------------------------------------------

    def insert_rows(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Insert the rows whose id is not stored yet, in one insert; returns how many were inserted.

        Safe to call again with the same rows (redelivery after a crash): they are skipped.
        """
        spec = table_spec(table)
        if not rows:
            return 0
        columns = spec.column_names
        _check_columns(table, columns, rows)
        fresh = _first_per_id(rows, spec.id_column)
        engine = self._open()
        with engine.write_lock:
            stored = self._stored_ids(engine.writer, table, spec.id_column, list(fresh), _time_bounds(fresh.values(), spec.time_column))
            new_rows = [row for row_id, row in fresh.items() if row_id not in stored]
            if new_rows:
                engine.writer.insert(
                    f"{DATABASE}.{table}",
                    [[row[name] for name in columns] for row in new_rows],
                    column_names=columns,
                )
        log.debug(
            "analytics.inserted",
            table=table,
            offered=len(rows),
            duplicate_in_batch=len(rows) - len(fresh),
            already_stored=len(stored),
            inserted=len(new_rows),
        )
        return len(new_rows)

    @staticmethod
    def _stored_ids(
        client: Client, table: str, id_column: str, ids: list[str], time_bounds: str = ""
    ) -> set[str]:
        if any(ID_SEPARATOR in row_id for row_id in ids):
            wanted = "(" + ",".join(format_str(row_id) for row_id in ids) + ")"
        else:
            wanted = f"splitByChar({format_str(ID_SEPARATOR)}, {format_str(ID_SEPARATOR.join(ids))})"
        # raw_query: the typed query path scans the query text with regexes, ~50 ms for 10k ids.
        body = client.raw_query(
            f"SELECT DISTINCT {id_column} FROM {DATABASE}.{table} WHERE {id_column} IN {wanted}{time_bounds}",
            fmt="JSONCompactEachRow",
        )
        return {json.loads(line)[0] for line in body.splitlines() if line}

    # ---- reads -----------------------------------------------------------------------------

    def query(self, sql: str, parameters: dict[str, Any] | None = None, readonly: bool = False) -> QueryResult:
        """Run one query. `readonly=True` is for SQL typed by users: only a single SELECT, WITH,
        SHOW, DESCRIBE or EXPLAIN statement is accepted, and it runs in a `readonly=1` session."""
        engine = self._open()
        if readonly:
            sql = read_only_statement(sql)
            client, lock = engine.reader, engine.read_lock
        else:
            client, lock = engine.writer, engine.write_lock
        try:
            with lock:
                result = client.query(sql, parameters=parameters)
        except ClickHouseError as exc:
            if readonly and getattr(exc, "code", None) == READONLY_ERROR_CODE:
                raise QueryRefused(f"query refused: read-only access ({exc})") from exc
            raise QueryFailed(str(exc)) from exc
        # model_construct: the values are built here, validating every cell would only cost time.
        return QueryResult.model_construct(
            columns=list(result.column_names),
            types=[column_type.name for column_type in result.column_types],
            rows=[[json_value(value) for value in row] for row in result.result_rows],
        )

    def count(self, table: str) -> int:
        """Rows stored in `table`, duplicates collapsed (FINAL), so the answer is exact."""
        table_spec(table)
        return int(self.query(f"SELECT count() FROM {DATABASE}.{table} FINAL").rows[0][0])

    # ---- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Release this handle; the engine closes when the last `Analytics` on its DSN does."""
        if self._engine is not None:
            _release(self._engine)
            self._engine = None

    def __enter__(self) -> Analytics:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self) -> _Engine:
        if self._engine is None:
            raise AnalyticsError(f"analytics on {self.dsn} is closed")
        return self._engine


def analytics_for(settings: Settings) -> Analytics:
    return Analytics(settings.resolved_clickhouse_dsn)


# ---- engines: one per DSN per process ----------------------------------------------------------


def _engine_key(dsn: str) -> tuple[str, bool]:
    """(registry key, is chDB) for a DSN; refuses DSNs that would open the wrong place."""
    parsed = urlparse(dsn)
    if parsed.scheme == "chdb":
        if parsed.netloc in ("memory", ":memory:") and parsed.path in ("", "/"):
            return "chdb::memory:", True
        if parsed.netloc or not parsed.path.startswith("/"):
            raise AnalyticsError(f"chDB DSN {dsn!r} must name an absolute directory: chdb:///absolute/path or chdb://memory")
        return f"chdb:{os.path.realpath(parsed.path)}", True
    if parsed.scheme in ("http", "https"):
        return dsn, False
    raise AnalyticsError(f"ClickHouse DSN {dsn!r} must start with chdb://, http:// or https://")


def _acquire(dsn: str) -> _Engine:
    key, is_chdb = _engine_key(dsn)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            if is_chdb:
                open_chdb = [other for other in _engines.values() if other.is_chdb]
                if open_chdb:
                    raise AnalyticsError(
                        f"this process already has the chDB engine on {open_chdb[0].key[5:]}; chDB hosts one data "
                        f"directory per process, so close every Analytics on it before opening {key[5:]}"
                    )
            engine = _connect(dsn, key, is_chdb)
            _engines[key] = engine
        engine.users += 1
        return engine


def _connect(dsn: str, key: str, is_chdb: bool) -> _Engine:
    started = time.perf_counter()
    try:
        writer = clickhouse_connect.get_client(dsn=dsn, tz_mode="aware", settings={"max_query_size": MAX_QUERY_SIZE})
        # Analysts write `FROM events`, not `FROM tidings.events`: the reader's default database is ours.
        writer.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        reader = clickhouse_connect.get_client(
            dsn=dsn, tz_mode="aware", database=DATABASE, settings={"readonly": 1}
        )
    except ClickHouseError as exc:
        hint = " (is another process using this chDB directory? one process may open it at a time)" if is_chdb else ""
        raise AnalyticsError(f"cannot open analytics at {dsn}{hint}: {exc}") from exc
    log.info("analytics.opened", dsn=_redacted(dsn), seconds=round(time.perf_counter() - started, 3))
    return _Engine(
        key=key, is_chdb=is_chdb, writer=writer, reader=reader, write_lock=threading.Lock(), read_lock=threading.Lock()
    )


def _release(engine: _Engine) -> None:
    with _engines_lock:
        engine.users -= 1
        if engine.users > 0:
            return
        _engines.pop(engine.key, None)
    with engine.write_lock, engine.read_lock:
        engine.reader.close()
        engine.writer.close()
    log.info("analytics.closed", engine=engine.key if engine.is_chdb else "server")


def _redacted(dsn: str) -> str:
    parsed = urlparse(dsn)
    if parsed.password:
        return dsn.replace(f":{parsed.password}@", ":***@")
    return dsn


# ---- helpers -----------------------------------------------------------------------------------


def _check_columns(table: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
    expected = set(columns)
    for index, row in enumerate(rows):
        if row.keys() != expected:
            missing = sorted(expected - row.keys())
            extra = sorted(row.keys() - expected)
            raise ValueError(f"row {index} for {table} does not match its columns: missing {missing}, unexpected {extra}")


# A redelivered record is the same record: same id, same time. So the id lookup only needs the
# batch's time span, and monthly partitions plus the sorting key's time column prune the scan
# (unbounded, every batch read the whole id column: ~1.5 s per 5k-row batch on a 10M-row table,
# 0.15 s bounded). The margin also catches an id re-sent by a client with a slightly different time;
# one re-sent with a time further off is collapsed by ReplacingMergeTree and, in its rollup, by
# `repair_rollups` on the next start.
LOOKUP_MARGIN = timedelta(minutes=5)


def _time_bounds(rows: Any, time_column: str) -> str:
    """`AND time BETWEEN lo AND hi` for the rows' times widened by `LOOKUP_MARGIN`, or "" when a time is missing."""
    times = []
    for row in rows:
        value = row.get(time_column)
        if not isinstance(value, datetime):
            return ""
        times.append(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    if not times:
        return ""
    lo, hi = (moment.astimezone(timezone.utc) for moment in (min(times) - LOOKUP_MARGIN, max(times) + LOOKUP_MARGIN))
    return (
        f" AND {time_column} BETWEEN toDateTime64('{lo:%Y-%m-%d %H:%M:%S}', 3, 'UTC')"
        f" AND toDateTime64('{hi:%Y-%m-%d %H:%M:%S}.999', 3, 'UTC')"
    )


def _first_per_id(rows: list[dict[str, Any]], id_column: str) -> dict[str, dict[str, Any]]:
    fresh: dict[str, dict[str, Any]] = {}
    for index, row in enumerate(rows):
        row_id = row[id_column]
        if not isinstance(row_id, str) or not row_id:
            raise ValueError(f"row {index} has no {id_column}: {row_id!r}")
        fresh.setdefault(row_id, row)
    return fresh


def read_only_statement(sql: str) -> str:
    """`sql` without trailing semicolons if it is one read statement; raises `QueryRefused` otherwise."""
    words, semicolon_inside = _scan(sql)
    if not words:
        raise QueryRefused("query refused: empty query")
    if semicolon_inside:
        raise QueryRefused("query refused: send one statement at a time")
    if words[0] not in READ_STATEMENTS:
        raise QueryRefused(f"query refused: only {', '.join(sorted(READ_STATEMENTS))} statements are allowed, not {words[0]}")
    if "OUTFILE" in words:
        raise QueryRefused("query refused: INTO OUTFILE writes files")
    return sql.strip().rstrip(";").rstrip()


def _scan(sql: str) -> tuple[list[str], bool]:
    """Upper-cased bare words of `sql` outside quotes and comments, and whether a `;` is followed by
    anything but whitespace and comments."""
    words: list[str] = []
    semicolon_at: int | None = None
    text_after_semicolon = False
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        # ClickHouse comments: `--`, `/* */`, and `#` followed by a space or `!`.
        if sql.startswith("--", i) or sql.startswith("# ", i) or sql.startswith("#!", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if ch in "'\"`":
            i = _skip_quoted(sql, i)
        elif ch.isalpha() or ch == "_":
            start = i
            while i < n and (sql[i].isalnum() or sql[i] == "_"):
                i += 1
            words.append(sql[start:i].upper())
        elif ch == ";":
            semicolon_at = i
            i += 1
            continue
        else:
            i += 1
        if semicolon_at is not None and not ch.isspace():
            text_after_semicolon = True
    return words, text_after_semicolon


def _skip_quoted(sql: str, start: int) -> int:
    quote, i = sql[start], start + 1
    while i < len(sql):
        if sql[i] == "\\":
            i += 2
            continue
        if sql[i] == quote:
            if sql.startswith(quote * 2, i):  # doubled quote escapes itself
                i += 2
                continue
            return i + 1
        i += 1
    return i


def json_value(value: Any) -> Any:
    """A ClickHouse value as JSON can carry it: datetimes as ISO 8601, decimals and ids as strings."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID, IPv4Address, IPv6Address)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value
