"""Journeys: what happens to a subscriber after a trigger, written as steps in YAML.

The language (models, parsing, validation) lives in `domain.journey_language`; the pure engine
(enrollment, steps, timers, decisions) in `domain.journey_engine`. This module is the one place
other code imports journeys from.
"""

from __future__ import annotations

from domain.journey_engine import (
    JourneyCatalog,
    JourneyDecision,
    JourneyOutcome,
    apply_event,
    apply_segment_change,
    as_catalog,
    fire_due,
    next_due,
    send_intent_id,
    split_bucket,
    timers_of,
)
from domain.journey_language import (
    BranchStep,
    EventTrigger,
    ExitRule,
    ExitStep,
    Goal,
    JourneyDefinition,
    SegmentTrigger,
    SendStep,
    SetStep,
    SplitStep,
    Step,
    Trigger,
    WaitForStep,
    WaitStep,
    WaitUntilDateStep,
    WaitUntilTimeStep,
    WebhookStep,
    parse_journey,
    parse_journey_data,
)

__all__ = [
    "BranchStep",
    "EventTrigger",
    "ExitRule",
    "ExitStep",
    "Goal",
    "JourneyCatalog",
    "JourneyDecision",
    "JourneyDefinition",
    "JourneyOutcome",
    "SegmentTrigger",
    "SendStep",
    "SetStep",
    "SplitStep",
    "Step",
    "Trigger",
    "WaitForStep",
    "WaitStep",
    "WaitUntilDateStep",
    "WaitUntilTimeStep",
    "WebhookStep",
    "apply_event",
    "apply_segment_change",
    "as_catalog",
    "fire_due",
    "next_due",
    "parse_journey",
    "parse_journey_data",
    "send_intent_id",
    "split_bucket",
    "timers_of",
]
