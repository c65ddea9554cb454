"""`python -m bench.analytics`: rows/s into ClickHouse and the dashboard queries over 10M events.

1. Sink inserts: the same event rows, in sink-sized batches (`analytics_batch_rows`), written by
   `Analytics.insert_rows` (id lookup, de-duplication, one insert) and, as the baseline, by a raw
   clickhouse-connect `client.insert` of the same rows into the same table (same materialized view).
   Also a full replay through `insert_rows` (every id already stored: nothing inserted).
2. Dashboard queries: 10M events (plus 1M intents, 2M deliveries, 2M journey decisions, 50k
   reputation snapshots) generated inside ClickHouse with `INSERT ... SELECT ... FROM numbers(N)`,
   then every dashboard query run repeatedly: p50/p95. The baseline for each is the same answer
   computed from the raw tables instead of the daily rollups.

Embedded chDB in a temporary directory; set BENCH_ANALYTICS_EVENTS to change the 10M.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench._support import RESULTS, median, percentile
from connectors.analytics_queries import DASHBOARD_QUERIES, render
from connectors.analytics_schema import DATABASE, column_names
from connectors.clickhouse import Analytics
from infra.settings import Settings

INSERT_ROWS = int(os.environ.get("BENCH_ANALYTICS_INSERT_ROWS", "200000"))
EVENTS = int(os.environ.get("BENCH_ANALYTICS_EVENTS", "10000000"))
QUERY_RUNS = int(os.environ.get("BENCH_ANALYTICS_QUERY_RUNS", "15"))

# The same answers from the raw tables: what the rollups save.
RAW_EQUIVALENTS = {
    "journey_funnel": """
SELECT journey_id,
    sumIf(n, stage = 'entered') AS entered, sumIf(n, stage = 'sent') AS sent,
    sumIf(n, stage = 'accepted') AS delivered, sumIf(n, stage = 'opened') AS opened, sumIf(n, stage = 'clicked') AS clicked
FROM (
    SELECT journey_id, toString(kind) AS stage, count() AS n FROM tidings.journey_decisions
    WHERE occurred_at >= today() - 30 GROUP BY journey_id, stage
    UNION ALL
    SELECT journey_id, toString(kind) AS stage, count() AS n FROM tidings.deliveries
    WHERE occurred_at >= today() - 30 AND kind IN ('accepted', 'opened', 'clicked') GROUP BY journey_id, stage
) WHERE journey_id != '' GROUP BY journey_id ORDER BY journey_id""",
    "sends_over_time": """
SELECT day, sumIf(n, metric = 'intents') AS intents, sumIf(n, metric = 'accepted') AS delivered,
    sumIf(n, metric = 'opened') AS opened, sumIf(n, metric = 'clicked') AS clicked, sumIf(n, metric = 'bounced') AS bounced,
    sumIf(n, metric = 'complained') AS complained, sumIf(n, metric = 'unsubscribed') AS unsubscribed
FROM (
    SELECT toDate(created_at) AS day, 'intents' AS metric, count() AS n FROM tidings.send_intents
    WHERE created_at >= today() - 30 GROUP BY day
    UNION ALL
    SELECT toDate(occurred_at) AS day, toString(kind) AS metric, count() AS n FROM tidings.deliveries
    WHERE occurred_at >= today() - 30 GROUP BY day, kind
) GROUP BY day ORDER BY day""",
    "deliverability_by_identity": """
SELECT sending_domain, recipient_domain,
    countIf(kind = 'accepted') AS accepted, countIf(kind = 'deferred') AS deferred, countIf(kind = 'bounced') AS bounced,
    countIf(kind = 'complained') AS complained,
    round(bounced / greatest(accepted + bounced, 1), 4) AS bounce_rate, round(complained / greatest(accepted, 1), 4) AS complaint_rate
FROM tidings.deliveries WHERE occurred_at >= today() - 30 AND sending_domain != ''
GROUP BY sending_domain, recipient_domain HAVING accepted + deferred + bounced + complained > 0
ORDER BY sending_domain, recipient_domain""",
}

# Generated rows: 30 days back from now, a realistic spread of types, kinds, domains.
GENERATE = {
    "events": """
INSERT INTO tidings.events
SELECT concat('ev-', toString(number)), ['page.viewed', 'cart.updated', 'order.placed', 'user.signed_up', 'identify', 'email.clicked'][number % 6 + 1],
    concat('sub-', toString(number % 1000000)), now64(3) - toIntervalMillisecond(number * 259 % 2592000000),
    now64(3) - toIntervalMillisecond(number * 259 % 2592000000), 'api', '{"n":1}', '{}', 0
FROM numbers({n})""",
    "send_intents": """
