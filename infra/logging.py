"""structlog set-up: JSON lines when not on a terminal, coloured console otherwise."""

from __future__ import annotations

import hashlib
import logging
import sys

import structlog


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")
    # aiosmtpd logs every SMTP command, recipient addresses included, at INFO: personal data stays out of logs.
    logging.getLogger("mail.log").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        cache_logger_on_first_use=True,
    )


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is now: cached loggers must survive a swapped stream (tests, CLIs)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def hashed(subscriber_id: str) -> str:
    """A subscriber id as it may appear in logs: stable, short, not reversible."""
    return hashlib.sha256(subscriber_id.encode()).hexdigest()[:12]
