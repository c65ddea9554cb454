"""Rendering the named queries: parameters become literals, bad values are refused by name."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from connectors.analytics_queries import DASHBOARD_QUERIES, PARAMETER, QUERIES, QueryParameterError, render
from connectors.clickhouse import read_only_statement


def test_every_query_renders_with_its_defaults_to_one_read_statement():
    for name, query in QUERIES.items():
        sql = render(name)
        assert not PARAMETER.search(sql), name
        assert read_only_statement(sql) == sql.strip(), name
        declared = {param.name for param in query.params}
        used = {match.group(1) for match in PARAMETER.finditer(query.sql)}
        assert used == declared, f"{name}: declares {declared}, uses {used}"


def test_dashboard_queries_read_rollups_or_small_tables_only():
    for name in DASHBOARD_QUERIES:
        sql = QUERIES[name].sql
        assert "tidings.messages" not in sql and "tidings.events" not in sql, name


def test_values_become_literals():
    assert "today() - 7" in render("journey_funnel", days=7)
    assert "today() - 7" in render("journey_funnel", days="7")
    assert "journey_id = 'cart'" in render("holdout_lift", journey_id="cart")
    assert "= 'it\\'s'" in render("why_received", subscriber_id="it's")


def test_times_become_utc_datetime64_literals():
    paris = timezone(timedelta(hours=1))
    sql = render("segment_members_as_of", as_of=datetime(2026, 11, 3, 13, 30, 0, 250000, tzinfo=paris))
    assert "toDateTime64('2026-11-03 12:30:00.250', 3, 'UTC')" in sql
    assert "toDateTime64('2026-11-03 12:30:00.000', 3, 'UTC')" in render("segment_members_as_of", as_of="2026-11-03T12:30:00")
    assert "occurred_at <= now64(3)" in render("segment_members_as_of")


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("journey_funnel", {"days": -1}, "must not be negative"),
        ("journey_funnel", {"days": "seven"}, "must be a whole number"),
        ("journey_funnel", {"days": True}, "must be a whole number"),
        ("journey_funnel", {"limit": 3}, "has no parameter limit"),
        ("holdout_lift", {"journey_id": 3}, "must be a string"),
        ("segment_members_as_of", {"as_of": "yesterday"}, "must be an ISO 8601 time"),
        ("segment_members_as_of", {"as_of": 5}, "must be a datetime"),
    ],
)
def test_bad_values_are_refused_naming_query_and_parameter(name, values, message):
    with pytest.raises(QueryParameterError, match=message) as raised:
        render(name, **values)
    assert name in str(raised.value)


def test_unknown_query_names_the_known_ones():
    with pytest.raises(QueryParameterError, match="unknown query 'nope'; known queries: journey_funnel"):
        render("nope")


def test_at_least_ten_documented_queries():
    assert len(QUERIES) >= 10
    assert set(DASHBOARD_QUERIES) == {"journey_funnel", "sends_over_time", "deliverability_by_identity", "reputation_latest"}


def test_id_lookup_bounds_cover_the_batch_times_with_a_margin():
    from connectors.clickhouse import _time_bounds

    at = datetime(2026, 11, 3, 12, 0, 0, 500000, tzinfo=timezone.utc)
    bounds = _time_bounds([{"t": at}, {"t": at + timedelta(hours=1)}], "t")
    assert bounds == (" AND t BETWEEN toDateTime64('2026-11-03 11:55:00', 3, 'UTC')"
                      " AND toDateTime64('2026-11-03 13:05:00.999', 3, 'UTC')")
    assert _time_bounds([{"t": at}, {"t": "2026-11-03"}], "t") == ""  # not a datetime: no bound, full lookup
