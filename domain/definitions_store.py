"""Which version of which journey, segment and template was live when: the definition history.

One `PublishedDefinition` aggregate per `kind:id`. Publishing content whose hash equals the current
version's records nothing; otherwise a new version is published with who published it and from
where. Paused, resumed and archived are recorded as events too.
"""

from __future__ import annotations

import difflib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event

from domain.events import DefinitionPublished
from domain.publishing import DefinitionKind, content_hash

DEFINITION_NAMESPACE = uuid.UUID("0e8b6a52-2d6b-4f57-8a3e-7c1f5d2b9a64")
KINDS: tuple[str, ...] = ("journey", "segment", "template")


class DefinitionStoreError(ValueError):
    pass


def definition_aggregate_id(kind: str, definition_id: str) -> uuid.UUID:
    return uuid.uuid5(DEFINITION_NAMESPACE, f"{kind}:{definition_id}")


class PublishedDefinition(Aggregate):
    """A journey, segment or template and its versions."""

    @event("Created")
    def __init__(self, kind: str, definition_id: str) -> None:
        if kind not in KINDS:
            raise DefinitionStoreError(f"kind: must be one of {', '.join(KINDS)}")
        self.kind = kind
        self.definition_id = definition_id
        self.live_version = 0
        self.content_hash = ""
        self.body: dict[str, Any] = {}
        self.state = "draft"

    @classmethod
    def create_id(cls, kind: str, definition_id: str) -> uuid.UUID:  # type: ignore[override]
        return definition_aggregate_id(kind, definition_id)

    def publish(self, body: dict[str, Any], actor: str, source: str, version_floor: int = 0) -> bool:
        """A new version, unless `body` is what the live version already holds.

        `version_floor` lets a store that starts empty continue the numbering of versions already
        live on the definitions topic (published before the event store existed).
        """
        digest = content_hash(body)
        if digest == self.content_hash and self.state != "archived":
            return False
        version = max(self.live_version + 1, version_floor)
        self._published(self.kind, self.definition_id, version, digest, body, actor, source)
        return True

    def pause(self, actor: str) -> None:
        if self.state != "live":
            raise DefinitionStoreError(f"{self.kind} {self.definition_id!r} is {self.state}, not live")
        self._paused(self.kind, self.definition_id, actor)

    def resume(self, actor: str) -> None:
        if self.state != "paused":
            raise DefinitionStoreError(f"{self.kind} {self.definition_id!r} is {self.state}, not paused")
        self._resumed(self.kind, self.definition_id, self.live_version, self.content_hash, self.body, actor)

    def archive(self, actor: str) -> None:
        if self.state == "archived":
            return
        self._archived(self.kind, self.definition_id, actor)

    @event("Published")
    def _published(self, kind: str, definition_id: str, version: int, content_hash: str, body: dict[str, Any], actor: str, source: str) -> None:
        self.live_version = version
        self.content_hash = content_hash
        self.body = body
        self.state = "live"

    @event("Paused")
    def _paused(self, kind: str, definition_id: str, actor: str) -> None:
        self.state = "paused"

    @event("Resumed")
    def _resumed(self, kind: str, definition_id: str, version: int, content_hash: str, body: dict[str, Any], actor: str) -> None:
        self.state = "live"

    @event("Archived")
    def _archived(self, kind: str, definition_id: str, actor: str) -> None:
        self.state = "archived"


def publication_of(domain_event: Any) -> DefinitionPublished | None:
    """What the definitions topic carries for one stored event: a live version, or None (tombstone).

    Created records nothing on the topic of its own; callers skip it (`relayed_to_topic`).
    """
    if type(domain_event).__name__ in ("Published", "Resumed"):
        return DefinitionPublished(
            kind=domain_event.kind,
            definition_id=domain_event.definition_id,
            version=domain_event.version,
            content_hash=domain_event.content_hash,
            body=domain_event.body,
            published_at=domain_event.timestamp,
        )
    return None


@dataclass(frozen=True)
class VersionEntry:
    aggregate_version: int
    event: str
    version: int | None
    content_hash: str
    actor: str
    source: str
    at: datetime


@dataclass(frozen=True)
class DefinitionSummary:
    kind: str
    definition_id: str
    live_version: int
    state: str
    content_hash: str


