"""`tidings feedback ...`: read a bounce/complaint Maildir, parse one message, make a DKIM key."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console

feedback_app = typer.Typer(help="Delivery feedback: bounce mailbox, complaint reports, DKIM keys.")
console = Console()
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(feedback_app, name="feedback")


def _settings():  # type: ignore[no-untyped-def]
    from infra.logging import configure_logging
    from infra.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


@feedback_app.command("read-mailbox")
def read_mailbox(
    directory: Path = typer.Argument(..., help="Maildir holding bounces (DSN) and complaints (ARF)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Parse and show; write nothing, mark nothing seen."),
) -> None:
    """Turn every unread bounce and complaint into a delivery event on Kafka, then mark it seen."""
    from connectors.feedback.keys import tracking_signer
    from connectors.feedback.mailbox import mark_seen, unread
    from connectors.feedback.report import FeedbackError, to_delivery
    from connectors.kafka_producer import KafkaProducer
    from infra.topics import Topic

    settings = _settings()
    signer = tracking_signer(settings)
    now = datetime.now(timezone.utc)
    try:
        items = list(unread(directory))
    except FeedbackError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    events, done, unmatched, unreadable = [], [], 0, 0
    for item in items:
        if item.error:
            unreadable += 1
            err.print(f"{item.key}: unreadable: {item.error}")
            done.append(item.key)  # a message we cannot read will not become readable: do not loop on it
            continue
        for report in item.reports:
            try:
                events.append(to_delivery(report, signer, now))
            except FeedbackError as exc:
                unmatched += 1
                err.print(f"{item.key}: {report.kind} for {report.recipient or '?'} not recorded: {exc}")
        done.append(item.key)
    for event in events:
        console.print(f"{event.kind:<11} {event.bounce_type or '-':<5} {event.enhanced_status or '-':<7} intent={event.intent_id}")
    if not dry_run:
        if events:
            producer = KafkaProducer(settings)
            try:
                topic = Topic.DELIVERY.name(settings)
                producer.produce_all_sync([(topic, e.subscriber_id.encode(), e.to_bytes()) for e in events])
            finally:
                producer.close()
        mark_seen(directory, done)  # only after Kafka acknowledged every event
    console.print(f"{len(items)} messages, {len(events)} events{' (dry run)' if dry_run else ''}, "
                  f"{unmatched} without a valid X-Tidings-Ref, {unreadable} unreadable")


@feedback_app.command("parse")
def parse(path: Path = typer.Argument(..., help="One raw message file (a bounce or an ARF report); '-' for stdin.")) -> None:
    """Show what one bounce or complaint message reports."""
    from connectors.feedback.mailbox import parse_message
    from connectors.feedback.report import FeedbackError

    raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    try:
        reports = parse_message(raw)
    except FeedbackError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if not reports:
        console.print("not a bounce or complaint")
    for r in reports:
        console.print(f"{r.kind} {r.bounce_type or '-'} {r.code or '-'} {r.status or '-'} {r.recipient} "
                      f"ref={'yes' if r.ref else 'no'} {r.detail[:80]}")


@feedback_app.command("dkim-keygen")
def dkim_keygen(
    out: Path = typer.Argument(..., help="Where to write the private key (PEM, mode 0600)."),
    selector: str = typer.Option("tidings", help="DKIM selector for the DNS record name."),
    bits: int = typer.Option(2048, help="RSA key size."),
) -> None:
    """Create a DKIM key and print the DNS TXT record to publish."""
    import base64
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    if out.exists():
        err.print(f"[red]{out} exists; not overwriting a key[/red]")
        raise typer.Exit(2)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    console.print(f"{selector}._domainkey.<sending domain>  TXT  \"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}\"")
    console.print(f"then: TIDINGS_DKIM_SELECTOR={selector} TIDINGS_DKIM_KEY_PATH={out}")
