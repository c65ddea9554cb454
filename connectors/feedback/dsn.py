"""Bounce messages: RFC 3464 delivery status notifications and the plain-text bounces real servers send.

Standard DSNs (`multipart/report; report-type=delivery-status`) are read field by field: one report
per recipient block whose Action is `failed` (a bounce) or `delayed` (a deferral). Everything else
(Exim's "Mail delivery failed", Postfix's "undeliverable" text, Gmail's "Address not found" /
"Delivery to the following recipient failed permanently") is read from the text: recipients named
in the usual places, the first SMTP reply code and enhanced status, and words that say permanent or
temporary. The original message's X-Tidings-Ref and Message-ID are taken from the returned copy.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from email.message import Message

from connectors.feedback.report import Feedback, FeedbackError, bounce_verdict, find_ref

MAX_BYTES = 5 * 1024 * 1024

_ADDRESS = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)+"
_REPLY = re.compile(r"(?<![\d.])([45]\d\d)[ \-]+(?:#?([45]\.\d{1,3}\.\d{1,3})\b)?")
_STATUS = re.compile(r"(?<![\d.])([45]\.\d{1,3}\.\d{1,3})(?![\d.])")
_RECIPIENT_PATTERNS = [
    re.compile(rf"^\s*<({_ADDRESS})>:", re.M),  # Postfix: <user@x>: host ... said: 550 ...
    re.compile(rf"address\(es\) failed:\s*\n\s*({_ADDRESS})", re.I),  # Exim
    re.compile(rf"following recipient[^:\n]*:\s*\n\s*({_ADDRESS})", re.I),  # Gmail (older)
    re.compile(rf"wasn't delivered to ({_ADDRESS})", re.I),  # Gmail (newer)
    re.compile(rf"could not be delivered to[^\n]*?({_ADDRESS})", re.I),
    re.compile(rf"^\s*(?:Original|Final)-Recipient:\s*(?:rfc822;)?\s*({_ADDRESS})", re.I | re.M),
]
_PERMANENT = re.compile(r"permanent|failed permanently|address not found|does not exist|user unknown|no such user|"
                        r"could not be delivered|undeliverable|mail delivery failed", re.I)
_TEMPORARY = re.compile(r"delayed|temporar|will (?:be )?retr|not yet been delivered|still trying", re.I)
_COPY_MARKERS = re.compile(r"^-{2,}.*(?:copy of the message|original message|below this line|headers)", re.I | re.M)


def parse_bytes(raw: bytes) -> Message:
    if len(raw) > MAX_BYTES:
        raise FeedbackError(f"message is {len(raw)} bytes, more than {MAX_BYTES}")
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def source_id_of(message: Message, raw: bytes) -> str:
    """The bounce's own Message-ID, or a digest of its bytes: reading it twice counts once."""
    own = (message.get("Message-ID") or "").strip()
    return own[:200] if own else hashlib.sha256(raw).hexdigest()[:32]


def parse_dsn(raw: bytes) -> list[Feedback]:
    """The bounces and deferrals a bounce message reports (empty when it reports none)."""
    message = parse_bytes(raw)
    source_id = source_id_of(message, raw)
    report = _find_part(message, "message/delivery-status")
    if report is not None:
        ref, message_id = _original_ref(message)
        return _from_status_fields(report, ref, message_id, source_id)
    return _from_text(message, source_id)


