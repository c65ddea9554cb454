"""`tidings feedback read-mailbox`: a Maildir of bounces and complaints onto the real delivery topic, once."""

from __future__ import annotations

import mailbox
from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from connectors.feedback.keys import tracking_signer
from connectors.feedback.report import ref_header
from domain.events import DeliveryEvent
from infra.topics import Topic
from tests.kafka_helpers import read_topic
from tests.unit.test_feedback_arf import arf
from tests.unit.test_feedback_dsn import GMAIL, REF

pytestmark = pytest.mark.integration


def test_read_mailbox_writes_each_report_once_and_refuses_forged_references(kafka_settings, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from infra import settings as settings_module
    from infra.cli import app

    # The CLI configures logging onto the runner's stderr, which closes after each invoke: keep ours.
    monkeypatch.setattr("infra.logging.configure_logging", lambda *args, **kwargs: None)
    for name, value in kafka_settings.model_dump().items():
        monkeypatch.setenv(f"TIDINGS_{name.upper()}", str(value))
    settings_module.get_settings.cache_clear()
    ours = ref_header(tracking_signer(kafka_settings), "intent-1", "sub-1", datetime.now(timezone.utc)).decode().strip()
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(GMAIL.replace(REF.encode(), ours.encode()))  # a hard bounce for our message
    box.add(arf().replace(b"X-Tidings-Ref: v1.", ours.encode() + b"\r\nX-Old: v1.", 1))  # a complaint
    box.add(GMAIL)  # signed with another key: not ours, not recorded

    try:
        runner = CliRunner()
        first = runner.invoke(app, ["feedback", "read-mailbox", str(tmp_path / "bounces")])
        assert first.exit_code == 0, first.output
        assert "3 messages, 2 events" in first.output and "1 without a valid X-Tidings-Ref" in first.output
        again = runner.invoke(app, ["feedback", "read-mailbox", str(tmp_path / "bounces")])
        assert "0 messages, 0 events" in again.output
        missing = runner.invoke(app, ["feedback", "read-mailbox", str(tmp_path / "nope")])
        assert missing.exit_code == 2
    finally:
        settings_module.get_settings.cache_clear()

    events = [DeliveryEvent.from_bytes(v) for _, v in read_topic(kafka_settings, Topic.DELIVERY, timeout=5)]
    assert sorted((e.kind, e.bounce_type, e.intent_id) for e in events) == [
        ("bounced", "hard", "intent-1"), ("complained", "", "intent-1")]