INSERT INTO tidings.send_intents
SELECT concat('in-', toString(number)), concat('sub-', toString(number % 1000000)),
    ['welcome', 'cart', 'winback', 'first-order'][number % 4 + 1], 1, concat('step-', toString(number % 3)),
    ['welcome-a', 'welcome-b', 'cart-reminder', 'winback', 'thanks'][number % 5 + 1], concat('ev-', toString(number * 10)),
    now64(3) - toIntervalMillisecond(number * 2593 % 2592000000), 0, 0
FROM numbers({n})""",
    "deliveries": """
INSERT INTO tidings.deliveries
SELECT concat('dl-', toString(number)), concat('in-', toString(intDiv(number, 2))), concat('sub-', toString(intDiv(number, 2) % 1000000)),
    ['accepted', 'accepted', 'accepted', 'opened', 'opened', 'clicked', 'deferred', 'bounced', 'complained', 'unsubscribed'][number % 10 + 1],
    now64(3) - toIntervalMillisecond(number * 1297 % 2592000000),
    ['welcome', 'cart', 'winback', 'first-order'][intDiv(number, 2) % 4 + 1], ['welcome-a', 'welcome-b', 'cart-reminder', 'winback', 'thanks'][intDiv(number, 2) % 5 + 1],
    ['news.example.com', 'shop.example.com'][number % 2 + 1], ['gmail.com', 'yahoo.com', 'outlook.com', 'icloud.com', 'gmx.de'][intDiv(number, 3) % 5 + 1],
    concat('<', toString(number), '@x>'), 250, '', '', 1, ''
FROM numbers({n})""",
    "journey_decisions": """
INSERT INTO tidings.journey_decisions
SELECT concat('jd-', toString(number)), ['welcome', 'cart', 'winback', 'first-order'][number % 4 + 1], 1, concat('sub-', toString(number % 1000000)),
    ['entered', 'sent', 'sent', 'skipped', 'exited'][number % 5 + 1], concat('step-', toString(number % 3)), '', concat('ev-', toString(number)),
    now64(3) - toIntervalMillisecond(number * 1297 % 2592000000)
FROM numbers({n})""",
    "reputation_snapshots": """
INSERT INTO tidings.reputation_snapshots (snapshot_id, sending_domain, provider, sent, accepted, bounced, deferred, complained, state, updated_at)
SELECT concat('rs-', toString(number)), ['news.example.com', 'shop.example.com'][number % 2 + 1],
    ['gmail.com', 'yahoo.com', 'outlook.com', 'icloud.com', 'gmx.de'][intDiv(number, 2) % 5 + 1], number, number, 0, 0, 0,
    ['healthy', 'healthy', 'warning'][number % 3 + 1], now64(3) - toIntervalSecond(number)
