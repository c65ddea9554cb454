"""What an SMTP reply means for a send: accepted, deferred, bounced, or unknown (ambiguous).

`Bounced.hard` answers one question: should the recipient ADDRESS be suppressed? It is decided
from the RFC 3463 enhanced status code when the server gives one, else from the basic code:

- X.1.x address status (bad mailbox 5.1.1, bad domain 5.1.2, bad syntax 5.1.3, moved 5.1.6,
  null MX 5.1.10): hard. Except 5.1.7 / 5.1.8, which are about OUR sender address: soft.
- X.2.1 mailbox disabled: hard. X.2.2 mailbox full, X.2.3 message too big for the mailbox, X.2.4
  list expansion: soft; RFC 3463 calls X.2.2 "a persistent transient failure": the user can make
  room, so the address stays.
- X.3.x (destination system), X.5.x (protocol), X.6.x (content): soft, not the address's fault.
- X.4.4 unable to route (typically a domain without mail servers): hard; other X.4.x: soft.
- X.7.x security or policy (5.7.1 blocked as spam, by a blocklist, by DMARC): soft. It says
  something about our reputation or content, not the subscriber; reputation scoring uses it.
- No enhanced code: 550, 551, 553 (mailbox unavailable / not local / name not allowed) and
  521, 556 (domain accepts no mail, RFC 7504) are hard; 552 (storage exceeded; RFC 5321 even
  asks clients to treat a 552 to RCPT as temporary) and 554 (transaction failed, usually a
  policy block) are soft, as are 500-504 (our protocol errors).

A soft bounce is still final for THIS message (5xx means "do not retry as is"); only a 4xx
(`Deferred`) is retried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal, Union


@dataclass(frozen=True)
class Accepted:
    code: int
    message: str
    kind: ClassVar[str] = "accepted"


@dataclass(frozen=True)
class Deferred:
    """Temporary failure (4xx, or no connection): retry later with backoff."""

    code: int
    enhanced: str
    message: str
    kind: ClassVar[str] = "deferred"


@dataclass(frozen=True)
class Bounced:
    """Permanent failure for this message (5xx). `hard`: the address itself is bad."""

    code: int
    enhanced: str
    message: str
    hard: bool = True
    reason: str = ""
    kind: ClassVar[str] = "bounced"

    @property
    def bounce_type(self) -> Literal["hard", "soft"]:
        return "hard" if self.hard else "soft"


@dataclass(frozen=True)
class Ambiguous:
    """The message may or may not have been accepted (RFC 1047): never retry blindly."""

    detail: str
    kind: ClassVar[str] = "ambiguous"


SendOutcome = Union[Accepted, Deferred, Bounced, Ambiguous]

_ENHANCED_AT_LINE_START = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])", re.M)
_ENHANCED_ANYWHERE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")


def enhanced_status(code: int, message: str) -> str:
    """The RFC 3463 code in a reply's text ("5.1.1"), if its class matches the basic code."""
    for pattern in (_ENHANCED_AT_LINE_START, _ENHANCED_ANYWHERE):
        for match in pattern.finditer(message):
            if int(match.group(1)) == code // 100:
                return ".".join(match.groups())
    return ""


def classify_reply(code: int, message: str) -> SendOutcome:
    """The outcome a final SMTP reply means for the message it answers."""
    enhanced = enhanced_status(code, message)
    if 200 <= code < 300:
        return Accepted(code, message)
    if 400 <= code < 500:
        return Deferred(code, enhanced, message)
    if 500 <= code < 600:
        hard, reason = _is_hard(code, enhanced)
        return Bounced(code, enhanced, message, hard=hard, reason=reason)
    return Ambiguous(f"unexpected reply {code} {message}".strip())


_HARD_BASIC = {550: "mailbox unavailable", 551: "user not local", 553: "mailbox name not allowed",
               521: "domain does not accept mail", 556: "domain does not accept mail"}
_SOFT_BASIC = {552: "storage exceeded (treated as temporary, RFC 5321 4.5.3.1.10)",
               554: "transaction failed (usually a policy block, not the address)"}


def _is_hard(code: int, enhanced: str) -> tuple[bool, str]:
    if enhanced:
        _, subject, detail = (int(part) for part in enhanced.split("."))
        return _is_hard_enhanced(subject, detail, enhanced)
    if code in _HARD_BASIC:
        return True, f"{code}: {_HARD_BASIC[code]}"
    if code in _SOFT_BASIC:
        return False, f"{code}: {_SOFT_BASIC[code]}"
    return False, f"{code}: not an address failure"


def _is_hard_enhanced(subject: int, detail: int, enhanced: str) -> tuple[bool, str]:
    if subject == 1:
        if detail in (7, 8):
            return False, f"{enhanced}: our sender address was refused, not the recipient"
        return True, f"{enhanced}: bad destination address"
    if subject == 2:
        if detail == 1:
            return True, f"{enhanced}: mailbox disabled"
        return False, f"{enhanced}: mailbox status (full or too big) is transient per RFC 3463"
    if subject == 4 and detail == 4:
        return True, f"{enhanced}: unable to route to the recipient's domain"
    if subject == 7:
        return False, f"{enhanced}: security or policy rejection (reputation/content), not the address"
    return False, f"{enhanced}: system, network, protocol or content problem, not the address"
