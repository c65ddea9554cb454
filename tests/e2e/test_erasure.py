"""Issue 3, erasure: a person's email address is sealed wherever it is stored or relayed; erasing
destroys their key. Afterwards the address (and their surname) appears nowhere in the event store,
any Kafka topic with the stack's prefix (Faust changelogs included, read with a consumer), ClickHouse
or the service logs; only the SMTP capture sink - the recipient's own mailbox - holds the mail they
were sent. Then the worker is restarted twice (tables rebuilt from changelogs; then a fresh consumer
group replaying every topic from the start) and it keeps running and sends them nothing.
"""

from __future__ import annotations

import signal
import time
import uuid
from email import message_from_bytes
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.kafka_admin import admin_client
from connectors.mailsink import list_messages
from domain.events import DeliveryEvent, SendIntent
from infra.stack import Service
from infra.topics import Topic
from tests.e2e.sender_support import produce_intents
from tests.integration.event_store_support import dump_event_store

pytestmark = pytest.mark.e2e


def wait_until(predicate, timeout: float, what: str, every: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value {value!r}")


def dump_topics(settings) -> dict[str, list[tuple[bytes, bytes]]]:  # type: ignore[no-untyped-def]
    """Every record of every topic whose name holds the stack's prefix, read from offset 0 to the end."""
    names = sorted(n for n in admin_client(settings).list_topics(timeout=30).topics if settings.topic_prefix in n)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"erasure-dump-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    out: dict[str, list[tuple[bytes, bytes]]] = {name: [] for name in names}
    try:
        metadata = consumer.list_topics(timeout=30).topics
        ends: dict[tuple[str, int], int] = {}
        for name in names:
            for p in metadata[name].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                if high > low:
                    ends[(name, p)] = high
        consumer.assign([TopicPartition(name, p, 0) for name, p in ends])
        positions = {tp: 0 for tp in ends}
        deadline = time.monotonic() + 60
        while any(positions[tp] < ends[tp] for tp in ends) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            positions[(msg.topic(), msg.partition())] = msg.offset() + 1
            out[msg.topic()].append((msg.key() or b"", msg.value() or b""))
        assert all(positions[tp] >= ends[tp] for tp in ends), "the topic dump did not reach the end of every partition"
    finally:
        consumer.close()
    return out


def clickhouse_text(stack) -> str:  # type: ignore[no-untyped-def]
    tables = [row[0] for row in stack.sql("SELECT name FROM system.tables WHERE database = currentDatabase()")]
    assert "events" in tables and "deliveries" in tables, tables
    return "\n".join(f"{table}: {stack.sql(f'SELECT * FROM {table}')!r}" for table in tables)


def files_under(root: Path, skip: tuple[str, ...]) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)}


def assert_nowhere(stack, secrets: list[bytes]) -> int:  # type: ignore[no-untyped-def]
    """The secrets in no topic record, no event store row, no ClickHouse row, no file but the mailbox's."""
    settings = stack.settings
    topics = dump_topics(settings)
    assert Topic.EVENTS.name(settings) in topics and any(n.endswith("-changelog") for n in topics), sorted(topics)
    for name, records in topics.items():
        for key, value in records:
            for secret in secrets:
                assert secret not in key and secret not in value, f"{secret!r} on topic {name}: {value[:300]!r}"
    store = dump_event_store(settings)
    assert store, "the event store dump is empty"
    clickhouse = clickhouse_text(stack).encode()
    # Logs, event store files, Faust data, keys: everything on disk but the recipient's mailbox.
    files = files_under(settings.data_dir, skip=("mailsink",))
    assert any(name.startswith("logs/") for name in files)
    for secret in secrets:
        assert secret not in store, f"{secret!r} in the event store"
        assert secret not in clickhouse, f"{secret!r} in ClickHouse"
        for name, content in files.items():
            assert secret not in content, f"{secret!r} in {name}"
    return sum(len(records) for records in topics.values())


def deliveries_of(settings, intent_id: str) -> list[DeliveryEvent]:  # type: ignore[no-untyped-def]
    records = dump_topics(settings)[Topic.DELIVERY.name(settings)]
    return [d for d in (DeliveryEvent.from_bytes(v) for _, v in records) if d.intent_id == intent_id]