FROM numbers({n})""",
}


def _event_rows(count: int, prefix: str = "bench") -> list[dict]:
    start = datetime.now(timezone.utc) - timedelta(days=1)
    return [
        {
            "event_id": f"{prefix}-{n}", "type": ("page.viewed", "cart.updated", "order.placed")[n % 3],
            "subscriber_id": f"sub-{n % 50000}", "occurred_at": start + timedelta(milliseconds=n),
            "received_at": start + timedelta(milliseconds=n), "source": "api", "properties": '{"n":1}',
            "context": "{}", "has_email": 0,
        }
        for n in range(count)
    ]


def bench_inserts(analytics: Analytics, batch: int) -> dict:
    rows = _event_rows(INSERT_ROWS)
    batches = [rows[i : i + batch] for i in range(0, len(rows), batch)]
    engine = analytics._open()  # the same client the sink writes with: the baseline is the raw insert under it
    columns = column_names("events")

    def raw(chunk: list[dict]) -> None:
        with engine.write_lock:
            engine.writer.insert(f"{DATABASE}.events", [[row[c] for c in columns] for row in chunk], column_names=columns)

    def reset() -> None:
        analytics.query(f"TRUNCATE TABLE {DATABASE}.events")
        analytics.query(f"TRUNCATE TABLE {DATABASE}.daily_events")

    timings: dict[str, list[float]] = {"raw": [], "insert_rows": [], "replay": []}
    for _round in range(2):  # alternate so neither side always runs on a warmer engine
        reset()
        for chunk in batches:
            started = time.perf_counter()
            raw(chunk)
            timings["raw"].append(len(chunk) / (time.perf_counter() - started))
        reset()
        for chunk in batches:
            started = time.perf_counter()
            analytics.insert_rows("events", chunk)
            timings["insert_rows"].append(len(chunk) / (time.perf_counter() - started))
        for chunk in batches:
            started = time.perf_counter()
            assert analytics.insert_rows("events", chunk) == 0
            timings["replay"].append(len(chunk) / (time.perf_counter() - started))
    assert analytics.count("events") == INSERT_ROWS
    reset()
    return {name: {"median_rows_per_s": median(values), "p5_rows_per_s": percentile(values, 5)} for name, values in timings.items()}


def _timed(analytics: Analytics, sql: str, runs: int) -> list[float]:
    analytics.query(sql, readonly=True)  # warm-up
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        analytics.query(sql, readonly=True)
        out.append(time.perf_counter() - started)
    return out


def bench_queries(analytics: Analytics) -> dict:
    sizes = {"events": EVENTS, "send_intents": EVENTS // 10, "deliveries": EVENTS // 5,
             "journey_decisions": EVENTS // 5, "reputation_snapshots": max(EVENTS // 200, 100)}
    load = {}
    for table, n in sizes.items():
        started = time.perf_counter()
        analytics.query(GENERATE[table].replace("{n}", str(n)))
        load[table] = {"rows": n, "seconds": round(time.perf_counter() - started, 2)}
    assert analytics.query("SELECT sum(events) FROM tidings.daily_events").rows[0][0] == EVENTS
    at_scale = _inserts_into_full_table(analytics)
    results = {}
    for name in DASHBOARD_QUERIES:
        rollup = _timed(analytics, render(name), QUERY_RUNS)
        entry = {"p50_ms": 1000 * median(rollup), "p95_ms": 1000 * percentile(rollup, 95)}
        if name in RAW_EQUIVALENTS:
            raw = _timed(analytics, RAW_EQUIVALENTS[name], max(3, QUERY_RUNS // 3))
            entry["raw_p50_ms"] = 1000 * median(raw)
            entry["raw_over_rollup"] = median(raw) / median(rollup)
            assert analytics.query(RAW_EQUIVALENTS[name], readonly=True).rows == analytics.query(render(name), readonly=True).rows
        results[name] = entry
    return {"load": load, "queries": results, "inserts_into_full_table": at_scale}


def _inserts_into_full_table(analytics: Analytics, rows: int = 50000, batch: int = 5000) -> dict:
    """Sink-sized batches into the 10M-row events table: the id lookup now has history to search."""
    engine = analytics._open()
    columns = column_names("events")
    timings: dict[str, list[float]] = {"raw": [], "insert_rows": []}
    for name, prefix in (("raw", "full-raw"), ("insert_rows", "full-sink")):
        data = _event_rows(rows, prefix)
        for start in range(0, rows, batch):
            chunk = data[start : start + batch]
            started = time.perf_counter()
            if name == "raw":
                with engine.write_lock:
                    engine.writer.insert(f"{DATABASE}.events", [[r[c] for c in columns] for r in chunk], column_names=columns)
            else:
                analytics.insert_rows("events", chunk)
            timings[name].append(len(chunk) / (time.perf_counter() - started))
    return {name: {"median_rows_per_s": median(values)} for name, values in timings.items()}


def main() -> None:
    batch = Settings().analytics_batch_rows
    directory = Path(tempfile.mkdtemp(prefix="tidings-bench-analytics-"))
    try:
        with Analytics(f"chdb://{directory}") as analytics:
            analytics.migrate()
            inserts = bench_inserts(analytics, batch)
            print(f"-- inserts: {INSERT_ROWS} event rows in batches of {batch} (median of per-batch rows/s)")
            for name, figures in inserts.items():
                print(f"  {name:<12} {figures['median_rows_per_s']:>12,.0f} rows/s   (p5 {figures['p5_rows_per_s']:,.0f})")
            ratio = inserts["insert_rows"]["median_rows_per_s"] / inserts["raw"]["median_rows_per_s"]
            print(f"  insert_rows / raw clickhouse-connect insert: {ratio:.2f}")
            queries = bench_queries(analytics)
            print(f"-- dashboard queries over {EVENTS:,} events ({QUERY_RUNS} runs each)")
            for table, figures in queries["load"].items():
                print(f"  generated {figures['rows']:>11,} {table:<21} in {figures['seconds']:>6.1f} s")
            full = queries["inserts_into_full_table"]
            print(f"  into the {EVENTS:,}-row table, batches of 5000: raw {full['raw']['median_rows_per_s']:,.0f} rows/s, "
                  f"insert_rows {full['insert_rows']['median_rows_per_s']:,.0f} rows/s "
                  f"(ratio {full['insert_rows']['median_rows_per_s'] / full['raw']['median_rows_per_s']:.2f})")
            for name, figures in queries["queries"].items():
                raw = (f"   raw tables p50 {figures['raw_p50_ms']:8.1f} ms  raw/rollup {figures['raw_over_rollup']:6.1f}x"
                       if "raw_p50_ms" in figures else "   (no rollup: small table)")
                print(f"  {name:<28} p50 {figures['p50_ms']:7.1f} ms  p95 {figures['p95_ms']:7.1f} ms{raw}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"analytics-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps({"batch_rows": batch, "insert_rows": INSERT_ROWS, "events": EVENTS,
                               "inserts": inserts, "insert_ratio": ratio, **queries}, indent=2))
    print(f"  results: {out}")


if __name__ == "__main__":
    main()
