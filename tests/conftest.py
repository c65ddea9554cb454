"""Shared fixtures.

`settings` gives every test its own data dir and topic prefix, so tests never see each other's
records. `kafka_settings` additionally needs the real local broker: a session fixture starts it
(fetching the jars with Maven on first use) when nothing listens on the bootstrap address.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.settings import Settings

REPO = Path(__file__).resolve().parent.parent
TEST_BOOTSTRAP = os.environ.get("TIDINGS_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        kafka_bootstrap=TEST_BOOTSTRAP,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}",
        partitions=4,
        definitions_dir=REPO / "examples",
        log_format="console",
    )


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    from infra.kafka_broker import KafkaBroker

    broker = KafkaBroker(Settings(data_dir=REPO / "var", kafka_bootstrap=TEST_BOOTSTRAP))
    started_here = not broker.status().ready
    if started_here:
        broker.start(wait=True, timeout=120)
    yield TEST_BOOTSTRAP
    if started_here and os.environ.get("TIDINGS_KEEP_BROKER") != "1":
        broker.stop()


@pytest.fixture
def kafka_settings(settings: Settings, broker: str) -> Iterator[Settings]:
    from connectors.kafka_admin import delete_topics_with_prefix, ensure_topics

    ensure_topics(settings)
    yield settings
    # Thousands of leftover topics make every client's metadata requests slow: clean up.
    delete_topics_with_prefix(settings, settings.topic_prefix + ".")
    delete_topics_with_prefix(settings, settings.topic_prefix + "-")
