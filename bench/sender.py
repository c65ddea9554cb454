"""Sender throughput into Postfix's smtp-sink, beside a raw aiosmtplib loop in the same run.

- baseline: 8 aiosmtplib connections sending one pre-built message each, back to back
  (no rendering, no tracking, no DKIM, no ledger): the ceiling for one Python process.
- sender path: `processors.sender.SenderCore.deliver` in chunks of SEND_CHUNK intents, the same code
  the worker runs (ledger admission, policy gate, render, click/open tracking, unsubscribe token,
  MIME, X-Tidings-Ref, DKIM rsa-sha256, SmtpPool of 8, settlement), with in-memory tables and
  no Kafka. Measured with DKIM (2048-bit key; RSA in the sender's signing child process, whose CPU
  the "µs CPU/msg" figure leaves out) and without.
- worker path (when the local broker answers): intents produced to the send-intents topic, a real
  worker process sending to smtp-sink; time until every intent's delivery event is on Kafka.

Each figure is the median of several rounds; the ratio to the baseline is the one to watch (goal:
at least 0.5). `python -m bench.sender [--messages N] [--rounds R] [--no-worker]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import subprocess
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from aiosmtplib import SMTP

from bench._support import Report, bench_settings, free_port, median
from domain.events import SendIntent
from domain.templates import compile_template, parse_template

REPO = Path(__file__).resolve().parent.parent
SENDER = "hello@news.tidings.test"


@contextmanager
def smtp_sink():  # type: ignore[no-untyped-def]
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(binary).exists():
        raise SystemExit("Postfix's smtp-sink is missing: apt-get install postfix")
    port = free_port()
    proc = subprocess.Popen([binary, "-u", "root", f"127.0.0.1:{port}", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("smtp-sink did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def intents(count: int, tag: str) -> list[SendIntent]:
    now = datetime.now(timezone.utc)
    return [
        SendIntent(
            intent_id=f"bench-{tag}-{n}", subscriber_id=f"sub-{tag}-{n}", journey_id="welcome", journey_version=1,
            step_id="send-1", template_id="welcome", to=f"user{n}@example.com",
            variables={"subscriber": {"email": f"user{n}@example.com", "first_name": f"Ada {n}", "plan": "pro"},
                       "event": {"type": "signed_up"}},
            trigger_event_id=f"e-{n}", created_at=now,
        )
        for n in range(count)
    ]


async def raw_loop(port: int, messages: int, connections: int = 8) -> float:
    payload = b"From: hello@news.tidings.test\r\nTo: user@example.com\r\nSubject: raw\r\n\r\n" + b"Hello there, this is the body.\r\n" * 60
    per = messages // connections

    async def one() -> None:
        client = SMTP(hostname="127.0.0.1", port=port, local_hostname="bench")
        await client.connect()
        for n in range(per):
            await client.sendmail(SENDER, [f"user{n}@example.com"], payload)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    return per * connections / (time.perf_counter() - started)


def dkim_key(directory: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = directory / "dkim.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


async def sender_path(port: int, messages: int, *, dkim: bool, tag: str) -> tuple[float, float, int, float]:
    """(messages/s, CPU µs per message, accepted, signing process CPU µs per message) through SenderCore.deliver."""
    from connectors.smtp import SmtpPool
    from processors.sender import SEND_CHUNK, SenderCore

    settings = bench_settings(smtp_url=f"smtp://127.0.0.1:{port}", mail_from=f"Tidings <{SENDER}>")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if dkim:
        settings = settings.model_copy(update={"dkim_selector": "bench", "dkim_key_path": str(dkim_key(settings.data_dir))})
    template = compile_template(parse_template((REPO / "examples/templates/welcome.yaml").read_text(), "welcome.yaml"))
    accepted = 0

    async def emit(events) -> None:  # type: ignore[no-untyped-def]
        nonlocal accepted
        accepted += sum(1 for e in events if e.kind == "accepted")

    async def nothing() -> None:
        return None

    pool = SmtpPool(settings.smtp_url, size=8, timeout=10)
    core = SenderCore(
        settings=settings, ledger=defaultdict(dict), retries=defaultdict(dict), caps=defaultdict(dict),
        templates=lambda: {"welcome": template}, emit_durably=emit, flush=nothing, send=pool.send,
        clock=lambda: datetime.now(timezone.utc),
    )
    batch = intents(messages, tag)
    await core.deliver(batch[:SEND_CHUNK])  # warm: connections open
    work = batch[SEND_CHUNK:]
    cpu, started = time.process_time(), time.perf_counter()
    for start in range(0, len(work), SEND_CHUNK):
        await core.deliver(work[start : start + SEND_CHUNK])
    elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
    await pool.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    core.close()  # the DKIM signing process, if any: its CPU is counted once it has ended
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    signing_cpu = (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) / len(work) * 1e6
    return len(work) / elapsed, cpu_used / len(work) * 1e6, accepted, signing_cpu


def worker_path(port: int, messages: int) -> tuple[float, str]:
    """Messages/s through Kafka and a real worker process, or (nan, why not)."""
    from confluent_kafka import Producer

    from infra.demo import _wait_definitions_live
    from infra.kafka_broker import port_open
    from infra.publish import apply_paths
    from infra.stack import Stack
    from infra.topics import Topic
    from tests.kafka_helpers import read_topic, topic_size

    probe = bench_settings()
    host, _, kafka_port = probe.kafka_bootstrap.partition(":")
    if not port_open(host, int(kafka_port)):
        return float("nan"), "no broker at " + probe.kafka_bootstrap
    settings = bench_settings(smtp_url=f"smtp://127.0.0.1:{port}", definitions_dir=REPO / "examples",
                              mail_from=f"Tidings <{SENDER}>")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(settings)
    try:
        stack.up(services=("worker",))
        _wait_definitions_live(settings, apply_paths(settings, [settings.definitions_dir]))
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5, "enable.idempotence": True})
        topic = Topic.SEND_INTENTS.name(settings)
        warm = intents(64, "warm")
        for item in warm:
            producer.produce(topic, key=item.subscriber_id.encode(), value=item.to_bytes())
        producer.flush(30)
        accepted = lambda: sum(1 for _, v in read_topic(settings, Topic.DELIVERY, timeout=30)  # noqa: E731
                               if b'"kind":"accepted"' in v)
        deadline = time.monotonic() + 60
        while accepted() < len(warm) and time.monotonic() < deadline:
            time.sleep(0.2)
        started = time.perf_counter()
        for item in intents(messages, "worker"):
            producer.produce(topic, key=item.subscriber_id.encode(), value=item.to_bytes())
            producer.poll(0)
        producer.flush(30)
        deadline = time.monotonic() + 300
        while topic_size(settings, Topic.DELIVERY) < len(warm) + messages and time.monotonic() < deadline:
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        done = accepted() - len(warm)
        return done / elapsed, f"{done} of {messages} accepted"
    finally:
        stack.down(stop_broker=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sender")
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-worker", action="store_true")
    args = parser.parse_args(argv or [])
    os.environ.setdefault("TIDINGS_LOG_LEVEL", "WARNING")
    from infra.logging import configure_logging

    configure_logging("WARNING", "json")
    raw, with_dkim, without_dkim, cpu_dkim, cpu_plain, cpu_signing = [], [], [], [], [], []
    with smtp_sink() as port:
        for round_no in range(args.rounds):
            raw.append(asyncio.run(raw_loop(port, args.messages)))
            rate, cpu, accepted, signing = asyncio.run(sender_path(port, args.messages, dkim=True, tag=f"d{round_no}"))
            assert accepted == args.messages, f"only {accepted} of {args.messages} accepted"
            with_dkim.append(rate)
            cpu_dkim.append(cpu)
            cpu_signing.append(signing)
            rate, cpu, _, _ = asyncio.run(sender_path(port, args.messages, dkim=False, tag=f"p{round_no}"))
            without_dkim.append(rate)
            cpu_plain.append(cpu)
        worker_rate, worker_note = (float("nan"), "skipped (--no-worker)")
        if not args.no_worker:
            worker_rate, worker_note = worker_path(port, min(args.messages, 2000))
    baseline = median(raw)
    figures = {
        "messages_per_round": args.messages, "rounds": args.rounds, "cores": os.cpu_count(),
        "raw_aiosmtplib_8_connections_per_s": baseline,
        "sender_path_dkim_per_s": median(with_dkim), "sender_path_dkim_ratio": median(with_dkim) / baseline,
        "sender_path_dkim_cpu_us_per_msg": median(cpu_dkim),
        "sender_path_dkim_signing_process_cpu_us_per_msg": median(cpu_signing),
        "sender_path_no_dkim_per_s": median(without_dkim), "sender_path_no_dkim_ratio": median(without_dkim) / baseline,
        "sender_path_no_dkim_cpu_us_per_msg": median(cpu_plain),
        "worker_path_per_s": worker_rate, "worker_path_note": worker_note,
    }
    report = Report("sender", [
        ("raw aiosmtplib loop, 8 connections", f"{baseline:,.0f} msg/s"),
        ("sender path, render+tracking+DKIM+ledger", f"{median(with_dkim):,.0f} msg/s  "
         f"(x{median(with_dkim) / baseline:.2f} of raw; {median(cpu_dkim):,.0f} µs CPU/msg "
         f"+ {median(cpu_signing):,.0f} in the signing process)"),
        ("sender path, same without DKIM", f"{median(without_dkim):,.0f} msg/s  "
         f"(x{median(without_dkim) / baseline:.2f} of raw; {median(cpu_plain):,.0f} µs CPU/msg)"),
        ("full worker path (Kafka + worker process)", f"{worker_rate:,.0f} msg/s  ({worker_note})"),
        ("rounds / messages per round", f"{args.rounds} / {args.messages} (medians)"),
    ])
    report.print()
    report.save(figures)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
