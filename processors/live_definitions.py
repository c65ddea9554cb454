"""The definitions a worker runs with, rebuilt whenever the definitions topic changes.

The follower thread builds a new immutable snapshot and swaps one reference, so agents always see a
consistent set (a journey never refers to a template from a newer snapshot than itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError

from domain.events import DefinitionPublished
from domain.journeys import JourneyDefinition
from domain.segments import SegmentDefinition, compile_segments
from domain.templates import CompiledTemplate, TemplateDefinition, compile_template

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LiveDefinitions:
    segments: tuple[SegmentDefinition, ...] = ()
    compiled_segments: Any = None
    journeys: tuple[JourneyDefinition, ...] = ()
    templates: dict[str, CompiledTemplate] = field(default_factory=dict)
    template_versions: dict[str, int] = field(default_factory=dict)


def build_live(publications: dict[str, DefinitionPublished]) -> LiveDefinitions:
    segments: list[SegmentDefinition] = []
    journeys: list[JourneyDefinition] = []
    templates: dict[str, CompiledTemplate] = {}
    versions: dict[str, int] = {}
    for publication in sorted(publications.values(), key=lambda p: p.key):
        body = {**publication.body, "version": publication.version}
        try:
            if publication.kind == "segment":
                segments.append(SegmentDefinition.model_validate(body))
            elif publication.kind == "journey":
                journeys.append(JourneyDefinition.model_validate(body))
            else:
                templates[publication.definition_id] = compile_template(TemplateDefinition.model_validate(body))
                versions[publication.definition_id] = publication.version
        except (ValidationError, ValueError) as exc:
            # A bad definition on the topic must not stop the others; `tidings apply` validates first.
            log.error("definitions.unusable", key=publication.key, version=publication.version, error=str(exc)[:300])
    return LiveDefinitions(
        segments=tuple(segments),
        compiled_segments=compile_segments(segments),
        journeys=tuple(journeys),
        templates=templates,
        template_versions=versions,
    )


class LiveDefinitionsHolder:
    def __init__(self) -> None:
        self.current = build_live({})

    def replace(self, publications: dict[str, DefinitionPublished]) -> None:
        self.current = build_live(publications)
        log.info(
            "definitions.reloaded",
            segments=len(self.current.segments),
            journeys=len(self.current.journeys),
            templates=len(self.current.templates),
        )
