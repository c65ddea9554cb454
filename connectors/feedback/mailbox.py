"""The bounce mailbox: bounce and complaint messages read from a Maildir directory.

Each new message is parsed (ARF when it says so, else DSN/plain-text bounce) and, once its events are
on Kafka, marked seen (moved to `cur/` with the `S` flag), so a second run reads only new mail.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from connectors.feedback.arf import is_arf, parse_arf
from connectors.feedback.dsn import parse_dsn
from connectors.feedback.report import Feedback, FeedbackError


@dataclass
class MailboxItem:
    key: str
    reports: list[Feedback] = field(default_factory=list)
    error: str = ""


def parse_message(raw: bytes) -> list[Feedback]:
    return parse_arf(raw) if is_arf(raw) else parse_dsn(raw)


def unread(directory: Path) -> Iterator[MailboxItem]:
    """Every message not yet marked seen, with what it reports (or why it could not be read)."""
    if not (directory / "new").is_dir() or not (directory / "cur").is_dir():
        raise FeedbackError(f"{directory}: not a Maildir (needs new/ and cur/ subdirectories)")
    box = mailbox.Maildir(directory, factory=None, create=False)
    for key in sorted(box.iterkeys()):
        if "S" in box.get_message(key).get_flags():
            continue
        try:
            raw = box.get_bytes(key)
            yield MailboxItem(key, parse_message(raw))
        except (FeedbackError, ValueError, LookupError) as exc:
            yield MailboxItem(key, error=str(exc)[:300])


def mark_seen(directory: Path, keys: list[str]) -> None:
    box = mailbox.Maildir(directory, factory=None, create=False)
    for key in keys:
        message = box.get_message(key)
        message.set_subdir("cur")
        message.add_flag("S")
        box[key] = message
