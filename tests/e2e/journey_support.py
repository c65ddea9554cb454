"""Helpers for journey end-to-end tests: a clock-file worker as a real subprocess, definitions on
disk, events produced straight to the events topic, and reading what the worker emitted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from connectors.kafka_producer import KafkaProducer
from domain.events import EventEnvelope, SendIntent
from domain.journeys import JourneyDecision
from infra.settings import Settings
from infra.stack import settings_env
from infra.topics import Topic
from tests.kafka_helpers import read_topic

REPO = Path(__file__).resolve().parents[2]

TEMPLATE = """\
id: {id}
subject: "{id} for {{{{ subscriber.first_name | default('you') }}}}"
html: "<p>{id}</p>"
text: "{id}"
"""


def write_definitions(root: Path, journeys: dict[str, str], templates: list[str], segments: dict[str, str] | None = None) -> Path:
    for folder in ("journeys", "templates", "segments"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name, text in journeys.items():
        (root / "journeys" / f"{name}.yaml").write_text(text)
    for name in templates:
        (root / "templates" / f"{name}.yaml").write_text(TEMPLATE.format(id=name))
    for name, text in (segments or {}).items():
        (root / "segments" / f"{name}.yaml").write_text(text)
    return root


class ClockWorker:
    """`python -m tests.e2e.clock_worker` with its clock in a file the test moves."""

    def __init__(self, settings: Settings, clock_file: Path) -> None:
        self.settings = settings
        self.clock_file = clock_file
        self.log = settings.data_dir / "logs" / "clock-worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def set_clock(self, at: datetime) -> None:
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(at.isoformat())
        tmp.replace(self.clock_file)  # atomic: the worker never reads half a time

    def start(self, journeys: int, timeout: float = 90) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = settings_env(self.settings, {"TIDINGS_TEST_CLOCK_FILE": str(self.clock_file), "TIDINGS_LOG_FORMAT": "json"})
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.e2e.clock_worker"], cwd=REPO, env=env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        url = f"http://{self.settings.worker_host}:{self.settings.worker_port}/healthz/"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clock worker exited:\n{self.log.read_text()[-3000:]}")
            try:
                body = httpx.get(url, timeout=1).json()
                if body["recovered"] and body["journeys"] >= journeys:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"clock worker not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def produce_events(settings: Settings, events: list[EventEnvelope]) -> None:
    producer = KafkaProducer(settings)
    try:
        name = Topic.EVENTS.name(settings)
        producer.produce_all_sync([(name, e.subscriber_id.encode(), e.to_bytes()) for e in events])
    finally:
        producer.close()


def intents(settings: Settings, expect: int | None = None, timeout: float = 10) -> list[SendIntent]:
    return [SendIntent.from_bytes(v) for _, v in read_topic(settings, Topic.SEND_INTENTS, expect, timeout)]


def decisions(settings: Settings, expect: int | None = None, timeout: float = 10) -> list[JourneyDecision]:
    return [JourneyDecision.from_bytes(v) for _, v in read_topic(settings, Topic.JOURNEY_DECISIONS, expect, timeout)]


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = predicate()
        if ok:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last}")
