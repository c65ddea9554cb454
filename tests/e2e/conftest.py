"""A whole stack per test module: the real broker, the SMTP capture sink, the worker and the API,
each a real process on its own free loopback port, with fresh topics and a fresh data dir."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from infra.settings import Settings
from infra.stack import Stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningStack:
    settings: Settings
    stack: Stack
    api_key: str

    @property
    def api(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def post_events(self, events: list[dict]) -> httpx.Response:
        return httpx.post(f"{self.api}/v1/events", json={"events": events},
                          headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30)

    def sql(self, query: str) -> list[list]:
        from infra.analytics_client import run_query

        return run_query(self.settings, query)["rows"]


@pytest.fixture(scope="module")
def running_stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    import uuid

    from infra.api_keys import ApiKeyStore
    from infra.demo import _wait_definitions_live
    from infra.publish import apply_paths
    from tests.conftest import REPO

    mailsink_port = free_port()
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("stack") / "var",
        kafka_bootstrap=broker,
        topic_prefix=f"e2e{uuid.uuid4().hex[:8]}",
        api_port=free_port(),
        worker_port=free_port(),
        mailsink_port=mailsink_port,
        smtp_url=f"smtp://127.0.0.1:{mailsink_port}",
        definitions_dir=REPO / "examples",
        log_format="json",
        analytics_batch_seconds=0.5,
        retry_base_seconds=2.0,
    )
    settings.data_dir.mkdir(parents=True)
    api_key = ApiKeyStore(settings).create("e2e")
    stack = Stack(settings)
    try:
        stack.up()
        published = apply_paths(settings, [settings.definitions_dir])
        _wait_definitions_live(settings, published)
        yield RunningStack(settings, stack, api_key)
    finally:
        stack.down(stop_broker=False)
        from connectors.kafka_admin import delete_topics_with_prefix

        delete_topics_with_prefix(settings, settings.topic_prefix)
