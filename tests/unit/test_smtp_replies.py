from __future__ import annotations

import pytest

from domain.smtp_replies import Accepted, Ambiguous, Bounced, Deferred, classify_reply, enhanced_status


def test_250_is_accepted() -> None:
    outcome = classify_reply(250, "2.0.0 Ok: queued as 4XyZ")
    assert outcome == Accepted(250, "2.0.0 Ok: queued as 4XyZ")
    assert outcome.kind == "accepted"


@pytest.mark.parametrize(
    "code, message, enhanced",
    [
        (421, "4.3.2 Service shutting down, closing channel", "4.3.2"),
        (450, "Requested mail action not taken: mailbox unavailable", ""),
        (451, "4.7.1 Greylisted, please try again later", "4.7.1"),
        (452, "4.5.3 Too many recipients", "4.5.3"),
    ],
)
def test_4xx_is_deferred(code: int, message: str, enhanced: str) -> None:
    outcome = classify_reply(code, message)
    assert outcome == Deferred(code, enhanced, message)
    assert outcome.kind == "deferred"


def test_550_5_1_1_is_a_hard_bounce() -> None:
    outcome = classify_reply(550, "5.1.1 <nobody@example.com>: Recipient address rejected: User unknown")
    assert isinstance(outcome, Bounced)
    assert (outcome.code, outcome.enhanced, outcome.hard, outcome.bounce_type) == (550, "5.1.1", True, "hard")
    assert "bad destination address" in outcome.reason


def test_552_without_enhanced_code_is_a_soft_bounce() -> None:
    outcome = classify_reply(552, "Requested mail action aborted: exceeded storage allocation")
    assert isinstance(outcome, Bounced)
    assert (outcome.code, outcome.enhanced, outcome.hard) == (552, "", False)
    assert "storage" in outcome.reason


def test_mailbox_full_is_a_soft_bounce_per_rfc3463() -> None:
    outcome = classify_reply(552, "5.2.2 Mailbox full")
    assert isinstance(outcome, Bounced)
    assert (outcome.enhanced, outcome.hard) == ("5.2.2", False)
    assert "RFC 3463" in outcome.reason


def test_554_5_7_1_policy_block_is_a_soft_bounce() -> None:
    outcome = classify_reply(554, "5.7.1 Service unavailable; client host [192.0.2.1] blocked using zen.spamhaus.org")
    assert isinstance(outcome, Bounced)
    assert (outcome.code, outcome.enhanced, outcome.hard) == (554, "5.7.1", False)
    assert "policy" in outcome.reason


@pytest.mark.parametrize(
    "code, message, hard",
    [
        (550, "Mailbox unavailable", True),
        (551, "User not local", True),
        (553, "Mailbox name not allowed", True),
        (556, "Domain does not accept mail", True),
        (554, "Transaction failed", False),
        (500, "Syntax error", False),
        (550, "5.1.2 Bad destination system address", True),
        (550, "5.1.7 Bad sender's mailbox address syntax", False),
        (550, "5.2.1 Mailbox disabled", True),
        (550, "5.4.4 Unable to route", True),
        (554, "5.6.0 Content rejected", False),
        (552, "5.3.4 Message too big for system", False),
    ],
)
def test_hard_or_soft_follows_the_documented_rules(code: int, message: str, hard: bool) -> None:
    outcome = classify_reply(code, message)
    assert isinstance(outcome, Bounced)
    assert outcome.hard is hard
    assert outcome.reason


def test_enhanced_code_must_match_the_reply_class() -> None:
    assert enhanced_status(550, "2.0.0 weird") == ""
    assert enhanced_status(550, "rejected 5.1.1 user unknown") == "5.1.1"
    assert enhanced_status(550, "from 5.1.1.1 blocked") == ""
    assert enhanced_status(451, "line one\n4.7.1 try later") == "4.7.1"


def test_unexpected_final_reply_is_ambiguous() -> None:
    outcome = classify_reply(354, "go ahead")
    assert isinstance(outcome, Ambiguous)
    assert "354" in outcome.detail


def test_outcomes_are_frozen_values() -> None:
    outcome = classify_reply(250, "ok")
    with pytest.raises(AttributeError):
        outcome.code = 500  # type: ignore[misc]
    assert Ambiguous("lost after DATA").kind == "ambiguous"
