"""`tidings analytics ...`: named queries listed, rendered, and bad parameters refused by name."""

from __future__ import annotations

from typer.testing import CliRunner

from connectors.analytics_queries import QUERIES, render
from infra.cli import app

runner = CliRunner()


def test_queries_lists_every_named_query():
    result = runner.invoke(app, ["analytics", "queries"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for name in QUERIES:
        assert name in result.output


def test_run_with_sql_prints_the_rendered_query():
    result = runner.invoke(app, ["analytics", "run", "holdout_lift", "--sql", "-p", "journey_id=cart", "-p", "window_days=3"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == render("holdout_lift", journey_id="cart", window_days=3).strip()


def test_run_refuses_a_malformed_or_unknown_parameter():
    malformed = runner.invoke(app, ["analytics", "run", "journey_funnel", "-p", "days"])
    assert malformed.exit_code == 2 and "name=value" in malformed.output
    unknown = runner.invoke(app, ["analytics", "run", "journey_funnel", "-p", "limit=3"])
    assert unknown.exit_code == 2 and "no parameter limit" in unknown.output
    no_query = runner.invoke(app, ["analytics", "run", "nope", "--sql"])
    assert no_query.exit_code == 2 and "unknown query 'nope'" in no_query.output
