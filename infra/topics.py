"""The one registry of Kafka topics. Nothing else names a topic with a string literal.

Subscriber-keyed topics share one partition count (`Settings.partitions`), so a worker that owns
partition p of one owns p of all: per-subscriber state stays local and per-subscriber order holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from domain.events import (
    ConsentChanged,
    Contract,
    DeadLetter,
    DefinitionPublished,
    DeliveryEvent,
    EventEnvelope,
    ReputationSnapshot,
    SegmentMembershipChanged,
    SendIntent,
)
from domain.journeys import JourneyDecision
from domain.reputation import ReputationChanged, ReputationCommand
from infra.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    suffix: str
    key: str
    payload: type[Contract]
    cleanup_policy: Literal["delete", "compact"] = "delete"
    subscriber_keyed: bool = True
    retention_ms: int | None = None

    def name(self, settings: Settings) -> str:
        return f"{settings.topic_prefix}.{self.suffix}"

    def partitions(self, settings: Settings) -> int:
        # Compacted current-state topics are small; one partition keeps them totally ordered.
        return settings.partitions if self.subscriber_keyed else 1


class Topic(Enum):
    EVENTS = TopicSpec("events", "subscriber_id", EventEnvelope)
    CONSENT = TopicSpec("consent", "subscriber_id", ConsentChanged)
    DEFINITIONS = TopicSpec("definitions", "kind:definition_id", DefinitionPublished, "compact", False)
    SEGMENT_CHANGES = TopicSpec("segment-changes", "subscriber_id", SegmentMembershipChanged)
    SEND_INTENTS = TopicSpec("send-intents", "subscriber_id", SendIntent)
    JOURNEY_DECISIONS = TopicSpec("journey-decisions", "subscriber_id", JourneyDecision)
    DELIVERY = TopicSpec("delivery", "subscriber_id", DeliveryEvent)
    REPUTATION = TopicSpec("reputation", "sending_domain|provider", ReputationSnapshot, "compact", False)
    REPUTATION_COMMANDS = TopicSpec("reputation-commands", "action:sending_domain|provider", ReputationCommand, "compact", False)
    REPUTATION_CHANGES = TopicSpec("reputation-changes", "sending_domain|provider", ReputationChanged, subscriber_keyed=False)
    DEAD_LETTERS = TopicSpec("dead-letters", "topic", DeadLetter, subscriber_keyed=False)

    @property
    def spec(self) -> TopicSpec:
        return self.value

    def name(self, settings: Settings) -> str:
        return self.value.name(settings)

    def partitions(self, settings: Settings) -> int:
        return self.value.partitions(settings)

    def config(self) -> dict[str, str]:
        config = {"cleanup.policy": self.value.cleanup_policy}
        if self.value.retention_ms is not None:
            config["retention.ms"] = str(self.value.retention_ms)
        return config