class DefinitionsApplication(Application):
    name = "Definitions"
    log_section_size = 500

    def publish(
        self, kind: DefinitionKind, definition_id: str, body: dict[str, Any], actor: str, source: str = "",
        version_floor: int = 0,
    ) -> int | None:
        """The new version number, or None when the content is unchanged."""
        definition = self.find(kind, definition_id)
        if definition is None:
            definition = PublishedDefinition(kind=kind, definition_id=definition_id)
        if not definition.publish(body, actor, source, version_floor):
            return None
        self.save(definition)
        return definition.live_version

    def pause(self, kind: str, definition_id: str, actor: str) -> None:
        self._command(kind, definition_id, "pause", actor)

    def resume(self, kind: str, definition_id: str, actor: str) -> None:
        self._command(kind, definition_id, "resume", actor)

    def archive(self, kind: str, definition_id: str, actor: str) -> None:
        self._command(kind, definition_id, "archive", actor)

    def _command(self, kind: str, definition_id: str, command: str, actor: str) -> None:
        definition = self.get(kind, definition_id)
        getattr(definition, command)(actor)
        self.save(definition)

    def find(self, kind: str, definition_id: str) -> PublishedDefinition | None:
        try:
            return self.repository.get(definition_aggregate_id(kind, definition_id))
        except AggregateNotFoundError:
            return None

    def get(self, kind: str, definition_id: str) -> PublishedDefinition:
        definition = self.find(kind, definition_id)
        if definition is None:
            raise DefinitionStoreError(f"no {kind} {definition_id!r}")
        return definition

    def list(self) -> list[DefinitionSummary]:
        """Every definition, read from the notification log (definitions are few)."""
        ids: dict[uuid.UUID, None] = {}
        start = 1
        while True:
            notifications = self.notification_log.select(start=start, limit=self.log_section_size)
            for notification in notifications:
                ids[notification.originator_id] = None  # type: ignore[index]
            if len(notifications) < self.log_section_size:
                break
            start = notifications[-1].id + 1
        out = []
        for aggregate_id in ids:
            d: PublishedDefinition = self.repository.get(aggregate_id)
            out.append(DefinitionSummary(d.kind, d.definition_id, d.live_version, d.state, d.content_hash))
        return sorted(out, key=lambda s: (s.kind, s.definition_id))

    def history(self, kind: str, definition_id: str) -> list[VersionEntry]:
        entries = []
        for stored in self.events.get(definition_aggregate_id(kind, definition_id)):
            name = type(stored).__name__
            if name == "Created":
                continue
            entries.append(
                VersionEntry(
                    aggregate_version=stored.originator_version,
                    event=name,
                    version=getattr(stored, "version", None),
                    content_hash=getattr(stored, "content_hash", ""),
                    actor=getattr(stored, "actor", ""),
                    source=getattr(stored, "source", ""),
                    at=stored.timestamp,
                )
            )
        if not entries:
            raise DefinitionStoreError(f"no {kind} {definition_id!r}")
        return entries

    def body_of(self, kind: str, definition_id: str, version: int) -> dict[str, Any]:
        for stored in self.events.get(definition_aggregate_id(kind, definition_id)):
            if type(stored).__name__ == "Published" and stored.version == version:
                return stored.body
        raise DefinitionStoreError(f"{kind} {definition_id!r} has no version {version}")

    def diff(self, kind: str, definition_id: str, v1: int, v2: int) -> str:
        """A unified diff of two versions' content, as YAML."""
        a = yaml.safe_dump(self.body_of(kind, definition_id, v1), sort_keys=True).splitlines(keepends=True)
        b = yaml.safe_dump(self.body_of(kind, definition_id, v2), sort_keys=True).splitlines(keepends=True)
        return "".join(difflib.unified_diff(a, b, f"{kind}:{definition_id} v{v1}", f"{kind}:{definition_id} v{v2}"))


def split_key(key: str) -> tuple[str, str]:
    """`journey:welcome` -> ("journey", "welcome"); a bare id is searched in every kind by callers."""
    kind, sep, definition_id = key.partition(":")
    if not sep or kind not in KINDS or not definition_id:
        raise DefinitionStoreError(f"definition: {key!r} is not kind:id with kind one of {', '.join(KINDS)}")
    return kind, definition_id
