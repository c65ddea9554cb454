"""What every feedback source is turned into, and how a report becomes a delivery event.

A report names the message it is about by the `X-Tidings-Ref` header the sender puts in every
message: a signed token of (intent id, subscriber id). Bounces and complaints quote the original
headers, so the reference comes back with them; a forged or missing reference is not turned into
an event (it would let anyone suppress anyone). `delivery_id` is derived from the source's own id
for the report, so a webhook retried or a bounce read twice counts once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from domain.events import DeliveryEvent, stable_id
from domain.smtp_replies import Bounced, classify_reply
from domain.tracking import Signer, TokenError

REF_HEADER = "X-Tidings-Ref"
REF_DAYS = 400
FeedbackKind = Literal["bounced", "deferred", "complained", "unsubscribed", "opened", "clicked"]

_REF = re.compile(rf"^{REF_HEADER}:[ \t]*(v1\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)", re.I | re.M)
_MESSAGE_ID = re.compile(r"^Message-ID:[ \t]*(<[^>\r\n]{1,250}>)", re.I | re.M)


class FeedbackError(ValueError):
    """A feedback message or request cannot be read; the message names the problem."""


@dataclass(frozen=True)
class Feedback:
    kind: FeedbackKind
    source: str  # dsn, arf, ses, webhook
    source_id: str  # the source's id for this report: dedupes retries
    recipient: str = ""
    ref: str = ""
    message_id: str = ""
    code: int | None = None
    status: str = ""
    bounce_type: Literal["", "hard", "soft"] = ""
    detail: str = ""
    occurred_at: datetime | None = None


def ref_header(signer: Signer, intent_id: str, subscriber_id: str, now: datetime) -> bytes:
    token = signer.sign("ref", {"i": intent_id, "s": subscriber_id}, now + timedelta(days=REF_DAYS))
    return f"{REF_HEADER}: {token}\r\n".encode("ascii")


def find_ref(text: str) -> tuple[str, str]:
    """The reference token and the Message-ID quoted in (part of) a returned message."""
    ref = _REF.search(text)
    message_id = _MESSAGE_ID.search(text)
    return (ref.group(1) if ref else "", message_id.group(1) if message_id else "")


def bounce_verdict(code: int | None, status: str, diagnostic: str, permanent: bool) -> tuple[int, str, str]:
    """(code, enhanced status, bounce type) for a reported failure, classified like an SMTP reply."""
    basic = code or (int(status[0]) * 100 + 50 if status[:1] in ("4", "5") else (550 if permanent else 450))
    if permanent and basic < 500:
        basic = 550  # the reporting server gave up: final for this message
    outcome = classify_reply(basic, f"{status} {diagnostic}".strip())
    enhanced = getattr(outcome, "enhanced", "") or status
    bounce_type = ("hard" if outcome.hard else "soft") if isinstance(outcome, Bounced) else ""
    return basic, enhanced, bounce_type


def to_delivery(feedback: Feedback, signer: Signer, now: datetime, *, intent_id: str = "", subscriber_id: str = "") -> DeliveryEvent:
    """The delivery event for a report. Ids come from the signed reference, or from the caller when
    the source itself is authenticated (the HMAC webhook)."""
    if not (intent_id and subscriber_id):
        if not feedback.ref:
            raise FeedbackError("no X-Tidings-Ref in the report: cannot tell which message it is about")
        try:
            claims = signer.verify(feedback.ref, "ref", now)
        except TokenError as exc:
            raise FeedbackError(f"X-Tidings-Ref refused: {exc}") from None
        intent_id, subscriber_id = str(claims.get("i", "")), str(claims.get("s", ""))
    recipient_domain = feedback.recipient.rsplit("@", 1)[-1].lower() if "@" in feedback.recipient else ""
    return DeliveryEvent(
        delivery_id=stable_id("feedback", feedback.source, feedback.source_id, intent_id, feedback.kind),
        intent_id=intent_id,
        subscriber_id=subscriber_id,
        kind=feedback.kind,
        occurred_at=feedback.occurred_at or now,
        recipient_domain=recipient_domain[:253],
        message_id=feedback.message_id[:255],
        smtp_code=feedback.code,
        enhanced_status=feedback.status[:16],
        bounce_type=feedback.bounce_type,
        detail=f"{feedback.source}: {feedback.detail}"[:500],
    )
