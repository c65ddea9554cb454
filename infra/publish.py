"""`tidings apply`: validate definitions, record new versions in the event store, relay them.

The event store (DefinitionsApplication) is the system of record: each changed definition gets a
new version with who published it and from which file; unchanged content records nothing. The
relay then puts the new versions on the compacted definitions topic, which every worker follows
and switches to without a restart.
"""

from __future__ import annotations

import getpass
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from connectors.definitions_topic import read_definitions
from connectors.kafka_admin import ensure_topics
from connectors.kafka_producer import KafkaProducer
from domain.events import DefinitionPublished
from domain.publishing import DefinitionKind, content_hash
from domain.yaml_source import DefinitionError
from infra.definitions_loader import Definitions, DefinitionsInvalid, load_paths
from infra.event_store import open_event_store
from infra.settings import Settings

log = structlog.get_logger(__name__)


class DefinitionsInvalidError(RuntimeError):
    def __init__(self, errors: list[DefinitionError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def bodies(definitions: Definitions) -> list[tuple[DefinitionKind, str, dict[str, Any]]]:
    """What gets published for each definition: its validated content, without the version.

    Templates first, then segments, then journeys: a worker never sees a journey before the
    templates it sends (the definitions topic has one partition and the relay keeps store order).
    """
    out: list[tuple[DefinitionKind, str, dict[str, Any]]] = []
    for kind, items in (("template", definitions.templates), ("segment", definitions.segments), ("journey", definitions.journeys)):
        for item in items:
            out.append((kind, item.id, item.model_dump(mode="json", exclude={"version"})))  # type: ignore[arg-type]
    return out


def default_actor() -> str:
    try:
        return os.environ.get("TIDINGS_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def apply_paths(
    settings: Settings, paths: list[Path], now: datetime | None = None, actor: str | None = None
) -> list[DefinitionPublished]:
    """Publish every changed definition under `paths`; returns the new versions (relayed already).

    `now` is accepted for older callers and ignored: the event store stamps each event itself.
    """
    try:
        definitions = load_paths(paths)
    except DefinitionsInvalid as exc:
        raise DefinitionsInvalidError(exc.errors) from None
    ensure_topics(settings)
    actor = actor or default_actor()
    sources = {str(p) for p in paths}
    store = open_event_store(settings)
    try:
        live_on_topic: dict[str, DefinitionPublished] | None = None
        published: list[DefinitionPublished] = []
        for kind, definition_id, body in bodies(definitions):
            floor = 0
            if store.definitions.find(kind, definition_id) is None:
                # First time this store sees it: continue any numbering already on the topic.
                if live_on_topic is None:
                    live_on_topic = read_definitions(settings)
                on_topic = live_on_topic.get(f"{kind}:{definition_id}")
                if on_topic is not None:
                    floor = on_topic.version + (0 if on_topic.content_hash == content_hash(body) else 1)
            version = store.definitions.publish(kind, definition_id, body, actor, ", ".join(sorted(sources)), floor)
            if version is not None:
                definition = store.definitions.get(kind, definition_id)
                published.append(
                    DefinitionPublished(
                        kind=kind, definition_id=definition_id, version=version,
                        content_hash=definition.content_hash, body=body, published_at=definition.modified_on,
                    )
                )
                log.info("definition.published", key=f"{kind}:{definition_id}", version=version, actor=actor)
        if published:
            relay_definitions(settings, store)
        return published
    finally:
        store.close()


def relay_definitions(settings: Settings, store: Any) -> None:
    """Relay now, so the new versions are on the topic when `apply` returns."""
    from processors.relay import Relay

    producer = KafkaProducer(settings)
    try:
        relay = Relay(settings, store, producer)
        while relay.relay_once(store.definitions) is not None:
            pass
    finally:
        producer.close()
