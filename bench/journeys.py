"""Events/s through the segments and journeys stages with the example journeys live, beside a raw
consume loop over the same events in the same run.

- baseline: a confluent-kafka consume loop that decodes every event (EventEnvelope), events/s;
- stages: a worker with only the segments and journeys stages (bench/_journeys_worker.py, real
  broker, example segments and journeys published) starts on a backlog of generated events; events/s
  from the moment it is ready until its consumer group has committed every event. The figure
  includes the durable sends of intents and decisions and the changelog writes of both stages; the
  examples' short waits fire as timers while it runs.

Run: `python -m bench.journeys` (BENCH_JOURNEY_SUBSCRIBERS, default 4000 ~ 22k events; BENCH_JOURNEY_RUNS, default 2).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from confluent_kafka import Consumer, TopicPartition

from bench._support import Report, bench_settings, committed_behind, median, raw_consume
from connectors.kafka_admin import delete_topics_with_prefix, ensure_topics
from connectors.kafka_producer import KafkaProducer
from domain.events import EventEnvelope
from examples.generator import generate
from infra.publish import apply_paths
from infra.settings import Settings
from infra.stack import settings_env
from infra.topics import Topic

SUBSCRIBERS = int(os.environ.get("BENCH_JOURNEY_SUBSCRIBERS", "4000"))
RUNS = int(os.environ.get("BENCH_JOURNEY_RUNS", "2"))
REPO = Path(__file__).resolve().parent.parent


def produce(settings: Settings) -> int:
    raw, _ = generate(SUBSCRIBERS, namespace=settings.topic_prefix)
    events = [EventEnvelope.model_validate({**e, "received_at": e["occurred_at"], "source": "demo"}) for e in raw]
    producer = KafkaProducer(settings)
    try:
        name = Topic.EVENTS.name(settings)
        producer.produce_all_sync([(name, e.subscriber_id.encode(), e.to_bytes()) for e in events])
    finally:
        producer.close()
    return len(events)


def stages_run(settings: Settings, expected: int) -> float:
    log = settings.data_dir / "logs" / "bench-journeys-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bench._journeys_worker"], cwd=REPO, env=settings_env(settings),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://{settings.worker_host}:{settings.worker_port}/healthz/"
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bench worker did not start; see {log}")
            try:
                if httpx.get(url, timeout=1).json()["recovered"]:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        started = time.perf_counter()
        deadline = time.monotonic() + 600
        while committed_behind(settings) > 0:
            if time.monotonic() > deadline:
                raise RuntimeError("bench worker did not catch up in 10 minutes")
            time.sleep(0.5)
        return expected / (time.perf_counter() - started)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def topic_size(settings: Settings, topic: Topic) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"{settings.topic_prefix}.size"})
    try:
        name = topic.name(settings)
        return sum(
            high - low
            for low, high in (
                consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10) for p in range(topic.partitions(settings))
            )
        )
    finally:
        consumer.close()


def one_run() -> dict[str, float]:
    settings = bench_settings(partitions=4)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    try:
        apply_paths(settings, [REPO / "examples"])
        events = produce(settings)
        baseline = raw_consume(settings, events)
        stages = stages_run(settings, events)
        return {
            "events": events,
            "raw_consume_per_s": baseline,
            "stages_per_s": stages,
            "send_intents": topic_size(settings, Topic.SEND_INTENTS),
            "journey_decisions": topic_size(settings, Topic.JOURNEY_DECISIONS),
        }
    finally:
        delete_topics_with_prefix(settings, settings.topic_prefix)


def main() -> None:
    runs = [one_run() for _ in range(RUNS)]
    raw = median([r["raw_consume_per_s"] for r in runs])
    stages = median([r["stages_per_s"] for r in runs])
    figures = {
        "subscribers": SUBSCRIBERS,
        "runs": runs,
        "median_raw_consume_per_s": raw,
        "median_segments_journeys_per_s": stages,
        "ratio_stages_to_raw": stages / raw,
    }
    report = Report("journeys", [
        ("events per run", f"{runs[0]['events']:.0f} ({SUBSCRIBERS} subscribers, example journeys live)"),
        ("raw consume + decode loop", f"{raw:,.0f} events/s (median of {RUNS})"),
        ("segments + journeys stages", f"{stages:,.0f} events/s (median of {RUNS})"),
        ("ratio stages / raw", f"{stages / raw:.3f}"),
        ("send intents / decisions per run", f"{runs[0]['send_intents']:.0f} / {runs[0]['journey_decisions']:.0f}"),
    ])
    report.print()
    report.save(figures)


if __name__ == "__main__":
    main()
