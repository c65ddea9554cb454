"""The whole pipeline on the real local stack, beside a raw confluent-kafka loop from the same run.

- baseline: a raw produce loop (pre-encoded values, one flush) and a raw consume loop, msgs/s;
- ingest: events/s from HTTP POST (batches of 500, 4 client threads) until every event is counted
  in ClickHouse (API -> Kafka -> worker analytics sink -> chDB);
- latency: identify + signup pairs posted at a fixed offered rate; time from the POST to the
  welcome email's acceptance by the SMTP capture sink, p50/p99.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import datetime, timezone

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench._support import Report, bench_settings, median, percentile

RAW_MESSAGES = int(os.environ.get("BENCH_RAW_MESSAGES", "200000"))
INGEST_EVENTS = int(os.environ.get("BENCH_INGEST_EVENTS", "30000"))
LATENCY_RATE = float(os.environ.get("BENCH_LATENCY_RATE", "20"))  # signups per second
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "15"))


def raw_kafka_loop(bootstrap: str, messages: int) -> dict[str, float]:
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result()
    time.sleep(0.5)
    value = b"x" * 300
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5, "compression.type": "lz4"})
    keys = [f"sub-{i % 10000}".encode() for i in range(messages)]
    started = time.perf_counter()
    for key in keys:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)
    produce_s = time.perf_counter() - started
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    seen = 0
    started = time.perf_counter()
    while seen < messages:
        batch = consumer.consume(10000, 1.0)
        seen += sum(1 for m in batch if not m.error())
    consume_s = time.perf_counter() - started
    consumer.close()
    admin.delete_topics([topic])
    return {"produce_per_s": messages / produce_s, "consume_per_s": messages / consume_s}


def _post_all(url: str, key: str, batches: list[list[dict]], accepted: list[int]) -> None:
    with httpx.Client(timeout=60) as client:
        for batch in batches:
            response = client.post(url, json={"events": batch}, headers={"Authorization": f"Bearer {key}"})
            response.raise_for_status()
            accepted.append(response.json()["accepted"])


def ingest_to_clickhouse(settings, api_key: str, events: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from infra.analytics_client import run_query

    run = uuid.uuid4().hex[:6]
    now = datetime.now(timezone.utc).isoformat()
    payload = [
        {"event_id": f"ing-{run}-{i}", "type": "product.viewed", "subscriber_id": f"ing-{run}-{i % 5000}",
         "occurred_at": now, "properties": {"product": "kettle", "price": 42.5}}
        for i in range(events)
    ]
    batches = [payload[i : i + 500] for i in range(0, len(payload), 500)]
    url = f"http://{settings.api_host}:{settings.api_port}/v1/events"
    accepted: list[int] = []
    threads = [threading.Thread(target=_post_all, args=(url, api_key, batches[t::4], accepted)) for t in range(4)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    posted_s = time.perf_counter() - started
    query = f"SELECT count() FROM events WHERE startsWith(event_id, 'ing-{run}-')"
    while int(run_query(settings, query)["rows"][0][0]) < events:
        time.sleep(0.1)
        if time.perf_counter() - started > 300:
            raise RuntimeError("events did not all reach ClickHouse within 300 s")
    total_s = time.perf_counter() - started
    return {"api_accept_per_s": sum(accepted) / posted_s, "api_to_clickhouse_per_s": events / total_s}


def post_to_smtp_latency(settings, api_key: str, rate: float, seconds: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from connectors.mailsink import list_messages

    run = uuid.uuid4().hex[:6]
    url = f"http://{settings.api_host}:{settings.api_port}/v1/events"
    posted_at: dict[str, float] = {}
    count = int(rate * seconds)
    with httpx.Client(timeout=30) as client:
        started = time.time()
        for n in range(count):
            due = started + n / rate
            time.sleep(max(0.0, due - time.time()))
            sid = f"lat-{run}-{n}"
            email = f"lat.{run}.{n}@example.org"
            events = [
                {"event_id": f"{sid}-i", "type": "identify", "subscriber_id": sid, "context": {"traits": {"email": email}}},
                {"event_id": f"{sid}-s", "type": "user.signed_up", "subscriber_id": sid},
            ]
            posted_at[email] = time.time()
            client.post(url, json={"events": events}, headers={"Authorization": f"Bearer {api_key}"}).raise_for_status()
    deadline = time.time() + 60
    latencies: dict[str, float] = {}
    while len(latencies) < count and time.time() < deadline:
        for message in list_messages(settings.mailsink_dir):
            for rcpt in message.rcpt_tos:
                if rcpt in posted_at and rcpt not in latencies:
                    latencies[rcpt] = message.received_at.timestamp() - posted_at[rcpt]
        time.sleep(0.2)
    values = [v * 1000 for v in latencies.values()]
    return {"offered_per_s": rate, "delivered": len(values), "expected": count,
            "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99)}


def main() -> None:
    from infra.api_keys import ApiKeyStore
    from infra.demo import _wait_definitions_live
    from infra.publish import apply_paths
    from infra.settings import Settings
    from infra.stack import Stack

    base = Settings()
    settings = bench_settings(kafka_bootstrap=base.kafka_bootstrap, definitions_dir=base.definitions_dir.resolve())
    settings.data_dir.mkdir(parents=True)
    stack = Stack(settings, broker_settings=base)
    stack.broker.start(wait=True)
    raw = [raw_kafka_loop(settings.kafka_bootstrap, RAW_MESSAGES) for _ in range(3)]
    api_key = ApiKeyStore(settings).create("bench")
    try:
        stack.up()
        _wait_definitions_live(settings, apply_paths(settings, [settings.definitions_dir]))
        ingest = [ingest_to_clickhouse(settings, api_key, INGEST_EVENTS) for _ in range(2)]
        latency = post_to_smtp_latency(settings, api_key, LATENCY_RATE, LATENCY_SECONDS)
    finally:
        stack.down(stop_broker=False)
        from connectors.kafka_admin import delete_topics_with_prefix

        delete_topics_with_prefix(settings, settings.topic_prefix)
    raw_produce = median([r["produce_per_s"] for r in raw])
    raw_consume = median([r["consume_per_s"] for r in raw])
    to_ch = median([r["api_to_clickhouse_per_s"] for r in ingest])
    accept = median([r["api_accept_per_s"] for r in ingest])
    report = Report(
        "pipeline",
        [
            ("raw confluent-kafka produce (median of 3)", f"{raw_produce:,.0f} msg/s"),
            ("raw confluent-kafka consume (median of 3)", f"{raw_consume:,.0f} msg/s"),
            ("API accept, 4 clients x 500/batch (median of 2)", f"{accept:,.0f} events/s  ({accept / raw_produce:.1%} of raw produce)"),
            ("API -> Kafka -> worker -> ClickHouse (median of 2)", f"{to_ch:,.0f} events/s  ({to_ch / raw_consume:.1%} of raw consume)"),
            (f"POST -> SMTP accepted at {latency['offered_per_s']:.0f} signups/s",
             f"p50 {latency['p50_ms']:.0f} ms, p99 {latency['p99_ms']:.0f} ms "
             f"({latency['delivered']}/{latency['expected']} delivered)"),
        ],
    )
    report.print()
    report.save({"raw": raw, "ingest": ingest, "latency": latency})


if __name__ == "__main__":
    main()
