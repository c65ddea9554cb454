"""SenderCore without Kafka or SMTP: the gate, hostile inputs, and what a composed message carries."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from domain.events import DeliveryEvent, SendIntent
from domain.smtp_replies import Accepted
from domain.templates import compile_template, parse_template
from processors.sender import SenderCore

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)
TEMPLATE = """
id: hello
subject: "Hi {{ subscriber.first_name }}"
html: |
  <html><body><p>Hello {{ subscriber.first_name }}</p><a href="https://shop.test/x?a=1&amp;b=2">shop</a></body></html>
"""
HOSTILE = """
id: hostile
subject: "x"
html: "{{ ''.__class__.__mro__[1].__subclasses__() }}"
"""


@pytest.fixture(autouse=True)
def fresh_logger(monkeypatch):  # type: ignore[no-untyped-def]
    """Log to this test's stderr: a CLI test elsewhere may have bound structlog to a closed stream."""
    import structlog

    import processors.sender
    from infra.logging import configure_logging

    configure_logging("WARNING", "console")
    monkeypatch.setattr(processors.sender, "log", structlog.get_logger("processors.sender"))


class Harness:
    def __init__(self, settings, **overrides) -> None:  # type: ignore[no-untyped-def]
        self.sent: list[tuple[str, bytes]] = []
        self.events: list[DeliveryEvent] = []
        self.now = NOW
        templates = {t.id: t for t in (compile_template(parse_template(TEMPLATE, "hello.yaml")),
                                       compile_template(parse_template(HOSTILE, "hostile.yaml")))}

        async def emit(events: list[DeliveryEvent]) -> None:
            self.events.extend(events)

        async def flush() -> None:
            return None

        async def send(mail_from: str, to: str, message: bytes) -> Accepted:
            self.sent.append((to, message))
            return Accepted(250, "ok")

        self.core = SenderCore(
            settings=settings.model_copy(update=overrides), ledger=defaultdict(dict), retries=defaultdict(dict),
            caps=defaultdict(dict), templates=lambda: templates, emit_durably=emit, flush=flush, send=send,
            clock=lambda: self.now,
        )

    async def deliver(self, *intents: SendIntent) -> dict[str, DeliveryEvent]:
        await self.core.deliver(list(intents))
        return {e.intent_id: e for e in self.events}


def intent(n: int, *, to: str = "ada@example.com", template: str = "hello", first_name: str = "Ada",
           transactional: bool = False, tz: str = "UTC") -> SendIntent:
    return SendIntent(intent_id=f"i-{n}", subscriber_id=f"s-{n}", journey_id="welcome", journey_version=1, step_id="st",
                      template_id=template, to=to, trigger_event_id="e",
                      variables={"subscriber": {"first_name": first_name, "timezone": tz}}, created_at=NOW,
                      transactional=transactional)


async def test_a_message_carries_unsubscribe_headers_tracking_and_its_reference(settings) -> None:  # type: ignore[no-untyped-def]
    h = Harness(settings, public_url="https://t.example")
    events = await h.deliver(intent(1))
    assert events["i-1"].kind == "accepted"
    [(to, raw)] = h.sent
    head, body = raw.split(b"\r\n\r\n", 1)
    text = head.decode()
    assert "List-Unsubscribe: <https://t.example/u/" in text
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in text
    assert "X-Tidings-Ref: v1." in text and "DKIM-Signature" not in text  # DKIM is off without a key
    assert b'href=3D"https://shop.test' not in raw and b"https://t.example/t/c/" in raw and b"/t/o/" in raw


async def test_transactional_mail_has_no_unsubscribe_header(settings) -> None:  # type: ignore[no-untyped-def]
    h = Harness(settings)
    await h.deliver(intent(1, transactional=True))
    assert b"List-Unsubscribe" not in h.sent[0][1]


async def test_replayed_intent_is_sent_once(settings) -> None:  # type: ignore[no-untyped-def]
    h = Harness(settings)
    await h.deliver(intent(1), intent(1))
    await h.deliver(intent(1))
    assert len(h.sent) == 1