@pytest.mark.timeout(420)
def test_after_erasure_the_address_is_nowhere_and_replays_send_nothing(running_stack):
    stack, settings = running_stack, running_stack.settings
    tag = uuid.uuid4().hex[:8]
    sid, email, surname = f"erase-{tag}", f"zelda.erasure.{tag}@example.net", f"Quimbyfarthing{tag}"
    secrets = [email.encode(), surname.encode()]
    auth = {"Authorization": f"Bearer {stack.api_key}"}
    sink = settings.mailsink_dir

    created = httpx.post(f"{stack.api}/v1/subscribers", headers=auth, timeout=30,
                         json={"subscriber_id": sid, "email": email, "attributes": f"{surname}, likes owls"})
    assert created.status_code in (200, 201), created.text
    posted = stack.post_events([
        {"event_id": f"{sid}-1", "type": "identify", "subscriber_id": sid,
         "context": {"traits": {"email": email, "first_name": "Zelda", "last_name": surname}}},
        {"event_id": f"{sid}-2", "type": "user.signed_up", "subscriber_id": sid,
         "properties": {"plan": "free", "invited_by": f"{surname} <{email}>"}},
    ])
    assert posted.status_code == 202, posted.text

    # Both welcome emails arrive, addressed and personalised from the sealed values.
    mine = wait_until(lambda: (m := [x for x in list_messages(sink) if email in x.rcpt_tos]) and len(m) >= 2 and m,
                      60, "the two welcome emails")
    first = message_from_bytes((sink / mine[0].file).read_bytes() if not Path(mine[0].file).is_absolute()
                               else Path(mine[0].file).read_bytes())
    assert email in first["To"] and "Zelda" in first["Subject"]
    wait_until(lambda: int(stack.sql(f"SELECT count() FROM deliveries WHERE subscriber_id = '{sid}' "
                                     "AND kind = 'accepted'")[0][0]) >= 2, 30, "the deliveries in ClickHouse")

    # Before erasure the address is already sealed on every topic: it travels only as ciphertext.
    intents = [SendIntent.from_bytes(v) for _, v in dump_topics(settings)[Topic.SEND_INTENTS.name(settings)]]
    sealed = next(i for i in intents if i.subscriber_id == sid)
    assert sealed.to.startswith("pd1.") and sealed.to.endswith("@example.net")

    erased = httpx.delete(f"{stack.api}/v1/subscribers/{sid}", headers=auth, timeout=30)
    assert erased.status_code == 200 and erased.json()["erased"] is True, erased.text
    assert httpx.delete(f"{stack.api}/v1/subscribers/{sid}", headers={}, timeout=30).status_code == 401

    # Product systems do not know about the erasure yet: they keep sending the address.
    again = stack.post_events([
        {"event_id": f"{sid}-3", "type": "identify", "subscriber_id": sid, "context": {"traits": {"email": email}}},
        {"event_id": f"{sid}-4", "type": "order.placed", "subscriber_id": sid, "properties": {"total": 12}},
    ])
    assert again.status_code == 202, again.text
    # A replayed copy of the old sealed intent, transactional so that only the missing key can stop it.
    replayed = sealed.model_copy(update={"intent_id": f"replayed-{tag}", "transactional": True})
    produce_intents(settings, [replayed])
    skipped = wait_until(lambda: [d for d in deliveries_of(settings, replayed.intent_id) if d.kind == "skipped"],
                         60, "the replayed intent to be skipped")
    assert skipped[0].detail == "erased", skipped[0].detail
    time.sleep(2)  # let the analytics sink and the loggers catch up before looking everywhere
    assert_nowhere(stack, secrets)
    delivered_before = len([m for m in list_messages(sink) if email in m.rcpt_tos])

    worker = stack.stack.services["worker"]
    # 1. A restart: the tables come back from their changelogs.
    worker.stop(sig=signal.SIGTERM)
    worker.start()
    worker.wait_ready()
    restarted = sealed.model_copy(update={"intent_id": f"restarted-{tag}", "transactional": True})
    produce_intents(settings, [restarted])
    skipped = wait_until(lambda: [d for d in deliveries_of(settings, restarted.intent_id) if d.kind == "skipped"],
                         90, "the intent after the restart to be skipped")
    assert skipped[0].detail == "erased", skipped[0].detail

    # 2. A fresh consumer group: every topic replayed from offset 0, every table rebuilt from nothing.
    worker.stop(sig=signal.SIGTERM)
    # Same pid and log files, so the fixture's teardown stops it; its own app id, so `ready` knows it.
    worker = Service("worker", settings.model_copy(update={"worker_id": f"replay-{tag}"}))
    worker.start()
    worker.wait_ready()
    wait_until(lambda: len(deliveries_of(settings, restarted.intent_id)) >= 2, 120,
               "the replaying worker to reach the intents sent after the erasure")
    after_event = stack.post_events([{"event_id": f"{sid}-5", "type": "cart.updated", "subscriber_id": sid,
                                      "properties": {"items": 1, "cart_id": f"c-{tag}"},
                                      "context": {"traits": {"email": email}}}])
    assert after_event.status_code == 202
    wait_until(lambda: int(stack.sql(f"SELECT count() FROM events WHERE event_id = '{sid}-5'")[0][0]) >= 1, 60,
               "the new event to be processed by the replaying worker")
    assert worker.pid() is not None and worker.ready(), "the worker stopped during the replay"
    replay_outcomes = {d.kind for i in (replayed, restarted) for d in deliveries_of(settings, i.intent_id)}
    assert replay_outcomes == {"skipped"}, replay_outcomes
    time.sleep(2)
    assert len([m for m in list_messages(sink) if email in m.rcpt_tos]) == delivered_before
    assert_nowhere(stack, secrets)
    log_text = (settings.data_dir / "logs" / "worker.log").read_text(errors="replace")
    assert "Traceback" not in log_text, log_text[log_text.index("Traceback") - 2000:][:6000]
