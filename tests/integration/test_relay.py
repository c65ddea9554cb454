"""The relay on a real broker, on SQLite and PostgreSQL: ordering, dedupe ids, tombstones, and
SIGKILL at random points while several writers record 10,000 consent changes."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from connectors.kafka_producer import KafkaProducer
from domain.events import ConsentChanged, DefinitionPublished, stable_id
from infra.event_store import open_event_store
from infra.stack import settings_env
from infra.topics import Topic
from processors.relay import Relay
from tests.integration.event_store_support import REPO, on_backend
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def relay_settings(request, kafka_settings):
    yield from on_backend(kafka_settings, request.param)


def stored_consent_ids(store) -> dict[str, list[str]]:
    """subscriber id -> consent_event_ids in store order."""
    app = store.subscribers
    names: dict = {}
    out: dict[str, list[str]] = defaultdict(list)
    start = 1
    while True:
        notes = app.notification_log.select(start=start, limit=app.log_section_size)
        for n in notes:
            if n.originator_id not in names:
                names[n.originator_id] = json.loads(n.state)["subscriber_id"]
            out[names[n.originator_id]].append(stable_id(app.name, str(n.originator_id), str(n.originator_version)))
        if len(notes) < app.log_section_size:
            return out
        start = notes[-1].id + 1


def relayed_consent_ids(settings, expect: int) -> tuple[dict[str, list[str]], int]:
    """subscriber id -> consent_event_ids in topic order, first occurrence only; and the raw count."""
    records = read_topic(settings, Topic.CONSENT, timeout=60)
    seen: set[str] = set()
    out: dict[str, list[str]] = defaultdict(list)
    for key, value in records:
        change = ConsentChanged.from_bytes(value)
        assert key == change.subscriber_id.encode()
        if change.consent_event_id not in seen:
            seen.add(change.consent_event_id)
            out[change.subscriber_id].append(change.consent_event_id)
    return out, len(records)


def test_relay_sends_consent_and_definitions_then_resumes_from_tracking(relay_settings):
    store = open_event_store(relay_settings)
    producer = KafkaProducer(relay_settings)
    try:
        store.subscribers.register_or_update("s1", "ann@example.com", lists=["news"])
        store.subscribers.change("s1", "unsubscribe", list_id=None, actor="t", reason="one-click")
        store.definitions.publish("template", "welcome", {"subject": "hi"}, "ann", "welcome.yaml")
        store.definitions.archive("template", "welcome", "ann")
        assert Relay(relay_settings, store, producer).relay_all() == 6
        # A new relay (a restart) starts after what was relayed: nothing is sent twice.
        store.subscribers.change("s1", "resubscribe", actor="t")
        assert Relay(relay_settings, store, producer).relay_all() == 1
    finally:
        producer.close()
        store.close()
    consent = [ConsentChanged.from_bytes(v) for _, v in read_topic(relay_settings, Topic.CONSENT)]
    assert [(c.status, c.list_id, c.reason) for c in consent] == [
        ("subscribed", "", "registered"), ("subscribed", "news", ""), ("unsubscribed", "", "one-click"),
        ("subscribed", "", "")]
    assert b"ann@example.com" not in b"".join(c.to_bytes() for c in consent)
    definitions = read_topic(relay_settings, Topic.DEFINITIONS)
    assert [k for k, _ in definitions] == [b"template:welcome", b"template:welcome"]
    assert DefinitionPublished.from_bytes(definitions[0][1]).version == 1
    assert definitions[1][1] is None  # archived: a tombstone


WRITERS, SUBSCRIBERS_PER_WRITER, CHANGES_PER_SUBSCRIBER = 4, 25, 100  # 10,000 stored events


@pytest.mark.timeout(240)
def test_sigkilled_relay_leaves_exactly_the_stored_set_in_per_subscriber_order(relay_settings):
    env = settings_env(relay_settings, {"TIDINGS_LOG_FORMAT": "json", "TIDINGS_LOG_LEVEL": "WARNING"})
    open_event_store(relay_settings).close()  # tables first: concurrent CREATE TABLE races on PostgreSQL
    writers = [
        subprocess.Popen([sys.executable, "-m", "tests.integration.consent_writer", str(w),
                          str(SUBSCRIBERS_PER_WRITER), str(CHANGES_PER_SUBSCRIBER)], cwd=REPO, env=env)
        for w in range(WRITERS)
    ]
    rng = random.Random(20261128)
    kills = 0
    relay = None
    try:
        while any(w.poll() is None for w in writers):
            relay = subprocess.Popen([sys.executable, "-m", "infra.cli", "relay"], cwd=REPO, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.5, 3.0))
            relay.send_signal(signal.SIGKILL)
            relay.wait()
            kills += 1
        assert all(w.returncode == 0 for w in writers), [w.returncode for w in writers]
        # The last relay runs to the end and stops cleanly.
        relay = subprocess.Popen([sys.executable, "-m", "infra.cli", "relay"], cwd=REPO, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        store = open_event_store(relay_settings)
        try:
            expected = stored_consent_ids(store)
            last = store.subscribers.recorder.max_notification_id()
            from processors.relay import Tracking

            tracking = Tracking(store.database("Subscribers"), "Subscribers")
            deadline = time.monotonic() + 90
            while tracking.position() < last:
                assert time.monotonic() < deadline, "relay did not catch up"
                time.sleep(0.3)
        finally:
            store.close()
        relay.send_signal(signal.SIGTERM)
        relay.wait(30)
    finally:
        for proc in [*writers, relay]:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    total = sum(len(v) for v in expected.values())
    assert total == WRITERS * SUBSCRIBERS_PER_WRITER * CHANGES_PER_SUBSCRIBER
    relayed, raw = relayed_consent_ids(relay_settings, total)
    assert kills >= 2
    assert relayed == expected  # same ids, and per subscriber in store order
    print(f"{relay_settings.event_store}: {total} stored, {raw} on Kafka before dedupe, {kills} SIGKILLs")
