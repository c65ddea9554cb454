"""`tidings apply`: validate definitions, then publish the ones whose content changed.

Publishing appends a `DefinitionPublished` record to the compacted definitions topic; every worker
follows that topic and switches to the new version without a restart.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog

from connectors.definitions_topic import read_definitions
from connectors.kafka_admin import ensure_topics
from connectors.kafka_producer import KafkaProducer
from domain.events import DefinitionPublished
from domain.publishing import DefinitionKind, next_publication
from domain.yaml_source import DefinitionError
from infra.definitions_loader import Definitions, DefinitionsInvalid, load_paths
from infra.settings import Settings
from infra.topics import Topic

log = structlog.get_logger(__name__)


class DefinitionsInvalidError(RuntimeError):
    def __init__(self, errors: list[DefinitionError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def bodies(definitions: Definitions) -> list[tuple[DefinitionKind, str, dict[str, Any]]]:
    """What gets published for each definition: its validated content, without the version."""
    out: list[tuple[DefinitionKind, str, dict[str, Any]]] = []
    for kind, items in (("template", definitions.templates), ("segment", definitions.segments), ("journey", definitions.journeys)):
        for item in items:
            out.append((kind, item.id, item.model_dump(mode="json", exclude={"version"})))  # type: ignore[arg-type]
    return out


def apply_paths(settings: Settings, paths: list[Path], now: datetime | None = None) -> list[DefinitionPublished]:
    try:
        definitions = load_paths(paths)
    except DefinitionsInvalid as exc:
        raise DefinitionsInvalidError(exc.errors) from None
    ensure_topics(settings)
    live = read_definitions(settings)
    now = now or datetime.now(timezone.utc)
    publications = []
    for kind, definition_id, body in bodies(definitions):
        publication = next_publication(kind, definition_id, body, live.get(f"{kind}:{definition_id}"), now)
        if publication is not None:
            publications.append(publication)
    if publications:
        producer = KafkaProducer(settings)
        try:
            # Templates first, then segments, then journeys: a worker never sees a journey before
            # the templates it sends (one partition keeps this order).
            producer.produce_all_sync(
                [(Topic.DEFINITIONS.name(settings), p.key.encode(), p.to_bytes()) for p in publications]
            )
        finally:
            producer.close()
    for publication in publications:
        log.info("definition.published", key=publication.key, version=publication.version)
    return publications
