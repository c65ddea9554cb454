"""Bounce messages: RFC 3464 DSNs and the non-standard text bounces of Exim, Postfix and Gmail."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from connectors.feedback.dsn import parse_dsn
from connectors.feedback.mailbox import mark_seen, parse_message, unread
from connectors.feedback.report import FeedbackError, ref_header, to_delivery
from domain.tracking import Signer

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
SIGNER = Signer({"k1": b"k" * 32}, "k1")
REF = ref_header(SIGNER, "intent-7", "sub-7", NOW).decode().strip()
ORIGINAL = (f"{REF}\r\nMessage-ID: <abc@news.tidings.test>\r\nFrom: hello@news.tidings.test\r\n"
            "To: gone@example.com\r\nSubject: Welcome\r\n")


def rfc3464(action: str = "failed", status: str = "5.1.1", diagnostic: str = "smtp; 550 5.1.1 <gone@example.com>: User unknown") -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.com\r\nTo: bounces@news.tidings.test\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-1@mx.example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\nArrival-Date: Mon, 2 Nov 2026 09:00:00 +0000\r\n\r\n"
        f"Final-Recipient: rfc822; gone@example.com\r\nOriginal-Recipient: rfc822;gone@example.com\r\nAction: {action}\r\n"
        f"Status: {status}\r\nRemote-MTA: dns; mx2.example.com\r\nDiagnostic-Code: {diagnostic}\r\n\r\n"
        "Final-Recipient: rfc822; fine@example.com\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{ORIGINAL}\r\n--B--\r\n"
    ).encode()


EXIM = (
    "From: Mail Delivery System <Mailer-Daemon@mx.example.org>\r\nTo: bounces@news.tidings.test\r\n"
    "Subject: Mail delivery failed: returning message to sender\r\nMessage-ID: <exim-1@mx.example.org>\r\n\r\n"
    "This message was created automatically by mail delivery software.\r\n\r\n"
    "A message that you sent could not be delivered to one or more of its\r\nrecipients. This is a permanent error. "
    "The following address(es) failed:\r\n\r\n  gone@example.org\r\n    host mx.example.org [192.0.2.1]\r\n"
    "    SMTP error from remote mail server after RCPT TO:<gone@example.org>:\r\n    550 5.1.1 No such user here\r\n\r\n"
    f"------ This is a copy of the message, including all the headers. ------\r\n\r\nReturn-path: <bounces@news.tidings.test>\r\n{ORIGINAL}\r\nHello\r\n"
).encode()

POSTFIX_TEXT = (
    "From: MAILER-DAEMON (Mail Delivery System)\r\nTo: bounces@news.tidings.test\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\n"
    "This is the mail system at host mx.example.net.\r\n\r\nI'm sorry to have to inform you that your message could not\r\n"
    "be delivered to one or more recipients. It's attached below.\r\n\r\n"
    "<full@example.net>: host mx.example.net[192.0.2.2] said: 552 5.2.2 <full@example.net>: Mailbox full (in reply to RCPT TO command)\r\n\r\n"
    f"--- Below this line is a copy of the message.\r\n\r\n{ORIGINAL}"
).encode()

GMAIL = (
    "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\nTo: bounces@news.tidings.test\r\n"
    "Subject: Delivery Status Notification (Failure)\r\nMessage-ID: <gm-1@mail.gmail.com>\r\n\r\n"
    "** Address not found **\r\n\r\nYour message wasn't delivered to nobody@gmail.com because the address couldn't be found, "
    "or is unable to receive mail.\r\n\r\nThe response from the remote server was:\r\n"
    "550 5.1.1 The email account that you tried to reach does not exist.\r\n\r\n"
    f"----- Original message -----\r\n\r\n{ORIGINAL}"
).encode()

GMAIL_DELAYED = (
    "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\nTo: bounces@news.tidings.test\r\n"
    "Subject: Delivery Status Notification (Delay)\r\n\r\n"
    "Delivery to the following recipient has been delayed:\r\n\r\n     slow@example.com\r\n\r\n"
    "Message will be retried for 2 more day(s)\r\n\r\nThe response was: 451 4.4.1 Temporary failure\r\n\r\n"
    f"----- Original message -----\r\n\r\n{ORIGINAL}"
).encode()


def test_rfc3464_failed_recipient_is_a_hard_bounce_with_the_original_reference() -> None:
    [report] = parse_dsn(rfc3464())
    assert (report.kind, report.recipient, report.code, report.status, report.bounce_type) == (
        "bounced", "gone@example.com", 550, "5.1.1", "hard")
    assert report.message_id == "<abc@news.tidings.test>"
    event = to_delivery(report, SIGNER, NOW)
    assert (event.intent_id, event.subscriber_id, event.kind, event.bounce_type) == ("intent-7", "sub-7", "bounced", "hard")
    assert event.delivery_id == to_delivery(parse_dsn(rfc3464())[0], SIGNER, NOW).delivery_id  # read twice: one id


def test_rfc3464_policy_rejection_is_soft_and_delayed_is_a_deferral() -> None:
    [policy] = parse_dsn(rfc3464(status="5.7.1", diagnostic="smtp; 554 5.7.1 rejected as spam"))
    assert (policy.kind, policy.bounce_type, policy.code) == ("bounced", "soft", 554)
    [delayed] = parse_dsn(rfc3464(action="delayed", status="4.4.7", diagnostic="smtp; 451 try later"))
    assert (delayed.kind, delayed.bounce_type) == ("deferred", "")


@pytest.mark.parametrize(
    "raw, recipient, kind, code, status, bounce_type",
    [
        (EXIM, "gone@example.org", "bounced", 550, "5.1.1", "hard"),
        (POSTFIX_TEXT, "full@example.net", "bounced", 552, "5.2.2", "soft"),
        (GMAIL, "nobody@gmail.com", "bounced", 550, "5.1.1", "hard"),
        (GMAIL_DELAYED, "slow@example.com", "deferred", 451, "4.4.1", ""),
    ],
    ids=["exim", "postfix-text", "gmail", "gmail-delayed"],
)
def test_non_standard_bounces(raw: bytes, recipient: str, kind: str, code: int, status: str, bounce_type: str) -> None:
    [report] = parse_dsn(raw)
    assert (report.recipient, report.kind, report.code, report.status, report.bounce_type) == (
        recipient, kind, code, status, bounce_type)
    assert to_delivery(report, SIGNER, NOW).intent_id == "intent-7"


def test_ordinary_mail_and_auto_replies_are_not_bounces() -> None:
    assert parse_dsn(b"From: ada@example.com\r\nSubject: Re: Welcome\r\n\r\nThanks! Write to bob@example.com\r\n") == []
    assert parse_dsn(b"From: ada@example.com\r\nSubject: Out of office\r\n\r\nI am away until Monday.\r\n") == []


def test_a_bounce_without_or_with_a_forged_reference_is_not_turned_into_an_event() -> None:
    stripped = EXIM.replace(REF.encode(), b"X-Other: 1")
    with pytest.raises(FeedbackError, match="no X-Tidings-Ref"):
        to_delivery(parse_dsn(stripped)[0], SIGNER, NOW)
    forged = Signer({"k1": b"f" * 32}, "k1")
    forged_ref = ref_header(forged, "intent-9", "victim", NOW).decode().strip()
    with pytest.raises(FeedbackError, match="refused"):
        to_delivery(parse_dsn(EXIM.replace(REF.encode(), forged_ref.encode()))[0], SIGNER, NOW)


def test_oversized_message_is_refused() -> None:
    with pytest.raises(FeedbackError, match="more than"):
        parse_dsn(b"x" * (5 * 1024 * 1024 + 1))


def test_maildir_reader_reads_new_mail_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import mailbox

    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    keys = [box.add(rfc3464()), box.add(GMAIL), box.add(b"Subject: hello\r\n\r\nnot a bounce\r\n")]
    items = list(unread(tmp_path / "bounces"))
    assert sorted(i.key for i in items) == sorted(keys)
    assert sum(len(i.reports) for i in items) == 2
    mark_seen(tmp_path / "bounces", [i.key for i in items])
    assert list(unread(tmp_path / "bounces")) == []
    assert parse_message(GMAIL)[0].kind == "bounced"
    with pytest.raises(FeedbackError, match="not a Maildir"):
        list(unread(tmp_path))
