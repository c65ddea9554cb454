"""Against the real broker: every worker's follower builds the controls from the compacted reputation
topic (newest snapshot wins, bad records are skipped), and operator commands reach their topic."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka import Producer

from connectors.reputation_topic import ReputationFollower, publish_command, read_snapshots
from domain.events import ReputationSnapshot
from domain.reputation import ReputationCommand
from infra.topics import Topic
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)


def produce(settings, records: list[tuple[str, bytes]]) -> None:  # type: ignore[no-untyped-def]
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for key, value in records:
        producer.produce(Topic.REPUTATION.name(settings), key=key.encode(), value=value)
    assert producer.flush(10) == 0


def snap(provider: str, state: str, at: datetime) -> ReputationSnapshot:
    return ReputationSnapshot(sending_domain="news.example", provider=provider, state=state, updated_at=at,  # type: ignore[arg-type]
                              control={"state": state, "max_per_minute": 60 if state == "throttled" else None})


def test_follower_builds_controls_newest_first_and_skips_bad_records(kafka_settings) -> None:  # type: ignore[no-untyped-def]
    newer, older = snap("gmail", "paused", T0 + timedelta(seconds=5)), snap("gmail", "throttled", T0)
    produce(kafka_settings, [
        (newer.key, newer.to_bytes()),
        ("bad", b"{not json"),
        (older.key, older.to_bytes()),  # arrives later but is older: ignored
        (snap("outlook", "throttled", T0).key, snap("outlook", "throttled", T0).to_bytes()),
    ])
    controls: dict = {}
    follower = ReputationFollower(kafka_settings, controls)
    try:
        follower.catch_up(timeout=20)
    finally:
        follower.stop()
    assert controls[("news.example", "gmail")]["state"] == "paused"
    assert controls[("news.example", "outlook")] == {"state": "throttled", "max_per_minute": 60}
    assert set(read_snapshots(kafka_settings)) == {("news.example", "gmail"), ("news.example", "outlook")}


def test_publish_command_reaches_the_commands_topic(kafka_settings) -> None:  # type: ignore[no-untyped-def]
    command = ReputationCommand(command_id="c-1", action="warmup", sending_domain="news.example", plan=[50, 100],
                                issued_at=T0)
    publish_command(kafka_settings, command)
    records = read_topic(kafka_settings, Topic.REPUTATION_COMMANDS, expect=1, timeout=20)
    assert records == [(b"warmup:news.example|all", command.to_bytes())]


def test_cli_shows_the_table_and_publishes_operator_commands(kafka_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    import infra.cli_reputation as cli_reputation
    from infra.cli import app

    monkeypatch.setattr(cli_reputation, "_settings", lambda: kafka_settings)
    runner = CliRunner()
    empty = runner.invoke(app, ["reputation"])
    assert empty.exit_code == 0 and "no reputation snapshots yet" in empty.output
    paused = snap("gmail", "paused", T0)
    produce(kafka_settings, [(paused.key, paused.to_bytes())])
    shown = runner.invoke(app, ["reputation"], terminal_width=250)
    assert shown.exit_code == 0 and "news.example" in shown.output and "paused" in shown.output
    resumed = runner.invoke(app, ["reputation", "resume", "News.Example", "--provider", "gmail"])
    warmup = runner.invoke(app, ["reputation", "warmup", "news.example", "--plan", "50*2,100"])
    assert resumed.exit_code == 0 and warmup.exit_code == 0, resumed.output + warmup.output
    commands = [ReputationCommand.from_bytes(v) for _, v in read_topic(kafka_settings, Topic.REPUTATION_COMMANDS,
                                                                        expect=2, timeout=20)]
    assert [(c.action, c.sending_domain, c.provider, c.plan) for c in commands] == [
        ("resume", "news.example", "gmail", []), ("warmup", "news.example", "all", [50, 50, 100])]
