"""Complaint reports in the Abuse Reporting Format (RFC 5965)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from connectors.feedback.arf import is_arf, parse_arf
from connectors.feedback.mailbox import parse_message
from connectors.feedback.report import FeedbackError, ref_header, to_delivery
from domain.tracking import Signer

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
SIGNER = Signer({"k1": b"k" * 32}, "k1")
REF = ref_header(SIGNER, "intent-3", "sub-3", NOW).decode().strip()


def arf(feedback_type: str = "abuse", with_fields: bool = True) -> bytes:
    fields = (f"Feedback-Type: {feedback_type}\r\nUser-Agent: SomeISP-FBL/1.0\r\nVersion: 1\r\n"
              "Original-Rcpt-To: <ada@example.com>\r\nArrival-Date: Mon, 02 Nov 2026 08:59:00 +0000\r\n") if with_fields else ""
    return (
        "From: fbl@isp.example\r\nTo: fbl@news.tidings.test\r\nSubject: FW: Welcome\r\nMessage-ID: <arf-1@isp.example>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary="A"\r\n\r\n'
        "--A\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        f"--A\r\nContent-Type: message/feedback-report\r\n\r\n{fields}\r\n"
        f"--A\r\nContent-Type: message/rfc822\r\n\r\n{REF}\r\nMessage-ID: <m-3@news.tidings.test>\r\nFrom: hello@news.tidings.test\r\n"
        "To: ada@example.com\r\nSubject: Welcome\r\n\r\nHi\r\n--A--\r\n"
    ).encode()


def test_abuse_report_is_a_complaint_about_the_referenced_message() -> None:
    assert is_arf(arf())
    [report] = parse_arf(arf())
    assert (report.kind, report.recipient, report.message_id) == ("complained", "ada@example.com", "<m-3@news.tidings.test>")
    assert report.occurred_at == datetime(2026, 11, 2, 8, 59, tzinfo=timezone.utc)
    event = to_delivery(report, SIGNER, NOW)
    assert (event.kind, event.intent_id, event.subscriber_id) == ("complained", "intent-3", "sub-3")
    assert parse_message(arf())[0].kind == "complained"  # the mailbox reader tells ARF from DSN


def test_not_spam_reports_are_not_complaints() -> None:
    assert parse_arf(arf("not-spam")) == []


@pytest.mark.parametrize(
    "raw, problem",
    [(b"Subject: hi\r\n\r\nhello", "not an ARF report"),
     (arf(with_fields=False), "Feedback-Type")],
)
def test_malformed_reports_are_refused_with_the_reason(raw: bytes, problem: str) -> None:
    with pytest.raises(FeedbackError, match=problem):
        parse_arf(raw)
