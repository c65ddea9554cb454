"""Shared by the benchmarks: percentiles, a printed report, a throwaway stack."""

from __future__ import annotations

import json
import socket
import statistics
import uuid
from dataclasses import dataclass
from pathlib import Path
from tempfile import mkdtemp

import time

from confluent_kafka import Consumer, TopicPartition

from domain.events import EventEnvelope
from infra.settings import Settings
from infra.topics import Topic

RESULTS = Path(__file__).parent / "results"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_settings(**overrides) -> Settings:  # type: ignore[no-untyped-def]
    mailsink_port = free_port()
    values = dict(
        data_dir=Path(mkdtemp(prefix="tidings-bench-")) / "var",
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}",
        api_port=free_port(),
        worker_port=free_port(),
        mailsink_port=mailsink_port,
        smtp_url=f"smtp://127.0.0.1:{mailsink_port}",
        log_format="json",
        log_level="WARNING",
    )
    values.update(overrides)
    return Settings(**values)


@dataclass
class Report:
    name: str
    rows: list[tuple[str, str]]

    def print(self) -> None:
        width = max(len(k) for k, _ in self.rows)
        print(f"-- {self.name}")
        for key, value in self.rows:
            print(f"   {key.ljust(width)}  {value}")

    def save(self, figures: dict) -> None:  # type: ignore[type-arg]
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{self.name}.json").write_text(json.dumps(figures, indent=2, default=str))


def raw_consume(settings: Settings, expected: int) -> float:
    """The baseline: a plain confluent-kafka loop reading and decoding `expected` events, events/s."""
    name = Topic.EVENTS.name(settings)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"{settings.topic_prefix}.raw",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(name, p, 0) for p in range(Topic.EVENTS.partitions(settings))])
    seen = 0
    started = time.perf_counter()
    while seen < expected:
        for message in consumer.consume(5000, 1.0):
            if not message.error():
                EventEnvelope.from_bytes(message.value())
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return expected / elapsed


def committed_behind(settings: Settings) -> int:
    """How many events the worker's consumer group has not committed yet."""
    from processors.app import app_id

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": app_id(settings)})
    try:
        name = Topic.EVENTS.name(settings)
        parts = [TopicPartition(name, p) for p in range(Topic.EVENTS.partitions(settings))]
        behind = 0
        for committed in consumer.committed(parts, timeout=10):
            high = consumer.get_watermark_offsets(TopicPartition(name, committed.partition), timeout=10)[1]
            behind += high - max(committed.offset, 0)
        return behind
    finally:
        consumer.close()