def _find_part(message: Message, content_type: str) -> Message | None:
    for part in message.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _original_ref(message: Message) -> tuple[str, str]:
    """X-Tidings-Ref and Message-ID of the returned original (message/rfc822 or text/rfc822-headers)."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, Message):
                return find_ref(_headers_text(inner))
        if kind == "text/rfc822-headers":
            return find_ref(_text_of(part))
    return "", ""


def _headers_text(message: Message) -> str:
    return "\n".join(f"{k}: {v}" for k, v in message.items())


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _status_blocks(report: Message) -> list[Message]:
    payload = report.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    # Some parsers leave it as text: blank-line separated header blocks.
    return [email.message_from_string(block.strip() + "\n") for block in re.split(r"\r?\n\r?\n", payload or "") if block.strip()]


def _from_status_fields(report: Message, ref: str, message_id: str, source_id: str) -> list[Feedback]:
    out = []
    for block in _status_blocks(report):
        action = (block.get("Action") or "").strip().lower()
        if action not in ("failed", "delayed"):
            continue  # delivered, relayed, expanded, or the per-message block
        recipient = _address_field(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
        status = (block.get("Status") or "").strip()
        status = status if _STATUS.fullmatch(status) else ""
        diagnostic = " ".join((block.get("Diagnostic-Code") or "").split())
        code = _first_code(diagnostic)
        if action == "failed":
            code, status, bounce_type = bounce_verdict(code, status, diagnostic, permanent=True)
            kind = "bounced"
        else:
            bounce_type, kind = "", "deferred"
        out.append(Feedback(kind=kind, source="dsn", source_id=source_id, recipient=recipient, ref=ref,  # type: ignore[arg-type]
                            message_id=message_id, code=code, status=status, bounce_type=bounce_type,  # type: ignore[arg-type]
                            detail=diagnostic[:300] or f"{action} {status}".strip()))
    return out


def _address_field(value: str) -> str:
    value = value.split(";", 1)[-1].strip().strip("<>")
    return value if re.fullmatch(_ADDRESS, value) else ""


def _first_code(text: str) -> int | None:
    match = _REPLY.search(text)
    return int(match.group(1)) if match else None


def _from_text(message: Message, source_id: str) -> list[Feedback]:
    """Non-standard bounces: only when the message looks like one (subject/sender) and names a recipient."""
    body = "\n".join(_text_of(p) for p in message.walk() if p.get_content_maintype() == "text")
    for part in message.walk():
        if part.get_content_type() == "message/rfc822" and isinstance(part.get_payload(), list):
            body += "\n" + "\n".join(_headers_text(m) for m in part.get_payload() if isinstance(m, Message))
    subject = message.get("Subject", "")
    sender = message.get("From", "")
    looks_like_bounce = re.search(r"mailer-daemon|postmaster|mail delivery", sender, re.I) or re.search(
        r"undeliver|delivery (?:status|failure|failed|notification|incomplete)|returned mail|failure notice|"
        r"delayed mail|not delivered|address not found", subject, re.I)
    if not looks_like_bounce:
        return []
    explanation, _, returned = _split_at_copy(body)
    recipients = _recipients(explanation)
    if not recipients:
        return []
    ref, message_id = find_ref(returned or body)
    reply = _REPLY.search(explanation)
    code = int(reply.group(1)) if reply else None
    status_match = _STATUS.search(explanation)
    status = status_match.group(1) if status_match else ""
    temporary = bool(_TEMPORARY.search(subject + "\n" + explanation)) and not (code and code >= 500)
    permanent = not temporary and (bool(_PERMANENT.search(subject + "\n" + explanation)) or bool(code and code >= 500))
    if not (temporary or permanent):
        return []
    detail = " ".join(explanation[reply.start() : reply.start() + 300].split()) if reply else subject[:200]
    out = []
    for recipient in recipients:
        if permanent:
            verdict_code, verdict_status, bounce_type = bounce_verdict(code, status, explanation[:2000], permanent=True)
            out.append(Feedback("bounced", "dsn", source_id, recipient, ref, message_id, verdict_code, verdict_status,
                                bounce_type, detail))  # type: ignore[arg-type]
        else:
            out.append(Feedback("deferred", "dsn", source_id, recipient, ref, message_id, code, status, "", detail))
    return out


def _split_at_copy(body: str) -> tuple[str, str, str]:
    """The bounce's explanation, and the returned copy of the original after the usual separator."""
    match = _COPY_MARKERS.search(body)
    if match is None:
        header_start = re.search(r"^(?:Return-path|Received|X-Tidings-Ref|Message-ID):", body, re.I | re.M)
        if header_start is None:
            return body, "", ""
        return body[: header_start.start()], "", body[header_start.start() :]
    return body[: match.start()], match.group(0), body[match.end() :]


def _recipients(text: str) -> list[str]:
    found: list[str] = []
    for pattern in _RECIPIENT_PATTERNS:
        for match in pattern.finditer(text):
            address = match.group(1).lower()
            if address not in found:
                found.append(address)
    return found[:50]
