"""`tidings analytics migrate` against a real embedded chDB directory."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from connectors.analytics_schema import MIGRATIONS
from infra.cli import app
from infra.settings import get_settings

pytestmark = pytest.mark.integration


def test_migrate_applies_each_migration_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TIDINGS_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("TIDINGS_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        first = runner.invoke(app, ["analytics", "migrate"])
        assert first.exit_code == 0, first.output
        assert [line.removeprefix("applied ") for line in first.output.split("\n") if line.startswith("applied")] == [
            migration.label for migration in MIGRATIONS
        ]
        again = runner.invoke(app, ["analytics", "migrate"])
        assert again.exit_code == 0 and "schema is up to date" in again.output
    finally:
        get_settings.cache_clear()
