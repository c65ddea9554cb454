"""Shared by the sender e2e tests: a scripted SMTP server on its own thread, a worker-only stack,
and readers for what the worker wrote (delivery events, the send ledger's changelog)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from domain.events import DeliveryEvent, SendIntent
from infra.settings import Settings
from infra.stack import Stack
from infra.topics import Topic
from processors.app import app_id
from tests.e2e.conftest import free_port
from tests.kafka_helpers import read_topic

REPLIES = {
    "r421": "421 4.3.2 Service shutting down",
    "r450": "450 Requested mail action not taken: mailbox busy",
    "r451": "451 4.7.1 Greylisted, try again later",
    "r452": "452 Insufficient system storage",
    "r550": "550 5.1.1 User unknown",
    "r552": "552 Requested mail action aborted: exceeded storage allocation",
    "r554": "554 5.7.1 Client host blocked",
}


@dataclass
class ScriptedSmtp:
    """Replies by the recipient's local part (prefix before '-'); `drop` ends the session after DATA."""

    port: int = 0
    received: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    rcpt_counts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def messages_for(self, address: str) -> list[bytes]:
        with self.lock:
            return list(self.received.get(address, []))

    def total(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.received.values())

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        recipient = ""
        try:
            reply("220 scripted.test ESMTP")
            while line := await reader.readline():
                command = line.decode(errors="replace").strip()
                verb = command.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    reply("250-scripted.test")
                    reply("250 8BITMIME")
                elif verb in ("MAIL", "RSET", "NOOP"):
                    recipient = ""
                    reply("250 2.0.0 Ok")
                elif verb == "RCPT":
                    recipient = command.split("<", 1)[1].split(">", 1)[0].lower()
                    local = recipient.split("@", 1)[0].split("-", 1)[0]
                    with self.lock:
                        self.rcpt_counts[recipient] += 1
                    reply(REPLIES.get(local, "250 2.1.5 Ok"))
                    if local == "r421":
                        await writer.drain()
                        break
                elif verb == "DATA":
                    reply("354 go ahead")
                    await writer.drain()
                    content = b""
                    while (chunk := await reader.readline()) not in (b".\r\n", b""):
                        content += chunk
                    with self.lock:
                        self.received[recipient].append(content)
                    if recipient.startswith("drop"):
                        break  # RFC 1047: the content arrived, the reply never leaves
                    reply("250 2.0.0 Ok: queued")
                elif verb == "QUIT":
                    reply("221 Bye")
                    break
                else:
                    reply("502 5.5.2 Command not recognized")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@contextmanager
def scripted_smtp() -> Iterator[ScriptedSmtp]:
    state = ScriptedSmtp()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    async def serve() -> None:
        holder["server"] = await asyncio.start_server(state.session, "127.0.0.1", 0)
        state.port = holder["server"].sockets[0].getsockname()[1]
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    started.wait(10)
    try:
        yield state
    finally:
        async def stop() -> None:
            holder["server"].close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def worker_settings(tmp: Path, broker: str, smtp_port: int, **overrides) -> Settings:  # type: ignore[no-untyped-def]
    from tests.conftest import REPO

    api_port = free_port()
    values = dict(
        data_dir=tmp / "var",
        kafka_bootstrap=broker,
        topic_prefix=f"snd{uuid.uuid4().hex[:8]}",
        api_port=api_port,
        public_url=f"http://127.0.0.1:{api_port}",
        worker_port=free_port(),
        mailsink_port=free_port(),
        smtp_url=f"smtp://127.0.0.1:{smtp_port}",
        definitions_dir=REPO / "examples",
        log_format="json",
        analytics_batch_seconds=0.5,
    )
    values.update(overrides)
    settings = Settings(**values)
    settings.data_dir.mkdir(parents=True)
    return settings


@contextmanager
def worker_stack(settings: Settings, services: tuple[str, ...] = ("worker",)) -> Iterator[Stack]:
    from infra.demo import _wait_definitions_live
    from infra.publish import apply_paths

    stack = Stack(settings)
    try:
        stack.up(services=services)
        published = apply_paths(settings, [settings.definitions_dir])
        _wait_definitions_live(settings, published)
        yield stack
    finally:
        stack.down(stop_broker=False)


def intent(n: int, to: str, *, subscriber: str | None = None, template: str = "welcome", **extra) -> SendIntent:  # type: ignore[no-untyped-def]
    return SendIntent(
        intent_id=f"intent-{n}-{uuid.uuid4().hex[:6]}",
        subscriber_id=subscriber or f"sub-{n}",
        journey_id="welcome",
        journey_version=1,
        step_id="send-1",
        template_id=template,
        to=to,
        variables={"subscriber": {"email": to, "first_name": f"N{n}"}, "event": {}},
        trigger_event_id=f"evt-{n}",
        created_at=datetime.now(timezone.utc),
        **extra,
    )


def produce_intents(settings: Settings, intents: list[SendIntent]) -> None:
    """Straight onto the send-intents topic, keyed by subscriber, as the journeys stage would."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True, "linger.ms": 5})
    topic = Topic.SEND_INTENTS.name(settings)
    for item in intents:
        producer.produce(topic, key=item.subscriber_id.encode(), value=item.to_bytes())
        producer.poll(0)
    assert producer.flush(30) == 0


def deliveries(settings: Settings) -> list[DeliveryEvent]:
    return [DeliveryEvent.from_bytes(value) for _, value in read_topic(settings, Topic.DELIVERY, timeout=20)]


def ledger_entries(settings: Settings) -> dict[str, dict]:
    """The send ledger as its changelog says it stands now: intent id -> entry (last write wins)."""
    name = f"{app_id(settings)}-send-ledger-changelog"
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"ledger-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(name, p, 0) for p in partitions])
        latest: dict[bytes, dict] = {}
        positions = {p: 0 for p in partitions}
        deadline = time.monotonic() + 20
        while any(positions[p] < ends[p] for p in partitions) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            positions[msg.partition()] = msg.offset() + 1
            latest[msg.key()] = json.loads(msg.value()) if msg.value() else {}
    finally:
        consumer.close()
    merged: dict[str, dict] = {}
    for entries in latest.values():
        merged.update(entries)
    return merged


def wait_until(predicate, timeout: float, what: str, every: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
