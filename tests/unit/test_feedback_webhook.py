"""The generic HMAC webhook: signature, timestamp tolerance, replay protection and body checks."""

from __future__ import annotations

import json

import pytest

from connectors.feedback.webhook import (
    SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookRefused, WebhookVerifier, parse_events, signature_for,
)
from connectors.feedback.report import FeedbackError

SECRET = "s3cret-s3cret-s3cret"
NOW = 1_795_000_000.0
BODY = json.dumps({"events": [{"id": "esp-1", "type": "bounced", "bounce_type": "hard", "intent_id": "i-1",
                               "subscriber_id": "s-1", "smtp_code": 550, "status": "5.1.1"}]}).encode()


def headers(body: bytes = BODY, ts: float = NOW, secret: str = SECRET) -> dict[str, str]:
    stamp = str(int(ts))
    return {TIMESTAMP_HEADER.lower(): stamp, SIGNATURE_HEADER.lower(): signature_for(secret, stamp, body)}


def test_signed_fresh_request_passes_once_and_its_replay_is_refused() -> None:
    verifier = WebhookVerifier(SECRET, 300)
    verifier.verify(headers(), BODY, now=NOW)
    with pytest.raises(WebhookRefused, match="replayed"):
        verifier.verify(headers(), BODY, now=NOW + 1)


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda: ({}, BODY), "headers are required"),
        (lambda: (headers(secret="wrong-secret-wrong"), BODY), "bad signature"),
        (lambda: (headers(), BODY + b" "), "bad signature"),
        (lambda: (headers(ts=NOW - 301), BODY), "tolerance"),
        (lambda: (headers(ts=NOW + 301), BODY), "tolerance"),
        (lambda: ({TIMESTAMP_HEADER.lower(): "yesterday", SIGNATURE_HEADER.lower(): "v1=00"}, BODY), "Unix seconds"),
    ],
    ids=["unsigned", "wrong-secret", "tampered-body", "stale", "future", "bad-timestamp"],
)
def test_bad_requests_are_refused(make, problem: str) -> None:  # type: ignore[no-untyped-def]
    hdrs, body = make()
    with pytest.raises(WebhookRefused, match=problem):
        WebhookVerifier(SECRET, 300).verify(hdrs, body, now=NOW)


def test_no_secret_means_disabled() -> None:
    with pytest.raises(WebhookRefused, match="disabled"):
        WebhookVerifier("", 300).verify(headers(), BODY, now=NOW)


def test_events_are_parsed_into_reports_with_their_ids() -> None:
    [(report, intent_id, subscriber_id)] = parse_events(BODY)
    assert (report.kind, report.source_id, report.bounce_type, report.code, intent_id, subscriber_id) == (
        "bounced", "esp-1", "hard", 550, "i-1", "s-1")


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"nope", "not JSON"),
        (b'{"events": []}', "1 to 500"),
        (b'{"events": [{"id": "x", "type": "exploded", "intent_id": "i", "subscriber_id": "s"}]}', "events\\[0\\].type"),
        (b'{"events": [{"id": "x", "type": "opened"}]}', "intent_id and subscriber_id, or ref"),
        (b'{"events": [{"id": "x", "type": "bounced", "intent_id": "i", "subscriber_id": "s"}]}', "bounce_type"),
        (b'{"events": [{"id": "bad id\\n", "type": "opened", "intent_id": "i", "subscriber_id": "s"}]}', "events\\[0\\].id"),
    ],
)
def test_bad_bodies_name_the_field(body: bytes, problem: str) -> None:
    with pytest.raises(FeedbackError, match=problem):
        parse_events(body)
