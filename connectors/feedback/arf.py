"""Complaint reports: the Abuse Reporting Format (RFC 5965), as mailbox providers' feedback loops send.

A report is `multipart/report; report-type=feedback-report` with a human-readable part, a
`message/feedback-report` part (Feedback-Type, User-Agent, Version, Original-Rcpt-To, Arrival-Date)
and the original message or its headers, which carry our X-Tidings-Ref.
"""

from __future__ import annotations

import email
import email.policy
from email.message import Message
from email.utils import parsedate_to_datetime

from connectors.feedback.dsn import _original_ref, _text_of, parse_bytes, source_id_of
from connectors.feedback.report import Feedback, FeedbackError

# RFC 5965 feedback types that mean "the recipient did not want this" (not-spam is the opposite).
COMPLAINT_TYPES = ("abuse", "fraud", "virus", "other")


def is_arf(raw: bytes) -> bool:
    head = raw[:8192].lower()
    return b"report-type=feedback-report" in head or b'report-type="feedback-report"' in head


def parse_arf(raw: bytes) -> list[Feedback]:
    message = parse_bytes(raw)
    if message.get_content_type() != "multipart/report" or message.get_param("report-type") != "feedback-report":
        raise FeedbackError("not an ARF report: expected multipart/report; report-type=feedback-report")
    fields = _feedback_fields(message)
    if fields is None:
        raise FeedbackError("ARF report has no message/feedback-report part")
    feedback_type = (fields.get("Feedback-Type") or "").strip().lower()
    if not feedback_type:
        raise FeedbackError("ARF report has no Feedback-Type field")
    if feedback_type not in COMPLAINT_TYPES:
        return []
    ref, message_id = _original_ref(message)
    recipient = (fields.get("Original-Rcpt-To") or "").strip().strip("<>")
    occurred = None
    if fields.get("Arrival-Date"):
        try:
            occurred = parsedate_to_datetime(fields["Arrival-Date"])
        except (TypeError, ValueError):
            occurred = None
    agent = (fields.get("User-Agent") or "").strip()[:100]
    return [Feedback(kind="complained", source="arf", source_id=source_id_of(message, raw), recipient=recipient,
                     ref=ref, message_id=message_id, detail=f"{feedback_type} report from {agent or 'unknown agent'}",
                     occurred_at=occurred if occurred is not None and occurred.tzinfo else None)]


def _feedback_fields(message: Message) -> Message | None:
    for part in message.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            merged = Message()
            for block in payload:
                for key, value in block.items():
                    merged[key] = value
            return merged
        return email.message_from_string(_text_of(part), policy=email.policy.compat32)
    return None
