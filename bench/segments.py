"""Segments: events/s, latency from production to membership change, and memory per profile, with
20 live segments, each beside a baseline measured in the same run.

1. engine (in process, 1,000,000 subscribers): every subscriber gets one event, then random
   subscribers get more (BENCH_SEGMENT_EVENTS, default 1.5M), event time advancing over 30 days.
   - baseline: decode each encoded event and read/write a dict per subscriber (the raw loop);
   - engine: the same plus `observe_event` + `apply_record` (20 segments) + the profile write.
   Memory per profile: the JSON the changelog carries (median, p99 over all profiles) and the Python
   heap of profiles rebuilt from that JSON (tracemalloc over 50k profiles, as after a recovery).
2. Kafka (real broker, the real segments agent in a worker of its own, bench/_journeys_worker.py
   with only processors.segments): fewer subscribers to keep the run to a few minutes
   (BENCH_SEGMENT_KAFKA_SUBSCRIBERS, default 20,000, two events each).
   - baseline: a confluent-kafka consume loop decoding every event, events/s; and the latency of
     that raw path (produce -> consumed) at the paced rate below;
   - agent: events/s from a backlog until the group has committed everything;
   - latency: new subscribers' first events produced at half the agent's measured rate (at most
     5,000/s), each entering two segments; p50/p99 from the produce call to the change record
     arriving on the segment-changes topic.

Run: `python -m bench.segments` (about 3-5 minutes).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition

from bench._support import Report, bench_settings, committed_behind, median, percentile, raw_consume
from connectors.kafka_admin import delete_topics_with_prefix, ensure_topics
from domain.events import EventEnvelope, SegmentMembershipChanged
from domain.segment_engine import apply_record, compile_segments, observe_event
from domain.segment_rules import SegmentDefinition, parse_segment_data
from infra.publish import apply_paths
from infra.settings import Settings
from infra.stack import settings_env
from infra.topics import Topic

SUBSCRIBERS = int(os.environ.get("BENCH_SEGMENT_SUBSCRIBERS", "1000000"))
EVENTS = int(os.environ.get("BENCH_SEGMENT_EVENTS", "1500000"))
KAFKA_SUBSCRIBERS = int(os.environ.get("BENCH_SEGMENT_KAFKA_SUBSCRIBERS", "20000"))
LATENCY_SECONDS = float(os.environ.get("BENCH_SEGMENT_LATENCY_SECONDS", "20"))
REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SPAN = timedelta(days=30)

SEGMENTS: dict[str, dict[str, Any]] = {
    "buyers": {"performed": {"event": "order.placed"}},
    "big-buyers": {"performed": {"event": "order.placed", "at_least": 2, "where": {"total": {"gte": 100}}}},
    "active-7d": {"performed": {"event": "session.started", "within": "7d"}},
    "engaged": {"performed": {"event": "product.viewed", "at_least": 3, "within": "30d"}},
    "lapsed": {"last_performed": {"event": "order.placed", "not_within": "14d"}},
    "newcomers": {"first_performed": {"event": "session.started", "within": "7d"}},
    "cart-abandoners": {"all": [{"performed": {"event": "cart.updated", "within": "1d"}},
                                {"not": {"performed": {"event": "order.placed", "within": "1d"}}}]},
    "north-america": {"attribute": {"country": {"in": ["US", "CA"]}}},
    "pro": {"attribute": {"plan": "pro"}},
    "gmail": {"attribute": {"email": {"contains": "@gmail."}}},
    "recent-signups": {"attribute": {"signed_up_at": {"within": "30d"}}},
    "holdout": {"bucket": {"modulo": 100, "lt": 10, "salt": "bench"}},
    "vip": {"all": [{"segment": "big-buyers"}, {"attribute": {"plan": "pro"}}]},
    "buyers-not-vip": {"all": [{"segment": "buyers"}, {"not": {"segment": "vip"}}]},
    "openers": {"email": {"kind": "opened", "within": "30d"}},
    "cold": {"not_opened_last": 3},
    "newsletter": {"subscribed": {"list": "newsletter"}},
    "searchers": {"performed": {"event": "search", "at_least": 5, "within": "7d"}},
    "browsers-no-buy": {"all": [{"performed": {"event": "product.viewed"}}, {"not": {"performed": {"event": "order.placed"}}}]},
    "engaged-north-america": {"all": [{"segment": "engaged"}, {"segment": "north-america"}]},
}
MIX = [("session.started", 30), ("product.viewed", 35), ("cart.updated", 10), ("order.placed", 5), ("search", 10), ("identify", 10)]


def definitions() -> list[SegmentDefinition]:
    return [parse_segment_data({"id": sid, "rule": rule}) for sid, rule in SEGMENTS.items()]


def make_event(rng: random.Random, i: int, subscriber: str, at: datetime) -> EventEnvelope:
    kind = rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
    properties: dict[str, Any] = {}
    context: dict[str, Any] = {}
    if kind == "order.placed":
        properties = {"total": rng.choice([20, 60, 120, 300]), "currency": "EUR"}
    elif kind == "product.viewed":
        properties = {"sku": f"sku-{rng.randrange(500)}"}
    elif kind == "identify":
        context = {"traits": {"country": rng.choice(["US", "CA", "DE", "FR"]), "plan": rng.choice(["free", "pro"]),
                              "email": f"{subscriber}@{rng.choice(['gmail.com', 'example.com'])}",
                              "signed_up_at": (at - timedelta(days=rng.randrange(60))).isoformat()}}
    return EventEnvelope(event_id=f"ev-{i:09d}", type=kind, subscriber_id=subscriber, occurred_at=at, received_at=at,
                         source="kafka", properties=properties, context=context)


def encoded_stream(subscribers: int, events: int, seed: int = 4, start: datetime = T0, span: timedelta = SPAN) -> list[bytes]:
    """Every subscriber once (shuffled), then random subscribers; event time rising over `span`."""
    rng = random.Random(seed)
    order = list(range(subscribers))
    rng.shuffle(order)
    order += [rng.randrange(subscribers) for _ in range(max(0, events - subscribers))]
    step = span / len(order)
    return [make_event(rng, i, f"sub-{n:07d}", start + step * i).to_bytes() for i, n in enumerate(order)]


# --- 1. the engine in process -------------------------------------------------------------------------


def engine_run() -> dict[str, float]:
    compiled = compile_segments(definitions())
    started = time.perf_counter()
    stream = encoded_stream(SUBSCRIBERS, EVENTS)
    generated_in = time.perf_counter() - started

    table: dict[bytes, Any] = {}
    started = time.perf_counter()
    for raw in stream:  # baseline: decode + table read + table write
        event = EventEnvelope.from_bytes(raw)
        key = event.subscriber_id.encode()
        table[key] = table.get(key, {})
    baseline = len(stream) / (time.perf_counter() - started)

    profiles: dict[bytes, Any] = {}
    changes = 0
    started = time.perf_counter()
    for raw in stream:
        event = EventEnvelope.from_bytes(raw)
        key = event.subscriber_id.encode()
        profile, new = apply_record(compiled, profiles.get(key, {}), observe_event(event))
        changes += len(new)
        profiles[key] = profile
    engine = len(stream) / (time.perf_counter() - started)

    sizes = [len(json.dumps(p, separators=(",", ":"))) for p in profiles.values()]
    sample = [json.dumps(p, separators=(",", ":")) for p in list(profiles.values())[:50_000]]
    del table, stream
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    rebuilt = [json.loads(text) for text in sample]
    heap = (tracemalloc.get_traced_memory()[0] - before) / len(rebuilt)
    tracemalloc.stop()
    members = sum(len(p["members"]) for p in profiles.values())
    return {
        "subscribers": len(profiles), "events": EVENTS, "generate_s": generated_in, "changes": changes,
        "memberships": members, "baseline_events_per_s": baseline, "engine_events_per_s": engine,
        "profile_json_bytes_median": median(sizes), "profile_json_bytes_p99": percentile(sizes, 99),
        "profile_json_bytes_max": max(sizes), "profile_heap_bytes_mean": heap,
    }


# --- 2. the real agent on Kafka ---------------------------------------------------------------------


def produce_backlog(settings: Settings) -> int:
    # Event time ends now: the worker's timers run on the wall clock, and a backlog stamped weeks
    # ago would make every window due at once (a backfill, measured by the engine part instead).
    span = timedelta(hours=1)
    stream = encoded_stream(KAFKA_SUBSCRIBERS, 2 * KAFKA_SUBSCRIBERS, seed=5, start=datetime.now(timezone.utc) - span, span=span)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True, "linger.ms": 20})
    name = Topic.EVENTS.name(settings)
    for raw in stream:
        key = json.loads(raw)["subscriber_id"].encode()
        while True:
            try:
                producer.produce(name, value=raw, key=key)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)
    return len(stream)


def start_worker(settings: Settings) -> subprocess.Popen:
    log = settings.data_dir / "logs" / "bench-segments-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**settings_env(settings), "BENCH_STAGES": "processors.segments"}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bench._journeys_worker"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{settings.worker_host}:{settings.worker_port}/healthz/"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_worker(proc)
            raise RuntimeError(f"bench worker did not start; see {log}")
        try:
            if httpx.get(url, timeout=1).json()["recovered"]:
                return proc
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.2)


def stop_worker(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def agent_throughput(settings: Settings, expected: int) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + 600
    while committed_behind(settings) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the segments agent did not catch up in 10 minutes")
        time.sleep(0.25)
    return expected / (time.perf_counter() - started)


def paced_latency(settings: Settings, rate: float, watch: Topic, match: Any) -> list[float]:
    """Produce first events of fresh subscribers at `rate`; seconds from produce() to the record on `watch`."""
    sent: dict[str, float] = {}
    latencies: list[float] = []
    done = threading.Event()
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"{settings.topic_prefix}.lat-{watch.spec.suffix}",
                         "auto.offset.reset": "latest", "enable.auto.commit": False})
    name = watch.name(settings)
    parts = [TopicPartition(name, p) for p in range(watch.partitions(settings))]
    ends = [TopicPartition(name, p.partition, consumer.get_watermark_offsets(p, timeout=10)[1]) for p in parts]
    consumer.assign(ends)

    def follow() -> None:
        while not done.is_set():
            for message in consumer.consume(1000, 0.2):
                if message.error():
                    continue
                arrived = time.perf_counter()
                cause = match(message.value())
                if cause in sent:
                    latencies.append(arrived - sent.pop(cause))

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True, "linger.ms": 1})
    topic = Topic.EVENTS.name(settings)
    prefix = f"lat-{watch.spec.suffix}"
    count = int(rate * LATENCY_SECONDS)
    started = time.perf_counter()
    for i in range(count):
        due = started + i / rate
        while (pause := due - time.perf_counter()) > 0:
            producer.poll(min(pause, 0.01))
        now = datetime.now(timezone.utc)
        event = EventEnvelope(event_id=f"{prefix}-{i}", type="session.started", subscriber_id=f"{prefix}-sub-{i}",
                              occurred_at=now, received_at=now, source="kafka")
        sent[event.event_id] = time.perf_counter()
        producer.produce(topic, value=event.to_bytes(), key=event.subscriber_id.encode())
        producer.poll(0)
    producer.flush(30)
    deadline = time.monotonic() + 30
    while sent and time.monotonic() < deadline:
        time.sleep(0.1)
    done.set()
    reader.join()
    consumer.close()
    return latencies


def change_cause(raw: bytes) -> str:
    change = SegmentMembershipChanged.from_bytes(raw)
    return change.cause_event_ids[0] if change.change == "entered" and change.segment_id == "active-7d" else ""


def event_id_of(raw: bytes) -> str:
    return json.loads(raw)["event_id"]


def kafka_run() -> dict[str, float]:
    settings = bench_settings(partitions=4)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    segments_dir = Path(mkdtemp(prefix="bench-segments-")) / "segments"
    segments_dir.mkdir()
    for definition in definitions():
        (segments_dir / f"{definition.id}.yaml").write_text(json.dumps(definition.body()))
    try:
        apply_paths(settings, [segments_dir])
        events = produce_backlog(settings)
        baseline = raw_consume(settings, events)
        proc = start_worker(settings)
        try:
            agent = agent_throughput(settings, events)
            rate = min(5000.0, agent / 2)
            agent_latency = paced_latency(settings, rate, Topic.SEGMENT_CHANGES, change_cause)
        finally:
            stop_worker(proc)
        raw_latency = paced_latency(settings, rate, Topic.EVENTS, event_id_of)
        return {
            "subscribers": KAFKA_SUBSCRIBERS, "events": events, "raw_consume_events_per_s": baseline,
            "agent_events_per_s": agent, "paced_rate_per_s": rate,
            "agent_latency_measured": len(agent_latency), "agent_latency_p50_ms": percentile(agent_latency, 50) * 1000,
            "agent_latency_p99_ms": percentile(agent_latency, 99) * 1000,
            "raw_latency_p50_ms": percentile(raw_latency, 50) * 1000, "raw_latency_p99_ms": percentile(raw_latency, 99) * 1000,
        }
    finally:
        delete_topics_with_prefix(settings, settings.topic_prefix)


def main() -> None:
    engine = engine_run()
    kafka = kafka_run()
    report = Report(
        "segments",
        [
            ("engine: subscribers / events / live segments", f"{engine['subscribers']:,} / {engine['events']:,} / {len(SEGMENTS)}"),
            ("engine: baseline decode+dict loop", f"{engine['baseline_events_per_s']:,.0f} events/s"),
            ("engine: segments engine", f"{engine['engine_events_per_s']:,.0f} events/s "
             f"({engine['engine_events_per_s'] / engine['baseline_events_per_s']:.2f} x baseline)"),
            ("engine: changes / memberships", f"{engine['changes']:,} / {engine['memberships']:,}"),
            ("profile JSON bytes median / p99 / max", f"{engine['profile_json_bytes_median']:.0f} / "
             f"{engine['profile_json_bytes_p99']:.0f} / {engine['profile_json_bytes_max']:.0f}"),
            ("profile Python heap bytes (mean)", f"{engine['profile_heap_bytes_mean']:.0f}"),
            ("kafka: subscribers / events", f"{kafka['subscribers']:,} / {kafka['events']:,}"),
            ("kafka: raw consume loop", f"{kafka['raw_consume_events_per_s']:,.0f} events/s"),
            ("kafka: segments agent", f"{kafka['agent_events_per_s']:,.0f} events/s "
             f"({kafka['agent_events_per_s'] / kafka['raw_consume_events_per_s']:.2f} x raw)"),
            ("kafka: latency at paced rate", f"{kafka['paced_rate_per_s']:,.0f} events/s"),
            ("kafka: produce->change p50 / p99", f"{kafka['agent_latency_p50_ms']:.1f} / {kafka['agent_latency_p99_ms']:.1f} ms "
             f"(n={kafka['agent_latency_measured']:.0f})"),
            ("kafka: produce->raw consume p50 / p99", f"{kafka['raw_latency_p50_ms']:.1f} / {kafka['raw_latency_p99_ms']:.1f} ms"),
        ],
    )
    report.print()
    report.save({"engine": engine, "kafka": kafka, "segments": list(SEGMENTS)})


if __name__ == "__main__":
    main()