@pytest.mark.parametrize(
    "hostile, reason",
    [
        (intent(2, to="ada@example.com\r\nBcc: eve@evil.test"), "HeaderInjectionError"),
        (intent(3, to="not an address"), "InvalidAddressError"),
        (intent(5, template="hostile"), "TemplateRenderError"),
        (intent(6, template="missing"), "not live"),
    ],
    ids=["crlf-in-address", "bad-address", "template-injection", "unknown-template"],
)
async def test_hostile_inputs_are_skipped_with_a_reason_and_nothing_is_sent(settings, hostile: SendIntent, reason: str) -> None:  # type: ignore[no-untyped-def]
    import re

    h = Harness(settings)
    events = await h.deliver(hostile)
    event = events[hostile.intent_id]
    assert event.kind == "skipped" and re.search(reason, event.detail), event.detail
    assert h.sent == []
    assert h.core.ledger[hostile.subscriber_id.encode()][hostile.intent_id]["state"] == "skipped"


async def test_template_text_in_variables_is_not_evaluated(settings) -> None:  # type: ignore[no-untyped-def]
    h = Harness(settings)
    await h.deliver(intent(7, first_name="{{ 7 * 7 }}"))
    assert b"Hello 49" not in h.sent[0][1] and b"Hello {{ 7 * 7 }}" in h.sent[0][1]


async def test_crlf_in_a_subject_variable_cannot_add_a_header(settings) -> None:  # type: ignore[no-untyped-def]
    h = Harness(settings)
    events = await h.deliver(intent(13, first_name="Ada\r\nBcc: eve@evil.test"))
    assert events["i-13"].kind == "accepted"  # the subject is folded to one line by the renderer
    head = h.sent[0][1].split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc:") for line in head.split(b"\r\n"))


async def test_quiet_hours_hold_the_intent_in_the_retry_table_with_a_decision_event(settings) -> None:  # type: ignore[no-untyped-def]
    h = Harness(settings, quiet_hours="11:00-13:00")
    events = await h.deliver(intent(8))
    held = events["i-8"]
    assert held.kind == "deferred" and held.smtp_code is None and held.detail.startswith("policy: quiet hours")
    assert h.sent == []
    due = h.core.retries[b"s-8"]["i-8"]["due"]
    assert datetime.fromisoformat(due) == NOW + timedelta(hours=1)
    assert "i-8" not in h.core.ledger[b"s-8"]  # nothing was sent, so nothing in the ledger


async def test_frequency_cap_skips_with_its_reason(settings) -> None:  # type: ignore[no-untyped-def]
    h = Harness(settings, frequency_cap="1/1d")
    same_subscriber = [i.model_copy(update={"subscriber_id": "s-x"}) for i in (intent(9), intent(10))]
    await h.deliver(same_subscriber[0])
    h.now = NOW + timedelta(minutes=5)
    events = await h.deliver(same_subscriber[1])
    assert events["i-10"].kind == "skipped" and "frequency cap 1/1d" in events["i-10"].detail
    assert len(h.sent) == 1


async def test_consent_verdict_is_obeyed_when_the_consent_stage_is_there(settings) -> None:  # type: ignore[no-untyped-def]
    h = Harness(settings)
    h.core.resources["consent_states"] = defaultdict(dict, {b"s-11": {"status": "unsubscribed"}})
    events = await h.deliver(intent(11), intent(12))
    assert events["i-11"].kind == "skipped" and "consent: unsubscribed" in events["i-11"].detail
    assert events["i-12"].kind == "accepted"


def test_bad_policy_settings_stop_the_sender_at_start(settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="quiet_hours"):
        Harness(settings, quiet_hours="late")


async def test_dkim_is_signed_off_the_event_loop_and_the_signed_bytes_are_sent(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = tmp_path / "dkim.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    h = Harness(settings, dkim_selector="s1", dkim_key_path=str(path))
    await h.deliver(intent(20), intent(21))
    assert [raw.startswith(b"DKIM-Signature: v=1; a=rsa-sha256") for _, raw in h.sent] == [True, True]
