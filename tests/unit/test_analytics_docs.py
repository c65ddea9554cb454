"""docs/analytics.md and the code stay in step: every named query's SQL, every table and column."""

from __future__ import annotations

import re
from pathlib import Path

from connectors.analytics_queries import DASHBOARD_QUERIES, QUERIES
from connectors.analytics_schema import DERIVED, MIGRATIONS, TABLES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "analytics.md").read_text()


def _documented_columns(name: str) -> list[str]:
    section = DOC.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)


def test_every_named_query_appears_verbatim_in_the_docs():
    for name, query in QUERIES.items():
        assert f"```sql\n{query.sql}\n```" in DOC, f"docs/analytics.md lacks the current SQL of {name}"
        assert f"(`{name}`)" in DOC, name


def test_the_docs_hold_at_least_ten_worked_queries_and_name_the_dashboard_ones():
    assert len(re.findall(r"^### \d+\. ", DOC, flags=re.MULTILINE)) == len(QUERIES) >= 10
    for name in DASHBOARD_QUERIES:
        assert f"| `{name}` |" in DOC, name


def test_every_table_and_column_is_documented_in_order():
    for name, spec in TABLES.items():
        assert _documented_columns(name) == spec.column_names, name
    for name, columns in DERIVED.items():
        assert _documented_columns(name) == [column for column, _ in columns], name


def test_every_messages_view_column_is_documented_in_order():
    view = next(statement for statement in MIGRATIONS[1].statements if "CREATE VIEW" in statement)
    columns = re.findall(r"AS (\w+),?\n", view.split("FROM tidings.send_intents")[0])
    assert columns and columns == _view_columns()


def _view_columns() -> list[str]:
    section = DOC.split("### `messages` (view)", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)


def test_the_documented_ttls_match_the_migration():
    ddl = "\n".join(MIGRATIONS[1].statements)
    assert "**400 days**" in DOC and "INTERVAL 400 DAY" in ddl
    assert "**90 days**" in DOC and "INTERVAL 90 DAY" in ddl
